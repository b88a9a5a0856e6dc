"""Page and verdict latency through gunicorn with real HTTP clients (issue 14), for ``bench``.

The figures a person waits for: what the browser gets from a production server, not what a view
takes in the test client. ``measure`` runs the child below on a scratch database
(``audit.bench.scratch``); the child imports the file, has about 5% of it reviewed, creates the
users, collects the static files, starts ``gunicorn audit.wsgi`` with 2 workers and production
settings on a free local port, and drives it with ``requests`` sessions that log in through the
login page like a browser:

- pages (GET, each expected to answer 200): the queue by default, filtered by a flag, searched
  for a common word of the data, a deep page reached by following the pager's "next" links (so
  whatever paging the queue has, offsets or keyset links, is what is measured), the item page,
  the dashboard, its auditors page and the admin's transcript list; each sequentially (rounds
  that interleave the pages, so a load that comes and goes hits them alike) and with ``clients``
  concurrent clients on the same page;
- verdicts: what an auditor's browser does with htmx, one POST that saves a *confirm* and claims
  and renders the next item, p50/p95 for one auditor and verdicts per second for one against
  ``clients`` auditors at once.

Every 5xx and every request that got no answer is counted, never dropped. A slow page stops
after ``budget_seconds`` once it has a few samples, so its ``n`` says how many it got.

The server is reached over plain HTTP as if from behind a TLS proxy: each request says
``X-Forwarded-Proto: https`` (the proxy header production settings trust), so the HTTPS
redirect, the secure cookies and the CSRF origin check behave as they do in production. The
client sends those secure cookies over the loopback connection too (a cookie jar keeps them for
https URLs), and its ``Origin`` is the https origin of the host it talks to.

    python -m audit.bench.http SOURCE TMP CLIENTS REQUESTS BUDGET   (the child; prints JSON)
"""

from __future__ import annotations

import collections
import html
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from audit.bench import scratch

WORKERS = 2
# A sample is not a percentile: a page stops at its budget only once it has this many.
MIN_SAMPLES = 5
# How far the deep page is: "next" links followed from the first page, at most (the old offset
# pager stopped at page 400, 20,000 rows in).
DEEP_HOPS = 400
# Share of the records reviewed before the measurement, as the goal states it.
REVIEWED_SHARE = 0.05
# Items the item page cycles through, spread over the table.
ITEM_SAMPLES = 10
# A slow page at a million rows must not be killed by gunicorn's default 30 s worker timeout.
WORKER_TIMEOUT_SECONDS = 300
BENCH_PASSWORD = "bench-password-" + "x" * 8
FLAG = "missed_misbehavior"

ITEM_URL = re.compile(r"/t/(\d+)/")
VERSION = re.compile(r'name="based_on_version" value="(\d+)"')
OPENED = re.compile(r'name="opened" value="([^"]*)"')
CONFIRM_BUTTON = re.compile(r"<button\b[^>]*\bid=\"btn-confirm\"[^>]*>")
NEXT_LINK = re.compile(r"<a\b[^>]*\b(?:id=\"page-next\"|rel=\"next\")[^>]*>")
HREF = re.compile(r'\bhref="([^"]*)"')
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
WORD = re.compile(r"[a-z]+")

PAGES = (
    "queue",
    "queue, flag",
    "queue, search",
    "queue, deep page",
    "item page",
    "dashboard",
    "dashboard auditors",
    "dashboard monitors",
    "admin changelist",
)


