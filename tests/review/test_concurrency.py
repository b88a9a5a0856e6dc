"""Several writers at once on the embedded database must queue, not fail with "locked"; a
verdict that committed is answered as saved whatever fails after it."""

import threading

import pytest
from django.db import OperationalError, connection, connections
from django.urls import reverse

from audit.ingest.importer import import_file
from audit.models import Transcript
from tests.factories import make_record, write_jsonl


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_from_separate_connections_all_land(tmp_path):
    files = [
        write_jsonl(
            tmp_path / f"w{n}.jsonl",
            [make_record(session_id=f"session_w{n}", step_number=s) for s in range(300)],
        )
        for n in range(6)
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(len(files))

    def work(path):
        try:
            start.wait()
            for _ in range(3):  # repeated: later rounds are all duplicates, still writes
                import_file(path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(path,)) for path in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Transcript.objects.count() == 6 * 300
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"


@pytest.mark.django_db(transaction=True)
def test_import_parses_with_no_transaction_open_and_a_writer_can_commit_meanwhile(
    tmp_path, monkeypatch
):
    """Parsing a large file must not hold the write lock that auditors' verdicts need."""
    import audit.ingest.importer as importers
    from audit.models import ImportBatch

    seen: list[bool] = []
    other_writes: list[str] = []
    real_extract = importers.extract

    def watching_extract(record, **kwargs):
        seen.append(connection.in_atomic_block)
        if len(seen) == 50:  # mid-scan, another connection writes and must not wait

            def write():
                try:
                    with connections["default"].cursor() as cursor:
                        cursor.execute("SELECT 1")
                    ImportBatch.objects.create(file_name="meanwhile", sha256="")
                    other_writes.append("ok")
                except Exception as exc:  # noqa: BLE001 - reported by the assertion
                    other_writes.append(repr(exc))
                finally:
                    connections.close_all()

            thread = threading.Thread(target=write)
            thread.start()
            thread.join(timeout=10)
        return real_extract(record, **kwargs)

    monkeypatch.setattr(importers, "extract", watching_extract)
    path = write_jsonl(tmp_path / "big.jsonl", [make_record(step_number=n) for n in range(100)])
    result = import_file(path)
    assert result.imported == 100
    assert seen and not any(seen)
    assert other_writes == ["ok"]


@pytest.mark.django_db(transaction=True)
def test_the_same_file_imported_concurrently_lands_once(tmp_path):
    path = write_jsonl(tmp_path / "same.jsonl", [make_record(step_number=s) for s in range(1500)])
    results: list = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def work():
        try:
            start.wait()
            results.append(import_file(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.imported for r in results) == [0, 0, 1500]
    assert Transcript.objects.count() == 1500


# --- a verdict saved just before a failure (D11) -------------------------------------------------


def _blip(*args, **kwargs):
    raise OperationalError("server closed the connection unexpectedly")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fails", "htmx"),
    [("claim", False), ("claim", True), ("render", True)],
    ids=["next-claim-plain", "next-claim-htmx", "next-render-htmx"],
)
def test_a_saved_verdict_is_reported_saved_when_opening_the_next_item_fails(
    fails, htmx, items, auditor, auditor_client, monkeypatch, caplog
):
    from audit.models import Review
    from audit.review import leases, screens
    from tests.factories import fresh
    from tests.review.pages import HTMX, verdict_data

    t = fresh(items[0])
    monkeypatch.setattr(
        *((leases, "claim_next") if fails == "claim" else (screens, "open_item")), _blip
    )
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), verdict_data(t, "confirm"), **(HTMX if htmx else {})
    )
    if htmx:  # a full page load of the queue, not a fragment swapped into the item
        assert response.status_code == 200
        assert response["HX-Redirect"] == reverse("queue")
    else:
        assert response.status_code == 302
        assert response["Location"] == reverse("queue")
    assert Review.objects.filter(transcript=t, auditor=auditor).count() == 1
    assert "could not open the next item" in caplog.text
    page = auditor_client.get(reverse("queue")).content.decode()
    assert f"Saved your confirm on step {t.step_number} of {t.session_id}" in page
    assert "Could not open the next item" in page


@pytest.mark.django_db
def test_a_saved_adjudication_is_reported_saved_when_finding_the_next_dispute_fails(
    disputed, adjudicator, adjudicator_client, monkeypatch
):
    from audit.models import Review, Verdict
    from audit.review import workflow
    from tests.review.pages import adjudication_data

    monkeypatch.setattr(workflow, "next_disputed", _blip)
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]), adjudication_data(disputed)
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("adjudication_queue")
    assert Review.objects.filter(transcript=disputed, verdict=Verdict.ADJUDICATE).count() == 1
    page = adjudicator_client.get(reverse("adjudication_queue")).content.decode()
    assert f"Adjudicated step {disputed.step_number} of {disputed.session_id}" in page
