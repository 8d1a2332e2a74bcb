"""A real browser against real JupyterLab: open the Explorer notebook, run it, type a prompt, click
Generate, wait for the image in the gallery, and keep a screenshot (outputs/test-artifacts/).

Needs Debian's chromium and the playwright package (no browser download). Deselect with -m "not browser";
where WORKBENCH_REQUIRE_BROWSER=1 (CI) a missing browser fails instead of skipping.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "outputs" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "workbench-browser-test"


def _needs(reason: str):
    if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test must run here, but {reason}")
    pytest.skip(reason)


@pytest.fixture
def jupyter_lab(tmp_path, free_port):
    """JupyterLab on a free loopback port, with its config, data and runtime in a temporary folder."""
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "OMP_NUM_THREADS": "1",
    }
    settings = tmp_path / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # The kernel is this interpreter (the one with workbench installed), whatever kernelspecs lie around.
    kernel = tmp_path / "data" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernel / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    # Serve a copy of the notebook: JupyterLab saves what it runs, and the repository's copy stays clean.
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_explorer.ipynb", root)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
               f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}"]  # fmt: skip
    with open(tmp_path / "lab.log", "w") as log:
        server = subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    server.kill()
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
        server.terminate()
        server.wait(20)


def _playwright():
    """Playwright's ``sync_playwright``, or the test skipped (failed where CI requires the browser)."""
    if CHROMIUM is None:
        _needs("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _needs("the playwright package is not installed")
    return sync_playwright


def _run_all_cells(page, url: str) -> None:
    """Open a notebook in JupyterLab, pick the kernel if asked, and run all its cells."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    with contextlib.suppress(PlaywrightTimeout):  # asked only when the notebook names no known kernel
        page.locator(".jp-Dialog button", has_text="Select").first.click(timeout=10_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def test_explorer_generates_an_image_in_a_real_browser(jupyter_lab):
    sync_playwright = _playwright()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        try:
            _run_all_cells(page, f"{jupyter_lab}/lab/tree/00_explorer.ipynb?token={TOKEN}")
            prompt = page.locator(".jp-OutputArea textarea").first
            prompt.wait_for(timeout=120_000)
            prompt.fill("a photo of a large red circle on the left, on a white background")
            page.wait_for_selector("text=route photorealistic", timeout=30_000)
            page.locator("button.jupyter-button:has-text('Generate')").first.click()
            page.wait_for_selector(".jp-OutputArea .widget-image", timeout=120_000)
            page.locator("text=/CLIP \\d+\\.\\d/").first.wait_for(timeout=30_000)  # the caption's CLIP score
            page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "explorer-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / "explorer.png").stat().st_size > 10_000


def _rating_task(tmp_path, seeds):
    """A pairwise task of two toy models on two prompts, without checks."""
    import workbench as wb

    prompts = ["a red circle in the centre, on a white background", "a blue square on the left, on a grey background"]
    config = wb.GenerationConfig(steps=2, batch_size=4)
    models = ["toyworld/sd-small", "toyworld/sd-base"]
    wb.ModelEvaluator(prompts, models, seeds, config, output_dir=tmp_path / "run").run()
    return wb.rating_task(tmp_path / "run", output_root=tmp_path, repeat_share=0, gold_share=0, display_size=128)


def test_the_rating_page_takes_keys_and_clicks_resumes_after_a_reload_and_keeps_raters_apart(tmp_path, free_port):
    sync_playwright = _playwright()
    from workbench.ratings import VoteStore
    from workbench.ratings.page import invite, page_address

    task = _rating_task(tmp_path, seeds=[0, 1])
    port = free_port()
    links = {rater: f"{page_address('127.0.0.1', port)}#token={invite(task, rater)}" for rater in ("ana", "ben")}
    command = [sys.executable, "-m", "workbench.cli", "rate", str(task.path), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("the rating page did not start")
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            ana = browser.new_context().new_page()
            ana.goto(links["ana"])
            ana.wait_for_selector("body[data-ready='yes']")
            total = len(task.items)
            ana.wait_for_selector(f"text=0 of {total} done")
            for key in ("1", "ArrowRight", "t"):  # left, right, tie: by keyboard
                before = VoteStore(task).votes("ana")
                ana.keyboard.press(key)
                deadline = time.time() + 10
                while len(VoteStore(task).votes("ana")) == len(before) and time.time() < deadline:
                    time.sleep(0.05)
                ana.wait_for_selector("body[data-ready='yes']")  # the next item's images shown: keys count again
            assert [v.answer for v in VoteStore(task).votes("ana")] == ["left", "right", "tie"]
            ana.reload()  # mid-task: the token stays in the tab's session, the page resumes
            ana.wait_for_selector(f"text=1 of {total} done")
            ben = browser.new_context().new_page()  # another rater, at once, with their own progress
            ben.goto(links["ben"])
            ben.wait_for_selector(f"text=0 of {total} done")
            ben.wait_for_selector("body[data-ready='yes']")
            ben.locator("#buttons button", has_text="left").click()
            deadline = time.time() + 10
            while not VoteStore(task).votes("ben") and time.time() < deadline:
                time.sleep(0.05)
            stranger = browser.new_context().new_page()
            stranger.goto(f"http://127.0.0.1:{port}/")
            stranger.wait_for_selector("text=This page needs your invitation link.")
            ana.screenshot(path=str(ARTIFACTS / "rating-page.png"), full_page=True)
            browser.close()
    finally:
        server.kill()
        server.wait(10)
    votes = VoteStore(task).votes()
    assert [(v.rater, v.answer, v.interface) for v in votes if v.rater == "ben"] == [("ben", "left", "page")]
    assert len([v for v in votes if v.rater == "ana"]) == 3 and all(v.decided_s is not None for v in votes)


def test_the_rating_panel_votes_by_clicks_and_keys_in_jupyterlab_and_resumes(jupyter_lab, tmp_path):
    sync_playwright = _playwright()
    import nbformat

    from workbench.ratings import VoteStore

    task = _rating_task(tmp_path, seeds=[0])
    notebook = nbformat.v4.new_notebook()
    code = f"import workbench as wb\nwb.RatingPanel({str(task.path)!r}, rater='ana')"
    notebook.cells = [nbformat.v4.new_code_cell(code)]
    nbformat.write(notebook, tmp_path / "lab" / "rate.ipynb")
    total = len(task.items)

    def wait_for_votes(count: int) -> None:
        deadline = time.time() + 30
        while len(VoteStore(task).votes("ana")) != count and time.time() < deadline:
            time.sleep(0.1)
        assert len(VoteStore(task).votes("ana")) == count

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        try:
            for visit in (1, 2):  # the second visit: the notebook run again resumes where the rater left off
                _run_all_cells(page, f"{jupyter_lab}/lab/tree/rate.ipynb?token={TOKEN}")
                page.wait_for_selector(".jp-OutputArea .widget-image", timeout=120_000)
                if visit == 2:
                    page.locator(f"text=1 of {total}").first.wait_for(timeout=30_000)
                    break
                page.locator(f"text=0 of {total}").first.wait_for(timeout=30_000)
                page.locator("button.jupyter-button", has_text="left").first.click()  # a click
                wait_for_votes(1)
                keys = page.locator(".jp-OutputArea input[type='text']").first
                for count, key in enumerate(("r", "t", "u"), start=2):  # right and tie by key, then undo the tie
                    keys.press_sequentially(key)
                    wait_for_votes(count if key != "u" else 2)
                    deadline = time.time() + 10
                    while keys.input_value() and time.time() < deadline:  # the panel has taken the key
                        time.sleep(0.05)
                page.locator(f"text=1 of {total}").first.wait_for(timeout=30_000)  # the first item's two questions
            page.screenshot(path=str(ARTIFACTS / "rating-panel.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "rating-panel-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    votes = VoteStore(task).votes("ana")
    assert [(v.answer, v.interface) for v in votes] == [("left", "widget"), ("right", "widget")]
