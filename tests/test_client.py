"""RemoteModel on its own: the requests it builds, retries, errors, the event stream and the answers it reads.

Every test talks to an ``httpx.MockTransport`` playing the server (tests/test_serve.py runs the client
against the real one).
"""

import base64
import io
import json
import threading

import httpx
import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.client import MAX_IMAGES, RETRY_MS_HEADER, SERVER_TOGGLES, TICKET_HEADER
from workbench.errors import ConfigError, GenerationCancelled, RemoteError
from workbench.records import GenerationRecord, TokenBudget

URL = "http://gpu-box:8000"
PROMPT = "a red circle in the centre, on a white background"
MODEL = "toyworld/sd-small"


def _image(prompt: str, seed: int) -> dict:
    """One image as the server sends it: a PNG (its red channel the seed) and its record."""
    image = Image.new("RGB", (8, 8), (seed, 0, 0))
    record = GenerationRecord(
        image=image, prompt=prompt, seed=seed, model_id=MODEL, config=wb.GenerationConfig(steps=3, width=8, height=8),
        scheduler_class="DDIMScheduler", device="cuda:0", dtype="float16", latency_s=0.1, peak_mem_mb=10.0,
        mem_kind="cuda_allocated", status="ok", tokens=TokenBudget(12, 77, ""), context={"worker": "0:cuda:0"},
    )  # fmt: skip
    png = io.BytesIO()
    image.save(png, format="PNG")
    return {"png_base64": base64.b64encode(png.getvalue()).decode(), "record": record.to_dict()}


class Events(httpx.SyncByteStream):
    """A Server-Sent Events body that counts the events read and notes whether the client closed it."""

    def __init__(self, events: list[tuple[str, dict]]):
        self.events, self.sent, self.closed = events, 0, False

    def __iter__(self):
        yield b": ping\n\n"
        for kind, data in self.events:
            self.sent += 1
            yield f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def close(self) -> None:
        self.closed = True


def _generation(body: dict, steps: int = 3) -> Events:
    """The events of a request that succeeds: queued, started, each step, then its images."""
    progress = [("progress", {"step": s, "total": steps, "percent": 100 * s / steps}) for s in range(1, steps + 1)]
    images = [_image(body["prompt"], body["seed"] + i) for i in range(body["num_images"])]
    return Events([("queued", {"position": 1}), ("started", {"worker": "0:cuda:0"}), *progress,
                   ("complete", {"images": images, "worker": "0:cuda:0", "queued_s": 0.0})])  # fmt: skip


class FakeServer:
    """The server's part: ``answer(request)`` gives each response (by default a generation); requests are kept."""

    def __init__(self, answer=None):
        self.answer = answer or (lambda request: httpx.Response(200, stream=_generation(json.loads(request.content))))
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def model(self, model: str | None = MODEL, **kwargs) -> wb.RemoteModel:
        return wb.RemoteModel(URL, model, transport=httpx.MockTransport(self.handle), **kwargs)

    @property
    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


# --- requests -------------------------------------------------------------------------------------------


def test_a_request_carries_the_prompt_seeds_settings_toggles_and_key(monkeypatch):
    monkeypatch.delenv("WORKBENCH_API_KEY", raising=False)
    server = FakeServer()
    remote = server.model(api_key="a-long-enough-key")
    config = wb.GenerationConfig(steps=3, guidance=4.0, batch_size=2)
    with wb.accelerate(remote, wb.AccelerationConfig(tome_ratio=0.5)):
        wb.generate(remote, PROMPT, config, seeds=[4, 5])
    (request,) = server.requests
    assert (request.method, request.url) == ("POST", httpx.URL(f"{URL}/v1/generate/stream"))
    assert request.headers["Authorization"] == "Bearer a-long-enough-key" and TICKET_HEADER not in request.headers
    assert server.bodies == [{"prompt": PROMPT, "seed": 4, "num_images": 2, "model": MODEL, "steps": 3,
                              "guidance": 4.0, "acceleration": {"tome_ratio": 0.5}}]  # fmt: skip
    wb.generate(server.model(None, route="fast_preview"), PROMPT, seeds=0)
    wb.generate(server.model(None), PROMPT, seeds=0)
    assert server.bodies[1:] == [{"prompt": PROMPT, "seed": 0, "num_images": 1, "route": "fast_preview"},
                                 {"prompt": PROMPT, "seed": 0, "num_images": 1}]  # fmt: skip
    assert "Authorization" not in server.requests[-1].headers  # no key given, none in the environment


