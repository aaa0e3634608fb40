"""enqueued() and assert_enqueued(): what a test's code put in the queue."""

from __future__ import annotations

from datetime import timedelta

import pytest

from errands import Errands
from errands.testing import assert_enqueued, drain, enqueued


@pytest.fixture
def app() -> Errands:
    return Errands("memory://")


def test_enqueued_lists_waiting_jobs_oldest_first(app: Errands) -> None:
    @app.job(queue="mail")
    def send_welcome(user_id: int) -> None: ...

    @app.job()
    def resize(image_id: str, width: int = 256) -> None: ...

    send_welcome.perform(1)
    resize.perform("img")
    send_welcome.perform_in(timedelta(hours=1), 2)
    assert [(j.name, j.args) for j in enqueued(app)] == [("send_welcome", [1]), ("resize", ["img"]),
                                                        ("send_welcome", [2])]
    assert [j.args for j in enqueued(app, send_welcome)] == [[1], [2]]
    assert [j.args for j in enqueued(app, "send_welcome")] == [[1], [2]]
    assert [j.name for j in enqueued(app, queue="default")] == ["resize"]
    drain(app)
    assert [j.args for j in enqueued(app)] == [[2]]  # ran ones are no longer waiting; the delayed one is


def test_assert_enqueued_matches_the_call_as_the_handler_sees_it(app: Errands) -> None:
    @app.job()
    def resize(image_id: str, width: int = 256) -> None: ...

    handle = resize.perform("img", width=64)
    resize.perform("other")
    assert assert_enqueued(resize, "img", width=64).id == handle.id
    assert assert_enqueued(resize, image_id="img", width=64).id == handle.id
    assert assert_enqueued(resize, "img", 64).id == handle.id
    other = assert_enqueued(resize, "other", width=256)  # the default counts
    assert other.args == ["other"] and other.kwargs == {}


def test_assert_enqueued_says_what_is_waiting_instead(app: Errands) -> None:
    @app.job()
    def send_welcome(user_id: int) -> None: ...

    with pytest.raises(AssertionError, match=r"(?s)no send_welcome job waits.*\(none\)"):
        assert_enqueued(send_welcome, 42)
    send_welcome.perform(41)
    with pytest.raises(AssertionError, match=r"args=\[41\]"):
        assert_enqueued(send_welcome, 42)
    drain(app)
    with pytest.raises(AssertionError):
        assert_enqueued(send_welcome, 41)  # it ran: no longer waiting


def test_assert_enqueued_refuses_arguments_that_could_never_be_enqueued(app: Errands) -> None:
    @app.job()
    def store(values: object) -> None: ...

    store.perform([1, 2])
    with pytest.raises(AssertionError, match="can't have been enqueued"):
        assert_enqueued(store, (1, 2))  # a tuple would come back a list: refused at enqueue
