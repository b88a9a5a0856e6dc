"""Full-text search over ``TranscriptText.search_text``: the query syntax, the database's index,
the match computed once per request, and highlighting.

The index is the database's own, kept in step with every write by triggers (migration
``0010_queue_search``, on ``audit_transcript_text`` since ``0019_transcript_text``), so the
importer's plain ``INSERT`` needs nothing from this module:

- SQLite: an FTS5 external-content table ``audit_transcript_fts`` (tokenizer ``unicode61``
  without diacritic folding), ranked with bm25.
- PostgreSQL: a narrow side table ``audit_transcript_search`` of ``tsvector`` documents with a
  GIN index, ranked with ``ts_rank``. ``tsvector`` rather than ``pg_trgm``: it has the same
  word semantics as FTS5 (one query syntax on both databases), ranks, and serves prefixes; a
  trigram index only answers substrings and has no notion of relevance. A side table rather
  than a column of ``audit_transcript``: a common word matches most rows, and checking them
  reads narrow rows (measured at 100k rows: 40 ms against 170 ms on the wide table). Since
  migration 0025 each document also carries copies of its transcript's queue facet columns
  (``models.SearchDocument``), kept by triggers on the transcripts, so that the queue rolls a
  large match up from the documents alone (``audit.review.queue.compute_match``).

Both databases see the same words: runs of letters and digits, lower-cased. On PostgreSQL the
text's other characters become spaces before parsing (``audit_search_document``), so that its
parser's hosts, paths and hyphenated words (``db-01.example.com``) split as FTS5 splits them.

The query syntax (``parse``; nothing a person types is ever an operator, so no input can make
the database's query parser fail):

- words are AND-ed: ``retry fix`` finds rows with both;
- a word matches as a prefix when it has two characters or more (``retr`` finds ``retry``);
  a single letter or digit matches only itself;
- ``"quoted words"`` match as an exact phrase (no prefix);
- punctuation separates words, and a word holding punctuation is a phrase of its parts:
  ``worker_db`` and ``p5_domain`` find ``worker_db`` and ``p5_domaincompetence``; ``AND``, ``OR``,
  ``NEAR``, ``*`` and ``col:x`` are plain words or separators;
- ``#1248`` (a row's label in the queue) finds the row with id 1248; several ids are OR-ed;
- at most ``MAX_TERMS`` words (``SearchQuery.dropped`` counts the rest, which are ignored).
"""

from __future__ import annotations

import functools
import html
import importlib
import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import BooleanField, FloatField, Func
from django.db.models.expressions import RawSQL
from django.db.models.signals import post_migrate
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from audit import triggers
from audit.models import MAX_ID

MAX_TERMS = 16
# Input past this is not looked at (the queue's form allows 200 characters).
MAX_INPUT = 2000
# Ranking costs a score per matching row (bm25 / ts_rank: about 4 µs a row on SQLite); past
# this many matches the queue keeps its priority order and says why.
RANK_LIMIT = 10_000
PREFIX_MIN = 2
SMALL_MATCH = 1000

_TOKEN = re.compile(r"[^\W_]+")
_PIECE = re.compile(r'"([^"]*)"?|(\S+)')
_ID = re.compile(r"#(\d{1,18})")


@dataclass(frozen=True)
class Term:
    """One AND-ed part of a query: consecutive tokens, the last one a prefix when ``prefix``."""

    tokens: tuple[str, ...]
    prefix: bool

    def fts5(self) -> str:
        # Tokens are letters and digits only, so quoting them cannot break out of the string.
        return '"' + " ".join(self.tokens) + '"' + ("*" if self.prefix else "")

    def tsquery(self) -> str:
        text = " <-> ".join(f"'{token}'" for token in self.tokens)
        return text + ":*" if self.prefix else text