@pytest.mark.parametrize(
    ("batch_size", "seeds", "runs"),
    [
        (20, list(range(20)), [list(range(8)), list(range(8, 16)), list(range(16, 20))]),
        (3, [0, 1, 2, 3], [[0, 1, 2], [3]]),
        (8, [0, 1, 5, 6, 9], [[0, 1], [5, 6], [9]]),  # a run of seeds stops at a gap
        (1, [0, 1], [[0], [1]]),
    ],
)
def test_consecutive_seeds_go_in_requests_of_at_most_max_images(batch_size, seeds, runs):
    assert MAX_IMAGES == 8
    server = FakeServer()
    config = wb.GenerationConfig(steps=3, batch_size=batch_size)
    records = wb.generate(server.model(), [PROMPT, "a blue square"], config, seeds=seeds)
    sent = [(b["prompt"], list(range(b["seed"], b["seed"] + b["num_images"]))) for b in server.bodies]
    assert sent == [(PROMPT, run) for run in runs] + [("a blue square", run) for run in runs]
    assert [(r.prompt, r.seed) for r in records] == [(p, s) for p in (PROMPT, "a blue square") for s in seeds]


def test_a_full_queue_is_retried_with_the_ticket_of_the_first_429(monkeypatch):
    waits = []
    monkeypatch.setattr("workbench.client.time.sleep", waits.append)
    ticket = {TICKET_HEADER: "ticket-1", RETRY_MS_HEADER: "250"}
    full = [httpx.Response(429, json={"detail": "the queue is full"}, headers=headers)
            for headers in (ticket, {"Retry-After": "2"})]  # fmt: skip
    server = FakeServer(lambda request: full.pop(0) if full else FakeServer().answer(request))
    (record,) = wb.generate(server.model(), PROMPT, wb.GenerationConfig(steps=3), seeds=7)
    assert record.seed == 7 and len(server.requests) == 3
    assert [r.headers.get(TICKET_HEADER) for r in server.requests] == [None, "ticket-1", "ticket-1"]
    assert waits == [0.25, 2.0]  # the milliseconds when given, else Retry-After
    assert server.bodies[0] == server.bodies[2]  # the same request, again


def test_a_full_queue_past_the_time_limit_is_an_error():
    server = FakeServer(lambda request: httpx.Response(429, json={"detail": "the queue is full"}))
    with pytest.raises(RemoteError, match="answered 429: the queue is full"):
        wb.generate(server.model(timeout_s=0), PROMPT, seeds=0)
    assert len(server.requests) == 1


# --- errors -------------------------------------------------------------------------------------------


