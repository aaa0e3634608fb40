"""Backoff maths and the pure retry decision."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from errands import (
    ConfigurationError,
    Constant,
    Exponential,
    Fail,
    JobTimeout,
    Retry,
    SerializationError,
    UnknownJob,
)
from errands._states import JobState
from errands.backends.base import Claim
from errands.retry import as_backoff, decide


def _claim(attempts: int, max_attempts: int = 5) -> Claim:
    return Claim("id-1", "job", "default", "[]", "{}", attempts, max_attempts, "token-1")


def test_exponential_without_jitter_doubles_and_caps() -> None:
    policy = Exponential(base=2.0, factor=2.0, max_delay=30.0, jitter=0)
    assert [policy.delay(a) for a in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.delay(0) == 2.0 and policy.delay(-3) == 2.0


def test_exponential_huge_attempt_does_not_overflow() -> None:
    policy = Exponential(max_delay=3600.0, jitter=0)
    assert policy.delay(10**6) == 3600.0


def test_exponential_jitter_stays_within_bounds_and_varies() -> None:
    policy = Exponential(base=10.0, factor=3.0, max_delay=1e9, jitter=0.25)
    for attempt in range(1, 6):
        raw = 10.0 * 3.0 ** (attempt - 1)
        samples = [policy.delay(attempt) for _ in range(200)]
        assert all(raw * 0.75 - 1e-9 <= s <= raw * 1.25 + 1e-9 for s in samples)
        assert len(set(samples)) > 1, "jitter spreads retries"


def test_default_policy_is_exponential() -> None:
    policy = as_backoff(None)
    assert isinstance(policy, Exponential)
    assert 1.5 <= policy.delay(1) <= 2.5


@pytest.mark.parametrize("bad", [
    {"base": -1}, {"factor": 0.5}, {"max_delay": -1}, {"jitter": 1.5}, {"jitter": -0.1},
])
def test_exponential_rejects_bad_parameters(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Exponential(**bad)


def test_constant_and_numbers() -> None:
    assert Constant(5).delay(1) == Constant(5).delay(99) == 5
    assert as_backoff(3).delay(7) == 3.0
    assert as_backoff(0.5).delay(1) == 0.5
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(ConfigurationError):
            as_backoff(bad)


def test_callable_backoff() -> None:
    policy = as_backoff(lambda attempt: attempt * 10)
    assert [policy.delay(a) for a in (1, 2, 3)] == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("bad", [True, "fast", object()])
def test_as_backoff_rejects_other_things(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        as_backoff(bad)  # type: ignore[arg-type]


def test_decide_retries_with_the_policy_delay() -> None:
    outcome = decide(_claim(2), ValueError("x"), "ValueError: x", Constant(7))
    assert outcome.state == JobState.SCHEDULED and outcome.retry_in == 7
    assert (outcome.id, outcome.token, outcome.error) == ("id-1", "token-1", "ValueError: x")


def test_decide_fails_when_attempts_are_used_up() -> None:
    outcome = decide(_claim(5, 5), ValueError("x"), "ValueError: x", Constant(7))
    assert outcome.state == JobState.FAILED
    assert outcome.error is not None and outcome.error.startswith("ValueError: x") and "5/5" in outcome.error


def test_decide_retry_request_overrides_the_policy() -> None:
    outcome = decide(_claim(1), Retry(in_=timedelta(minutes=2)), "Retry", Constant(7))
    assert outcome.state == JobState.SCHEDULED and outcome.retry_in == 120
    plain = decide(_claim(1), Retry(), "Retry", Constant(7))
    assert plain.retry_in == 7, "Retry() without in_ uses the policy"
    last = decide(_claim(5, 5), Retry(in_=1), "Retry", Constant(7))
    assert last.state == JobState.FAILED, "Retry can't go past max_attempts"


@pytest.mark.parametrize("error", [Fail("no"), SerializationError("bad result", "result"), UnknownJob("ghost")])
def test_decide_permanent_errors_fail_at_once(error: BaseException) -> None:
    outcome = decide(_claim(1, 10), error, "text", Constant(0))
    assert outcome.state == JobState.FAILED and outcome.error == "text"


def test_decide_timeout_is_retried() -> None:
    assert decide(_claim(1), JobTimeout("slow"), "JobTimeout", Constant(1)).state == JobState.SCHEDULED


@pytest.mark.parametrize("delay", [-1, math.inf, math.nan, timedelta(seconds=-1)])
def test_retry_rejects_bad_delays(delay: object) -> None:
    with pytest.raises(ConfigurationError):
        Retry(in_=delay)  # type: ignore[arg-type]


def test_retry_and_fail_messages() -> None:
    assert "30" in str(Retry(in_=30)) and Retry(in_=30).in_ == 30
    assert str(Fail("account deleted")) == "account deleted"