@dataclass(frozen=True)
class SearchQuery:
    terms: tuple[Term, ...] = ()
    ids: tuple[int, ...] = ()
    dropped: int = 0
    # Something was typed, but no word or id came of it (``"``, ``*``): matches nothing.
    empty: bool = False

    def __bool__(self) -> bool:
        return bool(self.terms or self.ids or self.empty)

    def fts5(self) -> str:
        return " AND ".join(term.fts5() for term in self.terms)

    def tsquery(self) -> str:
        return " & ".join(term.tsquery() for term in self.terms)

    def text_params(self) -> list[str]:
        return [self.fts5() if connection.vendor == "sqlite" else self.tsquery()]


def parse(text: str) -> SearchQuery:
    """The query a person typed (see the module docstring for the syntax)."""
    text = text[:MAX_INPUT].lower()
    terms: list[Term] = []
    ids: list[int] = []
    dropped = 0
    for match in _PIECE.finditer(text):
        quoted, word = match.group(1), match.group(2)
        if word is not None and (found := _ID.fullmatch(word)):
            pk = int(found.group(1))
            if 1 <= pk <= MAX_ID and pk not in ids:
                ids.append(pk)
            continue
        tokens = tuple(_TOKEN.findall(quoted if quoted is not None else word))
        if not tokens:
            continue
        term = Term(tokens, prefix=quoted is None and len(tokens[-1]) >= PREFIX_MIN)
        if term in terms:
            continue
        if len(terms) >= MAX_TERMS:
            dropped += 1
            continue
        terms.append(term)
    return SearchQuery(
        tuple(terms), tuple(ids), dropped, empty=not terms and not ids and bool(text.strip())
    )


# --- the match -----------------------------------------------------------------------------------

# One per database connection, refilled by each request that searches (``Match.compute``).
_TEMP = {"sqlite": "temp.audit_queue_match", "postgresql": "pg_temp.audit_queue_match"}
_CREATE_TEMP = {
    "sqlite": "CREATE TEMP TABLE IF NOT EXISTS audit_queue_match "
    "(id INTEGER PRIMARY KEY, rank REAL)",
    "postgresql": "CREATE TEMP TABLE IF NOT EXISTS audit_queue_match "
    "(id bigint NOT NULL, rank double precision)",
}
# PostgreSQL: the table's unique index is dropped before a fill and built after it, in one
# pass over the ids, where keeping it up to date row by row doubled the fill (1,000,000
# records, a word in 614,000 of them: 1.1-1.4 s with a primary key, 0.5-0.8 s without, and the
# index built after in 0.2 s). Built only when queries will read the table (``listed`` None,
# or ranked: each row's rank is looked up by id); without it, PostgreSQL could neither walk
# ``tr_next`` probing the match (it hashed all of it, 0.5 s a page) nor know that the ids are
# unique (it planned for 200 distinct ones: 4-6 s). SQLite's is a rowid table: its key is the
# row's own place, which costs nothing more.
_INDEX = "audit_queue_match_id"
_DROP_INDEX = f"DROP INDEX IF EXISTS pg_temp.{_INDEX}"
_CREATE_INDEX = f"CREATE UNIQUE INDEX {_INDEX} ON pg_temp.audit_queue_match (id)"
_DOCUMENT_MATCHES = "document @@ to_tsquery('simple', %s)"
_MATCHING_IDS = {
    "sqlite": "SELECT rowid FROM audit_transcript_fts WHERE audit_transcript_fts MATCH %s",
    "postgresql": f"SELECT id FROM audit_transcript_search WHERE {_DOCUMENT_MATCHES}",
}
# Lower is better on both: bm25 is negative, ts_rank is negated. Normalization 1 divides
# ts_rank by 1 + log(length), as bm25 discounts long texts.
_RANK = {
    "sqlite": "INSERT OR REPLACE INTO temp.audit_queue_match (id, rank) "
    "SELECT rowid, bm25(audit_transcript_fts) FROM audit_transcript_fts "
    "WHERE audit_transcript_fts MATCH %s",
    "postgresql": "UPDATE pg_temp.audit_queue_match m "
    "SET rank = -ts_rank(s.document, to_tsquery('simple', %s), 1) "
    "FROM audit_transcript_search s WHERE s.id = m.id",
}


