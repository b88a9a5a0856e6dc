"""The client on its own (no Django involved): its body, which failures it retries and how,
and that it never follows a redirect."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from audit.api.client import ApiError, encode_lines, post_records


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, headers, body) of ``script``; keeps bodies."""

    script: list[tuple[int, dict[str, str], dict]] = []
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        status, headers, body = self.script.pop(0)
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Scripted.script, Scripted.bodies = [], []
    httpd = HTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


OK = {"batches": [{"imported": 1}]}


def test_records_are_sent_as_the_exporter_writes_them():
    # default=str, as the exporter's json.dumps: an enum or a datetime becomes its text.
    record = {"b": 1, "a": dt.date(2026, 1, 2), "t": 1.5}
    assert encode_lines([record, "raw line\n", b"bytes\r\n"]) == (
        json.dumps(record, default=str).encode() + b"\nraw line\nbytes\n"
    )


def test_retries_passing_failures_with_the_same_bytes(server):
    Scripted.script = [
        (503, {"Retry-After": "7"}, {"detail": "busy"}),
        (502, {}, {"detail": "proxy"}),
        (200, {}, OK),
    ]
    waits: list[float] = []
    answer = post_records(server, "audit_x", [{"a": 1}], sleep=waits.append, backoff=0.1)
    assert answer == OK
    assert waits[0] == 7 and 0.2 <= waits[1] <= 0.3  # backoff doubled, with jitter
    assert len(set(Scripted.bodies)) == 1  # a retry sends the very same body
    assert gzip.decompress(Scripted.bodies[0]) == b'{"a": 1}\n'


@pytest.mark.parametrize("status", [400, 401, 403, 409, 413, 422])
def test_refusals_are_not_retried(server, status):
    Scripted.script = [(status, {}, {"detail": "no"})]
    with pytest.raises(ApiError) as refused:
        post_records(server, "audit_x", [{"a": 1}], sleep=lambda s: None)
    assert (refused.value.status, refused.value.detail) == (status, "no")
    assert len(Scripted.bodies) == 1


def test_gives_up_after_its_retries(server):
    Scripted.script = [(500, {}, {"detail": "down"})] * 3
    with pytest.raises(ApiError) as failed:
        post_records(server, "audit_x", ["{}"], retries=2, sleep=lambda s: None)
    assert failed.value.status == 500
    assert len(Scripted.bodies) == 3


def test_a_redirect_is_not_followed(server):
    Scripted.script = [(301, {"Location": "https://elsewhere/api/v1/transcripts"}, {})]
    with pytest.raises(ApiError, match="redirected to https://elsewhere"):
        post_records(server, "audit_x", ["{}"])
    assert len(Scripted.bodies) == 1


def test_no_server_is_retried_then_reported():
    waits: list[float] = []
    with pytest.raises(ApiError) as failed:
        post_records("http://127.0.0.1:9", "audit_x", ["{}"], retries=2, sleep=waits.append)
    assert failed.value.status == 0 and len(waits) == 2
