"""Property: any JSON-able value round-trips equal (and of the same types) through perform and
get_job; anything JSON can't carry faithfully raises SerializationError and stores nothing."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errands import Errands, SerializationError
from errands.backends.base import Capability

from ._stored import stored_jobs

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=25,
)

_bad_leaves = st.one_of(
    st.sets(st.integers(), max_size=3),
    st.tuples(st.integers()),
    st.binary(max_size=5),
    st.sampled_from([math.nan, math.inf, -math.inf, Decimal("1.5"), dt.date(2030, 1, 1), object(), 1j]),
    st.text(max_size=5).map(lambda s: s + "\x00"),
    st.sampled_from(["\ud800", "a\udfffb"]),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
)


@st.composite
def json_with_one_bad_leaf(draw: st.DrawFn) -> Any:
    """A JSON container with one unstorable value hidden somewhere inside."""
    bad = draw(_bad_leaves)
    depth = draw(st.integers(min_value=0, max_value=4))
    value: Any = bad
    for _ in range(depth):
        if draw(st.booleans()):
            siblings = draw(st.lists(json_values, max_size=2))
            value = [*siblings, value]
        else:
            value = {**draw(st.dictionaries(_text, json_values, max_size=2)), "bad": value}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (so True != 1 and 1.0 != 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


_settings = settings(max_examples=60, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def keep(app: Errands):  # type: ignore[no-untyped-def]
    @app.job()
    def keep(*args: Any, **kwargs: Any) -> None: ...

    return keep


@_settings
@given(value=json_values)
@pytest.mark.requires(Capability.QUERIES)
def test_json_values_round_trip(app: Errands, keep: Any, value: Any) -> None:
    handle = keep.perform(value, named=value)
    info = app.get_job(handle.id)
    assert info is not None
    assert same(info.args, [value]), (info.args, value)
    assert same(info.kwargs, {"named": value}), (info.kwargs, value)


@_settings
@given(value=json_with_one_bad_leaf())
def test_non_json_values_are_refused(app: Errands, keep: Any, value: Any) -> None:
    before = stored_jobs(app)
    with pytest.raises(SerializationError) as caught:
        keep.perform(named=value)
    assert caught.value.path.startswith("kwargs['named']")
    assert stored_jobs(app) == before