def empty_temp_table(cursor: CursorWrapper, table: str) -> None:
    """Empty a temporary table a request refills (the match, its roll-up): ``TRUNCATE`` on
    PostgreSQL, where a ``DELETE`` leaves every row behind dead (no autovacuum reaches a
    temporary table), so each search on the same connection made the table bigger and its
    fill slower (81 MB after three fills of a 612,000-row match, against 38 MB); SQLite's
    ``DELETE`` of every row empties the table as it is."""
    verb = "TRUNCATE" if cursor.db.vendor == "postgresql" else "DELETE FROM"
    cursor.execute(f"{verb} {table}")


def document_matches(query: SearchQuery) -> RawSQL:
    """PostgreSQL: the condition on a search document (``SearchDocument``) that it matches
    ``query``'s words."""
    return RawSQL(_DOCUMENT_MATCHES, query.text_params(), output_field=BooleanField())


def matching_ids(query: SearchQuery) -> RawSQL:
    """The ids of rows whose text matches ``query``'s words, as a self-contained subquery: for
    filters evaluated outside a queue request ("Next" works through the queue's filters)."""
    return RawSQL(_MATCHING_IDS[connection.vendor], query.text_params())


@dataclass(frozen=True)
class Match:
    """The rows matching a query's words, computed once into a temporary table of the request's
    database connection, so the count, the page and every facet count read it by id instead
    of each running the full-text query again (measured at 100k rows, SQLite, a word in 60% of
    the rows: 11 ms to fill, then 10 ms per count against 65 ms with the subquery).

    A few matches (at most ``SMALL_MATCH``) are also read back as a list of ids, which the
    queries then name: the planners know nothing of the temporary table's size and would scan
    every queued row to probe it (SQLite at 100k rows: 14 ms a count, against 1.5 ms).

    On PostgreSQL a match the queue has rolled up from the documents themselves (``counted``:
    ``audit.review.queue.compute_match``) and found large is not written out (``unwritten``):
    its counts are the roll-up's, and its page probes each row's document as it walks the
    queue's index (``ids`` is the self-contained subquery)."""

    size: int
    ranked: bool
    table: str = field(default="")
    listed: tuple[int, ...] | None = None
    counted: bool = False
    words: tuple[str, ...] = ()
    # More rows than RANK_LIMIT: too many to rank (the queue then says so).
    too_many_to_rank: bool = False

    @classmethod
    def unwritten(cls, query: SearchQuery, *, size: int, too_many_to_rank: bool) -> Match:
        """A large match, rolled up already (``size``: its rows in the queue's scope), that no
        table holds."""
        return cls(
            size=size,
            ranked=False,
            counted=True,
            words=tuple(query.text_params()),
            too_many_to_rank=too_many_to_rank,
        )

    @classmethod
    def compute(cls, query: SearchQuery, *, rank: bool) -> Match:
        """Fill the table; score the rows too when ``rank`` and there are at most
        ``RANK_LIMIT`` of them."""
        match = cls._fill(query, rank=rank, limit=None)
        assert match is not None
        return match

    @classmethod
    def compute_at_most(cls, query: SearchQuery, *, rank: bool, most: int) -> Match | None:
        """The match as ``compute`` makes it when it has at most ``most`` rows; None for a
        larger one, of which no more than the first ``most + 1`` rows are read (a common
        word's are found at once: PostgreSQL's planner reads the documents in order and stops,
        where the whole match took 0.76 s at a million records)."""
        return cls._fill(query, rank=rank, limit=most + 1)

    @classmethod
    def _fill(cls, query: SearchQuery, *, rank: bool, limit: int | None) -> Match | None:
        vendor = connection.vendor
        params = query.text_params()
        table = _TEMP[vendor]
        postgresql = vendor == "postgresql"
        with connection.cursor() as cursor:
            cursor.execute(_CREATE_TEMP[vendor])
            if postgresql:
                cursor.execute(_DROP_INDEX)
            empty_temp_table(cursor, table)
            fill = f"INSERT INTO {table} (id) {_MATCHING_IDS[vendor]}"
            if limit is not None:
                fill += f" LIMIT {int(limit)}"
            cursor.execute(fill, params)
            size = max(cursor.rowcount, 0)
            if limit is not None and size >= limit:
                return None
            ranked = rank and 0 < size <= RANK_LIMIT
            if postgresql and (ranked or size > SMALL_MATCH):
                cursor.execute(_CREATE_INDEX)
            if ranked:
                cursor.execute(_RANK[vendor], params)
            listed = None
            if size <= SMALL_MATCH:
                cursor.execute(f"SELECT id FROM {table}")
                listed = tuple(pk for (pk,) in cursor.fetchall())
        return cls(
            size=size,
            ranked=ranked,
            table=table,
            listed=listed,
            too_many_to_rank=size > RANK_LIMIT,
        )

    def ids(self) -> RawSQL | tuple[int, ...]:
        if self.listed is not None:
            return self.listed
        if not self.table:
            return RawSQL(_MATCHING_IDS[connection.vendor], list(self.words))
        return RawSQL(f"SELECT id FROM {self.table}", [])

    def rank(self) -> Func:
        """The row's relevance (lower is better), for ordering; only when ``ranked``."""
        return Func(
            "pk",
            template=f"(SELECT rank FROM {self.table} WHERE {self.table}.id = %(expressions)s)",
            output_field=FloatField(),
        )


