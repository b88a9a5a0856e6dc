"""A small, bounded load test: parallel auditors against a live server while an import inserts.

Four auditors, each with their own HTTP session (two posting plain forms, two as htmx does),
loop Next -> item -> verdict against ``live_server`` for a few seconds, while a thread imports
a generated file in many small chunks. Every verdict carries a unique rationale, so each one the
server said it saved can be found in the database. What must hold, on SQLite and PostgreSQL:
no 5xx response; each saved verdict stored exactly once and no refused one stored; no item with
more counting reviews than its K; the cached final labels agree with the reviews; the import
lands whole.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests
from django.db import connections

import audit.ingest.importer as importers
from audit.demo.generator import write_jsonl as generate
from audit.ingest.importer import import_file
from audit.models import ImportBatch, Review, Transcript
from audit.review.workflow import find_mismatches
from tests.conftest import PASSWORD
from tests.factories import assert_reviews_consistent

pytestmark = pytest.mark.django_db(transaction=True)

# How long the auditors keep going at most; they stop earlier once the import has finished
# and each has saved a few verdicts.
RUN_SECONDS = 10
ITEM_URL = re.compile(r"/t/(\d+)/$")
VERSION = re.compile(r'name="based_on_version" value="(\d+)"')
OPENED = re.compile(r'name="opened" value="([^"]+)"')


@dataclass
class Auditor:
    username: str
    htmx: bool
    session: requests.Session = field(default_factory=requests.Session)
    statuses: list[tuple[str, int]] = field(default_factory=list)
    saved: list[tuple[str, float]] = field(default_factory=list)  # (rationale, when)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _headers(auditor: Auditor) -> dict[str, str]:
    headers = {"X-CSRFToken": auditor.session.cookies.get("csrftoken", "")}
    if auditor.htmx:
        headers["HX-Request"] = "true"
    return headers


def _request(auditor: Auditor, method: str, url: str, **kwargs) -> requests.Response:
    response = auditor.session.request(method, url, allow_redirects=False, timeout=30, **kwargs)
    auditor.statuses.append((f"{method} {url}", response.status_code))
    return response


def _log_in(base: str, auditor: Auditor) -> None:
    _request(auditor, "GET", f"{base}/login/")
    response = _request(
        auditor,
        "POST",
        f"{base}/login/",
        data={"username": auditor.username, "password": PASSWORD},
        headers=_headers(auditor),
    )
    assert response.status_code == 302, response.text[:300]


def _item(base: str, auditor: Auditor, response: requests.Response) -> tuple[int, str] | None:
    """(item id, its page or fragment) that a Next or verdict response leads to; None when it
    leads back to the queue (nothing left, or the next item could not be opened)."""
    if auditor.htmx:
        match = ITEM_URL.search(response.headers.get("HX-Push-Url", ""))
        return (int(match[1]), response.text) if match else None
    match = ITEM_URL.search(response.headers.get("Location", ""))
    if not match:
        return None
    page = _request(auditor, "GET", f"{base}/t/{match[1]}/")
    return int(match[1]), page.text


def _next(base: str, auditor: Auditor) -> tuple[int, str] | None:
    response = _request(auditor, "POST", f"{base}/next/", headers=_headers(auditor))
    return _item(base, auditor, response)


def _work(base: str, auditor: Auditor, stop: threading.Event) -> None:
    try:
        _log_in(base, auditor)
        current = _next(base, auditor)
        while not stop.is_set():
            if current is None:  # back at the queue: ask again (the import may add items)
                time.sleep(0.05)
                current = _next(base, auditor)
                continue
            pk, page = current
            version, opened = VERSION.search(page), OPENED.search(page)
            if not (version and opened):  # no verdict form (K reached meanwhile): go on
                current = _next(base, auditor)
                continue
            rationale = f"load-{auditor.username}-{len(auditor.statuses)}-{pk}"
            response = _request(
                auditor,
                "POST",
                f"{base}/t/{pk}/review/",
                data={
                    "verdict": "relabel",
                    "is_misbehavior": "no",
                    "correct_decision": "APPROVE",
                    "rationale": rationale,
                    "based_on_version": version[1],
                    "opened": opened[1],
                },
                headers=_headers(auditor),
            )
            if response.status_code in (200, 302):  # saved; the next item comes with it
                auditor.saved.append((rationale, time.monotonic()))
                current = _item(base, auditor, response)
            else:  # 409 (a co-reviewer saved first) or 422 (no longer open): not stored
                auditor.refused.append(rationale)
                current = _next(base, auditor)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        auditor.errors.append(repr(exc))


def test_parallel_auditors_during_an_import_lose_and_duplicate_nothing(
    live_server, tmp_path, monkeypatch, auditor, auditor2, adjudicator, staff_user
):
    # Items to review: K = 2 on some, so two auditors share them and K can be overrun.
    generate(tmp_path / "k1.jsonl", count=300, seed=1)
    generate(tmp_path / "k2.jsonl", count=300, seed=2)
    assert import_file(tmp_path / "k1.jsonl").imported
    assert import_file(tmp_path / "k2.jsonl", required_reviews=2).imported
    # Small chunks: the import inserts for the whole run (SQLite pauses between them).
    monkeypatch.setattr(importers, "CHUNK_SIZE", 50)
    generate(tmp_path / "incoming.jsonl", count=1200, seed=3)

    imported: list = []
    unfinished: list[float] = []  # moments when the import's batch was inserting
    done = threading.Event()

    def run_import() -> None:
        try:
            imported.append(import_file(tmp_path / "incoming.jsonl", required_reviews=2))
        except BaseException as exc:  # noqa: BLE001 - reported below
            imported.append(exc)
        finally:
            done.set()
            connections.close_all()

    def watch_import() -> None:
        try:
            while not done.is_set():
                if ImportBatch.including_unfinished.unfinished().exists():
                    unfinished.append(time.monotonic())
                time.sleep(0.02)
        finally:
            connections.close_all()

    auditors = [
        Auditor(user.username, htmx=n % 2 == 1)
        for n, user in enumerate([auditor, auditor2, adjudicator, staff_user])
    ]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_work, args=(live_server.url, a, stop)) for a in auditors
    ] + [threading.Thread(target=run_import), threading.Thread(target=watch_import)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        if done.is_set() and all(len(a.saved) >= 5 for a in auditors):
            break
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert [a.errors for a in auditors] == [[]] * len(auditors)
    server_errors = [
        (a.username, what, code) for a in auditors for what, code in a.statuses if code >= 500
    ]
    assert server_errors == []
    [result] = imported
    assert not isinstance(result, BaseException), result
    assert result.imported + result.duplicates == 1200
    assert ImportBatch.objects.filter(pk=result.batch_id).exists()

    saved = [rationale for a in auditors for rationale, _ in a.saved]
    assert saved, "no verdict was saved"
    assert unfinished, "the import never showed an unfinished batch"
    during = [
        when for a in auditors for _, when in a.saved if unfinished[0] <= when <= unfinished[-1]
    ]
    assert during, "no verdict was saved while the import inserted"
    # Every verdict the server said it saved is stored exactly once; none it refused is.
    stored = list(
        Review.objects.filter(rationale__startswith="load-").values_list("rationale", flat=True)
    )
    assert sorted(stored) == sorted(saved)
    assert not Review.objects.filter(
        rationale__in=[r for a in auditors for r in a.refused]
    ).exists()
    assert_reviews_consistent()
    assert list(find_mismatches(Transcript.objects.all())) == []
