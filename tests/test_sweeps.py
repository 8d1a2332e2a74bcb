"""Sweeps (local and on Ray) and the server as a Ray Serve deployment, on a local Ray instance on the CPU."""

import json
import time
from pathlib import Path

import httpx
import pytest

import workbench as wb
from workbench.cli import main
from workbench.errors import ConfigError
from workbench.run_folder import read_results
from workbench.sweeps import POOLS, grid_points, read_grid, run_sweep, sweep_pool

BROKEN = Path(__file__).parent / "notebooks" / "broken.ipynb"  # parameter fail: True raises in a cell


def test_grid_points_are_every_combination_with_the_fixed_values():
    points = grid_points({"a": [1, 2], "b": ["x", "y"]}, {"c": [0, 1]})
    assert points == [
        {"c": [0, 1], "a": 1, "b": "x"},
        {"c": [0, 1], "a": 1, "b": "y"},
        {"c": [0, 1], "a": 2, "b": "x"},
        {"c": [0, 1], "a": 2, "b": "y"},
    ]
    with pytest.raises(ConfigError, match="'a' needs a non-empty list"):
        grid_points({"a": 3})
    with pytest.raises(ConfigError, match=r"\['a'\] are both in the grid and fixed"):
        grid_points({"a": [1]}, {"a": 2})


def test_a_bad_grid_is_refused_before_any_point_runs(tmp_path):
    (tmp_path / "grid.yaml").write_text("grid:\n  fial: [true]\n")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['fial'\]"):
        grid, fixed = read_grid(tmp_path / "grid.yaml")
        run_sweep(BROKEN, grid, fixed=fixed, output_root=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "flat.yaml").write_text("fail: [true]\n")
    with pytest.raises(ConfigError, match="a grid file is a mapping with 'grid'"):
        read_grid(tmp_path / "flat.yaml")


def test_sweep_pools_are_a_registry_that_names_what_it_knows(tmp_path, capsys):
    assert list(POOLS) == ["local", "ray"] and sweep_pool("local") is POOLS["local"]
    with pytest.raises(ConfigError, match=r"pool must be one of \['local', 'ray'\], got 'dask'") as error:
        run_sweep(BROKEN, {"fail": [False]}, pool="dask", output_root=tmp_path / "out")
    assert error.value.field == "pool" and not (tmp_path / "out").exists()
    (tmp_path / "grid.yaml").write_text("grid:\n  fail: [false]\n")
    for option in ("--pool", "--backend"):  # the command line offers the registry's names, under both names
        with pytest.raises(SystemExit):
            main(["sweep", str(BROKEN), "--grid", str(tmp_path / "grid.yaml"), option, "dask"])
        err = capsys.readouterr().err
        assert "invalid choice: 'dask'" in err and "local" in err and "ray" in err


def test_the_old_backend_names_of_a_sweep_still_work_and_warn(tmp_path):
    import workbench.sweeps

    old = r"run_sweep\(backend=...\) is deprecated; use run_sweep\(pool=...\)"
    with pytest.warns(DeprecationWarning, match=old), pytest.raises(ConfigError, match="pool must be one of"):
        run_sweep(BROKEN, {"fail": [False]}, backend="dask", output_root=tmp_path / "out")
    with pytest.warns(DeprecationWarning, match="workbench.sweeps.POOLS"):
        assert workbench.sweeps.BACKENDS is POOLS
    with pytest.warns(DeprecationWarning, match="workbench.sweeps.sweep_pool"):
        assert workbench.sweeps.sweep_backend is sweep_pool


