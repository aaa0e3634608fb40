"""The JSON codec for arguments and results.

Only what JSON carries *and gives back equal* is accepted: ``None``, ``bool``, ``int``
(any size), finite ``float``, ``str`` (no NUL, no lone surrogates: PostgreSQL and
UTF-8 can't hold them), ``list`` and ``dict`` with ``str`` keys. A ``tuple`` would
come back as a list and a non-string key as a string, so both are refused rather
than changed silently. Every refusal is a ``SerializationError`` naming the path of
the bad value (``kwargs['when']``). Nothing is ever pickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import SerializationError

__all__ = [
    "MAX_DEPTH", "check_text", "decode_arguments", "decode_meta", "decode_value", "encode_arguments",
    "encode_meta", "encode_value", "payload_size",
]

MAX_DEPTH = 200

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()
_SCALARS = (bool, int, type(None))


def check_text(value: str, path: str) -> None:
    """Refuse text no backend can store the same way: NUL (PostgreSQL) and lone surrogates (UTF-8)."""
    if "\x00" in value:
        raise SerializationError("strings may not contain NUL (\\x00)", path)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SerializationError("string holds a lone surrogate, which UTF-8 can't carry", path) from None


def _check(value: Any, path: str, depth: int) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{value!r} is not a finite number; JSON can't carry it", path)
    elif depth >= MAX_DEPTH:
        raise SerializationError(f"nested deeper than {MAX_DEPTH} levels", path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"dict key {key!r} is a {type(key).__name__}; JSON keys must be str", path
                )
            check_text(key, f"{path} key {key!r}")
            _check(item, f"{path}[{key!r}]", depth + 1)
    elif isinstance(value, tuple):
        raise SerializationError("a tuple would come back as a list; pass a list", path)
    else:
        raise SerializationError(
            f"{type(value).__name__} can't be stored as JSON (convert it first, e.g. to str or a dict)", path
        )


_TRIVIAL: dict[Any, Callable[[], Any]] = {"{}": dict, "[]": list, "null": lambda: None}


def encode_value(value: Any, path: str = "value") -> str:
    """Validate and encode one value as compact JSON text."""
    if value is None:  # what most handlers return
        return "null"
    _check(value, path, 0)
    return _encoder.encode(value)


def encode_arguments(args: Sequence[Any], kwargs: Mapping[str, Any], max_bytes: int) -> tuple[str, str]:
    """Encode positional and keyword arguments; refuse the pair above ``max_bytes`` of UTF-8."""
    for index, arg in enumerate(args):
        _check(arg, f"args[{index}]", 1)
    for key, arg in kwargs.items():
        if not isinstance(key, str):  # perform_many takes any mapping: JSON would make the key a str
            raise SerializationError(f"keyword {key!r} is a {type(key).__name__}; keywords must be str", "kwargs")
        check_text(key, f"kwargs key {key!r}")
        _check(arg, f"kwargs[{key!r}]", 1)
    args_text = _encoder.encode(list(args))
    kwargs_text = _encoder.encode(dict(kwargs))
    size = _utf8_len(args_text) + _utf8_len(kwargs_text)
    if size > max_bytes:
        raise SerializationError(f"arguments take {size} bytes, above max_payload_bytes={max_bytes}")
    return args_text, kwargs_text


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def decode_value(text: str | None) -> Any:
    """Decode stored JSON text; anything that is not valid JSON is a ``SerializationError``."""
    if text is None:
        return None
    if type(text) is str and text in _TRIVIAL:  # most kwargs and many results: skip the decoder (a fresh object each time)
        return _TRIVIAL[text]()
    try:
        return _decoder.decode(text)
    except (ValueError, RecursionError, TypeError) as exc:
        raise SerializationError(f"stored JSON does not decode: {exc}") from None


def decode_arguments(args_text: Any, kwargs_text: Any) -> tuple[list[Any], dict[str, Any]]:
    """Decode a stored record's arguments, checking their shape (args a list, kwargs a dict)."""
    if isinstance(args_text, (bytes, bytearray)):
        args_text = _bytes_to_str(args_text, "args")
    if isinstance(kwargs_text, (bytes, bytearray)):
        kwargs_text = _bytes_to_str(kwargs_text, "kwargs")
    if not isinstance(args_text, str) or not isinstance(kwargs_text, str):
        raise SerializationError("stored arguments are not JSON text")
    args = decode_value(args_text)
    kwargs = decode_value(kwargs_text)
    if not isinstance(args, list):
        raise SerializationError(f"stored args must be a JSON list, found {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise SerializationError(f"stored kwargs must be a JSON object, found {type(kwargs).__name__}")
    return args, kwargs


def _bytes_to_str(raw: bytes | bytearray, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SerializationError(f"stored {what} are not valid UTF-8: {exc}") from None


def encode_meta(meta: Mapping[str, Any] | None) -> str | None:
    """Validate and encode a job's metadata (a JSON object with str keys); None when empty, so a
    job without metadata stores nothing."""
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise SerializationError(f"meta must be a dict with str keys, got {type(meta).__name__}", "meta")
    if not meta:
        return None
    value = dict(meta)
    _check(value, "meta", 0)
    return _encoder.encode(value)


def decode_meta(text: Any) -> dict[str, Any]:
    """A stored record's metadata as a dict ({} for none); ``SerializationError`` when it is not
    a JSON object (written by hand, or corrupt)."""
    if text is None or text == "":
        return {}
    if isinstance(text, (bytes, bytearray)):
        text = _bytes_to_str(text, "meta")
    if not isinstance(text, str):
        raise SerializationError("stored meta is not JSON text")
    value = decode_value(text)
    if not isinstance(value, dict):
        raise SerializationError(f"stored meta must be a JSON object, found {type(value).__name__}")
    return value


def payload_size(*texts: str | None) -> int:
    """UTF-8 bytes of the stored JSON texts of one job, counted against ``max_payload_bytes``."""
    return sum(_utf8_len(text) for text in texts if text is not None)
