"""The built wheel works on its own: installed outside the clone, with the clone not importable, it has the route
tables, prompt sets, styles, wildcards, toy world weights and bundled studies, and runs a study by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent

CHECK = """
import json, sys
import workbench as wb
from workbench.resources import bundled_studies
print(json.dumps({
    "file": wb.__file__,
    "route": wb.Router("toyworld", "keyword").route("an oil painting of a lighthouse").route,
    "parti": len(wb.load_prompts("partiprompts")),
    "styles": sorted(wb.load_styles()),
    "wildcards": len(wb.expand_template("a __colour__ circle")),
    "studies": sorted(bundled_studies()),
    "image": wb.generate(wb.load("toyworld/sd-small"), "a red circle", wb.GenerationConfig(steps=2))[0].image.size,
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The wheel, built from this clone and installed with ``--target``; the environment that imports it and
    the dependencies (this venv's site-packages) but not the clone (``-S``: no .pth files, so no editable finder)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", root, REPO],
        check=True,
        capture_output=True,
    )
    (wheel,) = root.glob("t2i_workbench-*.whl")
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, wheel],
        check=True,
        capture_output=True,
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]]),
        # without site, sys.prefix is the base interpreter's: point Jupyter at this venv's templates and kernels
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
    }
    return root, env


def _python(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-S", *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_every_package_of_the_source_is_in_the_wheel(installed):
    root, _ = installed
    (wheel,) = root.glob("t2i_workbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "workbench").rglob("__init__.py")}
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert missing == [], f"add these to the packages list in pyproject.toml: {missing}"
    assert "workbench/data/routes/toyworld.yaml" in names and "workbench/notebooks/01_model_evaluation.ipynb" in names


@pytest.mark.slow
def test_the_installed_wheel_has_its_data_and_models(installed):
    root, env = installed
    done = _python(root, env, "-c", CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["file"].startswith(str(root / "site")), found["file"]  # the wheel, not the clone
    assert found["route"] == "artistic"
    assert found["parti"] > 1000 and "photo" in found["styles"] and found["wildcards"] >= 3
    assert "01_model_evaluation" in found["studies"] and found["image"] == [32, 32]


@pytest.mark.slow
def test_the_installed_wheel_runs_a_bundled_study_by_name(installed):
    root, env = installed
    listed = _python(root, env, "-m", "workbench.cli", "studies")
    assert listed.returncode == 0 and "01_model_evaluation" in listed.stdout, listed.stderr[-3000:]
    small = ["-p", "n_prompts", "2", "-p", "seeds", "[0]", "-p", "steps", "2", "-p", "models", "[toyworld/sd-small]"]
    done = _python(root, env, "-m", "workbench.cli", "run", "01_model_evaluation", *small, "--output-root", "out")
    assert done.returncode == 0, done.stderr[-3000:]
    (manifest,) = (root / "out" / "01_model_evaluation").glob("*/manifest.json")
    assert (manifest.parent / "report.html").is_file()
    assert "results.parquet" in {p.name for p in manifest.parent.iterdir()}
    # the runner's workbench lies outside any git checkout: the wheel's (the kernel inherits PYTHONPATH, wheel first)
    assert json.loads(manifest.read_text())["git_commit"] is None
