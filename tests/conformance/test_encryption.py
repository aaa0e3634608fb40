"""Encrypted arguments at rest (``encrypt=True``) on every backend: the store never holds the
plaintext of an encrypted job's arguments or result, the worker decrypts, queries redact, a job
no key opens fails clearly while the worker goes on, and keys rotate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("cryptography")
from cryptography.fernet import Fernet

from errands import ConfigurationError, Errands, JobState, SerializationError
from errands.backends.base import Backend, Capability
from errands.encryption import Keyring

from .conftest import BackendSpec, make_app, new_job

SECRET = "4111-1111-SECRET-4242"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _dump(backend_spec: BackendSpec, url: str, backend: Backend) -> str:
    assert backend_spec.dump is not None, "every BACKENDS entry needs dump() for the at-rest tests"
    return backend_spec.dump(url, backend)


@pytest.fixture
def keyed(url: str) -> Iterator[Errands]:
    """An app on the test's backend holding one key (OLD)."""
    instance = make_app(url, encryption_keys=[OLD])
    try:
        yield instance
    finally:
        instance.close()


def _charge_job(app: Errands, flavour: str = "sync") -> Any:
    if flavour == "sync":
        @app.job(name="charge", encrypt=True)
        def charge(card: str, *, amount: int) -> dict[str, Any]:
            return {"charged": card, "amount": amount}
    else:
        @app.job(name="charge", encrypt=True)
        async def charge(card: str, *, amount: int) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"charged": card, "amount": amount}
    return charge


@pytest.mark.requires(Capability.QUERIES)
def test_the_store_never_holds_the_plaintext(keyed: Errands, url: str, backend_spec: BackendSpec) -> None:
    charge = _charge_job(keyed)

    @keyed.job()
    def plain(note: str) -> str:
        return note

    waiting = charge.perform(SECRET, amount=SECRET.count("1"))
    plain.perform("PLAIN-visible-marker")  # proves the dump reads the arguments it must not find
    dump = _dump(backend_spec, url, keyed.backend)
    assert "PLAIN-visible-marker" in dump
    assert SECRET not in dump and "4111" not in dump
    keyed.run_worker(burst=True)
    assert keyed.get_job(waiting.id).state == JobState.SUCCEEDED  # type: ignore[union-attr]
    dump = _dump(backend_spec, url, keyed.backend)  # the result is stored encrypted too
    assert SECRET not in dump and "4111" not in dump and "charged" not in dump


@pytest.mark.requires(Capability.QUERIES)
def test_the_worker_decrypts_and_queries_redact(keyed: Errands, flavour: str) -> None:
    charge = _charge_job(keyed, flavour)
    handle = charge.perform(SECRET, amount=42)
    waiting = keyed.get_job(handle.id)
    assert waiting is not None and waiting.encrypted
    assert waiting.args == ["<encrypted>"] and waiting.kwargs == {}
    keyed.run_worker(burst=True)
    done = keyed.get_job(handle.id)
    assert done is not None and done.state == JobState.SUCCEEDED, done
    assert done.result == "<encrypted>" and done.args == ["<encrypted>"]
    opened = keyed.get_job(handle.id, decrypt=True)
    assert opened is not None and opened.encrypted
    assert (opened.args, opened.kwargs) == ([SECRET], {"amount": 42})
    assert opened.result == {"charged": SECRET, "amount": 42}
    assert [j.args for j in keyed.list_jobs(name="charge")] == [["<encrypted>"]]
    assert [j.args for j in keyed.list_jobs(name="charge", decrypt=True)] == [[SECRET]]


@pytest.mark.requires(Capability.QUERIES)
def test_with_options_encrypts_a_plain_job(keyed: Errands, url: str, backend_spec: BackendSpec) -> None:
    @keyed.job()
    def echo(text: str) -> str:
        return text

    handle = echo.with_options(encrypt=True).perform(SECRET)
    plain = echo.perform("not secret")
    assert SECRET not in _dump(backend_spec, url, keyed.backend)
    keyed.run_worker(burst=True)
    assert keyed.get_job(handle.id, decrypt=True).result == SECRET  # type: ignore[union-attr]
    assert keyed.get_job(plain.id).result == "not secret"  # type: ignore[union-attr]
    assert not keyed.get_job(plain.id).encrypted  # type: ignore[union-attr]


