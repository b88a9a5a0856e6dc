"""JSON text parsed fast, to the value the standard library's ``json.loads`` gives.

orjson parses a record in about half the time ``json`` takes, and the hot loops parse every
record: an export of a million records parses each stored line once, and a release reads each
line it wrote back once more (issue 14). orjson and ``json`` give the same value for any RFC 8259
text but in three places, so those go to ``json``:

- an integer outside 64 bits, which orjson reads as a float (``json`` as an int): text with 19
  digits in a row (an integer of at most 18 digits always fits) is left to ``json``, so an
  ordinary long fraction costs the slower parse, never a different value;
- what orjson refuses and ``json`` takes: the ``NaN`` and ``Infinity`` tokens, a number past the
  float range (``1e400``, read as infinity), the escape of a lone surrogate (``"\\ud800"``), text
  that is not UTF-8, and nesting past orjson's 1,024 levels;
- what both refuse raises ``json``'s own error, with its message and position.

Floats parse to the same double (a test compares both on random numbers), objects keep their
key order, and a repeated key keeps its first place with its last value, as in ``json``.

``dumps_line`` writes a value as one line of strict JSON, by orjson too (some ten times faster
than ``json.dumps`` on a record: the export's largest cost was ``json.dumps``), for a value its
caller knows holds no NaN or infinity: orjson writes those as null, where strict JSON must
refuse them. ``loads_checked`` says when a parsed value is known to: orjson parsed it, and
orjson refuses those numbers.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson

# Digits to "0", every other byte to " ": a run of 19 digits is then a find of 19 zeros, a
# pass in C (a regular expression for it took longer than orjson's whole parse).
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``, by orjson where that is the same value (see the module)."""
    return loads_checked(text)[0]


def loads_checked(text: str | bytes) -> tuple[Any, bool]:
    """``json.loads(text)``, and whether the value is known to hold no NaN or infinity (true
    when orjson read it: it refuses them; ``json`` reads ``NaN``, ``Infinity`` and ``1e400``)."""
    try:
        data = text if isinstance(text, bytes) else text.encode()
    except UnicodeEncodeError:  # a lone surrogate in the text itself: json's to read
        data = None
    if data is not None and data.translate(_DIGITS).find(_LONG_RUN) < 0:
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(text), False


# Characters JSON lets a string hold unescaped that Python's ``str.splitlines`` (and so a
# reader splitting decoded text into lines) takes for line ends: NEL, LINE SEPARATOR and
# PARAGRAPH SEPARATOR, as UTF-8, with their escapes. Each byte sequence can only be that
# character in UTF-8 (its first byte cannot continue another), and outside strings JSON holds
# ASCII only, so replacing the bytes escapes exactly those characters.
_LINE_ENDS = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def dumps_line(value: Any, *, finite: bool = False) -> bytes:
    """``value`` as strict JSON (RFC 8259) in UTF-8, compact (no spaces), on one line whichever
    way a reader splits lines: a JSON Lines line without its newline. Raises ValueError for a
    NaN or an infinity, which strict JSON cannot write.

    ``finite``: the caller knows the value holds neither (as ``loads_checked`` says), so orjson
    may write it; it writes them as null. What orjson cannot write (an integer past 64 bits,
    nesting past 254 levels, a string with a lone surrogate) ``json`` writes, to the same
    value; a string with a lone surrogate then has every non-ASCII character escaped, the only
    UTF-8 spelling of it. Floats are the shortest text that reads back as the same double
    either way (orjson spells ``1e-07`` as ``1e-7``)."""
    data = None
    if finite:
        with contextlib.suppress(orjson.JSONEncodeError):  # json writes what orjson cannot
            data = orjson.dumps(value)
    if data is None:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: only its escape is UTF-8
            data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    if not data.isascii():  # a pass in C, much faster than a search for each of the three
        for character, escape in _LINE_ENDS:
            if character in data:
                data = data.replace(character, escape)
    return data