def measure(
    source: Path,
    *,
    tmp: Path,
    clients: int = 4,
    requests_per_page: int = 30,
    budget_seconds: float = 30.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The figures of ``_run`` for the records of ``source`` (JSONL), from a child process on a
    scratch database (``env``'s, when given: one an earlier child imported ``source`` into, so
    the import here finds every line stored and costs a re-import); ``{"error": ...}`` when the
    child failed."""
    args = [str(source), str(tmp), str(clients), str(requests_per_page), str(budget_seconds)]
    return scratch.run("http", args, tmp=tmp, env=env)


def lines(figures: dict[str, Any]) -> list[str]:
    """``figures`` as ``name  value`` lines for the bench output."""
    if "error" in figures:
        return [_line("pages through gunicorn", f"not measured: {figures['error']}")]
    clients = figures["clients"]
    memory = figures.get("shared_buffers")
    out = [
        _line(
            "gunicorn",
            f"{figures['workers']} workers, {figures['records']} records, "
            f"{figures['reviewed']} reviewed, search {figures['search_word']!r}"
            + (f", PostgreSQL shared_buffers {memory}" if memory else ""),
        )
    ]
    for name in PAGES:
        page = figures["pages"][name]
        out.append(_line(f"{name} (1 client)", _latency(page["sequential"])))
        out.append(_line(f"{name} ({clients} clients)", _latency(page["concurrent"])))
    deep = figures["deep_page"]
    out.append(_line("queue, deep page is", f"{deep['hops']} next links from the first page"))
    out.append(_line("queue, next-link walk", _latency(deep["walk"])))
    verdicts = figures["verdicts"]
    one, many = verdicts["sequential"], verdicts["concurrent"]
    out.append(_line("verdict + next item (1 auditor)", _latency(one)))
    out.append(_line(f"verdict + next item ({clients} auditors)", _latency(many)))
    ratio = f" ({many['per_s'] / one['per_s']:.1f}x one)" if one["per_s"] else ""
    out.append(
        _line(
            "verdicts/s",
            f"{one['per_s']:.1f} with 1 auditor, {many['per_s']:.1f} with {clients}{ratio}",
        )
    )
    if verdicts["refused"]:
        out.append(_line("verdicts refused (409/422)", str(verdicts["refused"])))
    requests_ = figures["requests"]
    out.append(
        _line(
            "HTTP errors",
            f"{requests_['server_errors']} 5xx, {requests_['failed']} without an answer, "
            f"{requests_['unexpected']} unexpected statuses, of {requests_['total']} requests",
        )
    )
    if requests_["first_error"]:
        out.append(_line("first HTTP error", requests_["first_error"]))
    return out


def _line(name: str, value: str) -> str:
    return f"{name:<34} {value}"


def _latency(figure: dict[str, Any]) -> str:
    if not figure["n"]:
        return "no samples"
    return f"p50 {figure['p50_ms']:.0f} ms, p95 {figure['p95_ms']:.0f} ms, n {figure['n']}"


def percentiles(seconds: list[float]) -> dict[str, Any]:
    """n, p50 and p95 (ms) of ``seconds``, as ``audit.bench.locks`` takes them."""
    ordered = sorted(seconds)

    def at(fraction: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    return {"n": len(ordered), "p50_ms": at(0.5), "p95_ms": at(0.95)}


# --- the server ----------------------------------------------------------------------------------


def collect_static(env: dict[str, str]) -> None:
    """``collectstatic`` into the STATIC_ROOT ``env`` gives: production settings serve the
    hashed files through WhiteNoise, and a page without its manifest is a server error."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        env=env,
        cwd=scratch.ROOT,
        check=True,
        capture_output=True,
    )


@dataclass
class Server:
    """A gunicorn: its process (the leader of a process group of its own), the log it writes
    and, once ``wait_ready`` has seen it listen, its URL."""

    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        """Until it listens (the kernel picked the port: read back from the log) and answers
        the login page; stops it and raises when it does not."""
        deadline = time.monotonic() + timeout
        probe = requests.Session()
        try:
            while True:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start: {_tail(self.log)}")
                if not self.url:
                    if match := LISTENING.search(self.log.read_text(errors="replace")):
                        self.url = f"http://127.0.0.1:{match[1]}"
                    time.sleep(0.1)
                    continue
                try:
                    answer = probe.get(
                        f"{self.url}/login/", headers={"X-Forwarded-Proto": "https"}, timeout=30
                    )
                    if answer.status_code == 200:
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.2)
        except BaseException:
            stop(self.process)
            raise