def test_a_sweep_takes_a_bundled_study_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['n_promts'\] for 01_model_evaluation.ipynb"):
        run_sweep("01_model_evaluation", {"n_promts": [1, 2]}, output_root=tmp_path / "out")
    with pytest.raises(ConfigError, match=r"no study '01_model_evaluaton'.*bundled studies"):
        run_sweep("01_model_evaluaton", {"n_prompts": [1]}, output_root=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sweep_can_shard_each_points_evaluation_over_workers(tmp_path):
    with pytest.raises(ConfigError, match=r"broken\.ipynb has no workers parameter"):
        run_sweep(BROKEN, {"fail": [False]}, output_root=tmp_path / "out", workers=2)
    with pytest.raises(ConfigError, match="pool 'local'"):
        run_sweep("01_model_evaluation", {"steps": [2]}, pool="ray", output_root=tmp_path / "out", workers=2)
    fixed = {"models": ["toyworld/sd-small"], "n_prompts": 2, "seeds": [0], "batch_size": 1}
    result = run_sweep("01_model_evaluation", {"steps": [2]}, fixed=fixed, output_root=tmp_path / "out", workers=2)
    (point,) = result.points
    assert point.status == "ok" and point.parameters["workers"] == 2
    rows = read_results(tmp_path / "out" / point.run)
    assert sorted(set(rows["worker"])) == ["worker0:cpu", "worker1:cpu"]


def _check_sweep(result, root: Path) -> None:
    assert [p.status for p in result.points] == ["ok", "failed"]
    failed = result.points[1]
    assert failed.parameters == {"fail": True} and "boom on purpose" in failed.error
    for point in result.points:  # each point is an ordinary run with its report and manifest
        manifest = json.loads((root / point.run / "manifest.json").read_text())
        assert manifest["status"] == point.status and manifest["parameters"]["fail"] is point.parameters["fail"]
    index = json.loads((result.folder / "sweep.json").read_text())
    assert [p["status"] for p in index["points"]] == ["ok", "failed"]
    assert (result.folder / "index.html").read_text().count("report.html") == 2
    runs = (root / "index.html").read_text()
    assert all(Path(p.run).name in runs for p in result.points)


@pytest.mark.slow
def test_cli_sweep_runs_every_point_and_records_the_failed_one(tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text("grid:\n  fail: [false, true]\n")
    code = main(["sweep", str(BROKEN), "--grid", str(tmp_path / "grid.yaml"), "--output-root", str(tmp_path)])
    assert code == 1  # a point failed
    assert "sweep index:" in capsys.readouterr().out
    (folder,) = (tmp_path / "sweeps").iterdir()
    points = json.loads((folder / "sweep.json").read_text())["points"]
    assert [p["status"] for p in points] == ["ok", "failed"]


# --- on Ray --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_on_ray_runs_points_as_tasks_and_records_the_failed_one(local_ray, tmp_path):
    result = run_sweep(BROKEN, {"fail": [False, True]}, pool="ray", output_root=tmp_path)
    _check_sweep(result, tmp_path)
    assert json.loads((result.folder / "sweep.json").read_text())["pool"] == "ray"


@pytest.mark.slow
def test_the_server_runs_as_a_ray_serve_deployment(local_ray, free_port):
    from ray import serve

    from workbench.serve.app import ServeSettings
    from workbench.serve.ray_deployment import serve_on_ray

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_on_ray(ServeSettings(classifier="keyword"), port=port, blocking=False)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the deployment did not come up"
            time.sleep(0.5)
        health = httpx.get(f"{url}/healthz").json()
        assert [w["worker"] for w in health["workers"]] == ["0:cpu"]  # one worker on the replica's device
        steps = []
        remote = wb.RemoteModel(url, "toyworld/sd-small")
        records = wb.generate(remote, "a red circle", wb.GenerationConfig(steps=5), seeds=[0, 1],
                              progress=lambda step, total: steps.append(step))  # fmt: skip
        assert [r.seed for r in records] == [0, 1] and steps[-1] == 10  # progress streamed through Ray's proxy
        local = wb.generate(wb.load("toyworld/sd-small"), "a red circle", wb.GenerationConfig(steps=5), seeds=0)[0]
        assert records[0].image.tobytes() == local.image.tobytes()
        refused = httpx.post(f"{url}/v1/generate", json={"prompt": "a red circle", "steps": 0})
        assert refused.status_code == 422 and "steps" in refused.text
    finally:
        serve.shutdown()
