"""The wheel, built from this tree and installed on its own, works outside the clone: it carries every package,
the data (prompt sets, route tables, styles, wildcards), the study notebooks and the toy world weights.

The wheel is built from a copy of the tree (a stale ``build/`` in the clone cannot leak into it) and installed
with ``pip install --target``. Its checks run under ``python -S`` from a folder outside the clone, with
PYTHONPATH = the installed wheel, then the venv's site-packages: the venv's .pth files (the editable install's
finder among them) are not processed, so the clone cannot be imported. A study's kernel runs this interpreter
without -S, but PYTHONPATH puts the installed wheel first there too, which the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# The top-level folders the build maps into the package (pyproject.toml's [tool.setuptools.package-dir]).
MAPPED = {"data": "workbench/data", "notebooks": "workbench/notebooks"}
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
TINY = ["-p", "models", "[arch/tiny]", "-p", "n_prompts", "2", "-p", "seeds", "[0]", "-p", "steps", "2"]


def _source_files() -> list[str]:
    """The files a clone has (tracked, and untracked ones git does not ignore), relative to the root."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but what git would ignore
        skip = {".git", ".venv", "build", "dist", "outputs", "__pycache__"}
        listed = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                  if not skip & set(p.relative_to(ROOT).parts) and not p.parent.name.endswith(".egg-info")]  # fmt: skip
    return [name for name in listed if name and (ROOT / name).is_file()]  # a deleted file may still be listed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    for name in _source_files():
        (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp / "src" / name)
    build = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist")]
    subprocess.run([*PIP, *build, str(tmp / "src")], cwd=tmp / "src", check=True)
    (built,) = (tmp / "dist").glob("t2i_workbench-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel) -> Path:
    target = wheel.parent.parent / "site"
    install = ["install", "--quiet", "--no-deps", "--no-index", "--target", str(target)]
    subprocess.run([*PIP, *install, str(wheel)], check=True)
    return target


def _outside(site: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -S ARGS`` in ``tmp_path`` with the installed wheel, then the venv's packages, on the path."""
    packages = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "MPLBACKEND"}}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(site), *packages]),
        # -S leaves sys.prefix at the base interpreter's: say where the venv's Jupyter files (nbconvert's
        # templates) are.
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-S", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


@pytest.mark.slow
def test_the_wheel_carries_every_package_module_data_file_and_notebook(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    source = _source_files()
    packages = sorted(name.removesuffix("/__init__.py") for name in source
                      if name.startswith("workbench/") and name.endswith("/__init__.py"))  # fmt: skip
    missing = [package.replace("/", ".") for package in packages if f"{package}/__init__.py" not in names]
    assert not missing, f"package(s) {missing} are not in the wheel: add them to pyproject.toml's packages"
    # Every file of the package's folders: the modules, the toy world's weights, the data and the notebooks.
    expected = [name for name in source if name.startswith("workbench/")]
    for folder, inside in MAPPED.items():
        expected += [f"{inside}/{name.removeprefix(folder + '/')}" for name in source if name.startswith(f"{folder}/")]
    missing = sorted(set(expected) - names)
    assert not missing, f"{len(missing)} file(s) of the tree are not in the wheel, e.g. {missing[:10]}"
    assert "workbench/notebooks/01_model_evaluation.ipynb" in names and "workbench/data/routes/toyworld.yaml" in names
    assert any(name.startswith("workbench/toyworld/weights/") for name in names)


@pytest.mark.slow
def test_the_installed_wheel_works_outside_the_clone(site, tmp_path):
    # Study notebooks run in a kernel of their own: where does that kernel import workbench from?
    where = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": 'output_dir = "."', "outputs": [],
         "execution_count": None},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import pathlib, workbench\npathlib.Path(output_dir, 'where.txt').write_text(workbench.__file__)"},
    ], "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
        "nbformat": 4, "nbformat_minor": 4}  # fmt: skip
    (tmp_path / "where.ipynb").write_text(json.dumps(where))
    script = textwrap.dedent(
        """
        import json, sys
        import workbench as wb
        from workbench.studies import run_study

        router = wb.Router("toyworld", "keyword")
        (decision,) = router.route_many(["an oil painting of a lighthouse in a storm"])
        image = wb.generate(wb.load("toyworld/sd-small"), "a red circle", wb.GenerationConfig(steps=2))[0].image
        run = run_study("where.ipynb", {}, output_root="out", progress=False)
        print(json.dumps({
            "file": wb.__file__,
            "modules": sorted({m.__file__ for m in list(sys.modules.values())
                               if m.__name__.startswith("workbench") and getattr(m, "__file__", None)}),
            "route": decision.route,
            "prompts": len(wb.load_prompts("partiprompts")),
            "styles": sorted(wb.load_styles()),
            "expanded": wb.expand_template("a __colour__ circle"),
            "image": image.size,
            "kernel_file": (run.folder / "where.txt").read_text(),
        }))
        """
    )
    found = json.loads(_outside(site, tmp_path, "-c", script).stdout.strip().splitlines()[-1])
    assert Path(found["file"]).is_relative_to(site)
    outside = [m for m in found["modules"] if not Path(m).is_relative_to(site)]
    assert not outside, f"workbench modules imported from elsewhere: {outside}"
    assert Path(found["kernel_file"]).is_relative_to(site), found["kernel_file"]
    assert found["route"] == "artistic" and found["prompts"] > 1000 and "photo" in found["styles"]
    assert len(found["expanded"]) >= 3 and all("__" not in prompt for prompt in found["expanded"])
    assert found["image"] == [32, 32]  # the toy world's weights, from the wheel

    listed = _outside(site, tmp_path, "-m", "workbench.cli", "studies").stdout
    assert any(line.startswith("01_model_evaluation") for line in listed.splitlines())

    ran = _outside(site, tmp_path, "-m", "workbench.cli", "run", "01_model_evaluation", *TINY, "--output-root", "out")
    assert "report:" in ran.stdout
    (manifest_path,) = (tmp_path / "out" / "01_model_evaluation").glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["status"] == "ok" and manifest["images"] == 2 and manifest["model_ids"] == ["arch/tiny"]
    assert Path(manifest["notebook"]).is_relative_to(site)  # the study that ships in the wheel
    assert (manifest_path.parent / "report.html").read_text().count("data:image/png;base64") >= 3


def test_conda_and_pip_installs_pin_the_same_versions():
    import re

    import yaml

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert "torch" not in pins  # the Makefile's TORCH_VERSION pins it
    torch = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = dict(spec.split("=", 1) for spec in environment if isinstance(spec, str) and "=" in spec)
    assert conda.pop("pytorch") == torch and conda.pop("python") == "3.11"
    assert {name: pins.get(name) for name in conda} == conda
    (pip,) = [spec["pip"] for spec in environment if isinstance(spec, dict)]
    assert pip == ["-c constraints.txt", "-e .[dev]"]