# --- keeping the index ---------------------------------------------------------------------------

_TEXT = importlib.import_module("audit.migrations.0019_transcript_text")
_FACETS = importlib.import_module("audit.migrations.0025_search_facets")
_INDEX_TABLE = {"sqlite": "audit_transcript_fts", "postgresql": "audit_transcript_search"}


def _index_triggers(db: BaseDatabaseWrapper) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The index's triggers by the table they are on, and the statements that restore them all
    and index every row again: migration 0019's, and on PostgreSQL once migration 0025 gave
    the documents their facet columns, its own (two more triggers, on the transcripts)."""
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            columns = db.introspection.get_table_description(cursor, _INDEX_TABLE[db.vendor])
        if any(column.name == "in_queue" for column in columns):
            return _FACETS.TRIGGERS, _FACETS.RESTORE
    return {_TEXT.TABLE: _TEXT.TRIGGERS[db.vendor]}, _TEXT.RESTORE[db.vendor]


def missing_triggers(using: str = "default") -> list[str]:
    """The index's triggers the database does not have."""
    db = connections[using]
    by_table, _ = _index_triggers(db)
    missing = []
    for table, names in by_table.items():
        present = triggers.present(db, table=table)
        missing += [name for name in names if name not in present]
    return missing


def restore_index(using: str = "default") -> bool:
    """Re-create missing triggers and index every row again; True when it had to. A migration
    that remakes ``audit_transcript_text`` on SQLite drops its triggers (see migration 0010)."""
    db = connections[using]
    table = _INDEX_TABLE.get(db.vendor)
    tables = db.introspection.table_names(include_views=True)
    if table is None or table not in tables or _TEXT.TABLE not in tables:
        return False  # another database, or migrated back to before the index or its table
    if not missing_triggers(using):
        return False
    _, restore = _index_triggers(db)
    with transaction.atomic(using=using), db.cursor() as cursor:
        for sql in restore:
            cursor.execute(sql)
    return True


def indexed_in_bulk(cursor: CursorWrapper) -> AbstractContextManager[None]:
    """SQLite: the rows inserted inside (the importer's chunks) go into the FTS5 index with one
    ``INSERT ... SELECT`` on leaving instead of a trigger each (``triggers``); PostgreSQL's
    trigger already takes a statement's rows at once."""
    if cursor.db.vendor != "sqlite":
        return nullcontext()
    return triggers.insert_trigger_replaced(
        cursor,
        table=_TEXT.TABLE,
        trigger="audit_transcript_fts_insert",
        create=_TEXT.CREATE_SQLITE_TRIGGERS[0],
        catch_up="INSERT INTO audit_transcript_fts (rowid, search_text) "
        f"SELECT id, search_text FROM {_TEXT.TABLE} WHERE id > %s",
    )