def launch_gunicorn(env: dict[str, str], *, log: Path, workers: int = WORKERS) -> Server:
    """Start ``gunicorn audit.wsgi`` with ``env`` on a free port of 127.0.0.1 (port 0: the
    kernel picks one), without waiting for it (``Server.wait_ready``)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "audit.wsgi:application",
                "--workers",
                str(workers),
                "--bind",
                "127.0.0.1:0",
                "--timeout",
                str(WORKER_TIMEOUT_SECONDS),
                "--graceful-timeout",
                "5",
                # Several servers run side by side: none may claim the default control socket.
                "--no-control-socket",
            ],
            env=env,
            cwd=scratch.ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(process=process, log=log)


def start_gunicorn(env: dict[str, str], *, log: Path, workers: int = WORKERS) -> Server:
    """``launch_gunicorn``, then wait until it answers."""
    server = launch_gunicorn(env, log=log, workers=workers)
    server.wait_ready()
    return server


def stop(process: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    """End a process started in a session of its own (gunicorn and its workers, a task
    worker): SIGTERM, then after ``grace`` seconds SIGKILL to its whole group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # what is left of its group (workers)
    process.wait()


def _tail(log: Path, count: int = 5) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return " | ".join(text.splitlines()[-count:]) or "no output"


# --- the clients ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Every answer of every client of a run, shared by the client threads."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    server_errors: int = 0
    failed: int = 0
    unexpected: int = 0
    first_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, status: int | None, *, expected: tuple[int, ...]) -> None:
        with self.lock:
            if status is None:
                self.failed += 1
            else:
                self.statuses[status] += 1
                if status >= 500:
                    self.server_errors += 1
                elif status not in expected:
                    self.unexpected += 1
            if (status is None or status not in expected) and not self.first_error:
                self.first_error = f"{what}: {status or 'no answer'}"

    def figures(self) -> dict[str, Any]:
        return {
            "total": sum(self.statuses.values()) + self.failed,
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "server_errors": self.server_errors,
            "failed": self.failed,
            "unexpected": self.unexpected,
            "first_error": self.first_error,
        }


class Client:
    """One browser: a ``requests`` session of its own, logged in through the login page, that
    talks to the server as from behind a TLS proxy (see the module docstring)."""

    def __init__(self, base: str, tally: Tally) -> None:
        self.base = base
        self.tally = tally
        self.http = requests.Session()
        self.http.headers["X-Forwarded-Proto"] = "https"

    def request(
        self,
        method: str,
        url: str,
        *,
        expected: tuple[int, ...] = (200,),
        htmx: bool = False,
        **kwargs: Any,
    ) -> tuple[requests.Response | None, float]:
        """The response (None when there was none: a refused connection, a timeout) and the
        seconds it took, whole body read; every answer goes into the tally."""
        headers = dict(kwargs.pop("headers", {}))
        if method == "POST":
            headers["X-CSRFToken"] = self.http.cookies.get("csrftoken", "")
        if htmx:
            headers["HX-Request"] = "true"
        url = urljoin(self.base + "/", url)  # an absolute URL may name another server
        headers["Origin"] = "https://" + urlsplit(url).netloc
        # The session and CSRF cookies are secure, and a cookie jar sends those over https
        # only; this connection is the proxy's plain hop behind the TLS the headers claim.
        for cookie in self.http.cookies:
            cookie.secure = False
        started = time.perf_counter()
        try:
            response: requests.Response | None = self.http.request(
                method,
                url,
                headers=headers,
                allow_redirects=False,
                timeout=WORKER_TIMEOUT_SECONDS + 30,
                **kwargs,
            )
        except requests.RequestException:
            response = None
        seconds = time.perf_counter() - started
        status = response.status_code if response is not None else None
        self.tally.note(f"{method} {urlsplit(url).path}", status, expected=expected)
        return response, seconds

    def log_in(self, username: str, password: str) -> None:
        self.request("GET", "/login/")
        response, _ = self.request(
            "POST",
            "/login/",
            data={"username": username, "password": password},
            expected=(302,),
        )
        if response is None or response.status_code != 302:
            status = response.status_code if response is not None else "no answer"
            raise RuntimeError(f"{username} could not log in: {status}")

    def resolve(self, url: str) -> str:
        """Where ``url`` lands after its redirects (the queue redirects to its clean URL)."""
        for _ in range(5):
            response, _ = self.request("GET", url, expected=(200, 301, 302))
            location = response.headers.get("Location") if response is not None else None
            if response is None or response.status_code not in (301, 302) or not location:
                # 200, or an error the tally counts (the measure of the page then says so):
                # a 5xx at a million rows stopped the whole run with a KeyError here.
                return url
            url = urljoin(urljoin(self.base + "/", url), location)
        return url


