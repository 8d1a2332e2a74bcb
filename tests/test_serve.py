"""The HTTP service: validation, generation, streaming, the queue, faults, auth, metrics and the client against it
(the client on its own: tests/test_client.py).

Streaming, disconnects and the queue run against a real uvicorn server on loopback (a test client does
not disconnect the way a socket does); the rest use FastAPI's test client.
"""

import base64
import io
import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import replace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import workbench as wb
from workbench.client import SERVER_TOGGLES, TICKET_HEADER, _sse
from workbench.errors import ConfigError, GenerationCancelled
from workbench.generation import read_settings
from workbench.serve.app import ServeSettings, create_app

PROMPT = "a red circle in the centre, on a white background"
FAST = ServeSettings(devices=("cpu",), classifier="keyword")


def settings(**changes) -> ServeSettings:
    return replace(FAST, **changes)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(FAST)) as client:
        yield client


@contextmanager
def running_server(serve_settings: ServeSettings):
    """A real uvicorn server on loopback (on a port the system picks) in a thread; yields (url, app)."""
    import uvicorn

    app = create_app(serve_settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- validation -----------------------------------------------------------------------------------

BAD_REQUESTS = [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"prompt": PROMPT, "steps": 0}, "steps"),
    ({"prompt": PROMPT, "steps": "many"}, "steps"),
    ({"prompt": PROMPT, "guidance": -1}, "guidance"),
    ({"prompt": PROMPT, "width": 33}, "width"),
    ({"prompt": PROMPT, "height": 4096}, "height"),
    ({"prompt": PROMPT, "seed": -1}, "seed"),
    ({"prompt": PROMPT, "seed": 2**63 - 1, "num_images": 2, "response_format": "json"}, "seed"),
    ({"prompt": PROMPT, "num_images": 9, "response_format": "json"}, "num_images"),
    ({"prompt": PROMPT, "num_images": 2}, "num_images"),
    ({"prompt": PROMPT, "model": "stabilityai/sdxl-nope"}, "model"),
    ({"prompt": PROMPT, "route": "cubist"}, "route"),
    ({"prompt": PROMPT, "model": "toyworld/sd-small", "route": "artistic"}, "model or route"),
    ({"prompt": PROMPT, "style": "baroque"}, "style"),
    ({"prompt": PROMPT, "scheduler": "warp"}, "scheduler"),
    ({"prompt": PROMPT, "acceleration": {"deepcache_interval": 99}}, "deepcache_interval"),
    ({"prompt": PROMPT, "acceleration": {"turbo": True}}, "turbo"),
    ({"prompt": PROMPT, "acceleration": {"first_block_cache": -0.1}}, "first_block_cache"),
    ({"prompt": PROMPT, "acceleration": {"tgate_step": -1}}, "tgate_step"),
    ({"prompt": PROMPT, "acceleration": {"mag_cache": 0.1, "mag_ratios": [1.0, 0]}}, "mag_ratios"),
    ({"prompt": PROMPT, "acceleration": {"first_block_cache": 0.2, "pab_interval": 2}}, "one transformer cache"),
    ({"prompt": PROMPT, "model": "toyworld/dit-small", "scheduler": "dpm++"}, "flow-matching"),
    ({"prompt": PROMPT, "model": "toyworld/dit-small", "acceleration": {"pab_interval": 2}}, "true CFG"),
    ({"prompt": PROMPT, "colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("body", "named"), BAD_REQUESTS, ids=[n for _, n in BAD_REQUESTS])
def test_a_bad_request_gets_422_naming_the_field(client, body, named):
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 422, response.text
    assert named in json.dumps(response.json()["detail"])


def test_malformed_bodies_get_422_not_500(client):
    for kwargs in ({"content": b"{not json"}, {"json": [PROMPT]}, {"json": PROMPT}, {"content": b""}):
        assert client.post("/v1/generate", headers={"Content-Type": "application/json"}, **kwargs).status_code == 422
    assert client.get("/healthz").json()["status"] == "ok"  # and the server is still there


def test_settings_this_device_cannot_honour_get_422(client):
    response = client.post("/v1/generate", json={"prompt": PROMPT, "acceleration": {"attention_backend": "sdpa-flash"}})
    assert response.status_code == 422 and "sdpa-flash" in response.json()["detail"]


@pytest.mark.parametrize("toggle", ["compile", "dtype", "cpu_offload", "channels_last", "compile_mode"])
def test_server_owned_toggles_are_refused_per_request_saying_whose_they_are(client, toggle):
    value = {"compile": True, "dtype": "bfloat16", "cpu_offload": True, "channels_last": True}.get(toggle, "default")
    response = client.post("/v1/generate", json={"prompt": PROMPT, "acceleration": {toggle: value}})
    assert response.status_code == 422
    message = json.dumps(response.json()["detail"])
    assert f"{toggle} is a server setting" in message and "workbench serve --acceleration" in message
    assert "vae_slicing" in message  # the message is whole: it lists what a request may set
    schema = client.get("/openapi.json").json()["components"]["schemas"]["AccelerationSettings"]
    assert toggle not in schema["properties"] and "tome_ratio" in schema["properties"]


NON_FINITE = [
    '{"prompt": "x", "guidance": NaN}',
    '{"prompt": "x", "guidance": Infinity}',
    '{"prompt": "x", "steps": -Infinity}',
    '{"prompt": "x", "acceleration": {"tome_ratio": NaN}}',
    '{"prompt": "x", "seed": 1e999}',
    '{"prompt": NaN}',
    '{"prompt": "x", "colour": [NaN, {"deep": Infinity}]}',
]


def test_numbers_json_does_not_allow_get_422_on_every_endpoint_and_the_connection_lives():
    with running_server(replace(FAST, preload=False)) as (url, _app), httpx.Client(base_url=url) as http:
        for body in NON_FINITE:
            for path in ("/v1/generate", "/v1/generate/stream"):
                response = http.post(path, content=body, headers={"Content-Type": "application/json"})
                assert response.status_code == 422, (body, path, response.text)
                assert response.json()["detail"][0]["loc"][0] == "body"
            assert http.get("/healthz").status_code == 200  # the same keep-alive connection still answers


def test_a_request_that_cannot_finish_in_the_time_limit_is_refused_up_front():
    with TestClient(create_app(settings(timeout_s=20))) as http:
        response = http.post(
            "/v1/generate",
            json={"prompt": PROMPT, "model": "toyworld/sd-base", "width": 2048, "height": 2048, "steps": 200,
                  "num_images": 8, "response_format": "json"},
        )  # fmt: skip
        assert response.status_code == 422
        detail = json.dumps(response.json()["detail"])
        assert "past its limit of 20 s per request" in detail and "lower steps" in detail
        small = http.post("/v1/generate", json={"prompt": PROMPT, "model": "toyworld/sd-base", "steps": 2})
        assert small.status_code == 200


def test_server_toggles_apply_to_every_request_and_are_warmed_at_start():
    fast = wb.AccelerationConfig(dtype="bfloat16", vae_slicing=True)  # applies to UNets and transformers alike
    with TestClient(create_app(settings(acceleration=fast))) as http:
        response = http.post("/v1/generate", json={"prompt": PROMPT, "steps": 2, "response_format": "json"})
        assert response.status_code == 200
        (image,) = response.json()["images"]
        assert image["record"]["acceleration"]["dtype"] == "bfloat16"
        body = {"prompt": PROMPT, "steps": 2, "response_format": "json", "acceleration": {"vae_tiling": True}}
        (image,) = http.post("/v1/generate", json=body).json()["images"]
        acceleration = image["record"]["acceleration"]  # the request's toggle on top of the server's, not instead
        assert acceleration["vae_tiling"] and acceleration["vae_slicing"] and acceleration["dtype"] == "bfloat16"
        assert (
            http.app.state.service.pool.predicted_seconds(wb.resolve("toyworld/sd-small", PROMPT)) is not None
        )  # timed at start-up


# --- generating -------------------------------------------------------------------------------------


def test_the_toy_dit_serves_with_a_cache_and_its_batch_recorded(client):
    body = {"prompt": PROMPT, "model": "toyworld/dit-small", "seed": 3, "num_images": 2, "steps": 4,
            "response_format": "json", "acceleration": {"first_block_cache": 0.2}}  # fmt: skip
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    records = [image["record"] for image in response.json()["images"]]
    assert [r["model_id"] for r in records] == ["toyworld/dit-small"] * 2
    assert all(r["batch"] == [[PROMPT, 3], [PROMPT, 4]] for r in records)  # one call: each image's batch mates
    refused = client.post("/v1/generate", json={**body, "acceleration": {"deepcache_interval": 2}})
    assert refused.status_code in (400, 422) and "apply to UNets" in refused.text


def test_png_response_carries_its_settings_and_reproduces_locally(client, tmp_path):
    body = {"prompt": PROMPT, "model": "toyworld/sd-small", "seed": 7, "steps": 6, "guidance": 4.0}
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-workbench-seed"] == "7" and response.headers["x-workbench-model"] == body["model"]
    (tmp_path / "served.png").write_bytes(response.content)
    saved = read_settings(tmp_path / "served.png")
    assert (saved["seed"], saved["steps"], saved["guidance"], saved["model_id"]) == (7, 6, 4.0, body["model"])
    local = wb.generate(wb.load(body["model"]), PROMPT, wb.GenerationConfig(steps=6, guidance=4.0), seeds=7)[0]
    assert np.array_equal(_png(response.content), np.asarray(local.image))


def test_json_response_routes_and_numbers_the_seeds(client):
    body = {"prompt": "a watercolor painting of a blue square", "seed": 3, "num_images": 3, "response_format": "json"}
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 200
    data = response.json()
    records = [image["record"] for image in data["images"]]
    assert [r["seed"] for r in records] == [3, 4, 5]
    assert all(r["context"]["route"] == "artistic" for r in records)  # the router decided, and says so
    routes = client.get("/v1/routes").json()
    artistic = next(r for r in routes["routes"] if r["name"] == "artistic")
    assert records[0]["model_id"] == artistic["model_id"] and records[0]["steps"] == artistic["settings"]["steps"]
    assert data["worker"] == "0:cpu" and data["queued_s"] >= 0


def test_request_settings_override_the_route_and_the_optimizer_is_recorded(client):
    body = {"prompt": "a red circle", "route": "fast_preview", "steps": 3, "style": "photo", "response_format": "json"}
    record = client.post("/v1/generate", json=body).json()["images"][0]["record"]
    assert record["steps"] == 3 and record["context"]["route"] == "fast_preview"
    assert record["context"]["typed_prompt"] == "a red circle" and record["prompt"] != "a red circle"
    assert record["negative_prompt"]


def test_models_and_routes_are_listed(client):
    models = {m["id"]: m for m in client.get("/v1/models").json()}
    assert set(models) >= {"toyworld/sd-small", "toyworld/sd-base"}
    assert models["toyworld/sd-small"]["loaded_on"] == ["cpu"]  # loaded at start
    routes = client.get("/v1/routes").json()
    assert routes["fallback"] in {r["name"] for r in routes["routes"]} and routes["classifier"] == "KeywordClassifier"


def test_openapi_describes_the_request(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/generate", "/v1/generate/stream", "/v1/models", "/v1/routes", "/healthz", "/metrics"} <= set(
        schema["paths"]
    )
    request = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert request["width"]["anyOf"][0]["multipleOf"] == 8 and "prompt" in schema["components"]["schemas"][
        "GenerateRequest"]["required"]  # fmt: skip
    acceleration = schema["components"]["schemas"]["AccelerationSettings"]["properties"]
    assert set(acceleration) == set(wb.AccelerationConfig.__dataclass_fields__) - set(SERVER_TOGGLES)
    assert "text/event-stream" in schema["paths"]["/v1/generate/stream"]["post"]["responses"]["200"]["content"]
    assert client.get("/docs").status_code == 200


def test_metrics_are_prometheus_text(client):
    client.post("/v1/generate", json={"prompt": PROMPT, "steps": 2})
    client.post("/v1/generate", json={"prompt": PROMPT, "steps": 0})
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    requests = {(s.labels["path"], s.labels["status"]): s.value for s in families["workbench_requests"].samples
                if s.name == "workbench_requests_total"}  # fmt: skip
    assert requests[("/v1/generate", "200")] >= 1 and requests[("/v1/generate", "422")] >= 1
    assert families["workbench_workers"].samples[0].value == 1
    jobs = {s.labels["outcome"]: s.value for s in families["workbench_jobs"].samples if s.name.endswith("_total")}
    assert jobs["ok"] >= 1


# --- streaming, the queue and faults (a real server) --------------------------------------------------


def _stream_events(url: str, body: dict, stop_after=None):
    """(kind, data) events of one streamed request; ``stop_after(kind, data)`` true closes the connection."""
    events = []
    with httpx.Client(timeout=60) as http, http.stream("POST", f"{url}/v1/generate/stream", json=body) as response:
        assert response.status_code == 200, response.read()
        for kind, data in _sse(response.iter_lines()):
            events.append((kind, data))
            if stop_after and stop_after(kind, data):
                break
    return events


def test_stream_reports_queue_start_progress_and_the_image():
    with running_server(settings()) as (url, _):
        events = _stream_events(url, {"prompt": PROMPT, "model": "toyworld/sd-small", "steps": 5, "seed": 1})
    kinds = [kind for kind, _ in events]
    assert kinds == ["queued", "started", *["progress"] * 5, "complete"]
    assert events[0][1] == {"position": 1}
    assert [d["step"] for k, d in events if k == "progress"] == [1, 2, 3, 4, 5]
    assert events[-2][1]["percent"] == 100.0
    image = events[-1][1]["images"][0]
    assert image["record"]["seed"] == 1 and _png(base64.b64decode(image["png_base64"])).shape == (32, 32, 3)


def test_a_client_that_disconnects_frees_its_worker_within_a_step():
    with running_server(settings()) as (url, app):
        pool = app.state.service.pool
        body = {"prompt": PROMPT, "model": "toyworld/sd-base", "steps": 200}
        events = _stream_events(url, body, stop_after=lambda kind, data: kind == "progress" and data["step"] >= 3)
        _wait_until(lambda: pool.busy == 0)
        assert pool.outcomes["cancelled"] == 1 and pool.outcomes["ok"] == 0
        job = pool.last_cancelled
        assert 3 <= job.steps_done <= job.cancelled_at_step + 1 < 200  # at most one step after the cancel
        assert events[-1][1]["step"] >= 3
        # The freed worker serves the next request at once.
        assert httpx.post(f"{url}/v1/generate", json={"prompt": PROMPT, "steps": 2}, timeout=30).status_code == 200


def test_a_full_queue_answers_429_with_retry_after_and_loses_nothing():
    long = {"prompt": PROMPT, "model": "toyworld/sd-base", "steps": 150}
    with running_server(settings(max_queue=1)) as (url, app):
        pool = app.state.service.pool
        results = {}

        def post(name):
            results[name] = httpx.post(f"{url}/v1/generate", json=long, timeout=60)

        first = threading.Thread(target=post, args=("running",))
        first.start()
        _wait_until(lambda: pool.busy == 1)
        second = threading.Thread(target=post, args=("queued",))
        second.start()
        _wait_until(lambda: pool.queued == 1)
        refused = httpx.post(f"{url}/v1/generate", json=long, timeout=10)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "queue is full" in refused.json()["detail"] and len(refused.headers[TICKET_HEADER]) >= 12
        first.join(60)
        second.join(60)
    assert results["running"].status_code == 200 and results["queued"].status_code == 200


def test_requests_refused_for_a_full_queue_get_in_in_the_order_they_first_came():
    import asyncio

    from workbench.errors import QueueFull
    from workbench.serve.pool import GenerationTask, Job, WorkerPool

    pool = WorkerPool(["cpu"], max_queue=1)  # not started: jobs stay where they are put
    pool.workers[0].job = "busy"  # the one worker is busy: no room beyond the queue
    loop = asyncio.new_event_loop()
    task = GenerationTask(wb.resolve("toyworld/sd-small", PROMPT), PROMPT, [0])

    def job():
        return Job(task, loop, 60)

    pool.submit(job())  # fills the queue
    tickets = []
    for expected in (1, 2):
        with pytest.raises(QueueFull) as refused:
            pool.submit(job())
        assert refused.value.position == expected and refused.value.retry_after > 0
        tickets.append(refused.value.ticket)
    pool._pending.popleft()  # a worker took the queued job: one place is free
    with pytest.raises(QueueFull) as late:  # a newcomer without a ticket waits behind both tickets
        pool.submit(job())
    assert late.value.position == 3
    with pytest.raises(QueueFull) as second:  # the second ticket waits for the first
        pool.submit(job(), tickets[1])
    assert second.value.ticket == tickets[1] and second.value.position == 2
    assert pool.submit(job(), tickets[0]) == 1  # the first ticket gets the place
    pool._pending.popleft()
    assert pool.submit(job(), tickets[1]) == 1  # then the second
    pool._tickets[late.value.ticket] = 0.0  # a ticket not presented in time lapses
    pool._pending.popleft()
    assert pool.submit(job(), late.value.ticket) == 1  # ... and counts as a newcomer: the room is free
    loop.close()


def test_the_remote_model_keeps_its_place_in_line_with_the_ticket():
    long = {"prompt": PROMPT, "model": "toyworld/sd-base", "steps": 60}
    with running_server(settings(max_queue=1)) as (url, app):
        pool = app.state.service.pool
        seen = []
        original = pool.submit

        def submit(job, ticket=None):
            seen.append(ticket)
            return original(job, ticket)

        pool.submit = submit
        busy = [threading.Thread(target=httpx.post, args=(f"{url}/v1/generate",), kwargs={"json": long, "timeout": 60})
                for _ in range(2)]  # fmt: skip
        busy[0].start()
        _wait_until(lambda: pool.busy == 1)
        busy[1].start()
        _wait_until(lambda: pool.queued == 1)
        remote = wb.RemoteModel(url, "toyworld/sd-small")
        (record,) = wb.generate(remote, [PROMPT], wb.GenerationConfig(steps=2), seeds=[0])
        for thread in busy:
            thread.join(60)
    assert record.status == "ok"
    tickets = [t for t in seen[2:] if t is not None]
    assert tickets and len(set(tickets)) == 1  # every retry presented the ticket of the first 429


def test_a_model_that_cannot_load_fails_the_start_not_every_request():
    from workbench.errors import UnknownModelError
    from workbench.serve.pool import WorkerPool

    with pytest.raises(UnknownModelError, match="nope/model"):
        WorkerPool(["cpu"]).start(["nope/model"])


def test_two_workers_take_two_requests_side_by_side():
    with running_server(settings(devices=("cpu", "cpu"), preload=False)) as (url, _):
        started = []

        def stream():
            events = _stream_events(url, {"prompt": PROMPT, "model": "toyworld/sd-small", "steps": 40})
            started.append(next(d["worker"] for k, d in events if k == "started"))

        threads = [threading.Thread(target=stream) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(started) == ["0:cpu", "1:cpu"]


def test_a_worker_whose_generation_raises_is_replaced(client):
    pool = client.app.state.service.pool
    restarts = pool.restarts
    worker = pool.workers[0]
    pipe = worker.cache.get_or_load(("toyworld/sd-small", "cpu", "torch.float32"), lambda: None)

    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    pipe.unet.forward = broken  # a fault inside the pipeline, as a bad driver or kernel would give
    response = client.post("/v1/generate", json={"prompt": PROMPT, "model": "toyworld/sd-small", "steps": 2})
    assert response.status_code == 500
    assert "injected fault" in response.json()["detail"] and "replaced" in response.json()["detail"]
    assert pool.restarts == restarts + 1 and pool.workers[0] is not worker
    # The fresh worker loads a fresh pipeline and serves the same request.
    again = client.post("/v1/generate", json={"prompt": PROMPT, "model": "toyworld/sd-small", "steps": 2})
    assert again.status_code == 200, again.text


def test_a_request_past_the_time_limit_is_stopped_with_504():
    # no model has run here yet, so the server cannot tell in advance that this request is too long
    with TestClient(create_app(settings(timeout_s=0.5, preload=False))) as client:
        start = time.monotonic()
        response = client.post("/v1/generate", json={"prompt": PROMPT, "model": "toyworld/sd-base", "steps": 200})
        assert response.status_code == 504 and "time limit" in response.json()["detail"]
        assert time.monotonic() - start < 5
        pool = client.app.state.service.pool
        _wait_until(lambda: pool.busy == 0)
        assert pool.outcomes["cancelled"] == 1


# --- auth ----------------------------------------------------------------------------------------------


def test_an_api_key_guards_everything_but_healthz():
    key = "a-long-enough-key"
    with TestClient(create_app(settings(api_key=key, preload=False))) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/v1/models", "/v1/routes", "/metrics", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer wrong-key-here"}).status_code == 401, path
            assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200, path
        refused = client.post("/v1/generate", json={"prompt": PROMPT})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {key}"}).json()
        assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    with pytest.raises(ConfigError, match="at least 8"):
        settings(api_key="short")
    with pytest.raises(ConfigError, match=r"max_request_s \(600\) must not exceed timeout_s"):
        settings(max_request_s=600)


def test_failed_api_keys_are_counted_and_never_shown():
    key = "a-long-enough-key"
    with TestClient(create_app(settings(api_key=key, preload=False))) as client:
        for wrong in ("Bearer nope-nope-nope", "Basic abc", ""):
            client.get("/v1/models", headers={"Authorization": wrong} if wrong else {})
        text = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
        assert "workbench_auth_failures_total 3.0" in text and key not in text
    assert key not in repr(settings(api_key=key))


@pytest.mark.parametrize(
    ("host", "key", "insecure", "outcome"),
    [
        ("127.0.0.1", None, False, "ok"),
        ("localhost", None, False, "ok"),
        ("::1", None, False, "ok"),
        ("0.0.0.0", "a-long-enough-key", False, "ok"),
        ("0.0.0.0", None, False, "refused"),
        ("192.168.1.20", None, False, "refused"),
        ("gpu-box.local", None, False, "refused"),
        ("0.0.0.0", None, True, "warned"),
    ],
)
def test_serving_beyond_loopback_needs_a_key_or_an_explicit_insecure_flag(host, key, insecure, outcome, capsys):
    from workbench.serve.settings import check_exposure

    if outcome == "refused":
        with pytest.raises(ConfigError, match=r"refusing to serve .* without an API key.*--insecure-no-auth"):
            check_exposure(host, key, insecure=insecure)
        return
    check_exposure(host, key, insecure=insecure)
    assert ("WARNING: serving 0.0.0.0 without an API key" in capsys.readouterr().err) == (outcome == "warned")


def test_the_serve_command_refuses_an_open_non_loopback_address(capsys, monkeypatch):
    from workbench.cli import main

    monkeypatch.delenv("WORKBENCH_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to serve 0.0.0.0 without an API key" in capsys.readouterr().err


# --- the client: RemoteModel wherever a pipeline goes ----------------------------------------------


@pytest.fixture(scope="module")
def server():
    with running_server(settings(api_key="remote-test-key")) as (url, app):
        yield url, app


def test_remote_model_makes_the_same_images_as_the_local_pipeline(server, monkeypatch):
    url, _ = server
    monkeypatch.setenv("WORKBENCH_API_KEY", "remote-test-key")
    remote = wb.load(f"toyworld/sd-small@{url}")
    assert isinstance(remote, wb.RemoteModel) and remote.model == "toyworld/sd-small"
    config = wb.GenerationConfig(steps=4, batch_size=4)
    seen = []
    records = wb.generate(
        remote, ["a blue square", PROMPT], config, seeds=[0, 1, 2, 9], progress=lambda *a: seen.append(a)
    )
    local = wb.generate(wb.load("toyworld/sd-small"), ["a blue square", PROMPT], config, seeds=[0, 1, 2, 9])
    assert [(r.prompt, r.seed) for r in records] == [(r.prompt, r.seed) for r in local]
    for served, here in zip(records, local, strict=True):
        assert np.array_equal(np.asarray(served.image), np.asarray(here.image))
        assert served.context["server"] == url and served.device == "cpu" and served.config.steps == 4
    assert seen[-1][0] == seen[-1][1]  # progress reached the end
    with wb.accelerate(remote, wb.AccelerationConfig(deepcache_interval=3)):
        accelerated = wb.generate(remote, PROMPT, wb.GenerationConfig(steps=6), seeds=0)[0]
    assert accelerated.acceleration == wb.AccelerationConfig(deepcache_interval=3)
    assert wb.generate(remote, PROMPT, wb.GenerationConfig(steps=6), seeds=0)[0].acceleration is None


def test_remote_model_drives_the_evaluator_the_router_and_the_explorer(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("WORKBENCH_API_KEY", "remote-test-key")
    remote_id = f"toyworld/sd-small@{url}"
    evaluator = wb.ModelEvaluator([PROMPT, "a green triangle"], [remote_id], seeds=[0, 1],
                                  config=wb.GenerationConfig(steps=3), output_dir=tmp_path / "eval",
                                  scorer=wb.CLIPScorer("toyworld/clip"))  # fmt: skip
    rows = evaluator.run()
    assert len(rows) == 4 and (rows["status"] == "ok").all() and rows["clip_score"].notna().all()
    assert set(rows["model_id"]) == {remote_id} and set(rows["server"]) == {url}
    # A route table whose routes name served models: the router classifies here, the server generates.
    table = wb.RouteTable.load("toyworld")
    served = {name: replace(spec, model_id=f"{spec.model_id}@{url}") for name, spec in table.routes.items()}
    router = wb.Router(replace(table, routes=served), "keyword")
    record = router.generate("a photo of a red circle", seeds=5)[0]
    assert record.context["route"] == "photorealistic" and record.context["server"] == url
    # The bare server URL: its own router decides.
    routed = wb.generate(wb.load(url), "a sketch of a small green triangle", seeds=0)[0]
    assert routed.context["route"] and routed.model_id.startswith("toyworld/")
    # An A/B test on the server: same seeds for both arms, scored here.
    tester = wb.PromptABTester(remote_id, wb.CLIPScorer("toyworld/clip"), config=wb.GenerationConfig(steps=3))
    result = tester.run(["a circle", "a square"], {"red": "a red {prompt}", "blue": "a blue {prompt}"}, seeds=[0, 1])
    assert len(result.rows) == 8 and set(result.comparisons["arm"]) == {"blue"}
    # The Explorer, with a served model picked.
    from workbench.widgets import Explorer

    explorer = Explorer(router=wb.Router("toyworld", "keyword"), models=[remote_id], output_dir=tmp_path / "x")
    explorer.prompt.value, explorer.model.value, explorer.steps.value = PROMPT, remote_id, 4
    explorer.generate()
    explorer.job.wait()
    assert explorer.job.error is None and explorer.gallery_items[0].record.context["server"] == url


def test_remote_model_errors_read_like_local_ones(server, monkeypatch):
    # The server's own refusals through the client (tests/test_client.py maps every kind without a server).
    url, app = server
    monkeypatch.setenv("WORKBENCH_API_KEY", "remote-test-key")
    with pytest.raises(ConfigError, match="model: unknown model 'nope/nope'"):
        wb.generate(wb.RemoteModel(url, "nope/nope"), PROMPT)
    with pytest.raises(ConfigError, match="API key"):
        wb.RemoteModel(url, "toyworld/sd-small", api_key="not-the-key").models()
    # Cancel mid-request: the client stops, and so does the server's worker.
    cancel = threading.Event()
    pool = app.state.service.pool
    with pytest.raises(GenerationCancelled):
        wb.generate(wb.RemoteModel(url, "toyworld/sd-base"), PROMPT, wb.GenerationConfig(steps=200),
                    progress=lambda step, total: step >= 2 and cancel.set(), cancel=cancel)  # fmt: skip
    _wait_until(lambda: pool.busy == 0)
    assert pool.last_cancelled.steps_done < 200


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("turbo=1", r"unknown acceleration toggle\(s\) \['turbo'\]"),
        ("compile", r"--acceleration takes NAME=VALUE pairs"),
        ("tome_ratio=2", r"tome_ratio"),
    ],
)
def test_the_serve_command_refuses_bad_server_toggles_before_starting(value, message, capsys):
    from workbench.cli import main

    assert main(["serve", "--acceleration", value, "--port", "1"]) == 2
    assert re.search(message, capsys.readouterr().err)
