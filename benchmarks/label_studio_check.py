"""A pairwise task through a real Label Studio and back: every annotation read back as one vote, the right way round.

    python benchmarks/label_studio_check.py [--label-studio-version 1.23.2] [--venv benchmarks/.label-studio-venv]

Installs Label Studio from PyPI into a virtualenv of its own (``--venv``, made once and reused: its pins clash with
ours) and starts it on a free localhost port with a fresh SQLite store in a temporary folder and a user it makes.
Logged in as that user, it asks Label Studio for a personal access token and trades it for an access token (the
API's ``Bearer`` token). Makes a small toy world run (two models, ``--prompts`` prompts, two seeds) and a pairwise
task from it with gold items and repeats, exports it with ``export_label_studio``, makes a project of the exported
config, imports the exported tasks and annotates every task through the API (regions as the labelling page makes
them), a known answer to each question (left, right, tie and skip in turn). Then it exports the project's JSON
through the API and reads it back with ``import_label_studio``. Each answer must come back as exactly one vote with
the same answer, and the images Label Studio showed on the left and right must be the vote's first and second
image. Prints the figures and writes benchmarks/results/label_studio_check.json; Label Studio is stopped at the end,
also on an error.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx

import workbench as wb
from workbench.ratings import VoteStore
from workbench.ratings.label_studio import export_label_studio, import_label_studio

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "label_studio_check.json"
ANSWERS = ("left", "right", "tie", "skip")
USER, PASSWORD = "annotator@example.org", "round-trip-check"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install(folder: Path, version: str | None) -> str:
    """Label Studio (``version``, or the latest when none is installed) in the virtualenv ``folder``; its version."""
    python = folder / "bin" / "python"
    if not python.exists():
        venv.create(folder, with_pip=True)
    package = f"label-studio=={version}" if version else "label-studio"
    subprocess.run([python, "-m", "pip", "install", "-q", package], check=True)
    found = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
                           check=True, capture_output=True, text=True)  # fmt: skip
    return found.stdout.strip()


def start(folder: Path, data: Path, port: int) -> subprocess.Popen:
    """``label-studio start`` on ``port`` with its data in ``data``, making the user; returns once it answers."""
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
           "LABEL_STUDIO_COLLECT_ANALYTICS": "false"}  # fmt: skip
    command = [folder / "bin" / "label-studio", "start", "--no-browser", "--internal-host", "127.0.0.1",
               "--port", str(port), "--username", USER, "--password", PASSWORD]  # fmt: skip
    with open(data / "label-studio.log", "w") as log:  # the server keeps its own copy of the file
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"Label Studio exited ({server.returncode}):\n{(data / 'label-studio.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(server)
    raise SystemExit("Label Studio did not answer within 5 minutes")


def stop(server: subprocess.Popen) -> None:
    """Stop Label Studio and whatever it started (its own process group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def api_client(url: str) -> httpx.Client:
    """A client of the API as the user: logs in, has Label Studio make a personal access token, and sends the
    access token it gives for it."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.get("/user/login/").raise_for_status()  # sets the CSRF cookie
        form = {"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        login = browser.post("/user/login/", data=form, headers={"Referer": f"{url}/user/login/"})
        if login.status_code != 302 or "sessionid" not in browser.cookies:
            raise SystemExit(f"could not log in to Label Studio: {login.status_code}")
        made = browser.post("/api/token/", headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": url})
        refresh = checked(made)["token"]
    access = checked(httpx.post(f"{url}/api/token/refresh/", json={"refresh": refresh}, timeout=30))["access"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {access}"}, timeout=60)


def checked(response: httpx.Response):
    """The response's JSON, or the script stops with what Label Studio said."""
    if response.is_error:
        raise SystemExit(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                         f"{response.text[:2000]}")  # fmt: skip
    return response.json()


def annotation(config: ET.Element, answers: dict[str, str]) -> list[dict]:
    """The result regions the labelling page makes for ``answers`` (question -> answer): a side is the question's
    ``Pairwise`` (its own name as ``to_name``, as the page sends it), tie or skip its ``Choices`` beside it."""
    choices = {c.get("name"): c.get("toName") for c in config.iter("Choices")}
    regions = []
    for question, answer in answers.items():
        if answer in ("left", "right"):
            regions.append({"from_name": question, "to_name": question, "type": "pairwise",
                            "value": {"selected": answer}})  # fmt: skip
        else:
            name = f"{question}-other"
            regions.append({"from_name": name, "to_name": choices[name], "type": "choices",
                            "value": {"choices": [answer]}})  # fmt: skip
    return regions


def png(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.removeprefix("data:image/png;base64,"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label-studio-version", help="the version to install (default: the latest)")
    parser.add_argument("--venv", type=Path, default=HERE / ".label-studio-venv")
    parser.add_argument("--prompts", type=int, default=4)
    args = parser.parse_args()
    began = time.perf_counter()
    version = install(args.venv.resolve(), args.label_studio_version)
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        run = root / "run"
        prompts = wb.metric_validity.toy_prompts(args.prompts, seed=4)
        wb.ModelEvaluator(prompts, ["toyworld/sd-small", "toyworld/sd-base"], [0, 1],
                          wb.GenerationConfig(steps=2, batch_size=8), output_dir=run).run()  # fmt: skip
        task = wb.rating_task(run, "pairwise", output_root=root, task_id="ls", gold_share=0.25, repeat_share=0.25,
                              display_size=64)  # fmt: skip
        config_file, tasks_file = export_label_studio(task, root / "label-studio")
        config = ET.fromstring(config_file.read_text())
        (root / "data").mkdir()
        port = free_port()
        server = start(args.venv.resolve(), root / "data", port)
        try:
            started = time.perf_counter()
            with api_client(f"http://127.0.0.1:{port}") as api:
                made = {"title": "round trip", "label_config": config_file.read_text()}
                project = checked(api.post("/api/projects/", json=made))["id"]
                imported = checked(api.post(f"/api/projects/{project}/import", json=json.loads(tasks_file.read_text())))
                listed = checked(api.get("/api/tasks/", params={"project": project, "page_size": 1000}))["tasks"]
                known = {}
                for i, entry in enumerate(listed):  # each question gets every answer in turn
                    answers = {q.id: ANSWERS[(i + j) % len(ANSWERS)] for j, q in enumerate(task.questions)}
                    known |= {(entry["data"]["item_id"], q): a for q, a in answers.items()}
                    body = {"result": annotation(config, answers), "lead_time": 2.5}
                    checked(api.post(f"/api/tasks/{entry['id']}/annotations/", json=body))
                export = checked(api.get(f"/api/projects/{project}/export", params={"exportType": "JSON"}))
            new = import_label_studio(task, export)
            round_trip = time.perf_counter() - started
        finally:
            stop(server)
        votes = VoteStore(task).votes()
        shown = {e["data"]["item_id"]: (png(e["data"]["left"]), png(e["data"]["right"])) for e in export}
        mismatches = []
        for key, answer in known.items():
            got = [v for v in votes if (v.item_id, v.question) == key]
            if [v.answer for v in got] != [answer]:
                mismatches.append(f"{key}: answered {answer!r}, read back {[v.answer for v in got]}")
            elif tuple(task.image(i).read_bytes() for i in got[0].shown) != shown[key[0]]:
                mismatches.append(f"{key}: the vote's images are not the images Label Studio showed left and right")
        mismatches += [f"{(v.item_id, v.question)}: a vote nobody gave" for v in votes if (v.item_id, v.question)
                       not in known]  # fmt: skip
    result = {
        "label_studio_version": version, "tasks": len(task.items), "tasks_imported": imported["task_count"],
        "questions": len(task.questions), "annotations": sum(len(e["annotations"]) for e in export),
        "answers": len(known), "votes_read_back": len(votes), "new_votes": new,
        "raters": sorted({v.rater for v in votes}),
        "answers_given": {a: list(known.values()).count(a) for a in ANSWERS},
        "mismatches": mismatches, "round_trip_seconds": round(round_trip, 1),
        "seconds": round(time.perf_counter() - began, 1),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    if mismatches:
        raise SystemExit(f"{len(mismatches)} mismatches")


if __name__ == "__main__":
    main()
