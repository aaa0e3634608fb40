"""Settings and names: validated once, errors name the key and the bad value."""

from __future__ import annotations

import math

import pytest

from errands import ConfigurationError, Errands
from errands.backends import backend_class, redact_url
from errands.config import DEFAULT_URL, Settings, check_job_name, check_queue_name


def test_defaults() -> None:
    s = Settings()
    assert s.url == DEFAULT_URL == "sqlite:///errands.db"
    assert s.lease == 30.0 and s.heartbeat_interval == 10.0
    assert s.max_payload_bytes == 1024 * 1024 and s.max_error_bytes == 64 * 1024


@pytest.mark.parametrize("field, value", [
    ("lease", 0), ("lease", -1), ("lease", math.nan), ("lease", math.inf), ("lease", True), ("lease", "30"),
    ("lease", 86400 * 8), ("poll_interval", 0), ("poll_interval", 61), ("heartbeat", 0),
    ("max_payload_bytes", 10), ("max_payload_bytes", 4096.0), ("max_error_bytes", True), ("url", "nope"),
    ("url", 5),
])
def test_invalid_settings_name_the_key(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(**{"url": "memory://", field: value})  # type: ignore[arg-type]
    assert field in str(caught.value)


def test_heartbeat_may_not_exceed_the_lease() -> None:
    with pytest.raises(ConfigurationError, match="heartbeat"):
        Settings(url="memory://", lease=5, heartbeat=6)
    assert Settings(url="memory://", lease=6, heartbeat=2).heartbeat_interval == 2


def test_build_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRANDS_URL", "memory://")
    monkeypatch.setenv("ERRANDS_LEASE", "12.5")
    s = Settings.build()
    assert (s.url, s.lease) == ("memory://", 12.5)
    s = Settings.build("sqlite:///x.db", lease=3)
    assert (s.url, s.lease) == ("sqlite:///x.db", 3)
    monkeypatch.delenv("ERRANDS_URL")
    monkeypatch.delenv("ERRANDS_LEASE")
    assert Settings.build().url == DEFAULT_URL


def test_build_rejects_bad_env_and_unknown_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRANDS_LEASE", "soon")
    with pytest.raises(ConfigurationError, match="ERRANDS_LEASE"):
        Settings.build("memory://")
    monkeypatch.delenv("ERRANDS_LEASE")
    with pytest.raises(ConfigurationError, match="leese"):
        Errands("memory://", leese=3)


def test_environment_is_not_read_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRANDS_URL", "memory://")
    assert Errands().settings.url == "memory://"
    monkeypatch.setenv("ERRANDS_URL", "sqlite:///other.db")
    assert Errands().settings.url == "sqlite:///other.db"


def test_unknown_scheme_is_a_configuration_error() -> None:
    app = Errands("nosuch://host/")
    with pytest.raises(ConfigurationError, match="nosuch"):
        _ = app.backend
    with pytest.raises(ConfigurationError):
        backend_class("ftp://secret:pw@host/")


def test_defining_jobs_touches_no_backend() -> None:
    app = Errands("nosuch://host/")

    @app.job()
    def fine() -> None: ...

    assert app._backend is None


def test_redact_url_hides_passwords() -> None:
    assert redact_url("redis://:secret@localhost:6379/0") == "redis://:***@localhost:6379/0"
    assert redact_url("postgresql://user:pw@db/x") == "postgresql://user:***@db/x"
    assert "pw" not in repr(Errands("postgresql://user:pw@db/x"))
    assert redact_url("memory://") == "memory://"


@pytest.mark.parametrize("name", ["default", "mail", "a:b", "high-priority", "v1.2", "Q_9", "x" * 100])
def test_valid_queue_names(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize("name", [
    "", "x" * 101, "*", "{tag}", "q\nq", "../../etc/passwd", "\u202eevil", "amq.gen", "-x", ".x", "a b",
    "x'; DROP TABLE jobs;--", None, 5,
])
def test_invalid_queue_names(name: object) -> None:
    with pytest.raises(ConfigurationError, match="queue name"):
        check_queue_name(name)


@pytest.mark.parametrize("name", ["send_welcome", "app.jobs:send", "<lambda>", "x" * 200])
def test_valid_job_names(name: str) -> None:
    assert check_job_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 201, ".x", "a b", "a/b", "a\x00", None])
def test_invalid_job_names(name: object) -> None:
    with pytest.raises(ConfigurationError, match="job name"):
        check_job_name(name)


def test_two_handlers_with_one_name_are_refused() -> None:
    app = Errands("memory://")

    @app.job(name="same")
    def one() -> None: ...

    with pytest.raises(ConfigurationError, match="same"):
        @app.job(name="same")
        def two() -> None: ...

    assert app.registry["same"].func is one.func
    again = app.job(name="same")(one.func)  # the same function twice is harmless (re-import)
    assert again.func is one.func


def test_worker_options_are_checked() -> None:
    from errands.worker import Worker

    app = Errands("memory://")
    for concurrency in (0, -1, 10**6, True, 2.5):
        with pytest.raises(ConfigurationError):
            Worker(app, concurrency=concurrency)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Worker(app, queues=["*"])
    assert Worker(app, queues="mail").queues == ["mail"]
