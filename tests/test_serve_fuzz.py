"""The HTTP API under attack: schema-driven fuzzing (schemathesis) of every endpoint with valid and invalid
requests, and the inputs a fuzzer does not send (non-standard numbers, oversized and deeply nested bodies,
invalid UTF-8, wrong content types, abusive headers, slow clients). No answer may be a 5xx, every answer
matches the schema, and the server still generates afterwards."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from test_serve import FAST, PROMPT, running_server

# Requests predicted to take over 3 s are refused up front (422); the rest finish well within the time limit.
LIVE = replace(FAST, timeout_s=120.0, max_request_s=3.0, max_queue=4)
EXAMPLES = 20  # per operation and mode: bounded, so the suite stays fast


@pytest.fixture(scope="module")
def live():
    with running_server(LIVE) as (url, app):
        yield url, app


def _operations(url: str):
    """The API's operations, as the server's own OpenAPI schema describes them."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_request_from_the_schema_gets_a_server_error_or_an_undocumented_answer(live, mode):
    url, _ = live
    operations = _operations(url)
    assert {op.label for op in operations} >= {"POST /v1/generate", "POST /v1/generate/stream", "GET /healthz"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not len(operation.body):
            continue  # nothing to get wrong in a request without a body or parameters

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case):
            # no 5xx, a documented status, a matching body; a request the schema allows may still be refused
            # (a model this server does not serve, a size past its time limit): that is a 422, not a failure
            case.call_and_validate(base_url=url, timeout=60, excluded_checks=[positive_data_acceptance])

        check()


def test_the_server_still_generates_after_the_fuzzing(live):
    url, _ = live
    response = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPT, "steps": 2}, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    metrics = httpx.get(f"{url}/metrics").text
    answered = [line for line in metrics.splitlines() if line.startswith("workbench_requests_total{")]
    assert answered and not [line for line in answered if 'status="5' in line], answered


ABUSE = {
    "a body over the limit": (b'{"prompt": "' + b"x" * 200_000 + b'"}', "application/json", 413),
    "deep nesting": (b'{"prompt": "x", "style": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "application/json", 400),
    "invalid UTF-8": (b'{"prompt": "\xff\xfe\xfd"}', "application/json", 400),
    "invalid UTF-8 as text": (b"\xff\xfe\xfd prompt", "text/plain", 422),
    "bytes": (b"\x00\x01\x02\xff", "application/octet-stream", 422),
    "JSON as text/plain": (json.dumps({"prompt": PROMPT}).encode(), "text/plain", 422),
    "a form": (b"prompt=a+red+circle", "application/x-www-form-urlencoded", 422),
    "no body": (b"", "application/json", 422),
    "a number the JSON standard does not allow": (b'{"prompt": "x", "guidance": NaN}', "application/json", 422),
}


@pytest.mark.parametrize("name", list(ABUSE))
def test_abusive_bodies_get_a_4xx_and_the_connection_still_serves(live, name):
    url, _ = live
    body, content_type, status = ABUSE[name]
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in ("/v1/generate", "/v1/generate/stream"):
            response = http.post(path, content=body, headers={"Content-Type": content_type})
            assert response.status_code == status, (path, response.text[:300])
            assert len(response.content) < 4096  # an error never echoes a huge input back
        assert http.get("/healthz").status_code == 200


def test_a_body_over_the_limit_sent_in_chunks_gets_413(live):
    url, _ = live

    def chunks():
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    for path in ("/v1/generate", "/v1/generate/stream"):
        response = httpx.post(f"{url}{path}", content=chunks(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413, response.text


def _raw(url: str, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to the server and read what comes back until it closes or goes quiet."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(request)
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


@pytest.mark.parametrize(
    "headers",
    [
        b"Authorization: Bearer \xe9\xe9\x00\r\n",
        b"X-Workbench-Ticket: " + b"t" * 5000 + b"\r\n",
        b"X-Junk: " + b"a" * 60_000 + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(300)),
        b"Content-Length: -5\r\n",
        b"Content-Length: 10\r\nContent-Length: 20\r\n",
    ],
    ids=["binary auth", "long ticket", "huge header", "many headers", "negative length", "two lengths"],
)
def test_abusive_headers_never_get_a_server_error(live, headers):
    url, _ = live
    body = json.dumps({"prompt": PROMPT, "steps": 2}).encode()
    request = b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers
    if b"Content-Length" not in headers:
        request += b"Content-Length: %d\r\n" % len(body)
    answer = _raw(url, request + b"Connection: close\r\n\r\n" + body, timeout=30)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    assert status is None or status < 500, answer[:300]  # refused (4xx), served, or the connection closed
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200


def test_a_slow_client_does_not_hold_up_the_others(live):
    url, _ = live
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        slow.sendall(
            b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        response = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPT, "steps": 2}, timeout=60)
        assert response.status_code == 200 and time.monotonic() - started < 30
