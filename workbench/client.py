"""``RemoteModel``: a model on a ``workbench serve`` server, an ``ImageBackend`` usable wherever a local pipeline is.

``wb.load("toyworld/sd-base@http://gpu-box:8000")`` gives one (so does the bare server URL: its router
then picks the model for each prompt), and so every part of the workbench that loads models by id, the
evaluator, the router, the A/B tester and the widgets, can generate on a server. ``wb.generate(remote,
...)`` streams each request, so progress and cancel work as they do locally; ``wb.accelerate(remote,
config)`` sends the toggles with each request made in the block. This module needs only httpx, not the
server's dependencies; the constants both sides share live here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from PIL import Image

from workbench.backends import is_cancelled
from workbench.config import AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError, GenerationCancelled, RemoteError
from workbench.records import GenerationRecord

if TYPE_CHECKING:
    import httpx

__all__ = [
    "API_KEY_ENV",
    "MAX_IMAGES",
    "REMOTE_ID",
    "RETRY_MS_HEADER",
    "SERVER_TOGGLES",
    "TICKET_HEADER",
    "RemoteModel",
    "is_remote_id",
    "retry_after",
]

API_KEY_ENV = "WORKBENCH_API_KEY"  # where the server and this client find the API key when not given one
TICKET_HEADER = "X-Workbench-Ticket"  # a 429's place in line, sent back with the retry
RETRY_MS_HEADER = (
    "X-Workbench-Retry-After-Ms"  # a 429's Retry-After in milliseconds (the standard one is whole seconds)
)
# Toggles that are the server's to decide (slow the first time, or process-wide): set when it starts
# (workbench serve --acceleration), for every request; a request may not set them.
SERVER_TOGGLES = ("compile", "compile_mode", "dtype", "cpu_offload", "channels_last")

REMOTE_ID = re.compile(r"^(?:(?P<model>[^@\s]+)@)?(?P<url>https?://[^\s@]+)$")
MAX_IMAGES = 8  # images per request: the API's num_images limit


def is_remote_id(model_id: object) -> bool:
    """True for ``model@http(s)://host:port`` and for a bare ``http(s)://`` server URL."""
    return isinstance(model_id, str) and REMOTE_ID.match(model_id) is not None


