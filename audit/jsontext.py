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
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Digits to "0", every other byte to " ": a run of 19 digits is then a find of 19 zeros, a
# pass in C (a regular expression for it took longer than orjson's whole parse).
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``, by orjson where that is the same value (see the module)."""
    try:
        data = text if isinstance(text, bytes) else text.encode()
    except UnicodeEncodeError:  # a lone surrogate in the text itself: json's to read
        data = None
    if data is not None and data.translate(_DIGITS).find(_LONG_RUN) < 0:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
