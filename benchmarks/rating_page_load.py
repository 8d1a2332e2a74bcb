"""Raters voting at once on the rating page: every vote stored once, none lost.

    python benchmarks/rating_page_load.py [--raters 20] [--prompts 24] [--resend 0.1] [--strategy uniform]

Makes a small toy world evaluation (two models, ``--prompts`` prompts, two seeds) and a pairwise task from it,
starts `workbench rate` in its own process, and has ``--raters`` invited raters vote at once over loopback, each
through the page's HTTP API as the page does (next item, then its vote), until every question of every item is
answered. A share ``--resend`` of votes is sent a second time with the same vote id (a client unsure its answer
arrived). Then it reads the task's votes from disk: stored (must equal the votes answered with success), lost
(answered but not stored: must be 0), duplicated (a vote id stored twice: must be 0). Prints votes per second and
the p50 and p99 latency of a vote, and writes benchmarks/results/rating_page_load.json (``_adaptive`` for that
strategy: each next item then chosen from everyone's votes so far).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

import workbench as wb
from workbench.ratings.page import invite

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rate(url: str, token: str, rater: str, resend: float, answered: list, latencies: list) -> None:
    """Answer every open question, in the page's order, as the page does."""
    rng = np.random.default_rng(abs(hash(rater)) % 2**32)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        number = 0
        while True:
            item = client.get("/api/next").json()["item"]
            if item is None:
                return
            body = {"vote_id": f"{rater}-{number:06d}", "item_id": item["item_id"],
                    "question": item["questions"][0]["id"], "answer": str(rng.choice(["left", "right", "tie"])),
                    "shown": item["images"], "decided_s": 1.0}  # fmt: skip
            start = time.perf_counter()
            response = client.post("/api/vote", json=body)
            latencies.append(time.perf_counter() - start)
            if response.status_code == 200:
                answered.append(body["vote_id"])
                if rng.random() < resend:
                    again = client.post("/api/vote", json=body)
                    assert again.status_code == 200 and again.json()["stored"] is False, again.text
            number += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--resend", type=float, default=0.1)
    parser.add_argument("--strategy", default="uniform", choices=["uniform", "adaptive"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        run = Path(root) / "run"
        prompts = wb.metric_validity.toy_prompts(args.prompts, seed=4)
        wb.ModelEvaluator(prompts, ["toyworld/sd-small", "toyworld/sd-base"], [0, 1],
                          wb.GenerationConfig(steps=2, batch_size=16), output_dir=run).run()  # fmt: skip
        task = wb.rating_task(run, "pairwise", output_root=root, task_id="load", display_size=128,
                              strategy=args.strategy)  # fmt: skip
        raters = [f"rater-{i:02d}" for i in range(args.raters)]
        tokens = {rater: invite(task, rater) for rater in raters}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "rate", str(task.path), "--port", str(port)],
            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            answered: dict[str, list] = {rater: [] for rater in raters}
            latencies: list[float] = []
            threads = [threading.Thread(target=rate, args=(url, tokens[r], r, args.resend, answered[r], latencies))
                       for r in raters]  # fmt: skip
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(10)
        # every line on disk, not the store's reading of them: a vote stored twice shows
        ids = [json.loads(line)["vote_id"] for path in (task.path / "votes").glob("*.jsonl")
               for line in path.read_text().splitlines()]  # fmt: skip
        given = {vote_id for votes in answered.values() for vote_id in votes}
        result = {
            "raters": args.raters, "strategy": args.strategy, "items": len(task.items),
            "questions": len(task.questions),
            "votes_answered": len(given), "votes_stored": len(ids), "lost": len(given - set(ids)),
            "duplicated": len(ids) - len(set(ids)), "seconds": round(seconds, 2),
            "votes_per_s": round(len(given) / seconds, 1),
            "vote_latency_p50_ms": round(1000 * statistics.median(latencies), 1),
            "vote_latency_p99_ms": round(1000 * float(np.quantile(latencies, 0.99)), 1),
            "resend_share": args.resend, "cpus": os.cpu_count(),
        }  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    name = "rating_page_load.json" if args.strategy == "uniform" else f"rating_page_load_{args.strategy}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
