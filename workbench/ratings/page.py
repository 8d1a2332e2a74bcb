"""The rating page: a task served to colleagues who do not run Jupyter (``workbench rate TASK``).

Each rater has an invitation (``invite``): a random token, stored hashed in the task's ``raters.json``; the page
link carries it in its fragment (``#token=...``: never sent in a request line, so never in a log), and every API
call sends it as ``Authorization: Bearer <token>``. No token, no page data and no vote (401, before any body is
read; a body over ``MAX_BODY`` is 413). A rater sees the items in their own order (``schedule.next_view``),
their own progress, and nothing of others' votes, the targets or results. Votes go through the task's
``VoteStore`` (a vote resent with its id is stored once).

    GET  /               the page (the same for everyone: it holds nothing)
    GET  /api/next       the rater's next unanswered item, and their progress
    GET  /api/image/ID   an image of the task (re-encoded, no metadata)
    POST /api/vote       {vote_id, item_id, question, answer, shown, decided_s, reason}
    POST /api/undo       {vote_id}
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import ConfigError, VoteConflict
from workbench.ratings.schedule import next_view, progress
from workbench.ratings.task import RatingTask
from workbench.ratings.votes import VoteStore, check_rater

__all__ = ["RATERS", "create_rating_app", "invite", "page_address"]

RATERS = "raters.json"  # rater -> sha256 of their token
MAX_BODY = 8 * 1024  # a vote is a few hundred bytes
_NO_TOKEN = "an invitation's token is needed (Authorization: Bearer <token>)"
_LOCK = threading.Lock()


def invite(task: RatingTask, rater: str) -> str:
    """A new token for ``rater`` (an earlier one stops working); only its hash is stored."""
    check_rater(rater)
    token = secrets.token_urlsafe(24)
    with _LOCK:
        raters = _raters(task)
        raters[rater] = _hash(token)
        partial = task.path / f"{RATERS}.{os.getpid()}.partial"
        partial.write_text(json.dumps(raters, indent=2))
        partial.replace(task.path / RATERS)  # a running page never reads half a file
    return token


def page_address(host: str, port: int, *, public_url: str | None = None, https: bool = False) -> str:
    """The address raters open: ``public_url`` where given (a proxy's), else this host and port (a bind to every
    interface named by the machine's name); a rater's link adds ``#token=...``."""
    if public_url:
        return public_url.rstrip("/") + "/"
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if https else 'http'}://{host}:{port}/"


class VoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vote_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    item_id: str = Field(max_length=32)
    question: str = Field(max_length=64)
    answer: str = Field(max_length=64)
    shown: list[str] = Field(min_length=1, max_length=2)
    decided_s: float | None = Field(default=None, ge=0, le=86400)
    reason: str | None = Field(default=None, max_length=500)


class UndoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vote_id: str = Field(min_length=8, max_length=64)


def create_rating_app(task: RatingTask | str | Path) -> FastAPI:
    """The page and its API for ``task``."""
    task = task if isinstance(task, RatingTask) else RatingTask(task)
    store = VoteStore(task)
    app = FastAPI(title="rating", docs_url=None, redoc_url=None, openapi_url=None)

    def known(authorization: str | None) -> str | None:
        token = (authorization or "").removeprefix("Bearer ").strip()
        digest = _hash(token) if token else None
        for name, stored in _raters(task).items():
            if digest is not None and secrets.compare_digest(stored, digest):
                return name
        return None

    def rater(authorization: Annotated[str | None, Header()] = None) -> str:
        name = known(authorization)
        if name is None:
            raise HTTPException(401, _NO_TOKEN)
        return name

    signed_in = Depends(rater)  # a default, not an annotation: annotations are strings here (future import)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """The API answers nobody without a token, before reading a body, and reads no body over ``MAX_BODY``."""
        if request.url.path.startswith("/api/"):
            if known(request.headers.get("authorization")) is None:
                return JSONResponse({"detail": _NO_TOKEN}, status_code=401)
            declared = request.headers.get("content-length", "0")
            if not declared.isdigit() or int(declared) > MAX_BODY:
                return JSONResponse({"detail": f"a request body is at most {MAX_BODY} bytes"}, status_code=413)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _PAGE

    @app.get("/api/next")
    def next_item(name: str = signed_in) -> dict:
        answered = store.answered(name)  # read once for both
        view = next_view(task, name, answered)
        done, total = progress(task, name, answered)
        return {"item": view.to_dict() if view else None, "done": done, "total": total, "kind": task.kind}

    @app.get("/api/image/{image_id}")
    def image(image_id: str, name: str = signed_in) -> Response:
        try:
            path = task.image(image_id)
        except ConfigError as error:
            raise HTTPException(404, str(error)) from None
        # the bytes only: a file response's Last-Modified and ETag would tell when, and so in what order, images
        # were written
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/vote")
    def vote(body: VoteBody, name: str = signed_in) -> dict:
        try:
            stored, new = store.add(
                name, body.item_id, body.question, body.answer, shown=tuple(body.shown), vote_id=body.vote_id,
                decided_s=body.decided_s, interface="page", reason=body.reason,
            )  # fmt: skip
        except VoteConflict as error:
            raise HTTPException(409, str(error)) from None
        except ConfigError as error:
            raise HTTPException(422, str(error)) from None
        return {"vote_id": stored.vote_id, "stored": new}

    @app.post("/api/undo")
    def undo(body: UndoBody, name: str = signed_in) -> dict:
        try:
            store.undo(name, body.vote_id)
        except ConfigError as error:
            raise HTTPException(404, str(error)) from None
        return {"undone": body.vote_id}

    return app


