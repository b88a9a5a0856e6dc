"""Past one process: two gunicorn servers and two ``db_worker`` task workers share the test
database (PostgreSQL or SQLite, whichever the suite runs on), as README's production section
deploys them, under a small bounded load.

Four auditors give verdicts over HTTP, each request of each auditor going to the other server
in turn (sessions live in the database, so either server serves any of them), while staff
upload files on the upload page, alternating servers too, and the two workers run the imports.
Every verdict carries a unique rationale, so each one a server said it saved can be found in the
database. What must hold: no 5xx and no request without an answer; each saved verdict stored
exactly once and no refused one stored; no item with more counting reviews than its K; every
upload's job done, run once by one worker, with its records stored once (the same file uploaded
twice adds nothing the second time). Bounded by counts, not by time: the deadlines only stop a
run that hangs.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Group, User
from django.db import connection
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from audit.bench import http, scratch
from audit.demo.generator import write_jsonl as generate
from audit.ingest.importer import import_file
from audit.models import ImportJob, Review, Transcript
from audit.permissions import ADJUDICATOR, AUDITOR
from tests.factories import assert_reviews_consistent

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "deploy-test-password"
AUDITORS = 4
VERDICTS_EACH = 8
# Distinct files (seeds) of UPLOAD_RECORDS records, and the first one again.
UPLOAD_SEEDS = (11, 12, 13)
UPLOAD_RECORDS = 120
# Safety stops for a run that hangs, never a measure: the counts above end a healthy one.
LOAD_DEADLINE_SECONDS = 60
JOBS_DEADLINE_SECONDS = 90
JOB_URL = re.compile(r"/imports/jobs/(\d+)/$")
ITEM_URL = re.compile(r"/t/(\d+)/$")


def _user(username: str, *, groups: list[Group], staff: bool = False) -> User:
    # The servers check passwords with the production hashers, which do not include the fast
    # one the suite's fixtures use: PBKDF2, at a low work factor the first login upgrades.
    password = PBKDF2PasswordHasher().encode(PASSWORD, secrets.token_hex(8), iterations=1000)
    user = User.objects.create(username=username, password=password, is_staff=staff)
    user.groups.set(groups)
    return user


def _children_env(var_dir: Path) -> dict[str, str]:
    """Production settings against the test database, with the database task backend."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        AUDIT_DEBUG="false",
        AUDIT_SECRET_KEY=secrets.token_urlsafe(50),
        AUDIT_PSEUDONYM_KEY=secrets.token_urlsafe(50),
        AUDIT_TASKS_BACKEND="database",
        # Uploads and static files: one folder all four processes share, as on one machine.
        AUDIT_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="audit.settings",
    )
    name = connection.settings_dict["NAME"]  # the test database's, while the test runs
    if connection.vendor == "postgresql":
        url = urlsplit(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{name}"))
    else:
        env["AUDIT_SQLITE_PATH"] = str(name)
    return env


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[list[http.Server], list[Path]]]:
    """Two gunicorn servers (two workers and one) and two task workers on the test database:
    (the servers, the logs of all four). Every process is stopped whatever happens."""
    env = _children_env(tmp_path / "var")
    http.collect_static(env)
    servers: list[http.Server] = []
    workers: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for n in (1, 2):
            log = tmp_path / f"db_worker-{n}.log"
            logs.append(log)
            with log.open("wb") as out:
                workers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "manage.py",
                            "db_worker",
                            "--interval",
                            "0.2",
                            "--worker-id",
                            f"deploy-worker-{n}",
                        ],
                        env=env,
                        cwd=scratch.ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        for n, count in ((1, 2), (2, 1)):
            log = tmp_path / f"gunicorn-{n}.log"
            logs.append(log)
            servers.append(http.launch_gunicorn(env, log=log, workers=count))
        for server in servers:
            server.wait_ready()
        yield servers, logs
    finally:
        for process in [*(server.process for server in servers), *workers]:
            http.stop(process)
        http.wait_for_disconnects()


class Auditor:
    """An auditor's browser whose requests go to each server in turn."""

    def __init__(self, username: str, servers: list[http.Server], tally: http.Tally) -> None:
        self.username = username
        self.client = http.Client(servers[0].url, tally)
        self.bases = [server.url for server in servers]
        self.turn = 0
        self.saved: list[str] = []
        self.refused: list[str] = []

    def base(self) -> str:
        self.turn += 1
        return self.bases[self.turn % len(self.bases)]

    def item(self, response) -> tuple[int, str] | None:
        """The item a Next or verdict redirect leads to, fetched from the other server."""
        if response is None:
            return None
        match = ITEM_URL.search(response.headers.get("Location", ""))
        if not match:
            return None  # back to the queue: nothing left for this auditor
        page, _ = self.client.request("GET", f"{self.base()}/t/{match[1]}/")
        return (int(match[1]), page.text) if page is not None else None

    def next(self):
        response, _ = self.client.request("POST", f"{self.base()}/next/", expected=(302,))
        return self.item(response)

    def work(self, stop: threading.Event) -> None:
        self.client.log_in(self.username, PASSWORD)
        current = self.next()
        while len(self.saved) < VERDICTS_EACH and current is not None and not stop.is_set():
            pk, page = current
            version, opened = http.VERSION.search(page), http.OPENED.search(page)
            if not (version and opened):  # no verdict form (K reached meanwhile)
                current = self.next()
                continue
            rationale = f"deploy-{self.username}-{len(self.saved) + len(self.refused)}-{pk}"
            response, _ = self.client.request(
                "POST",
                f"{self.base()}/t/{pk}/review/",
                data={
                    "verdict": "relabel",
                    "is_misbehavior": "no",
                    "correct_decision": "APPROVE",
                    "rationale": rationale,
                    "based_on_version": version[1],
                    "opened": html.unescape(opened[1]),
                },
                expected=(302, 409, 422),
            )
            if response is not None and response.status_code == 302:
                self.saved.append(rationale)
                current = self.item(response)
            else:  # 409 (a co-reviewer saved first), 422 (no longer open), or an error
                self.refused.append(rationale)
                current = self.next()