def _rekey(app: Errands, keys: list[str]) -> None:
    """As if this were another process started with other keys (memory:// has one store per app)."""
    app.settings = app.settings.with_(encryption_keys=tuple(keys))


@pytest.mark.parametrize("worker_keys", [[NEW], []], ids=["wrong-key", "no-key"])
@pytest.mark.requires(Capability.QUERIES)
def test_a_job_no_key_opens_fails_and_the_worker_goes_on(keyed: Errands, worker_keys: list[str]) -> None:
    _charge_job(keyed).perform(SECRET, amount=1)

    @keyed.job()
    def plain(n: int) -> int:
        return n

    other = plain.perform(7)
    _rekey(keyed, worker_keys)
    keyed.run_worker(burst=True)
    failed = keyed.list_jobs(name="charge")
    assert [j.state for j in failed] == [JobState.FAILED]
    error = failed[0].error or ""
    assert failed[0].attempts == 1  # no retry can mend it: fix the keys, then retry_job
    assert "ERRANDS_ENCRYPTION_KEYS" in error and ("can't decrypt" in error or "can't be decrypted" in error)
    assert SECRET not in error
    assert keyed.get_job(other.id).state == JobState.SUCCEEDED  # type: ignore[union-attr]
    _rekey(keyed, [OLD])  # the keys fixed: a retry runs it
    assert keyed.retry_job(failed[0].id)
    keyed.run_worker(burst=True)
    assert keyed.get_job(failed[0].id).state == JobState.SUCCEEDED  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_tampered_ciphertext_fails_clearly(keyed: Errands) -> None:
    _charge_job(keyed)
    genuine = Keyring([OLD]).seal('[["x"],{"amount":1}]')
    tampered = genuine[:40] + ("A" if genuine[40] != "A" else "B") + genuine[41:]
    keyed.backend.enqueue([new_job(name="charge", args=tampered, kwargs="{}", max_attempts=3)])
    keyed.run_worker(burst=True)
    (job,) = keyed.list_jobs(name="charge")
    assert job.state == JobState.FAILED and "can't be decrypted" in (job.error or "")


@pytest.mark.requires(Capability.QUERIES)
def test_old_key_jobs_still_run_after_rotation(keyed: Errands) -> None:
    charge = _charge_job(keyed)
    before = charge.perform(SECRET, amount=1)  # encrypted with OLD
    _rekey(keyed, [NEW, OLD])  # step 2 of the README's rotation: NEW first, OLD kept
    after = charge.perform(SECRET, amount=2)
    keyed.run_worker(burst=True)
    for handle, amount in ((before, 1), (after, 2)):
        info = keyed.get_job(handle.id, decrypt=True)
        assert info is not None and info.state == JobState.SUCCEEDED, info
        assert info.result == {"charged": SECRET, "amount": amount}
    stored = keyed.backend.get(after.id)
    assert stored is not None
    assert Keyring([NEW]).open(stored.args)  # the new job is under the new key alone
    with pytest.raises(SerializationError, match="can't be decrypted"):
        Keyring([OLD]).open(stored.args)
    _rekey(keyed, [NEW])  # step 4, too early: an OLD job can't be read any more
    with pytest.raises(SerializationError, match="can't be decrypted"):
        keyed.get_job(before.id, decrypt=True)


@pytest.mark.requires(Capability.QUERIES)
def test_encrypt_without_keys_is_refused_at_enqueue(app: Errands) -> None:
    @app.job(encrypt=True)
    def charge(card: str) -> None: ...

    with pytest.raises(ConfigurationError, match="ERRANDS_ENCRYPTION_KEYS"):
        charge.perform(SECRET)
    assert app.list_jobs() == []  # nothing stored


@pytest.mark.requires(Capability.QUERIES)
def test_keys_come_from_the_environment_when_the_app_is_built(
    url: str, monkeypatch: pytest.MonkeyPatch, backend_spec: BackendSpec
) -> None:
    monkeypatch.setenv("ERRANDS_ENCRYPTION_KEYS", f" {NEW} , {OLD} ")
    app = make_app(url)
    try:
        assert NEW not in repr(app.settings) and OLD not in repr(app.settings)
        handle = _charge_job(app).perform(SECRET, amount=3)
        assert SECRET not in _dump(backend_spec, url, app.backend)
        app.run_worker(burst=True)
        assert app.get_job(handle.id, decrypt=True).result["amount"] == 3  # type: ignore[union-attr]
    finally:
        app.close()