def next_link(page: str, current: str) -> str | None:
    """The pager's "next" link of ``page`` (whatever its query string holds), absolute."""
    tag = NEXT_LINK.search(page)
    href = HREF.search(tag[0]) if tag else None
    return urljoin(current, html.unescape(href[1])) if href else None


# --- pages ---------------------------------------------------------------------------------------


def _sequential(
    client: Client, urls: dict[str, Callable[[int], str]], *, rounds: int, budget: float
) -> dict[str, list[float]]:
    """Rounds of one GET of each page in turn; a page leaves once it has used its budget
    (with at least MIN_SAMPLES)."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    spent = dict.fromkeys(urls, 0.0)
    for n in range(rounds):
        for name, url in urls.items():
            if spent[name] > budget and len(samples[name]) >= MIN_SAMPLES:
                continue
            response, seconds = client.request("GET", url(n))
            spent[name] += seconds
            if response is not None and response.status_code == 200:
                samples[name].append(seconds)
    return samples


def _concurrent(
    clients: list[Client], url: Callable[[int], str], *, total: int, budget: float
) -> list[float]:
    """``total`` GETs of one page shared by the clients, all at once (client i makes the
    i-th, the i + len(clients)-th, ... request)."""
    samples: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(len(clients))

    def run(offset: int, client: Client) -> None:
        start.wait()
        began = time.monotonic()
        for made, n in enumerate(range(offset, total, len(clients))):
            if time.monotonic() - began > budget and made >= 2:
                break
            response, seconds = client.request("GET", url(n))
            if response is not None and response.status_code == 200:
                with lock:
                    samples.append(seconds)

    _in_threads([partial(run, offset, client) for offset, client in enumerate(clients)])
    return samples


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _same(url: str, n: int) -> str:
    return url


def _item(ids: list[int], n: int) -> str:
    """The n-th request's item page: the items in turn."""
    return f"/t/{ids[n % len(ids)]}/"


def _in_threads(work: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(function: Callable[[], None]) -> None:
        try:
            function()
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(function,)) for function in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def walk_next_links(
    client: Client, start: str, *, hops: int, budget: float
) -> tuple[str, int, list[float]]:
    """Follow the pager's "next" links from ``start``: the last page reached, how many links
    were followed, and the seconds of each."""
    url, followed, seconds_each = start, 0, []
    response, _ = client.request("GET", url)
    began = time.monotonic()
    while response is not None and response.status_code == 200 and followed < hops:
        if time.monotonic() - began > budget and followed >= MIN_SAMPLES:
            break
        link = next_link(response.text, urljoin(client.base + "/", url))
        if link is None:
            break
        following, seconds = client.request("GET", link)
        if following is None or following.status_code != 200:
            break
        url, response, followed = link, following, followed + 1
        seconds_each.append(seconds)
    return url, followed, seconds_each


# --- verdicts ------------------------------------------------------------------------------------


@dataclass
class VerdictRun:
    seconds: list[float] = field(default_factory=list)
    refused: int = 0
    relabels: int = 0
    ran_out: bool = False


