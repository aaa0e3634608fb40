"""Encrypted arguments at rest (issue #9): opt-in per job, Fernet keys from the environment.

A job defined with ``@app.job(encrypt=True)`` (or enqueued through ``with_options(encrypt=True)``)
is stored as an envelope: ``args`` is the JSON string ``"errands:fernet:v1:<token>"`` and
``kwargs`` is ``{}``, where the token is the Fernet encryption of ``[args, kwargs]``. Its result
is stored the same way. The store, its backups and its replicas never hold the plaintext.

Keys: ``$ERRANDS_ENCRYPTION_KEYS`` (or ``Errands(encryption_keys=[...])``) is a comma-separated
list of Fernet keys (``Fernet.generate_key()``). The first encrypts; every one decrypts
(``MultiFernet``), which is how keys rotate. Reading the variable happens when an ``Errands`` is
built; ``cryptography`` is imported on first use only (``errands[encryption]``).

What is not encrypted: the job name, queue, unique key, timestamps, and the error text with its
traceback (a handler that puts a secret in an exception message stores that secret).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, SerializationError
from .serialization import decode_arguments, decode_value

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from .backends.base import JobRecord
    from .config import Settings

__all__ = [
    "ENV_VAR",
    "PREFIX",
    "REDACTED",
    "Keyring",
    "check_available",
    "is_sealed",
    "keyring",
    "open_arguments",
    "parse_keys",
    "reveal",
    "seal_arguments",
    "seal_result",
]

ENV_VAR = "ERRANDS_ENCRYPTION_KEYS"
PREFIX = "errands:fernet:v1:"  # versioned, so another scheme can be added without guessing
REDACTED = "<encrypted>"
_SEALED_JSON = '"' + PREFIX  # a sealed field is JSON text: a string holding the prefix and a token
_REDACTED_ARGS = '["<encrypted>"]'
_REDACTED_RESULT = '"<encrypted>"'
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))  # as the codec's


def parse_keys(value: str | Sequence[str] | None, source: str = f"${ENV_VAR}") -> tuple[str, ...]:
    """Split and check Fernet keys (32 bytes, URL-safe base64) without importing ``cryptography``,
    so a bad key fails when the app is built. Errors name the position, never the key itself.

    >>> parse_keys("k1...=,k0...=")   # the first encrypts, all decrypt
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    keys = tuple(str(item).strip() for item in items if str(item).strip())
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigurationError(
                f"{source}: key #{position} is not a Fernet key (32 bytes of URL-safe base64, as "
                "cryptography.fernet.Fernet.generate_key() makes)"
            )
    return keys


class Keyring:
    """The app's Fernet keys: the first encrypts, all decrypt.

    >>> ring = Keyring(["<new key>", "<old key>"])
    >>> ring.open(ring.seal("[1,2]"))
    '[1,2]'
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigurationError(
                f"encrypt=True needs keys: set ${ENV_VAR} to one or more comma-separated Fernet keys "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            )
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError:
            raise ConfigurationError(
                "encrypted jobs need the 'encryption' extra: pip install 'errands[encryption]'"
            ) from None
        self.size = len(keys)
        self._fernet: MultiFernet = MultiFernet([Fernet(key.encode("ascii")) for key in keys])

    def seal(self, text: str) -> str:
        """``text`` encrypted with the first key, as the JSON text of an envelope string."""
        token = self._fernet.encrypt(text.encode("utf-8")).decode("ascii")
        return f'"{PREFIX}{token}"'

    def open(self, sealed: str, what: str = "arguments") -> str:
        """The plaintext of an envelope; ``SerializationError`` when no key opens it."""
        from cryptography.fernet import InvalidToken

        token = sealed[len(_SEALED_JSON):-1] if sealed.endswith('"') else ""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SerializationError(
                f"encrypted {what} can't be decrypted: none of the {self.size} key(s) in ${ENV_VAR} "
                "opens them (a wrong or removed key, or data changed in the store); fix the keys, "
                "then retry the job"
            ) from None


@functools.lru_cache(maxsize=8)
def _cached(keys: tuple[str, ...]) -> Keyring:
    return Keyring(keys)


def keyring(settings: Settings) -> Keyring:
    """The keyring of ``settings.encryption_keys``, built once per key list (building MultiFernet
    per job would dominate small jobs)."""
    return _cached(tuple(settings.encryption_keys))


def check_available() -> None:
    """``ConfigurationError`` naming the extra when ``cryptography`` is missing (at ``@app.job``)."""
    try:
        import cryptography.fernet  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "encrypt=True needs the 'encryption' extra: pip install 'errands[encryption]'"
        ) from None


def is_sealed(text: object) -> bool:
    """True when a stored ``args`` (or result) field is an envelope. Plain args are a JSON list,
    so they never start with a quote."""
    return isinstance(text, str) and text.startswith(_SEALED_JSON)


def seal_arguments(args_text: str, kwargs_text: str, settings: Settings) -> tuple[str, str]:
    """Encoded arguments -> the stored pair: the envelope, and ``{}``."""
    return keyring(settings).seal(f"[{args_text},{kwargs_text}]"), "{}"


def _unpack(plain: str) -> tuple[list[Any], dict[str, Any]]:
    pair = decode_value(plain)
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], list) and isinstance(pair[1], dict)):
        raise SerializationError("decrypted arguments are not an [args, kwargs] pair")
    return pair[0], pair[1]


def open_arguments(args_text: Any, kwargs_text: Any, settings: Settings) -> tuple[list[Any], dict[str, Any]]:
    """What a worker calls the handler with: the stored arguments decoded, decrypted first when
    they are an envelope. Every failure (no keys here, a wrong key, tampering) is a
    ``SerializationError``, so that job fails with a clear error and the worker goes on."""
    if not is_sealed(args_text):
        return decode_arguments(args_text, kwargs_text)
    try:
        ring = keyring(settings)
    except ConfigurationError as exc:
        raise SerializationError(f"this job's arguments are encrypted, but this worker can't decrypt: {exc}") from None
    return _unpack(ring.open(args_text))


def seal_result(result_text: str, args_text: str, settings: Settings) -> str:
    """A job whose arguments were encrypted gets its result encrypted too."""
    return keyring(settings).seal(result_text) if is_sealed(args_text) else result_text


def reveal(record: JobRecord, settings: Settings | None) -> JobRecord:
    """An encrypted record made readable: decrypted with ``settings``' keys when given (raising
    ``SerializationError`` or ``ConfigurationError`` when that fails), else redacted to
    ``args=["<encrypted>"]``, ``kwargs={}`` and ``result="<encrypted>"``."""
    if not is_sealed(record.args):
        return record
    if settings is None:
        result = _REDACTED_RESULT if record.result is not None else None
        return replace(record, args=_REDACTED_ARGS, kwargs="{}", result=result)
    ring = keyring(settings)
    args, kwargs = _unpack(ring.open(record.args))
    args_text, kwargs_text = _encoder.encode(args), _encoder.encode(kwargs)
    result = record.result
    if result is not None and is_sealed(result):
        result = ring.open(result, "result")
    return replace(record, args=args_text, kwargs=kwargs_text, result=result)
