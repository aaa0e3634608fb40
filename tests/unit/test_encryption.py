"""Encryption without a backend: key parsing, the missing extra, envelopes, the testing helpers."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("cryptography")
from cryptography.fernet import Fernet

from errands import ConfigurationError, Errands, SerializationError
from errands.encryption import Keyring, is_sealed, parse_keys
from errands.testing import drain

KEY = Fernet.generate_key().decode()


@pytest.mark.parametrize("bad", ["not-a-key", "c2hvcnQ=", KEY[:-4]])
def test_a_bad_key_is_refused_when_the_app_is_built_without_echoing_it(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERRANDS_ENCRYPTION_KEYS", f"{KEY},{bad}")
    with pytest.raises(ConfigurationError, match=r"ERRANDS_ENCRYPTION_KEYS: key #2 is not a Fernet key") as caught:
        Errands("memory://")
    assert bad not in str(caught.value) and KEY not in str(caught.value)


def test_keys_are_split_on_commas_and_blanks_dropped() -> None:
    other = Fernet.generate_key().decode()
    assert parse_keys(f" {KEY} ,, {other} ") == (KEY, other)
    assert parse_keys([KEY]) == (KEY,)
    assert parse_keys(None) == ()


def test_a_missing_extra_names_it_where_the_job_is_defined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)  # import now raises ImportError
    app = Errands("memory://", encryption_keys=[KEY])
    with pytest.raises(ConfigurationError, match=r"errands\[encryption\]"):
        @app.job(encrypt=True)
        def charge(card: str) -> None: ...
    with pytest.raises(ConfigurationError, match=r"errands\[encryption\]"):
        Keyring([KEY])


def test_encrypt_must_be_a_bool() -> None:
    app = Errands("memory://")
    with pytest.raises(ConfigurationError, match="encrypt must be True or False"):
        @app.job(encrypt="yes")  # type: ignore[arg-type]
        def charge(card: str) -> None: ...


def test_an_envelope_is_a_json_string_and_opens_only_with_its_key() -> None:
    sealed = Keyring([KEY]).seal('[[1],{}]')
    assert sealed.startswith('"errands:fernet:v1:') and is_sealed(sealed)
    assert not is_sealed("[1]") and not is_sealed(None)
    assert Keyring([Fernet.generate_key().decode(), KEY]).open(sealed) == "[[1],{}]"
    with pytest.raises(SerializationError, match="can't be decrypted"):
        Keyring([Fernet.generate_key().decode()]).open(sealed)
    with pytest.raises(SerializationError, match="can't be decrypted"):
        Keyring([KEY]).open('"errands:fernet:v1:garbage"')


def test_drain_runs_encrypted_jobs_as_the_worker_does() -> None:
    app = Errands("memory://", encryption_keys=[KEY])

    @app.job(encrypt=True)
    def double(n: int) -> int:
        return 2 * n

    handle = double.perform(21)
    assert drain(app).succeeded == 1
    assert app.get_job(handle.id, decrypt=True).result == 42  # type: ignore[union-attr]
    assert app.get_job(handle.id).result == "<encrypted>"  # type: ignore[union-attr]


def test_assert_enqueued_sees_through_encryption() -> None:
    from errands.testing import assert_enqueued, enqueued

    app = Errands("memory://", encryption_keys=[KEY])

    @app.job(encrypt=True)
    def charge(card: str, amount: int = 1) -> None: ...

    charge.perform("4111", amount=5)
    assert [job.kwargs for job in enqueued(app, charge)] == [{"amount": 5}]
    assert assert_enqueued(charge, "4111", amount=5).encrypted