def _claim(client: Client) -> str | None:
    """POST Next as htmx does: the claimed item's fragment, or None when nothing is left."""
    response, _ = client.request("POST", "/next/", htmx=True)
    if response is None or not ITEM_URL.search(response.headers.get("HX-Push-Url", "")):
        return None
    return response.text


def give_verdicts(
    client: Client, run: VerdictRun, *, count: int, budget: float, first: str | None
) -> None:
    """Up to ``count`` verdicts as an auditor gives them with htmx: each POST saves a confirm
    (a relabel where the imported label cannot be confirmed) and answers with the next item,
    which it claims; the seconds of each POST go into ``run``."""
    fragment, began = first, time.monotonic()
    # Bounded whatever the server answers: refusals and errors use up attempts too.
    for _ in range(3 * count):
        if len(run.seconds) >= count:
            return
        if time.monotonic() - began > budget and len(run.seconds) >= MIN_SAMPLES:
            return
        if fragment is None:
            run.ran_out = True
            return
        item = re.search(r'data-item="(\d+)"', fragment)
        version, opened = VERSION.search(fragment), OPENED.search(fragment)
        if not (item and version and opened):  # no verdict form (K reached meanwhile)
            fragment = _claim(client)
            continue
        button = CONFIRM_BUTTON.search(fragment)
        data = {"based_on_version": version[1], "opened": html.unescape(opened[1])}
        if button and " disabled" not in button[0]:
            data["verdict"] = "confirm"
        else:
            run.relabels += 1
            data.update(
                verdict="relabel",
                is_misbehavior="no",
                correct_decision="APPROVE",
                rationale="The bench relabels what it cannot confirm.",
            )
        response, seconds = client.request(
            "POST", f"/t/{item[1]}/review/", data=data, htmx=True, expected=(200, 409, 422)
        )
        if response is None or response.status_code >= 500:
            fragment = _claim(client)
            continue
        if response.status_code != 200:  # 409 conflict, 422 no longer open: nothing saved
            run.refused += 1
            fragment = _claim(client)
            continue
        run.seconds.append(seconds)
        pushed = response.headers.get("HX-Push-Url", "")
        fragment = response.text if ITEM_URL.search(pushed) else None


# --- the child -----------------------------------------------------------------------------------


def common_word(source: Path, *, lines_read: int = 2000) -> str:
    """The most frequent word of six letters or more in the workers' reasoning at the start of
    ``source``: a search most auditors' queries resemble (one that matches many records)."""
    counts: collections.Counter[str] = collections.Counter()
    with source.open("rb") as records:
        for n, line in enumerate(records):
            if n >= lines_read:
                break
            try:
                proposal = json.loads(line).get("proposal") or {}
            except (ValueError, AttributeError):
                continue
            text = proposal.get("worker_reasoning") if isinstance(proposal, dict) else None
            if isinstance(text, str):
                counts.update(w for w in WORD.findall(text.lower()) if len(w) >= 6)
    return counts.most_common(1)[0][0] if counts else "service"


