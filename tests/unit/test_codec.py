"""The JSON codec: what it accepts, the path it names when it refuses, and defensive decoding."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pytest

from errands import SerializationError
from errands.serialization import MAX_DEPTH, decode_arguments, decode_value, encode_arguments, encode_value

LIMIT = 1024 * 1024


@pytest.mark.parametrize("args, kwargs, path", [
    ((datetime(2030, 1, 1),), {}, "args[0]"),
    ((1, 2, {3}), {}, "args[2]"),
    ((), {"when": datetime(2030, 1, 1)}, "kwargs['when']"),
    ((), {"a": {"b": [1, 2, (3,)]}}, "kwargs['a']['b'][2]"),
    ((), {"a": [{"x": math.nan}]}, "kwargs['a'][0]['x']"),
    (([[[b"x"]]],), {}, "args[0][0][0][0]"),
    ((), {"it's": object()}, "kwargs[\"it's\"]"),
])
def test_refusals_name_the_path(args: tuple, kwargs: dict, path: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SerializationError) as caught:
        encode_arguments(args, kwargs, LIMIT)
    assert caught.value.path == path
    assert str(caught.value).startswith(path + ": ")


def test_bad_dict_keys_name_their_container() -> None:
    with pytest.raises(SerializationError) as caught:
        encode_arguments((), {"m": {1: "a"}}, LIMIT)
    assert caught.value.path == "kwargs['m']" and "int" in str(caught.value)
    with pytest.raises(SerializationError, match="NUL"):
        encode_arguments((), {"m": {"k\x00": 1}}, LIMIT)


@pytest.mark.parametrize("kwargs", [{1: "a"}, {None: 1}, {"a\x00": 1}, {"\ud800": 1}])
def test_keyword_names_are_checked(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(SerializationError) as caught:
        encode_arguments((), kwargs, LIMIT)
    assert caught.value.path.startswith("kwargs")


@pytest.mark.parametrize("value", ["a\x00", "\ud800", "x\udc00y", math.inf, -math.inf, math.nan])
def test_refused_scalars(value: object) -> None:
    with pytest.raises(SerializationError):
        encode_value(value)


def test_depth_limit_is_an_error_not_a_recursion_error() -> None:
    value: list = []  # type: ignore[type-arg]
    for _ in range(100_000):
        value = [value]
    with pytest.raises(SerializationError, match="deeper"):
        encode_value(value)
    ok: list = []  # type: ignore[type-arg]
    for _ in range(MAX_DEPTH - 5):
        ok = [ok]
    assert decode_value(encode_value(ok)) == ok


def test_round_trips_exactly() -> None:
    value = {"big": 2**64 + 1, "neg": -(2**63) - 1, "f": 0.1, "e": 1e308, "s": "é\U0001f600\u2028", "n": None,
             "b": [True, False], "nested": {"": []}}
    text = encode_value(value)
    assert json.loads(text) == value
    assert decode_value(text) == value
    assert "\\u" not in text, "stored as UTF-8 text, not escapes"


def test_payload_limit_counts_utf8_bytes() -> None:
    args, kwargs = encode_arguments(["é" * 100], {}, 1024)
    assert len(args.encode()) + len(kwargs.encode()) <= 1024
    with pytest.raises(SerializationError, match="max_payload_bytes=1024"):
        encode_arguments(["é" * 600], {}, 1024)  # 600 characters, 1200 bytes
    exact = 1024 - len('[""]') - len("{}")
    encode_arguments(["x" * exact], {}, 1024)
    with pytest.raises(SerializationError):
        encode_arguments(["x" * (exact + 1)], {}, 1024)


@pytest.mark.parametrize("args_text, kwargs_text", [
    ('{"a": 1}', "{}"),         # args a dict
    ("[]", "[1]"),              # kwargs a list
    ("[1, 2", "{}"),            # truncated
    ("[]", "nope"),             # not JSON
    ("[" * 100_000 + "]" * 100_000, "{}"),  # too deep for the decoder
    (b"\xff\xfe", "{}"),        # not UTF-8
    (None, "{}"),
    (42, "{}"),
    ("[]", "{\"a\": }"),
])
def test_decode_arguments_raises_one_typed_error(args_text: object, kwargs_text: object) -> None:
    with pytest.raises(SerializationError):
        decode_arguments(args_text, kwargs_text)


def test_decode_arguments_accepts_bytes_and_text() -> None:
    assert decode_arguments(b'[1, "\xc3\xa9"]', "{}") == ([1, "é"], {})
    assert decode_arguments("[]", '{"a": [1]}') == ([], {"a": [1]})


def test_decode_value_none_and_errors() -> None:
    assert decode_value(None) is None
    with pytest.raises(SerializationError):
        decode_value("{")
