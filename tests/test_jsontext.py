"""audit.jsontext.loads gives json.loads's value for any text, or json's own error."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import jsontext


def spelled(value) -> str:
    """A value as text that tells apart what == does not: int from float, key order, -0.0,
    NaN (equal to itself here)."""
    return repr(value)


def assert_same(text: str | bytes) -> None:
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)) as raised:
            jsontext.loads(text)
        assert str(raised.value) == str(exc)
        return
    assert spelled(jsontext.loads(text)) == spelled(expected)


EDGES = [
    # A repeated key: its first place, its last value.
    '{"a": 1, "b": 2, "a": 3}',
    # Integers past 64 bits, which orjson reads as floats: json's ints.
    '{"x": 18446744073709551616}',
    '{"x": -9223372036854775809}',
    '{"x": 123456789012345678901234567890}',
    '{"x": 18446744073709551615, "y": -9223372036854775808}',
    # What orjson refuses and json takes.
    '{"x": NaN, "y": Infinity, "z": -Infinity}',
    '{"x": 1e400}',
    '"\\ud800"',
    '{"k": "\\udfff tail"}',
    "[" * 1100 + "]" * 1100,
    # Both refuse: json's error.
    "[1,]",
    '{"a": "\x01"}',
    "\ufeff{}",
    "",
    '{"a": 1} x',
    # Ordinary text either way.
    '"\\ud83d\\ude00"',
    '{"x": -0, "y": -0.0, "z": 1E2, "w": 5e-324, "v": 1.7976931348623157e308}',
    ' {"a": [true, false, null, "\\u0000"]} \n',
    '{"x": 0.12345678901234567890123}',
]


@pytest.mark.parametrize("text", EDGES)
def test_edges_as_json_reads_them(text):
    assert_same(text)
    assert_same(text.encode("utf-8", "surrogatepass"))


def test_a_lone_surrogate_in_the_text_itself():
    # Not UTF-8 encodable: json reads it.
    assert jsontext.loads('"\ud800"') == "\ud800"


def test_utf16_bytes_as_json_detects_them():
    assert_same('{"a": "é"}'.encode("utf-16"))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: past 64 bits too
    | st.floats()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_any_value_as_json_writes_it(value, ascii_only):
    assert_same(json.dumps(value, ensure_ascii=ascii_only))


@settings(max_examples=300, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
)
def test_numbers_parse_to_the_same_double(number):
    text = repr(number) if isinstance(number, float) else number
    expected = json.loads(text)
    got = jsontext.loads(text)
    assert type(got) is type(expected)
    assert spelled(got) == spelled(expected)
    if isinstance(expected, float) and not math.isnan(expected):
        assert math.copysign(1, got) == math.copysign(1, expected)


# --- dumps_line -------------------------------------------------------------------------------

finite_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: json writes those
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # lone surrogates and line separators included
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


def assert_one_line_of(data: bytes, value) -> None:
    text = data.decode("utf-8")  # strict UTF-8: no lone surrogate written raw
    assert spelled(json.loads(text)) == spelled(value)
    assert len(text.splitlines()) == 1  # whichever way a reader splits lines


@settings(max_examples=300, deadline=None)
@given(finite_values, st.booleans())
def test_dumps_line_writes_any_finite_value_as_json_reads_it(value, finite):
    data = jsontext.dumps_line(value, finite=finite)
    assert_one_line_of(data, value)
    # Either writer, the same value; orjson's bytes and json's differ only in float spelling.
    assert spelled(json.loads(data)) == spelled(json.loads(jsontext.dumps_line(value)))


@pytest.mark.parametrize(
    "value",
    [
        {"a": "é\u2028b\u2029c\x85d", "b": [1.5, -0.0, 1e-07, 1e16]},
        {"x": 2**70, "y": "\u2028"},  # orjson cannot write the integer: json does
        {"s": "\ud800 \u2028 é"},  # a lone surrogate: json, every non-ASCII escaped
        json.loads("[" * 300 + "]" * 300),  # past orjson's 254 levels: json writes it
    ],
)
def test_dumps_line_edges(value):
    for finite in (True, False):
        assert_one_line_of(jsontext.dumps_line(value, finite=finite), value)


def test_dumps_line_is_compact_utf8_and_escapes_the_line_separators():
    data = jsontext.dumps_line({"a": ["é", "\u2028", "\x85"], "b": 1}, finite=True)
    assert data == b'{"a":["\xc3\xa9","\\u2028","\\u0085"],"b":1}'
    assert jsontext.dumps_line({"a": ["é", "\u2028"], "b": 1}) == (
        b'{"a":["\xc3\xa9","\\u2028"],"b":1}'
    )


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_dumps_line_refuses_non_finite_numbers_unless_told_there_are_none(number):
    with pytest.raises(ValueError):
        jsontext.dumps_line({"x": [number]})


@pytest.mark.parametrize(
    "text, finite",
    [
        ('{"x": 1.5, "y": [1e300]}', True),
        ('{"x": NaN}', False),
        ('{"x": 1e400}', False),
        ('{"x": [-Infinity]}', False),
        # Read by json for another reason: not known to be finite, though it is.
        ('{"x": 18446744073709551616}', False),
        ('{"x": "\\ud800"}', False),
    ],
)
def test_loads_checked_says_when_the_value_holds_no_nan_or_infinity(text, finite):
    value, known = jsontext.loads_checked(text)
    assert spelled(value) == spelled(json.loads(text))
    assert known is finite