def _users(auditors: int) -> tuple[Any, list[Any]]:
    """The staff member (staff, superuser, auditor, adjudicator, as the demo's ``demo``) and
    ``auditors`` plain auditors, all with BENCH_PASSWORD."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher
    from django.contrib.auth.models import Group, User

    from audit.permissions import ADJUDICATOR, AUDITOR

    # A cheap hash to create them with: the first login upgrades it to the full work factor,
    # which is what every later login pays, as in production.
    password = PBKDF2PasswordHasher().encode(BENCH_PASSWORD, secrets.token_hex(8), iterations=1000)
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in (AUDITOR, ADJUDICATOR)}
    staff = User.objects.create(
        username="bench-staff", password=password, is_staff=True, is_superuser=True
    )
    staff.groups.set(groups.values())
    plain = []
    for n in range(auditors):
        user = User.objects.create(username=f"bench-auditor-{n + 1}", password=password)
        user.groups.add(groups[AUDITOR])
        plain.append(user)
    return staff, plain


def review_share(reviewers: list[Any], *, batch_id: int | None, n: int) -> int:
    """Confirm ``n`` queued items of the batch (None: of every batch) in the order Next hands
    them out, the reviewers taking turns, so the dashboard and the auditors page have reviews
    to count (``bench`` does the same with one reviewer); items whose imported label cannot be
    confirmed are passed."""
    from django.core.exceptions import ValidationError

    from audit.models import Transcript, Verdict
    from audit.review.workflow import submit_review

    done = 0
    queued = Transcript.objects.in_queue()
    if batch_id is not None:
        queued = queued.filter(batch_id=batch_id)
    for transcript in queued.order_by("-priority", "id").iterator():
        if done >= n:
            break
        try:
            submit_review(
                transcript,
                auditor=reviewers[done % len(reviewers)],
                verdict=Verdict.CONFIRM,
                seconds_spent=30,
                based_on_version=transcript.version,
            )
        except ValidationError:
            continue  # a label that cannot be confirmed as it stands
        done += 1
    return done


def _item_ids() -> list[int]:
    """ITEM_SAMPLES item ids spread evenly over the table."""
    from django.db.models import Max, Min

    from audit.models import Transcript

    bounds = Transcript.objects.aggregate(lo=Min("pk"), hi=Max("pk"))
    lo, hi = bounds["lo"], bounds["hi"]
    if lo is None:
        return []
    ids = []
    for n in range(ITEM_SAMPLES):
        pk = (
            Transcript.objects.filter(pk__gte=lo + n * (hi - lo) // ITEM_SAMPLES)
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if pk is not None and pk not in ids:
            ids.append(pk)
    return ids


def server_env(var_dir: Path) -> dict[str, str]:
    """This process's environment (production settings, the scratch database) with its own
    VAR_DIR for the static files and uploads."""
    env = dict(os.environ)
    env["AUDIT_VAR_DIR"] = str(var_dir)
    env.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
    return env


@contextmanager
def serving(env: dict[str, str], *, log: Path, workers: int = WORKERS) -> Iterator[Server]:
    server = start_gunicorn(env, log=log, workers=workers)
    try:
        yield server
    finally:
        stop(server.process)
        wait_for_disconnects()


def wait_for_disconnects(timeout: float = 15.0) -> None:
    """On PostgreSQL, until no other connection uses this process's database: a stopped
    server's backends end a moment after it, and dropping (``scratch``) or emptying (a test's
    teardown) the database before then fails or waits."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