def _after_migrate(sender: Any, *, using: str = "default", **kwargs: Any) -> None:
    if getattr(sender, "label", None) == "audit":
        restore_index(using)


post_migrate.connect(_after_migrate, dispatch_uid="audit.search.restore_index")


# --- highlighting --------------------------------------------------------------------------------

SNIPPET_BEFORE = 60
SNIPPET_LENGTH = 220


def _hits(text: str, query: SearchQuery) -> list[re.Match[str]]:
    """The words of ``text`` a term of ``query`` matches (``_words_of``), in order: one
    regular expression over the text, so a field of megabytes is searched in C rather than
    word by word in Python (2.6 MB: 1.2 s word by word)."""
    return list(_words_of(query.terms).finditer(text))


@functools.lru_cache(maxsize=256)
def _words_of(terms: tuple[Term, ...]) -> re.Pattern[str]:
    """A pattern matching exactly the whole words (runs of ``_TOKEN``) that a term matches:
    one of its words, or a word beginning with its last word when it is a prefix term."""
    whole: set[str] = set()
    prefixes: set[str] = set()
    for term in terms:
        whole.update(term.tokens)
        if term.prefix:
            prefixes.add(term.tokens[-1])
    word = r"[^\W_]"
    choices = [f"{re.escape(p)}{word}*" for p in sorted(prefixes, key=len, reverse=True)]
    choices += [f"{re.escape(w)}(?!{word})" for w in sorted(whole, key=len, reverse=True)]
    if not choices:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile(f"(?<!{word})(?:{'|'.join(choices)})")


def _marked(text: str, hits: list[re.Match[str]], start: int, end: int) -> str:
    """``text[start:end]`` escaped piece by piece, each of ``hits`` inside it in ``<mark>``.
    The standard library's ``html.escape``, which Django's ``escape`` wraps (the same output),
    without the wrapper's cost per call: a long field can hold hundreds of thousands of hits."""
    parts = []
    at = start
    for hit in hits:
        if hit.start() < start:
            continue
        if hit.end() > end:
            break
        parts += [
            html.escape(text[at : hit.start()]),
            "<mark>",
            html.escape(hit.group(0)),
            "</mark>",
        ]
        at = hit.end()
    parts.append(html.escape(text[at:end]))
    return "".join(parts)


def highlight(text: str, query: SearchQuery) -> SafeString:
    """An excerpt of ``text`` around its first matching word, every matching word in ``<mark>``:
    the text is escaped piece by piece here (it is hostile), never taken from the database as
    HTML. Empty when no word of the text matches."""
    if not query.terms or not text:
        return mark_safe("")
    text = " ".join(text.split())
    hits = _hits(text, query)
    if not hits:
        return mark_safe("")
    start = max(0, hits[0].start() - SNIPPET_BEFORE)
    end = min(len(text), start + SNIPPET_LENGTH)
    # Cut at word boundaries, so the excerpt never starts or ends inside a word.
    while 0 < start < hits[0].start() and text[start - 1 : start + 1].isalnum():
        start += 1
    while end < len(text) and end > hits[0].end() and text[end - 1 : end + 1].isalnum():
        end -= 1
    excerpt = _marked(text, hits, start, end)  # every piece of text escaped
    ellipses = ("…" if start > 0 else "", "…" if end < len(text) else "")
    return mark_safe(f"{ellipses[0]}{excerpt}{ellipses[1]}")  # noqa: S308 - escaped above


def mark(text: str, query: SearchQuery) -> SafeString:
    """The whole of ``text``, escaped, every word a term of ``query`` matches in ``<mark>``
    (the item page, opened from a queue search)."""
    if not query.terms or not text:
        return escape(text)
    return mark_safe(_marked(text, _hits(text, query), 0, len(text)))  # noqa: S308 - escaped