def _upload(staff: http.Client, servers: list[http.Server], files: list[Path]) -> list[int]:
    """Upload each file (K = 2) through the upload page of each server in turn; the job ids."""
    jobs = []
    for n, path in enumerate(files):
        base = servers[n % len(servers)].url
        staff.request("GET", f"{base}/imports/upload/")
        with path.open("rb") as content:
            response, _ = staff.request(
                "POST",
                f"{base}/imports/upload/",
                data={"required_reviews": "2"},
                files={"file": (path.name, content, "application/jsonl")},
                expected=(302,),
            )
        match = JOB_URL.search(response.headers.get("Location", "")) if response else None
        assert match, (response.status_code, response.text[:300]) if response else "no answer"
        jobs.append(int(match[1]))
    return jobs


def _in_threads(work) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(function) -> None:
        try:
            function()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(function,)) for function in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=LOAD_DEADLINE_SECONDS + 30)
    assert not any(thread.is_alive() for thread in threads), "a client thread hung"
    return errors


def test_two_servers_and_two_task_workers_share_one_database_and_lose_nothing(deployment, tmp_path):
    servers, logs = deployment
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in (AUDITOR, ADJUDICATOR)}
    staff = _user("deploy-staff", groups=list(groups.values()), staff=True)
    auditors = [_user(f"deploy-{n}", groups=[groups[AUDITOR]]) for n in range(AUDITORS)]
    # Items to review, K = 2 on half of them so two auditors share items and K can be overrun.
    generate(tmp_path / "k1.jsonl", count=150, seed=1)
    generate(tmp_path / "k2.jsonl", count=150, seed=2)
    assert import_file(tmp_path / "k1.jsonl").imported
    assert import_file(tmp_path / "k2.jsonl", required_reviews=2).imported
    seeded = Transcript.objects.count()
    files = []
    for seed in UPLOAD_SEEDS:
        files.append(tmp_path / f"upload-{seed}.jsonl")
        generate(files[-1], count=UPLOAD_RECORDS, seed=seed)
    files.append(files[0])  # the same file again: its records must not be stored twice

    tally = http.Tally()
    uploader = http.Client(servers[0].url, tally)
    people = [Auditor(user.username, servers, tally) for user in auditors]
    stop = threading.Event()
    jobs: list[int] = []

    def upload() -> None:
        uploader.log_in(staff.username, PASSWORD)
        jobs.extend(_upload(uploader, servers, files))

    timer = threading.Timer(LOAD_DEADLINE_SECONDS, stop.set)
    timer.start()
    try:
        errors = _in_threads([upload, *(lambda a=a: a.work(stop) for a in people)])
    finally:
        timer.cancel()
    assert errors == []
    assert not stop.is_set(), "the load did not finish before its deadline"

    # The workers finish the imports (each polls every 0.2 s).
    deadline = time.monotonic() + JOBS_DEADLINE_SECONDS
    active = (ImportJob.State.QUEUED, ImportJob.State.RUNNING)
    while ImportJob.objects.filter(pk__in=jobs, state__in=active).exists():
        assert time.monotonic() < deadline, "the task workers did not finish the uploads"
        time.sleep(0.2)

    requests = tally.figures()
    assert (requests["server_errors"], requests["failed"]) == (0, 0), requests
    assert requests["unexpected"] == 0, requests
    for log in logs:
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-3000:]

    # Every verdict a server said it saved is stored exactly once; none it refused is.
    saved = [rationale for a in people for rationale in a.saved]
    assert len(saved) == AUDITORS * VERDICTS_EACH
    stored = Review.objects.filter(rationale__startswith="deploy-")
    assert sorted(stored.values_list("rationale", flat=True)) == sorted(saved)
    assert not Review.objects.filter(rationale__in=[r for a in people for r in a.refused]).exists()
    assert_reviews_consistent()

    # Every upload's job is done, run by one worker once, and stored its records once.
    done = {job.pk: job for job in ImportJob.objects.filter(pk__in=jobs)}
    assert sorted(done) == sorted(jobs) and len(jobs) == len(files)
    assert {job.state for job in done.values()} == {ImportJob.State.DONE}, [
        (job.pk, job.state, job.report) for job in done.values()
    ]
    tasks = DBTaskResult.objects.filter(task_path__endswith="import_upload")
    assert sorted(task.args_kwargs["args"][0] for task in tasks) == sorted(jobs)
    assert {task.status for task in tasks} == {TaskResultStatus.SUCCESSFUL}
    assert all(len(task.worker_ids) == 1 for task in tasks), [t.worker_ids for t in tasks]
    assert {w for task in tasks for w in task.worker_ids} <= {"deploy-worker-1", "deploy-worker-2"}
    reports = [done[pk].report for pk in jobs]
    assert [r["imported"] + r["duplicates"] for r in reports] == [UPLOAD_RECORDS] * len(files)
    # The file uploaded twice: whichever import ran second found every record stored.
    assert sorted([reports[0]["imported"], reports[-1]["imported"]]) == [0, UPLOAD_RECORDS]
    for job in done.values():
        if job.report["imported"]:
            assert Transcript.objects.filter(batch=job.batch).count() == job.report["imported"]
    assert Transcript.objects.count() == seeded + UPLOAD_RECORDS * len(UPLOAD_SEEDS)