def _run(
    source: Path, *, tmp: Path, clients: int, requests_per_page: int, budget: float
) -> dict[str, Any]:
    from audit.ingest.importer import import_file
    from audit.models import Transcript

    result = import_file(source)
    if result.failed:
        raise SystemExit("the file did not import: " + "; ".join(result.report_lines()))
    # Stored already by an earlier child on this database (``measure``): review over them all.
    batch_id = result.batch_id if result.imported else None
    records = Transcript.objects.count()
    staff, auditors = _users(clients)
    reviewed = review_share(
        [staff, *auditors], batch_id=batch_id, n=max(1, round(records * REVIEWED_SHARE))
    )
    items = _item_ids()
    word = common_word(source)
    work = tmp / f"http-{secrets.token_hex(3)}"
    work.mkdir(parents=True)
    try:
        return _serve_and_measure(
            work,
            staff=staff,
            auditors=auditors,
            items=items,
            word=word,
            clients=clients,
            requests_per_page=requests_per_page,
            budget=budget,
        ) | {"records": records, "reviewed": reviewed}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _serve_and_measure(
    work: Path,
    *,
    staff: Any,
    auditors: list[Any],
    items: list[int],
    word: str,
    clients: int,
    requests_per_page: int,
    budget: float,
) -> dict[str, Any]:
    from django.db import connection

    env = server_env(work / "var")
    collect_static(env)
    connection.close()  # SQLite: nothing of this process holds the file while the server runs
    tally = Tally()
    with serving(env, log=work / "gunicorn.log") as server:
        browsers = [Client(server.url, tally) for _ in range(clients)]
        for browser in browsers:
            browser.log_in(staff.username, BENCH_PASSWORD)
        first = browsers[0]
        deep, hops, walk = walk_next_links(first, "/", hops=DEEP_HOPS, budget=2 * budget)
        fixed = {
            "queue": first.resolve("/"),
            "queue, flag": first.resolve(f"/?flag={FLAG}"),
            "queue, search": first.resolve(f"/?q={word}"),
            "queue, deep page": deep,
            "dashboard": first.resolve("/dashboard/"),
            "dashboard auditors": first.resolve("/dashboard/auditors/"),
            # Computed by the first request, then from the cache until the data changes.
            "dashboard monitors": first.resolve("/dashboard/monitors/"),
            "admin changelist": first.resolve("/admin/audit/transcript/"),
        }
        urls: dict[str, Callable[[int], str]] = {
            name: partial(_same, fixed[name]) if name in fixed else partial(_item, items)
            for name in PAGES
        }
        sequential = _sequential(first, urls, rounds=requests_per_page, budget=budget)
        concurrent = {
            name: _concurrent(browsers, url, total=requests_per_page, budget=budget)
            for name, url in urls.items()
        }

        reviewers = [Client(server.url, tally) for _ in auditors]
        for reviewer, user in zip(reviewers, auditors, strict=True):
            reviewer.log_in(user.username, BENCH_PASSWORD)
        one = VerdictRun()
        began = time.perf_counter()
        give_verdicts(
            reviewers[0], one, count=requests_per_page, budget=budget, first=_claim(reviewers[0])
        )
        one_seconds = time.perf_counter() - began
        runs = [VerdictRun() for _ in reviewers]
        firsts = [_claim(reviewer) for reviewer in reviewers]
        began = time.perf_counter()
        _in_threads(
            [
                partial(give_verdicts, c, r, count=requests_per_page, budget=budget, first=f)
                for r, c, f in zip(runs, reviewers, firsts, strict=True)
            ]
        )
        many_seconds = time.perf_counter() - began

    every = [s for run in runs for s in run.seconds]
    return {
        "database": connection.vendor,
        "shared_buffers": _shared_buffers(),
        "workers": WORKERS,
        "clients": clients,
        "search_word": word,
        "pages": {
            name: {
                "sequential": percentiles(sequential[name]),
                "concurrent": percentiles(concurrent[name]),
            }
            for name in PAGES
        },
        "deep_page": {"hops": hops, "url": _path(deep), "walk": percentiles(walk)},
        "verdicts": {
            "sequential": {
                **percentiles(one.seconds),
                "per_s": len(one.seconds) / one_seconds if one_seconds else 0.0,
            },
            "concurrent": {
                **percentiles(every),
                "per_s": len(every) / many_seconds if many_seconds else 0.0,
            },
            "refused": one.refused + sum(run.refused for run in runs),
            "relabels": one.relabels + sum(run.relabels for run in runs),
            "ran_out": one.ran_out or any(run.ran_out for run in runs),
        },
        "requests": tally.figures(),
    }


def _shared_buffers() -> str | None:
    """PostgreSQL's ``shared_buffers`` (None on SQLite): the pages' figures depend on it (at the
    default 128 MB a million records' tables are read from the system's cache; the README's
    PostgreSQL section measures 4 GB too), so the output says it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_buffers")
        (value,) = cursor.fetchone()
    return str(value)


def _main(args: list[str]) -> dict[str, Any]:
    source, tmp, clients, requests_per_page, budget = args
    return _run(
        Path(source),
        tmp=Path(tmp),
        clients=int(clients),
        requests_per_page=int(requests_per_page),
        budget=float(budget),
    )


if __name__ == "__main__":
    scratch.child_main(_main)
