"""The HTTP service: FastAPI in front of a worker pool, progress streamed as Server-Sent Events.

``create_app(ServeSettings(...))`` builds the app; the router and the models load in its lifespan
(never at import), so ``/healthz`` answers only once the server can generate. A request goes::

    validate (pydantic, 422 naming the field) -> plan: model and settings (the request's model, its
    route, or the router's choice; refused with 422 when the worker could not finish it within the time
    limit) -> queue (429 with Retry-After and a ticket, the request's place in line, when full) -> a
    worker generates -> PNG or JSON; or, on /v1/generate/stream, queued / started / progress / complete /
    error events

A client that goes away, or a request past the time limit, stops its generation at the next step. Bad
input never gets a 5xx: a 5xx is the server's own failure (a worker fault, the time limit). Toggles that
are slow or process-wide (``SERVER_TOGGLES``) are the server's: set at start-up for every request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette import EventSourceResponse

from workbench.client import RETRY_MS_HEADER, TICKET_HEADER
from workbench.config import AccelerationConfig
from workbench.errors import QueueFull
from workbench.generation import MAX_SEED
from workbench.plan import resolve
from workbench.serve.metrics import ServerMetrics
from workbench.serve.pool import TERMINAL, Event, GenerationTask, Job, WorkerPool
from workbench.serve.schemas import GenerateRequest, GenerateResponse, ModelInfo, RouteInfo, RouteTableInfo
from workbench.serve.settings import ServeSettings

__all__ = ["MAX_BODY_BYTES", "create_app"]


MAX_BODY_BYTES = 64 * 1024  # a request is a prompt and settings: a few kB at most


def _invalid(field_name: str | None, message: str, value: Any = None) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the request field that is wrong."""
    loc = ("body", field_name) if field_name else ("body",)
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message, "input": value}])


class Service:
    """What the endpoints share: the settings, the router, the served models and the worker pool."""

    def __init__(self, settings: ServeSettings, router, models: list[str], pool: WorkerPool):
        self.settings, self.router, self.models, self.pool = settings, router, models, pool

    async def plan(self, body: GenerateRequest) -> GenerationTask:
        """The model, settings, seeds and recorded context for a request (422 for a name that is not served)."""
        table = self.router.table
        if body.model is not None:
            if body.model not in self.models:
                raise _invalid("model", f"unknown model {body.model!r}; this server has {self.models}", body.model)
            target = body.model
        elif body.route is not None:
            if body.route not in table.routes:
                raise _invalid("route", f"unknown route {body.route!r}; routes: {list(table.routes)}", body.route)
            target = table[body.route]
        else:
            target = self.router
        seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
        if seed + body.num_images - 1 > MAX_SEED:
            raise _invalid("seed", f"seed + num_images - 1 must be at most {MAX_SEED}", seed)
        server = self.settings.acceleration.to_dict() if self.settings.acceleration else {}
        requested = body.acceleration.model_dump(exclude_unset=True) if body.acceleration else {}
        acceleration = AccelerationConfig(**(server | requested)) if server or requested else None
        plan = await asyncio.to_thread(resolve, target, body.prompt, acceleration=acceleration)
        plan = replace(plan, config=plan.config.replace(**body.overrides(), batch_size=body.num_images))
        seconds, limit = self.pool.predicted_seconds(plan), self.settings.max_request_s or self.settings.timeout_s
        if seconds is not None and seconds > limit:
            raise _invalid(
                "steps",
                f"this request needs about {seconds:.1f} s on this server's workers ({plan.model_id} at "
                f"{plan.config.width or 'its'} x {plan.config.height or 'default'} px, {plan.config.steps} steps, "
                f"{body.num_images} image(s)), past its limit of {limit:g} s per request: lower steps, "
                "width x height or num_images",
                plan.config.steps,
            )
        seeds = [seed + i for i in range(body.num_images)]
        return GenerationTask(plan, body.prompt, seeds, optimize=body.optimize, style=body.style)

    async def submit(self, body: GenerateRequest, ticket: str | None = None) -> Job:
        """Queue the request; a 429 when the queue is full carries a ticket (``X-Workbench-Ticket``) that a
        retry presents to keep its place in line."""
        job = Job(await self.plan(body), asyncio.get_running_loop(), self.settings.timeout_s)
        try:
            self.pool.submit(job, ticket)
        except QueueFull as full:
            headers = {
                "Retry-After": str(math.ceil(full.retry_after)),
                RETRY_MS_HEADER: str(round(1000 * full.retry_after)),
            }
            headers |= {TICKET_HEADER: full.ticket} if full.ticket else {}
            raise HTTPException(429, str(full), headers=headers) from None
        return job

    async def events(self, job: Job, request: Request, *, watch_disconnect: bool) -> AsyncIterator[Event]:
        """The job's events up to its last one; the job is cancelled when the reader stops, when the client
        disconnects (checked here when ``watch_disconnect``, else by the SSE response) or at the deadline."""
        try:
            while True:
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    limit = self.settings.timeout_s
                    yield Event("error", {"status": 504, "detail": f"stopped at the server's time limit of {limit} s"})
                    return
                try:
                    wait = min(remaining, 0.25) if watch_disconnect else remaining
                    event = await asyncio.wait_for(job.events.get(), wait)
                except asyncio.TimeoutError:
                    if watch_disconnect and await request.is_disconnected():
                        return
                    continue
                yield event
                if event.kind in TERMINAL:
                    return
        finally:
            self.pool.cancel(job)


