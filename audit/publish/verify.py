"""Checking a published release: ``verify_release`` (and ``manage.py verify_release``).

A release is intact when every ``SHA256SUMS`` line is well formed and matches its file, every
other file is listed there, every file ``manifest.json`` lists has the sha256 and size it says,
every data file is in the manifest, and each data file holds as many records as the manifest's
``records`` (and ``counts``) say. Every other copy of the data's hashes and counts must agree
with the files too: ``croissant.json``'s ``distribution`` (each data file's sha256 and
``contentSize``) and the card's (README.md) record counts, size category and split list. So a
data file changed with SHA256SUMS and manifest.json rewritten to match still fails, naming
croissant.json (and the card, when the count changed). Each problem is one readable sentence
naming the file.

The release is data from elsewhere (a download, a copy, a colleague's disk), so verification
trusts nothing in it: a manifest or SHA256SUMS may list ``/etc/passwd``, ``../../x`` or a
symlink pointing out of the release, names that are not printable or are too long to stat, or
be no UTF-8 or JSON at all. Such entries are reported, never read or followed outside the
release directory, and never crash the check.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from audit.publish.card import size_category
from audit.publish.release import CHECKSUMS, MANIFEST, release_files, sha256_file

OUTSIDE = "path outside the release directory; not read"
CROISSANT = "croissant.json"
CARD = "README.md"


def verify_release(path: str | Path) -> list[str]:
    """Every problem with the release at ``path``, as readable sentences; [] when it is intact."""
    if not Path(path).is_dir():
        return [f"{path}: not a directory"]
    root = Path(path).resolve()
    present = set(release_files(root))
    problems = _check_sums(root, present=present - {CHECKSUMS})
    manifest = _read_manifest(root, problems=problems)
    # The manifest may list SHA256SUMS like any other file.
    present.add(CHECKSUMS)
    if manifest is not None:
        problems += _check_manifest(root, manifest=manifest, present=present)
        problems += _check_record_counts(root, manifest=manifest, present=present)
    problems += _check_croissant(root, present=present)
    problems += _check_card(root, present=present)
    return problems


def _check_sums(root: Path, *, present: set[str]) -> list[str]:
    """SHA256SUMS: well-formed lines, each listed file there with that digest, nothing unlisted.

    ``present`` is every file in the release but SHA256SUMS itself."""
    problems: list[str] = []
    sums = _read_own_file(root, CHECKSUMS, problems)
    if sums is None:
        # Without the list, calling every file "not listed" would bury the one real problem.
        return problems
    listed: dict[str, str] = {}
    for number, line in enumerate(sums.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            problems.append(f"{CHECKSUMS} line {number}: not '<sha256>  <path>'")
            continue
        listed[name] = digest
    for name, digest in sorted(listed.items()):
        target = _member(root, name)
        if target is None:
            problems.append(f"{_shown(name)}: listed in {CHECKSUMS}: {OUTSIDE}")
        # Membership first: a name that is not in the tree (too long, odd) never reaches stat().
        elif name not in present or not target.is_file():
            problems.append(f"{_shown(name)}: listed in {CHECKSUMS} but missing")
        elif (actual := sha256_file(target)) != digest:
            problems.append(f"{_shown(name)}: sha256 is {actual}, {CHECKSUMS} says {digest}")
    for name in sorted(present - set(listed)):
        problems.append(f"{_shown(name)}: not listed in {CHECKSUMS}")
    return problems


def _read_manifest(root: Path, *, problems: list[str]) -> dict[str, Any] | None:
    """manifest.json as a dict with a ``files`` list, or None with the reason added to
    ``problems``: without that list there is nothing the other manifest checks could compare."""
    text = _read_own_file(root, MANIFEST, problems)
    if text is None:
        return None
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        problems.append(f"{MANIFEST}: not valid JSON ({exc})")
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        problems.append(f"{MANIFEST}: no 'files' list")
        return None
    return manifest


def _check_manifest(root: Path, *, manifest: dict[str, Any], present: set[str]) -> list[str]:
    """Each file the manifest lists is there with its size and sha256; every data file is
    listed. ``present`` is every file in the release."""
    problems: list[str] = []
    in_manifest: set[str] = set()
    for item in manifest["files"]:
        name = str(item.get("path", "")) if isinstance(item, dict) else ""
        in_manifest.add(name)
        if not name:
            problems.append(f"?: listed in {MANIFEST} but missing")
            continue
        target = _member(root, name)
        if target is None:
            problems.append(f"{_shown(name)}: listed in {MANIFEST}: {OUTSIDE}")
            continue
        if name not in present or not target.is_file():
            problems.append(f"{_shown(name)}: listed in {MANIFEST} but missing")
            continue
        size = target.stat().st_size
        if size != item.get("size"):
            problems.append(
                f"{_shown(name)}: size is {size} bytes, {MANIFEST} says {item.get('size')!r}"
            )
        if (actual := sha256_file(target)) != item.get("sha256"):
            problems.append(
                f"{_shown(name)}: sha256 is {actual}, {MANIFEST} says {item.get('sha256')!r}"
            )
    for name in sorted(p for p in present if p.startswith("data/") and p not in in_manifest):
        problems.append(f"{name}: data file not listed in {MANIFEST}")
    return problems


def _check_record_counts(root: Path, *, manifest: dict[str, Any], present: set[str]) -> list[str]:
    """Each data file holds the number of records the manifest's ``records`` says, and its
    ``counts`` agree with ``records``. ``present`` is every file in the release."""
    problems: list[str] = []
    records = manifest.get("records") or {}
    if not isinstance(records, dict):
        problems.append(f"{MANIFEST}: 'records' is not an object")
        records = {}
    for name, expected in sorted(records.items()):
        target = _member(root, name)
        if target is None:
            problems.append(f"{_shown(name)}: listed in {MANIFEST} records: {OUTSIDE}")
        elif name in present and target.is_file():
            actual = _count_lines(target)
            if actual != expected:
                problems.append(f"{_shown(name)}: {actual} records, {MANIFEST} says {expected!r}")
    counts = manifest.get("counts") or {}
    if not isinstance(counts, dict):
        counts = {}
    for name, expected in sorted(records.items()):
        split = Path(name).stem
        if split in counts and counts[split] != expected:
            problems.append(
                f"{MANIFEST}: counts.{split} is {counts[split]}, records says {expected}"
            )
    return problems


def _data_files(root: Path, present: set[str]) -> list[str]:
    """The data files that are inside the release (a symlink out is reported elsewhere)."""
    return sorted(
        name for name in present if name.startswith("data/") and _member(root, name) is not None
    )


def _check_croissant(root: Path, *, present: set[str]) -> list[str]:
    """croissant.json's ``distribution``: each FileObject's ``contentUrl`` is a file of the
    release with the ``sha256`` and ``contentSize`` (``"<bytes> B"``, when stated) it says, and
    every data file is there. A missing croissant.json is reported by the checksum lists."""
    if CROISSANT not in present:
        return []
    problems: list[str] = []
    text = _read_own_file(root, CROISSANT, problems)
    if text is None:
        return problems
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [f"{CROISSANT}: not valid JSON ({exc})"]
    distribution = metadata.get("distribution") if isinstance(metadata, dict) else None
    if not isinstance(distribution, list):
        return [f"{CROISSANT}: no 'distribution' list"]
    listed: set[str] = set()
    for item in distribution:
        url = item.get("contentUrl") if isinstance(item, dict) else None
        if not isinstance(url, str) or not url:
            continue
        listed.add(url)
        target = _member(root, url)
        if target is None:
            problems.append(f"{_shown(url)}: listed in {CROISSANT}: {OUTSIDE}")
            continue
        if url not in present or not target.is_file():
            problems.append(f"{_shown(url)}: listed in {CROISSANT} but missing")
            continue
        claimed = item.get("sha256")
        if (actual := sha256_file(target)) != claimed:
            problems.append(f"{_shown(url)}: sha256 is {actual}, {CROISSANT} says {claimed!r}")
        size = target.stat().st_size
        content_size = item.get("contentSize")
        # Releases published before contentSize was written do not state one.
        if "contentSize" in item and content_size != f"{size} B":
            problems.append(
                f"{_shown(url)}: size is {size} bytes, {CROISSANT} says contentSize "
                f"{content_size!r}"
            )
    for name in _data_files(root, present):
        if name not in listed:
            problems.append(f"{name}: data file not listed in {CROISSANT} distribution")
    return problems


CARD_FILE_LINE = re.compile(r"^- `(?P<path>data/[^`]+)`: (?P<n>\d+) records$")
CARD_TOTAL_LINE = re.compile(r"^- In this release: (?P<n>\d+) records$")
CARD_SPLIT_PATH = re.compile(r"^    path: (?P<path>.+)$")


def _check_card(root: Path, *, present: set[str]) -> list[str]:
    """The card's counts: each data file's records (its Files list), the release's total and
    its Hugging Face size category, and the splits its ``configs`` list (every data file that
    holds records; datasets cannot load an empty one). A missing README.md is reported by the
    checksum lists."""
    if CARD not in present:
        return []
    problems: list[str] = []
    text = _read_own_file(root, CARD, problems)
    if text is None:
        return problems
    front, _, body = text.removeprefix("---\n").partition("\n---\n")
    actual = {
        name: _count_lines(target)
        for name in _data_files(root, present)
        if (target := _member(root, name)) is not None and target.is_file()
    }
    said: dict[str, int] = {}
    totals: list[int] = []
    for line in body.splitlines():
        if match := CARD_FILE_LINE.match(line):
            said[match["path"]] = int(match["n"])
        elif match := CARD_TOTAL_LINE.match(line):
            totals.append(int(match["n"]))
    for name, n in sorted(said.items()):
        if name not in actual:
            problems.append(f"{CARD}: lists {_shown(name)}, which is not a data file here")
        elif actual[name] != n:
            problems.append(f"{name}: {actual[name]} records, {CARD} says {n}")
    for name in sorted(set(actual) - set(said)):
        problems.append(f"{name}: data file not listed in {CARD}")
    total = sum(actual.values())
    if not totals:
        problems.append(f"{CARD}: does not say how many records the release holds")
    for n in totals:
        if n != total:
            problems.append(
                f"{CARD}: says {n} records in this release, the data files hold {total}"
            )
    categories = re.findall(r"^size_categories:\n- (.+)$", front, re.MULTILINE)
    if categories != [size_category(total)]:
        shown = categories[0] if categories else None
        problems.append(
            f"{CARD}: size_categories is {shown!r}, {size_category(total)!r} for {total} records"
        )
    splits = {
        match["path"] for line in front.splitlines() if (match := CARD_SPLIT_PATH.match(line))
    }
    for path in sorted(splits - set(actual)):
        problems.append(f"{CARD}: configs lists {_shown(path)}, which is not a data file here")
    holding = {name for name, n in actual.items() if n} or set(actual)
    for name in sorted(holding - splits):
        problems.append(f"{name}: data file not in the splits of {CARD}'s configs")
    return problems


def _shown(name: str) -> str:
    """A file name from a manifest or SHA256SUMS, safe to print (they may be hostile)."""
    return name if name.isprintable() else repr(name)


def _member(root: Path, name: str) -> Path | None:
    """``root / name`` when ``name`` is a relative path that stays inside ``root``, else None.

    The manifest and SHA256SUMS are data: a listed ``/etc/passwd``, ``../../x`` or a symlink
    pointing out of the release must not make verification read files elsewhere."""
    if not name or "\\" in name or "\0" in name or Path(name).is_absolute():
        return None
    try:
        target = (root / name).resolve()
    except (OSError, ValueError):
        return None
    return target if target.is_relative_to(root) else None


def _read_own_file(root: Path, name: str, problems: list[str]) -> str | None:
    """The text of the release's own ``name`` (SHA256SUMS, manifest.json), or None with the
    reason added to ``problems``.

    Read through ``_member`` like every listed file: a SHA256SUMS or manifest.json that is a
    symlink out of the release is refused, not opened. Not UTF-8 is a problem, not a crash."""
    path = root / name
    if not path.exists() and not path.is_symlink():
        problems.append(f"{name}: missing")
        return None
    target = _member(root, name)
    if target is None:
        problems.append(f"{name}: {OUTSIDE}")
        return None
    if not target.is_file():
        problems.append(f"{name}: missing")
        return None
    try:
        data = target.read_bytes()
    except OSError as exc:
        problems.append(f"{name}: cannot be read ({exc.strerror or exc})")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            f"{name}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"
        )
        return None


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
