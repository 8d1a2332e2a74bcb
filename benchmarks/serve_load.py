"""Load on the server over loopback: many concurrent clients against `workbench serve` on the toy world.

    python benchmarks/serve_load.py [--requests 200] [--clients 32] [--model toyworld/sd-small] [--steps 20]
                                    [--deployment local|ray]

Starts `workbench serve` (``--deployment ray``: as a Ray Serve deployment, one replica) in its own process,
one CPU worker, then, side by side in one run:
  1. direct: the same pipeline called in a loop in this process, one image per call (before and after);
  2. load: --requests POSTs to /v1/generate (PNG) from --clients concurrent clients, each request with
     its own seed, against a queue of 64 (no 429 expected);
  3. overload: the same against a queue of 4, where many requests get 429 and their clients try again
     after the time the 429 gives, presenting its ticket (their place in line), as RemoteModel does.
Every request must come back with its own image (its seed in the X-Workbench-Seed header) or a 429:
none lost, none duplicated; the server must generate each image once, and its queue (sampled every
0.1 s from /healthz) must never pass its limit. Prints p50/p99 latency, throughput and the server's
throughput relative to the direct loop, and writes benchmarks/results/serve_load.json (serve_load_ray.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from workbench.client import TICKET_HEADER, retry_after

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
PROMPTS = ("a red circle in the centre, on a white background", "a sketch of a small green triangle at the top")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(max_queue: int, model: str, deployment: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--devices", "cpu",
               "--classifier", "keyword", "--max-queue", str(max_queue), "--models", model,
               "--deployment", deployment, "--max-replicas", "1"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start (exit code {server.poll()})")
        time.sleep(0.25)


def direct(model: str, steps: int, n: int) -> float:
    """Images per second from the pipeline called in a loop, one image per call."""
    import workbench as wb

    pipe = wb.load(model)
    config = wb.GenerationConfig(steps=steps)
    wb.generate(pipe, PROMPTS[0], config, seeds=0)  # warm-up
    start = time.perf_counter()
    for i in range(n):
        wb.generate(pipe, PROMPTS[i % 2], config, seeds=i)
    return n / (time.perf_counter() - start)


async def load(url: str, model: str, steps: int, requests: int, clients: int, *, retry: bool) -> dict:
    """Send ``requests`` from ``clients`` concurrent clients; check every answer against its request.
    With ``retry``, a request refused with 429 is sent again after its Retry-After."""
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        todo.put_nowait(i)
    answers: dict[int, tuple[int, float, str | None]] = {}
    refusals, depths = [0], []

    async def client(http: httpx.AsyncClient) -> None:
        while not todo.empty():
            i = todo.get_nowait()
            body = {"prompt": PROMPTS[i % 2], "model": model, "steps": steps, "seed": 10_000 + i}
            start = time.perf_counter()
            response = await http.post(f"{url}/v1/generate", json=body)
            while retry and response.status_code == 429:
                refusals[0] += 1
                await asyncio.sleep(retry_after(response.headers))
                ticket = {TICKET_HEADER: response.headers[TICKET_HEADER]} if TICKET_HEADER in response.headers else {}
                response = await http.post(f"{url}/v1/generate", json=body, headers=ticket)
            refusals[0] += response.status_code == 429
            answers[i] = (response.status_code, time.perf_counter() - start, response.headers.get("X-Workbench-Seed"))

    async def watch_queue(http: httpx.AsyncClient, done: asyncio.Event) -> None:
        while not done.is_set():
            depths.append((await http.get(f"{url}/healthz")).json()["queued"])
            await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await http.post(f"{url}/v1/generate", json={"prompt": PROMPTS[0], "model": model, "steps": steps})
        done = asyncio.Event()
        watcher = asyncio.create_task(watch_queue(http, done))
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
        done.set()
        await watcher
        outcomes = (await http.get(f"{url}/healthz")).json()["outcomes"]
    statuses = [status for status, _, _ in answers.values()]
    ok = [i for i, (status, _, _) in answers.items() if status == 200]
    latencies = [answers[i][1] for i in ok]
    seeds = [int(answers[i][2]) for i in ok]
    return {
        "requests": requests,
        "clients": clients,
        "answered": len(answers),
        "images": len(ok),
        "answered_429": statuses.count(429),
        "refusals_429_seen": refusals[0],
        "other_status": sorted({s for s in statuses if s not in (200, 429)}),
        "lost": requests - len(answers),
        "wrong_or_duplicated_seed": sum(seed != 10_000 + i for i, seed in zip(ok, seeds, strict=True))
        + (len(seeds) - len(set(seeds))),
        "server_generated": outcomes["ok"] - 1,  # less the warm-up request
        "max_queue_depth_seen": max(depths, default=0),
        "wall_s": round(wall, 2),
        "throughput_images_per_s": round(len(ok) / wall, 3),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "latency_p99_s": round(float(np.percentile(latencies, 99)), 3) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--model", default="toyworld/sd-small")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--direct", type=int, default=100, help="images in each direct loop (one before, one after)")
    parser.add_argument("--deployment", choices=["local", "ray"], default="local", help="ray: a Ray Serve deployment")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    before = direct(args.model, args.steps, args.direct)
    runs = {}
    for name, max_queue in (("load", 64), ("overload", 4)):
        server, url = start_server(max_queue, args.model, args.deployment)
        try:
            retry = name == "overload"
            runs[name] = asyncio.run(load(url, args.model, args.steps, args.requests, args.clients, retry=retry))
            runs[name]["max_queue"] = max_queue
        finally:
            server.terminate()
            server.wait(30)
    after = direct(args.model, args.steps, args.direct)
    direct_rate = statistics.mean([before, after])
    result = {
        "model": args.model,
        "steps": args.steps,
        "device": "cpu, one worker",
        "deployment": args.deployment,
        "direct_images_per_s": {"before": round(before, 3), "after": round(after, 3), "mean": round(direct_rate, 3)},
        **runs,
        "server_vs_direct_throughput": round(runs["load"]["throughput_images_per_s"] / direct_rate, 3),
    }
    print(json.dumps(result, indent=2))
    for name, run in runs.items():
        print(
            f"{name} (queue {run['max_queue']}): {run['images']} images of {run['requests']} requests, "
            f"{run['refusals_429_seen']} x 429 on the way, lost {run['lost']}, wrong/duplicated "
            f"{run['wrong_or_duplicated_seed']}, generated by the server {run['server_generated']}, deepest queue "
            f"{run['max_queue_depth_seen']}; p50 {run['latency_p50_s']} s, p99 {run['latency_p99_s']} s, "
            f"{run['throughput_images_per_s']} images/s"
        )
    print(f"direct loop: {direct_rate:.3f} images/s; server/direct = {result['server_vs_direct_throughput']}")
    results = RESULTS.with_name(f"serve_load{'_ray' if args.deployment == 'ray' else ''}.json")
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
