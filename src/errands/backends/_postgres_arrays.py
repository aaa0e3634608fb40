"""PostgreSQL array literals for the batch statements' ``%s::text[]`` (``float8[]``, ``int[]``,
``bool[]``) parameters.

psycopg adapts a Python list element by element in Python: about 5 µs an array and 1.3 µs an
element, so a settle of four outcomes (eight arrays) spent ~70 µs of client CPU on its
parameters, more than its round trip. Built here, the same arrays are one ``str`` each, which
psycopg passes through in C; the server parses the literal as it parses any array input.

A value psycopg would refuse is refused the same way: a ``str`` holding NUL raises psycopg's
``DataError`` (the backend names it), a lone surrogate ``UnicodeEncodeError``, when the literal
is sent.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["bool_array", "float_array", "int_array", "text_array"]


def _quoted(value: str) -> str:
    # inside double quotes only the backslash and the double quote need escaping
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_array(values: Iterable[str | None]) -> str:
    """``{"a","b\\"c",NULL}``: every element quoted, so none is read as NULL, trimmed or split."""
    return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"


def float_array(values: Iterable[float | None]) -> str:
    """repr() is exact for a float8 (``inf``, ``-inf`` and ``nan`` are what float8 input reads)."""
    return "{" + ",".join("NULL" if v is None else repr(float(v)) for v in values) + "}"


def int_array(values: Iterable[int]) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def bool_array(values: Iterable[bool]) -> str:
    return "{" + ",".join("t" if v else "f" for v in values) + "}"