def _writable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can carry it, and short: non-finite numbers as text, long text and anything deeper
    than 20 levels cut (an error never echoes a huge input back)."""
    if depth > 20:
        return "..."
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) > 200:
        return f"{value[:200]}... ({len(value) - 200} more characters)"
    if isinstance(value, dict):
        return {str(k): _writable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(v, depth + 1) for v in value]
    return value


def _service(request: Request) -> Service:
    return request.app.state.service


class _RequestMetrics:
    """ASGI middleware counting requests by path and status (a pure ASGI one, so streaming and disconnects
    pass through untouched)."""

    def __init__(self, app, metrics: ServerMetrics, paths: set[str]):
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope["path"] in self.paths else "other"
            self.metrics.request(path, status, time.perf_counter() - start)


class _BodyLimit:
    """ASGI middleware answering 413 to a request body over ``limit`` bytes, declared or as it arrives (the
    body is read here, at most ``limit`` bytes, then handed on)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before its body arrived
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._refuse(send)
        handed = False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnects, as the app expects

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"the request body is over the server's limit of {self.limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_Credentials = Annotated[
    HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False, description="the server's API key"))
]

_Ticket = Annotated[
    str | None,
    Header(alias=TICKET_HEADER, max_length=64, description="the ticket of an earlier 429: keeps its place in line"),
]