def test_refusals_read_like_local_errors():
    unknown = [{"loc": ["body", "model"], "msg": "Value error, unknown model 'nope/nope'", "type": "value_error"},
               {"loc": ["body", "steps"], "msg": "Input should be greater than 0", "type": "greater_than"}]  # fmt: skip
    answers = {
        422: (ConfigError, r"refused the request: model: Value error, unknown model 'nope/nope'; steps: Input should"),
        401: (ConfigError, r"refused the API key \(Not authenticated\); set it with api_key= or \$WORKBENCH_API_KEY"),
        500: (RuntimeError, r"failed to generate \(500\): internal error: worker fault"),
        404: (RemoteError, r"answered 404: Not Found"),
    }
    details = {422: unknown, 401: "Not authenticated", 500: "internal error: worker fault", 404: "Not Found"}
    for status, (error, message) in answers.items():
        server = FakeServer(lambda request, status=status: httpx.Response(status, json={"detail": details[status]}))
        with pytest.raises(error, match=message):
            wb.generate(server.model(), PROMPT, seeds=0)
        with pytest.raises(error, match=message):
            server.model().models()
    not_json = FakeServer(lambda request: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(RuntimeError, match=r"\(502\): Bad Gateway"):
        not_json.model().health()


def test_an_error_event_and_a_stream_cut_short_are_errors():
    timed_out = Events([("started", {}), ("error", {"status": 504, "detail": "stopped at the time limit of 5 s"})])
    cut = Events([("started", {}), ("progress", {"step": 1, "total": 3, "percent": 33.3})])
    for stream, error, message in [
        (timed_out, RuntimeError, r"failed to generate \(504\): stopped at the time limit"),
        (cut, RemoteError, "closed the stream before the image was complete"),
    ]:
        server = FakeServer(lambda request, stream=stream: httpx.Response(200, stream=stream))
        with pytest.raises(error, match=message):
            wb.generate(server.model(), PROMPT, seeds=0)


def test_an_unreachable_server_is_a_remote_error():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    remote = wb.RemoteModel(URL, MODEL, transport=httpx.MockTransport(refuse))
    with pytest.raises(RemoteError, match=f"cannot reach {URL}: connection refused"):
        remote.health()
    with pytest.raises(RemoteError, match=f"lost the connection to {URL}: connection refused"):
        wb.generate(remote, PROMPT, seeds=0)


def test_bad_addresses_and_targets_are_refused():
    for url in ("gpu-box:8000", "ftp://gpu-box", "http://a b", 8000):
        with pytest.raises(ConfigError, match="http:// or https://"):
            wb.RemoteModel(url)
    with pytest.raises(ConfigError, match="give model or route, not both"):
        wb.RemoteModel(URL, MODEL, route="fast_preview")
    with pytest.raises(ConfigError, match="a remote model id is 'model@http://host:port'"):
        wb.RemoteModel.from_id("toyworld/sd-small")


def test_server_owned_toggles_are_refused_with_the_reason_before_sending():
    server = FakeServer()
    remote = server.model()
    for toggle, value in {"compile": True, "dtype": "bfloat16", "cpu_offload": True, "channels_last": True}.items():
        message = rf"{toggle} cannot be asked of .* per request: the server sets"
        owned = wb.AccelerationConfig(**{toggle: value})
        with pytest.raises(ConfigError, match=message) as refused, wb.accelerate(remote, owned):
            pass
        assert refused.value.field == toggle and toggle in SERVER_TOGGLES
    assert remote.acceleration is None and not server.requests
    with wb.accelerate(remote, wb.AccelerationConfig(tome_ratio=0.5)) as config:
        assert remote._body(PROMPT, None, [0])["acceleration"] == {"tome_ratio": 0.5} and config.tome_ratio == 0.5
        with pytest.raises(ConfigError, match="already accelerated"), wb.accelerate(remote, config):
            pass
    assert "acceleration" not in remote._body(PROMPT, None, [0])


# --- the stream: progress and cancel -------------------------------------------------------------------


def test_progress_counts_the_steps_of_every_request():
    server = FakeServer()
    seen = []
    wb.generate(server.model(), [PROMPT, "a blue square"], wb.GenerationConfig(steps=3), seeds=0,
                progress=lambda step, total: seen.append((step, total)))  # fmt: skip
    assert seen == [(step, 6) for step in range(1, 7)]


def test_cancel_closes_the_stream_mid_request():
    streams = []

    def answer(request):
        streams.append(_generation(json.loads(request.content), steps=50))
        return httpx.Response(200, stream=streams[-1])

    cancel = threading.Event()
    with pytest.raises(GenerationCancelled) as cancelled:
        wb.generate(FakeServer(answer).model(), [PROMPT, "a blue square"], wb.GenerationConfig(steps=50), seeds=0,
                    progress=lambda step, total: step >= 2 and cancel.set(), cancel=cancel)  # fmt: skip
    (stream,) = streams  # the second request was never sent
    assert stream.closed and stream.sent == 4  # queued, started, steps 1 and 2: nothing read after the cancel
    assert cancelled.value.records == []


def test_cancel_between_requests_keeps_the_finished_images():
    streams = []

    def answer(request):
        streams.append(_generation(json.loads(request.content)))
        return httpx.Response(200, stream=streams[-1])

    def cancel() -> bool:  # once the first request's images have come
        return bool(streams) and streams[0].sent == len(streams[0].events)

    server = FakeServer(answer)
    with pytest.raises(GenerationCancelled) as cancelled:
        config = wb.GenerationConfig(steps=3, batch_size=2)
        wb.generate(server.model(), [PROMPT, "a blue square"], config, seeds=[0, 1], cancel=cancel)
    assert len(server.requests) == 1
    assert [(r.prompt, r.seed) for r in cancelled.value.records] == [(PROMPT, 0), (PROMPT, 1)]


# --- answers --------------------------------------------------------------------------------------------


def test_images_and_records_are_read_from_the_answer():
    server = FakeServer()
    remote = server.model()
    records = wb.generate(remote, PROMPT, wb.GenerationConfig(steps=3, batch_size=2), seeds=[3, 4],
                          context={"arm": "red"})  # fmt: skip
    for record, seed in zip(records, [3, 4], strict=True):
        assert record.image.mode == "RGB" and np.asarray(record.image)[0, 0].tolist() == [seed, 0, 0]
        assert (record.seed, record.model_id, record.device, record.config.steps) == (seed, MODEL, "cuda:0", 3)
        assert record.context == {"worker": "0:cuda:0", "arm": "red", "server": URL}
        assert record.tokens == TokenBudget(12, 77, "") and record.status == "ok"


def test_the_listing_endpoints_answer_their_json():
    answers = {"/healthz": {"status": "ok"}, "/v1/models": [{"id": MODEL}], "/v1/routes": {"routes": []}}
    server = FakeServer(lambda request: httpx.Response(200, json=answers[request.url.path]))
    remote = server.model()
    assert (remote.health(), remote.models(), remote.routes()) == tuple(answers.values())
    assert [r.method for r in server.requests] == ["GET"] * 3