def _raters(task: RatingTask) -> dict[str, str]:
    path = task.path / RATERS
    return json.loads(path.read_text()) if path.is_file() else {}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rate images</title>
<style>
body{font-family:sans-serif;margin:1rem auto;max-width:72rem;padding:0 1rem}
#images{display:flex;gap:1rem;justify-content:center;flex-wrap:wrap}
#images img{width:min(34rem,44vw);image-rendering:pixelated;border:1px solid #ccc}
#prompt{font-size:1.2rem;margin:.5rem 0}
button{font-size:1.1rem;padding:.6rem 1.2rem;margin:.3rem;touch-action:manipulation}
#status{color:#555}
</style></head><body>
<p id="status">Loading…</p><p id="prompt"></p><p id="question"></p><div id="images"></div><div id="buttons"></div>
<p><small>Keys: 1 or ← left, 2 or → right, t tie, s skip, u undo (pairwise); an answer's number otherwise.
</small></p>
<script>
const token = new URLSearchParams(location.hash.slice(1)).get("token") || sessionStorage.getItem("token");
if (token) { sessionStorage.setItem("token", token); history.replaceState(null, "", location.pathname); }
const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"};
let item = null, shownAt = 0, last = [], busy = false;
function id() { return (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/-/g, ""); }
async function load() {
  const response = await fetch("api/next", {headers});
  const say = text => { document.getElementById("status").textContent = text; };
  if (response.status === 401) { say("This page needs your invitation link."); return; }
  const data = await response.json();
  const next = data.item;
  say(`${data.done} of ${data.total} done`);
  const images = document.getElementById("images"), buttons = document.getElementById("buttons");
  images.innerHTML = ""; buttons.innerHTML = "";
  if (!next) {
    item = null;
    document.getElementById("prompt").textContent = "All done: thank you.";
    document.getElementById("question").textContent = "";
    return;
  }
  document.getElementById("prompt").textContent = next.prompt ? "Prompt: " + next.prompt : "";
  const question = next.questions[0];
  document.getElementById("question").textContent = question.text;
  for (const image of next.images) {
    const element = document.createElement("img");
    const blob = await (await fetch("api/image/" + image, {headers})).blob();
    element.src = URL.createObjectURL(blob); element.alt = "an image to rate"; images.appendChild(element);
  }
  for (const answer of [...question.answers, "skip"]) {
    const button = document.createElement("button"); button.textContent = answer;
    button.onclick = () => vote(answer); buttons.appendChild(button);
  }
  item = next;  // votes count only once its images are shown
  shownAt = performance.now();
  document.body.dataset.ready = "yes";
}
async function vote(answer) {
  if (!item || busy) return;
  busy = true;
  document.body.dataset.ready = "no";
  const question = item.questions[0];
  const body = {vote_id: id(), item_id: item.item_id, question: question.id, answer, shown: item.images,
                decided_s: (performance.now() - shownAt) / 1000, reason: answer === "skip" ? "skipped" : null};
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const response = await fetch("api/vote", {method: "POST", headers, body: JSON.stringify(body)});
      if (response.ok) { last.push(body.vote_id); break; }
      if (response.status === 409) break;  // answered already (another tab): nothing to undo here
      document.getElementById("status").textContent = (await response.json()).detail; busy = false; return;
    } catch (error) { await new Promise(done => setTimeout(done, 500 * (attempt + 1))); }
  }
  item = null;
  await load();
  busy = false;
}
async function undo() {
  const vote_id = last.pop(); if (!vote_id) return;
  await fetch("api/undo", {method: "POST", headers, body: JSON.stringify({vote_id})}); load();
}
document.addEventListener("keydown", event => {
  if (!item || event.repeat) return;
  const answers = [...item.questions[0].answers, "skip"];
  const keys = {"ArrowLeft": "left", "ArrowRight": "right", "1": answers[0], "2": answers[1], "3": answers[2],
                "t": "tie", "s": "skip"};
  if (event.key === "u") { undo(); return; }
  const answer = keys[event.key];
  if (answer && answers.includes(answer)) vote(answer);
});
load();
</script></body></html>
"""