_ERRORS = {
    400: {"description": "the body is not readable JSON (invalid UTF-8, nested too deep)"},
    413: {"description": f"the request body is over the server's limit of {MAX_BODY_BYTES} bytes"},
    422: {
        "description": "a field has a value that is not allowed, or the request could not finish within the "
        "server's time limit; the message names the field"
    },
    429: {
        "description": f"the queue is full; retry after the Retry-After header's seconds ({RETRY_MS_HEADER}: "
        f"the same in milliseconds, more precisely), sending the {TICKET_HEADER} header it carries to keep this "
        "request's place in line"
    },
    504: {"description": "the generation passed the server's time limit and was stopped"},
}


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app for ``settings`` (see the module docstring); run it with uvicorn."""
    settings = settings or ServeSettings()
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from workbench.routing import Router

        router = await asyncio.to_thread(Router, settings.routes, settings.classifier)
        models = settings.served_models(router.table)
        pool = WorkerPool(list(settings.devices), max_queue=settings.max_queue, metrics=metrics)
        metrics.watch(pool)
        await asyncio.to_thread(pool.start, models if settings.preload else (), settings.acceleration)
        app.state.service = Service(settings, router, models, pool)
        try:
            yield
        finally:
            await asyncio.to_thread(pool.close)

    async def require_key(credentials: _Credentials) -> None:
        given = (credentials.credentials if credentials else "").encode()
        if not secrets.compare_digest(given, settings.api_key.encode()):
            metrics.auth_failed()
            raise HTTPException(
                401, "this server needs its API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip

    guarded = [Depends(require_key)] if settings.api_key else []
    app = FastAPI(
        title="t2i-workbench",
        summary="Text-to-image generation with streamed progress, on a pool of device workers.",
        lifespan=lifespan,
        docs_url=None,
        openapi_url=None,
    )

    @app.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guarded)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="t2i-workbench API")

    @app.get("/healthz", tags=["service"], summary="Ready: the workers, what they hold, and the queue")
    async def healthz(request: Request) -> dict[str, Any]:
        return {"status": "ok", **_service(request).pool.state()}

    @app.get("/metrics", tags=["service"], dependencies=guarded, summary="Prometheus metrics (text format)",
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})  # fmt: skip
    async def prometheus(request: Request) -> Response:
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", tags=["generation"], dependencies=guarded, summary="The models requests may name")
    async def models(request: Request) -> list[ModelInfo]:
        from workbench.models import TOYWORLD_MODELS

        service = _service(request)
        workers = service.pool.workers
        return [
            ModelInfo(
                id=m,
                description=TOYWORLD_MODELS.get(m, ""),
                loaded_on=sorted({w.device for w in workers if m in w.loaded_models}),
            )
            for m in service.models
        ]

    @app.get("/v1/routes", tags=["generation"], dependencies=guarded, summary="The route table and classifier")
    async def routes(request: Request) -> RouteTableInfo:
        router = _service(request).router
        table = router.table
        return RouteTableInfo(
            source=os.path.basename(table.source), threshold=router.threshold, fallback=table.fallback,
            preview=table.preview, classifier=type(router.classifier).__name__,
            routes=[RouteInfo(name=s.name, model_id=s.model_id, description=s.description, examples=list(s.examples),
                              settings={k: v for k, v in s.config.to_dict().items() if v is not None})
                    for s in table.routes.values()],
        )  # fmt: skip

    @app.post(
        "/v1/generate", tags=["generation"], dependencies=guarded, response_model=GenerateResponse,
        summary="Generate: a PNG (settings in its metadata), or JSON with base64 PNGs and their records",
        responses={200: {"content": {"image/png": {}}}, **_ERRORS},
    )  # fmt: skip
    async def generate(body: GenerateRequest, request: Request, ticket: _Ticket = None):
        if body.response_format == "png" and body.num_images > 1:
            message = 'num_images > 1 needs response_format "json" (a PNG holds one image)'
            raise _invalid("num_images", message, body.num_images)
        service = _service(request)
        job = await service.submit(body, ticket)
        last = None
        async for event in service.events(job, request, watch_disconnect=True):
            last = event
        if last is None or last.kind not in TERMINAL:
            return Response(status_code=499)  # the client went away; no one reads this
        if last.kind == "error":
            return JSONResponse({"detail": last.data["detail"]}, status_code=last.data["status"])
        if body.response_format == "json":
            return GenerateResponse(**last.data)
        image = last.data["images"][0]
        record = image["record"]
        headers = {"X-Workbench-Seed": str(record["seed"]), "X-Workbench-Model": record["model_id"],
                   "X-Workbench-Worker": last.data["worker"]}  # fmt: skip
        return Response(base64.b64decode(image["png_base64"]), media_type="image/png", headers=headers)

    @app.post(
        "/v1/generate/stream", tags=["generation"], dependencies=guarded, response_class=EventSourceResponse,
        summary="Generate with progress as Server-Sent Events: queued (position), started, progress "
        "(step, total, percent), then complete (as POST /v1/generate's JSON) or error (status, detail)",
        responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    )  # fmt: skip
    async def generate_stream(body: GenerateRequest, request: Request, ticket: _Ticket = None) -> EventSourceResponse:
        service = _service(request)
        job = await service.submit(body, ticket)

        async def stream():
            async for event in service.events(job, request, watch_disconnect=False):
                yield {"event": event.kind, "data": json.dumps(jsonable_encoder(event.data))}

        return EventSourceResponse(stream(), ping=15)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """422 naming each bad field; whatever the input held (NaN, bytes, deep nesting), it can be written, and
        it is never echoed back at length (the messages themselves are kept whole)."""
        errors = [{k: _writable(v) if k in ("input", "ctx") else v for k, v in e.items()} for e in error.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    known = {route.path for route in app.routes}  # any other path is counted as "other"
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(_RequestMetrics, metrics=metrics, paths=known)
    return app