def _requests(jobs: Sequence[tuple[str, int]], size: int) -> list[tuple[str, list[int]]]:
    """Jobs grouped into requests: one prompt with a run of consecutive seeds, at most ``size`` long."""
    requests: list[tuple[str, list[int]]] = []
    for prompt, seed in jobs:
        if requests and requests[-1][0] == prompt and len(requests[-1][1]) < size and seed == requests[-1][1][-1] + 1:
            requests[-1][1].append(seed)
        else:
            requests.append((prompt, [seed]))
    return requests


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from a Server-Sent Events stream; comments (pings) skipped."""
    kind, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class RemoteModel:
    """Generation on the server at ``url``: with ``model`` (a model id it serves), with ``route`` (one of
    its routes), or with neither (its router decides). ``api_key`` defaults to $WORKBENCH_API_KEY.
    ``transport`` (an ``httpx.BaseTransport``, e.g. ``httpx.MockTransport``) carries the requests instead of
    the network."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        route: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ):
        if not isinstance(url, str) or not re.match(r"^https?://[^\s@]+$", url):
            raise ConfigError(f"url must be an http:// or https:// server address, got {url!r}")
        if model is not None and route is not None:
            raise ConfigError("give model or route, not both (neither: the server's router decides)")
        self.url = url.rstrip("/")
        self.model, self.route = model, route
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout_s = timeout_s
        self.transport = transport
        self.acceleration: AccelerationConfig | None = None  # set by workbench.accelerate for its block

    @classmethod
    def from_id(cls, model_id: str, **kwargs: Any) -> RemoteModel:
        """The model for ``model@http://host:port`` (or a bare server URL)."""
        match = REMOTE_ID.match(model_id) if isinstance(model_id, str) else None
        if match is None:
            raise ConfigError(f"a remote model id is 'model@http://host:port' or a server URL, got {model_id!r}")
        return cls(match["url"], match["model"], **kwargs)

    @classmethod
    def load(cls, model_id: str, device=None, dtype=None) -> RemoteModel:
        """The model-id registry's loader for remote ids: the server chooses device and dtype."""
        return cls.from_id(model_id)

    @property
    def workbench_model_id(self) -> str:
        return f"{self.model}@{self.url}" if self.model else self.url

    def __repr__(self) -> str:
        target = f"model={self.model!r}" if self.model else f"route={self.route!r}" if self.route else "routed"
        return f"RemoteModel({self.url!r}, {target})"

    # --- the server ------------------------------------------------------------------------------

    def _client(self):
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(self.timeout_s, connect=10)
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=self.transport)

    def _get(self, path: str) -> Any:
        import httpx

        try:
            with self._client() as client:
                response = client.get(path)
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach {self.url}: {error}") from None
        _raise_for_status(response, self.url)
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._get("/healthz")

    def models(self) -> list[dict[str, Any]]:
        return self._get("/v1/models")

    def routes(self) -> dict[str, Any]:
        return self._get("/v1/routes")

    @contextmanager
    def accelerated(self, config: AccelerationConfig) -> Iterator[AccelerationConfig]:
        """Send ``config`` with each request made in the block (what ``workbench.accelerate`` does here).
        The server-owned toggles (``SERVER_TOGGLES``) are refused: the server sets them for every request."""
        owned = sorted(set(config.changes()) & set(SERVER_TOGGLES))
        if owned:
            raise ConfigError(
                f"{', '.join(owned)} cannot be asked of {self.url} per request: the server sets "
                f"{', '.join(SERVER_TOGGLES)} for every request when it starts (workbench serve --acceleration)",
                owned[0],
            )
        if self.acceleration is not None:
            raise ConfigError(f"this model is already accelerated ({self.acceleration.label()}); nest no blocks")
        self.acceleration = config
        try:
            yield config
        finally:
            self.acceleration = None

    # --- generating ------------------------------------------------------------------------------

    def _body(self, prompt: str, config: GenerationConfig | None, seeds: list[int]) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": prompt, "seed": seeds[0], "num_images": len(seeds)}
        body |= {"model": self.model} if self.model else {"route": self.route} if self.route else {}
        if config is not None:  # None: the route's (or the model's) own settings
            body |= {k: v for k, v in config.to_dict().items() if v is not None and k != "batch_size"}
        if self.acceleration is not None:
            body["acceleration"] = self.acceleration.changes()
        return body

    def make_images(
        self,
        jobs: list[tuple[str, int]],
        config: GenerationConfig | None,
        *,
        progress=None,
        cancel=None,
        context: dict[str, Any] | None = None,
    ) -> list[GenerationRecord]:
        """What ``workbench.generate`` does on the server: one record per (prompt, seed) job, in order.
        A prompt's consecutive seeds go in one request (up to ``config.batch_size``). Records carry the server's model
        id and device, and ``server`` (this URL) in their context."""
        size = min(config.batch_size if config else 1, MAX_IMAGES)
        requests = _requests(jobs, size)
        records: list = []
        with self._client() as client:
            for done, (prompt, run) in enumerate(requests):

                def step(step: int, total: int, done=done) -> None:
                    if progress is not None:
                        progress(done * total + step, len(requests) * total)

                if is_cancelled(cancel):
                    raise GenerationCancelled(records)
                images = self._stream(client, self._body(prompt, config, run), step, cancel, records)
                records += [self._record(image, context) for image in images]
        return records

    def _stream(self, client, body: dict[str, Any], step, cancel, records: list) -> list[dict[str, Any]]:
        """One streamed request's images; waits and tries again while the server's queue is full."""
        import httpx

        deadline = time.monotonic() + self.timeout_s
        ticket: dict[str, str] = {}  # after a 429: the request's place in line, sent with each retry
        while True:
            try:
                with client.stream("POST", "/v1/generate/stream", json=body, headers=ticket) as response:
                    if response.status_code == 429 and time.monotonic() < deadline:
                        if TICKET_HEADER in response.headers:
                            ticket = {TICKET_HEADER: response.headers[TICKET_HEADER]}
                        time.sleep(min(retry_after(response.headers), 10))
                        continue
                    if response.status_code != 200:
                        response.read()
                        _raise_for_status(response, self.url)
                    for kind, data in _sse(response.iter_lines()):
                        if kind == "progress":
                            step(data["step"], data["total"])
                        elif kind == "complete":
                            return data["images"]
                        elif kind == "error":
                            _raise_error(data["status"], data["detail"], self.url)
                        if is_cancelled(cancel):  # leaving the block closes the connection: the server stops
                            raise GenerationCancelled(records)
            except httpx.HTTPError as error:
                raise RemoteError(f"lost the connection to {self.url}: {error}") from None
            raise RemoteError(f"{self.url} closed the stream before the image was complete")

    def _record(self, image: dict[str, Any], context: dict[str, Any] | None) -> GenerationRecord:
        with Image.open(io.BytesIO(base64.b64decode(image["png_base64"]))) as png:
            pixels = png.convert("RGB")
        record = GenerationRecord.from_dict(image["record"], pixels)
        record.context = {**record.context, **(context or {}), "server": self.url}
        return record


def retry_after(headers) -> float:
    """Seconds a 429 asks to wait: the server's milliseconds when given, else Retry-After (1 s if absent)."""
    if RETRY_MS_HEADER in headers:
        return int(headers[RETRY_MS_HEADER]) / 1000
    return float(headers.get("Retry-After", 1))


def _raise_for_status(response, url: str) -> None:
    if response.status_code == 200:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    _raise_error(response.status_code, detail, url)


def _raise_error(status: int, detail: Any, url: str) -> None:
    """A server's refusal as the error a local call would raise: bad settings are ``ConfigError``s,
    a failed generation a ``RuntimeError`` (as a pipeline's own failure would be)."""
    if isinstance(detail, list):  # FastAPI's validation errors: name each field
        fields = [".".join(str(part) for part in e.get("loc", [])[1:]) for e in detail]
        detail = "; ".join(
            f"{f}: {e.get('msg')}" if f else str(e.get("msg")) for f, e in zip(fields, detail, strict=True)
        )
    if status == 422:
        raise ConfigError(f"{url} refused the request: {detail}")
    if status in (401, 403):
        raise ConfigError(f"{url} refused the API key ({detail}); set it with api_key= or $WORKBENCH_API_KEY")
    if status >= 500:
        raise RuntimeError(f"{url} failed to generate ({status}): {detail}")
    raise RemoteError(f"{url} answered {status}: {detail}")
