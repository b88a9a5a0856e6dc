"""A client of the transcript audit API for runs and scripts: the standard library only, so a
SENTINEL run can copy this one file and use it without Django or this app installed.

``post_records(url, token, records_or_lines)`` posts records (dicts, serialized as the seed
exporter's ``export_jsonl`` writes them, or JSONL lines as they are) in one request and returns
the app's answer, the shape of ``import_transcripts --json``. Failures that may be passing (no
connection, a timeout, 429, 500, 502, 503, 504) are retried with backoff, honouring
Retry-After; a retry is safe because it adds nothing: the app knows every record it has
(fingerprints), and a request either landed whole or not at all. Any other refusal raises
``ApiError`` at once, with the app's ``detail`` and, for a refused import (422), its answer with
each bad line's number.

``send_to_audit(exporter, url, token)`` hooks a seed ``TranscriptExporter``: every decision it
records is also queued, and sent every ``every`` records and at ``close()``, all under the run
key ``exporter.session_id``, so the app folds the run's requests into one import batch.

    from client import send_to_audit
    exporter = TranscriptExporter()
    with send_to_audit(exporter, "https://audit.example.org", token, model="gpt-x"):
        ...  # the run calls exporter.record_decision(...) as it always did
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/transcripts"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Longest single wait between tries, whatever Retry-After says.
MAX_WAIT_SECONDS = 60.0


class ApiError(Exception):
    """The app refused the request (or kept failing): ``status`` (0 when it never answered),
    its ``detail``, and the whole JSON ``answer`` when there is one (a refused import's lists
    each bad line's number and error)."""

    def __init__(self, status: int, detail: str, answer: Any = None) -> None:
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail
        self.answer = answer


def encode_lines(records_or_lines: Iterable[Any]) -> bytes:
    """The JSONL body: a dict as ``json.dumps(record, default=str)`` (the exporter's own
    spelling, so the app stores what a file import of the exporter's file would), a str or
    bytes line as it is."""
    out = bytearray()
    for item in records_or_lines:
        if isinstance(item, bytes):
            line = item.rstrip(b"\r\n")
        elif isinstance(item, str):
            line = item.rstrip("\r\n").encode("utf-8")
        else:
            line = json.dumps(item, default=str).encode("utf-8")
        out += line + b"\n"
    return bytes(out)


def post_records(
    url: str,
    token: str,
    records_or_lines: Iterable[Any],
    *,
    run: str = "",
    model: str = "",
    run_source: str = "",
    reviews: int | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    name: str = "",
    compress: bool = True,
    headers: Mapping[str, str] | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Post the records in one request to the app at ``url`` (its root, e.g.
    ``http://127.0.0.1:8000``) and return its answer (``{"batches": [{...}]}``).

    ``run`` folds this request into the run's one batch; ``model``, ``run_source`` and
    ``reviews`` (K) go on the batch (a run keeps its first request's). ``compress`` sends gzip.
    ``headers`` are sent besides the token (e.g. what a proxy in front expects). A redirect is
    not followed (it would drop the body): it raises ApiError naming where it points.
    Up to ``retries`` further tries after a failure that may pass, waiting ``backoff`` seconds
    doubled each time, with jitter (or what Retry-After says). Raises ApiError otherwise."""
    body = encode_lines(records_or_lines)
    if compress:
        body = gzip.compress(body, mtime=0)
    params = {
        "run": run,
        "model": model,
        "run_source": run_source,
        "reviews": "" if reviews is None else str(reviews),
        "skip_invalid": "true" if skip_invalid else "",
        "dry_run": "true" if dry_run else "",
        "name": name,
    }
    query = urllib.parse.urlencode({key: value for key, value in params.items() if value})
    endpoint = url.rstrip("/") + INGEST_PATH + (f"?{query}" if query else "")
    sent = {
        **(headers or {}),
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/gzip" if compress else "application/x-ndjson",
        "Accept": "application/json",
    }
    attempt = 0
    while True:
        request = urllib.request.Request(endpoint, data=body, headers=sent, method="POST")
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            answer = _json(exc.read())
            detail = _detail(answer, exc.reason)
            if 300 <= exc.code < 400:
                where = exc.headers.get("Location", "?")
                raise ApiError(exc.code, f"redirected to {where}: post to that URL") from None
            if exc.code not in RETRY_STATUSES or attempt >= retries:
                raise ApiError(exc.code, detail, answer) from None
            wait = _retry_after(exc.headers.get("Retry-After"))
            failure = f"HTTP {exc.code}: {detail}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt >= retries:
                raise ApiError(0, f"no answer from {url}: {exc}") from None
            wait = None
            failure = str(exc)
        delay = wait if wait is not None else backoff * 2**attempt * (1 + random.random() / 2)
        delay = min(delay, MAX_WAIT_SECONDS)
        attempt += 1
        logger.warning("posting records failed (%s); try %d in %.1f s", failure, attempt, delay)
        sleep(delay)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _detail(answer: Any, reason: str) -> str:
    if isinstance(answer, dict):
        if isinstance(answer.get("detail"), str):
            return answer["detail"]
        batches = answer.get("batches")
        if isinstance(batches, list) and batches and isinstance(batches[0], dict):
            errors = batches[0].get("errors") or []
            return "; ".join(f"line {e.get('line')}: {e.get('error')}" for e in errors[:5])
    return str(reason)


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isascii() and value.strip().isdigit():
        return float(value.strip())
    return None


class LiveExport:
    """What ``send_to_audit`` returns: the hooked exporter's queue of records not sent yet.

    A failed send inside ``record_decision`` is logged and its records stay queued for the
    next send, so a run is never stopped by the app being away; ``flush()`` and ``close()``
    raise ApiError when they cannot send what is queued."""

    def __init__(
        self,
        exporter: Any,
        url: str,
        token: str,
        *,
        every: int = 50,
        run: str | None = None,
        **options: Any,
    ) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.exporter = exporter
        self.url = url
        self.token = token
        self.every = every
        self.run = run if run is not None else str(exporter.session_id)
        self.options = options
        self.pending: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self._original = exporter.record_decision
        exporter.record_decision = self._record_decision

    def _record_decision(self, *args: Any, **kwargs: Any) -> None:
        before = len(self.exporter.transcripts)
        self._original(*args, **kwargs)
        self.pending.extend(self.exporter.transcripts[before:])
        if len(self.pending) >= self.every:
            try:
                self.flush()
            except ApiError as exc:
                logger.warning("%d records kept to send later: %s", len(self.pending), exc)

    def flush(self) -> dict[str, Any] | None:
        """Send the queued records (one request); the app's answer, None when none were
        queued."""
        if not self.pending:
            return None
        sending = list(self.pending)
        answer = post_records(self.url, self.token, sending, run=self.run, **self.options)
        del self.pending[: len(sending)]
        self.answers.append(answer)
        return answer

    def close(self) -> None:
        """Send what is queued and unhook the exporter."""
        try:
            self.flush()
        finally:
            if not self.pending:
                self.exporter.record_decision = self._original

    def __enter__(self) -> LiveExport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def send_to_audit(exporter: Any, url: str, token: str, **options: Any) -> LiveExport:
    """Hook a seed ``TranscriptExporter`` so that it sends what it records to the app at
    ``url`` (``every`` records at a time, default 50, and at ``close()``), all under the run
    key ``exporter.session_id`` unless ``run`` says otherwise; other options are
    ``post_records``'s. Its ``transcripts`` and file exports work as before."""
    return LiveExport(exporter, url, token, **options)
