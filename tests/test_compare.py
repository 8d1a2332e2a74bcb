"""workbench compare: two run folders written by hand (a version-1 run A and a current run B), differences
checked by hand, the regression exit codes, the report."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from workbench.cli import main
from workbench.compare import LATENCY, Check, compare_runs, find_run
from workbench.errors import ConfigError
from workbench.metrics import METRICS, MetricOptions
from workbench.metrics.provenance import differences, metric_provenance
from workbench.prompts import load_prompts
from workbench.run_folder import RunFolder
from workbench.stats import bounded_ci, mean_ci
from workbench.weights import checkpoint_files, checkpoint_hash

PROMPTS = [f"p{i}" for i in range(10)]
# B - A of clip_score per prompt: m/a loses about 2 points everywhere, m/b changes by noise around 0.
CLIP_DROP = {p: -2 - 0.1 * (i % 3) for i, p in enumerate(PROMPTS)}
CLIP_NOISE = dict(zip(PROMPTS, [0.1, -0.1, 0.2, -0.2, 0.3, -0.3, 0.05, -0.05, 0.15, -0.05], strict=True))


def _write_run(root: Path, run_id: str, rows: list[dict], *, version: int, study: str = "study") -> Path:
    """A run folder as a study leaves it: results.parquet, PNGs, manifest.json and summary.json; version 1
    without any schema_version and with a bare-list summary."""
    folder = root / study / run_id
    (folder / "images").mkdir(parents=True)
    for row in rows:
        if "grey" in row:
            name = f"images/{row['model_id'].replace('/', '-')}-{row['prompt_id']}-{row['seed']}.png"
            Image.new("RGB", (8, 8), (row.pop("grey"),) * 3).save(folder / name)
            row["image_path"] = name
    results = pd.DataFrame(rows)
    summary = [{"model_id": m, "clip_mean": float(g["clip_score"].mean())} for m, g in results.groupby("model_id")]
    manifest = {"study": study, "run_id": run_id, "started": "2026-01-01T10:00:00+0000", "status": "ok"}
    if version == 1:
        (folder / "summary.json").write_text(json.dumps(summary))
    else:
        results["schema_version"] = 2
        (folder / "summary.json").write_text(json.dumps({"schema_version": 2, "rows": summary}))
        manifest["schema_version"] = 2
    results.to_parquet(folder / "results.parquet", index=False)
    (folder / "manifest.json").write_text(json.dumps(manifest | {"summary": summary}))
    return folder


def _row(model: str, prompt: str, seed: int, clip: float, latency: float, **extra) -> dict:
    settings = extra.pop("settings", "s1")
    return {
        "run_id": "x", "model_id": model, "prompt_id": prompt, "prompt": f"a <red> circle {prompt}", "seed": seed,
        "settings": settings, "steps": 30 if settings == "s2" else 20, "latency_s": latency, "peak_mem_mb": 100.0,
        "status": "ok", "clip_score": clip, **extra,
    }  # fmt: skip


@pytest.fixture
def runs(tmp_path):
    """Run A (version 1) and run B: m/a got worse and twice as slow, m/b changed its steps only."""
    a, b = [], []
    for i, prompt in enumerate(PROMPTS):
        for seed in (0, 1):
            k = 2 * i + seed
            base = 30 + 0.5 * i + 0.1 * seed
            latency = 0.10 + 0.002 * k
            a.append(_row("m/a", prompt, seed, base, latency, grey=100))
            a.append(_row("m/b", prompt, seed, base, latency, grey=50))
            failed = prompt == "p9" and seed == 1
            b.append(_row("m/a", prompt, seed, base + CLIP_DROP[prompt], 2 * latency, grey=100 + k + 1,
                          status="error: nan" if failed else "ok"))  # fmt: skip
            b.append(_row("m/b", prompt, seed, base + CLIP_NOISE[prompt], latency, grey=50, settings="s2"))
    a.append(_row("m/a", "p0", 2, 99.0, 0.1, grey=0))  # a seed only A has: no pair, left out
    b.append(_row("m/c", "p0", 0, 10.0, 0.1))  # a model only B has
    root = tmp_path / "outputs"
    _write_run(root, "20260101-100000-aaaaaa", a, version=1)
    _write_run(root, "20260102-100000-bbbbbb", b, version=2)
    return root


def test_the_differences_are_paired_per_prompt_with_seeds_averaged(runs):
    comparison = compare_runs("study/20260101-100000-aaaaaa", "study/20260102-100000-bbbbbb", output_root=runs)
    rows = comparison.rows.set_index(["model_id", "metric"])
    assert comparison.metrics == ("clip_score", "peak_mem_mb")
    drop = rows.loc[("m/a", "clip_score")]
    assert drop["mean_diff"] == pytest.approx(-2.09)  # -2 - 0.1 * mean(i % 3) over the 10 prompts
    expected = mean_ci(list(CLIP_DROP.values()))
    assert (drop["ci_low"], drop["ci_high"]) == pytest.approx(expected)
    assert drop["n_prompts"] == 10 and drop["n_units"] == 19  # p9 seed 1 failed in B
    assert drop["win_rate"] == 0 and drop["p_holm"] < 0.05 and drop["change"] == "worse"
    noise = rows.loc[("m/b", "clip_score")]
    assert (
        noise["mean_diff"] == pytest.approx(0.01) and noise["ci_low"] < 0 < noise["ci_high"] and noise["change"] == ""
    )
    memory = rows.loc[("m/a", "peak_mem_mb")]
    assert memory["mean_diff"] == 0 and memory["p_value"] == 1
    # Holm across both models and both metrics.
    p = comparison.rows.dropna(subset=["p_value"])
    assert len(p) == 4 and (p["p_holm"] >= p["p_value"]).all()
    assert drop["p_holm"] == pytest.approx(min(1, 4 * drop["p_value"]))
    # Latency: the ratio of medians B / A, lower is better.
    slower, same = rows.loc[("m/a", LATENCY)], rows.loc[("m/b", LATENCY)]
    assert slower["ratio"] == pytest.approx(2.0) and 1.2 < slower["ci_low"] <= 2 <= slower["ci_high"]
    assert slower["change"] == "worse" and slower["n_units"] == 19
    assert same["ratio"] == pytest.approx(1.0) and same["ci_low"] < 1 < same["ci_high"] and same["change"] == ""
    # What a reader must know.
    notes = "\n".join(comparison.notes)
    assert "only in B: ['m/c']" in notes
    assert "m/b: the settings differ on 20 of 20 shared units (steps 20 -> 30)" in notes
    assert "m/a: 0 images failed in A, 1 in B" in notes


def test_a_composition_change_is_bounded_by_its_range_and_ties_are_counted(tmp_path, capsys):
    root = tmp_path / "outputs"
    for run_id, broken in (("20260101-100000-aaaaaa", set()), ("20260102-100000-bbbbbb", {"p3"})):
        rows = [
            _row(model, prompt, seed, 30.0, 0.1, composition_all=0.0 if model == "m/a" and prompt in broken else 1.0)
            for model in ("m/a", "m/b")
            for prompt in PROMPTS
            for seed in (0, 1)
        ]
        _write_run(root, run_id, rows, version=2)
    a, b = "study/20260101-100000-aaaaaa", "study/20260102-100000-bbbbbb"
    comparison = compare_runs(a, b, output_root=root, metrics=["composition_all"])
    rows = comparison.rows.set_index(["model_id", "metric"])
    broken, same = rows.loc[("m/a", "composition_all")], rows.loc[("m/b", "composition_all")]
    assert (broken["ci_low"], broken["ci_high"]) == bounded_ci([-1.0] + [0.0] * 9, 1.0) and broken["n_differing"] == 1
    assert (same["ci_low"], same["ci_high"]) == bounded_ci(np.zeros(10), 1.0) and same["ci_low"] < 0 < same["ci_high"]
    summary = comparison.summary()
    assert "10 (1 differ)" in summary and "10 (0 differ)" in summary
    assert (
        "where some prompts tie, the prompts column says how many differ"
        in comparison.write_html(tmp_path / "report.html").read_text()
    )
    assert main(["compare", a, b, "--output-root", str(root), "--metric", "composition_all"]) == 0
    assert "composition_all      -0.100  [-0.404, 0.126]   1.000  10 (1 differ)" in capsys.readouterr().out


def test_the_images_that_changed_most(runs):
    comparison = compare_runs("study/20260101-100000-aaaaaa", "study/20260102-100000-bbbbbb", output_root=runs)
    images = comparison.images.set_index(["model_id", "prompt_id", "seed"])
    assert images.loc[("m/a", "p3", 1), "pixel_diff"] == 8  # unit k = 7: B's grey is 100 + 8
    assert (images.xs("m/b")["pixel_diff"] == 0).all() and len(images.xs("m/b")) == 20
    assert len(images.xs("m/a")) == 19  # the failed image is not compared
    report = comparison.write_html(runs / "report.html")
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3 * 8  # the top 8 of m/a, A | B | difference; m/b unchanged
    assert "p9, seed 0: 19.00" in page and "p5, seed 1: 12.00" in page and "p5, seed 0: 11.00" not in page
    assert "a &lt;red&gt; circle" in page and "<red>" not in page
    assert "0 of 20 shared images changed" in page and "src='http" not in page


def test_cli_exit_codes_and_regressions(runs, capsys):
    a, b = "study/20260101-100000-aaaaaa", "study/20260102-100000-bbbbbb"
    base = ["compare", a, b, "--output-root", str(runs)]
    assert main(base) == 0
    out = capsys.readouterr().out
    report = runs / "compare" / "20260101-100000-aaaaaa_vs_20260102-100000-bbbbbb.html"
    assert f"report: {report}" in out and report.is_file()
    assert "A  study/20260101-100000-aaaaaa (started 2026-01-01T10:00:00+0000, ok)" in out
    line = next(row for row in out.splitlines() if row.startswith("m/a") and "clip_score" in row)
    assert "-2.090" in line and line.endswith("worse") and "REGRESSION" not in out
    assert len(out.splitlines()) < 25  # one screen

    assert main([*base, "--fail-if", "clip_score < -1", "--fail-if", "latency_ratio > 1.2"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION m/a: clip_score < -1 (B - A = -2.090, 95% CI [" in out
    assert "REGRESSION m/a: latency_ratio > 1.2 (B / A = 2.000x" in out
    assert "m/b" not in "".join(line for line in out.splitlines() if line.startswith("REGRESSION"))
    assert "worse REGRESSION" in out
    # Thresholds the whole interval does not pass: no regression.
    assert (
        main([*base, "--fail-if", "clip_score < -3", "--fail-if", "latency_ratio>=2.5", "--fail-if", "peak_mem_mb > 0"])
        == 0
    )
    capsys.readouterr()

    for args, message in [
        (["--fail-if", "fid < 3"], "the metric 'fid', which this comparison does not have; metrics: ['clip_score'"),
        (["--fail-if", "clip_score ~ 1"], "is not METRIC OP VALUE with OP one of ['<', '<=', '>', '>=']"),
        (["--fail-if", "clip_score < low"], "is not METRIC OP VALUE"),
        (["--metric", "nope"], "metric 'nope' is not a per-image column of both runs"),
    ]:
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert main(["compare", a, "study/2026-nope", "--output-root", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "no run 'study/2026-nope'" in err and "'study/20260101-100000-aaaaaa'" in err


def test_people_judge_b_against_a_from_a_rating_task_on_both_runs(runs, capsys):
    from workbench.ratings import rating_task, simulate_votes

    a, b = "study/20260101-100000-aaaaaa", "study/20260102-100000-bbbbbb"
    targets = ["m/a @20260101-100000-aaaaaa", "m/a @20260102-100000-bbbbbb"]
    task = rating_task([runs / a, runs / b], targets=targets, output_root=runs, task_id="people", display_size=16,
                       gold_share=0, repeat_share=0)  # fmt: skip
    simulate_votes(task, strengths={targets[0]: 0.0, targets[1]: 2.0})
    comparison = compare_runs(a, b, output_root=runs, ratings=task.path)
    alignment, quality = comparison.people
    assert quality.question == "quality" and quality.comparisons == 1  # one model: nothing to adjust for
    assert alignment.question == "alignment" and alignment.targets == tuple(targets) and alignment.prompts == 10
    assert alignment.share > 0.7 and alignment.ci_low > 0.5 and alignment.votes == 3 * 19  # p9 seed 1 failed in B

    base = ["compare", a, b, "--output-root", str(runs)]
    report = runs / "compare" / "20260101-100000-aaaaaa_vs_20260102-100000-bbbbbb.html"
    assert main([*base, "--ratings", "people"]) == 0
    lines = capsys.readouterr().out.splitlines()
    said = lines.index("people (rating task people):")
    assert lines[said + 1] == f"  m/a, alignment: {alignment.verdict('A', 'B')}"
    assert lines[said + 2] == f"  m/a, quality: {quality.verdict('A', 'B')}"
    assert alignment.verdict("A", "B").startswith("people prefer B to A in ")
    page = report.read_text()
    assert "<h2>People</h2>" in page and f"<li>m/a, alignment: {alignment.verdict('A', 'B')}</li>" in page
    assert main(base) == 0  # without --ratings, nothing of people
    assert "rating task" not in capsys.readouterr().out and "<h2>People</h2>" not in report.read_text()

    rating_task(runs / a, output_root=runs, task_id="only-a", display_size=16)  # m/a against m/b, in run A only
    assert main([*base, "--ratings", "only-a"]) == 2
    err = capsys.readouterr().err
    assert "rating task 'only-a' does not draw on both runs '20260101-100000-aaaaaa' and '20260102-100000-bbbbbb': " \
           "its runs are ['20260101-100000-aaaaaa']" in err  # fmt: skip
    other = ["m/b @20260101-100000-aaaaaa", "m/a @20260102-100000-bbbbbb"]
    rating_task([runs / a, runs / b], targets=other, output_root=runs, task_id="across", display_size=16)
    with pytest.raises(ConfigError, match=r"rating task 'across' rates no target of both runs \(model @run\)"):
        compare_runs(a, b, output_root=runs, ratings="across")
    assert main([*base, "--ratings", "nope"]) == 2
    assert "no rating task 'nope': not a task folder, and not a task id under" in capsys.readouterr().err


def test_runs_are_named_by_folder_and_without_shared_units_refused(runs, tmp_path):
    folder = runs / "study" / "20260101-100000-aaaaaa"
    run = find_run(folder, output_root=tmp_path / "elsewhere")
    assert run.folder == folder and run.name == "study/20260101-100000-aaaaaa" and run.manifest["schema_version"] == 1
    other = _write_run(tmp_path, "other run!", [_row("m/a", "q0", 0, 30.0, 0.1)], version=2)
    assert find_run(other).id == "other-run"  # a file name from the folder's name, made safe
    with pytest.raises(ConfigError, match=r"no shared units: runs study/20260101-100000-aaaaaa and study/other run!"):
        compare_runs(folder, other)
    with pytest.raises(ConfigError, match=r"no run 'nothing'.*runs there: \(none\)"):
        find_run("nothing", output_root=tmp_path / "elsewhere")


def test_a_version_1_run_against_itself_changes_nothing(runs, capsys):
    a = "study/20260101-100000-aaaaaa"
    comparison = compare_runs(a, a, output_root=runs)
    assert (comparison.rows.dropna(subset=["mean_diff"])["mean_diff"] == 0).all()
    assert (comparison.rows["change"] == "").all() and (comparison.images["pixel_diff"] == 0).all()
    assert main(["compare", a, a, "--output-root", str(runs), "--fail-if", "clip_score < 0"]) == 0
    assert "images changed: 0 of 41 shared" in capsys.readouterr().out


def test_a_check_needs_the_whole_interval_past_its_threshold():
    row = {"metric": "clip_score", "ci_low": -2.0, "ci_high": -0.5}
    assert Check.parse("clip_score < -0.4").fails(row) and not Check.parse("clip_score < -0.5").fails(row)
    assert Check.parse("clip_score <= -0.5").fails(row) and not Check.parse("clip_score > -2").fails(row)
    assert Check.parse(" clip_score>=-2 ").fails(row) and str(Check.parse("clip_score>=-2")) == "clip_score >= -2"
    assert not Check.parse("clip_score < 0").fails({"ci_low": np.nan, "ci_high": np.nan})  # no interval, no verdict
    with pytest.raises(ConfigError, match="is not METRIC OP VALUE") as error:
        Check.parse("clip_score < inf")
    assert error.value.field == "fail_if"


def test_a_version_1_run_reads_in_the_current_form(runs):
    from workbench.row import ADDED_COLUMNS
    from workbench.run_folder import COMPARISON_COLUMNS, read_comparisons, read_results, read_summary

    old, new = runs / "study" / "20260101-100000-aaaaaa", runs / "study" / "20260102-100000-bbbbbb"
    results = read_results(old)
    assert (results["schema_version"] == 1).all() and (read_results(new)["schema_version"] == 2).all()
    for column in ADDED_COLUMNS[2]:
        assert column in results and results[column].isna().all()
    assert read_summary(old)["rows"][0]["model_id"] == "m/a" and read_summary(old)["schema_version"] == 1
    assert list(read_comparisons(old).columns) == COMPARISON_COLUMNS and read_comparisons(old).empty
    with pytest.raises(ConfigError, match=r"has no results\.parquet"):
        read_results(runs)


def test_a_version_1_summary_keeps_its_keys_and_its_cost_reads_as_usd_per_image(tmp_path):
    from workbench.run_folder import read_summary

    (tmp_path / "summary.json").write_text(json.dumps([{"model_id": "m", "clip_mean": 30.0, "cost_per_image": 0.001}]))
    (row,) = read_summary(tmp_path)["rows"]
    assert row == {
        "model_id": "m", "clip_mean": 30.0, "cost_per_image": 0.001, "usd_per_image": 0.001, "clip_score_mean": 30.0
    }  # fmt: skip


def test_a_version_2_summary_reads_its_clip_keys_as_clip_score_keys(tmp_path):
    from workbench.run_folder import read_manifest, read_summary

    old = {"model_id": "m", "clip_mean": 30.0, "clip_ci_low": 29.0, "clip_ci_high": 31.0}
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 2, "rows": [old]}))
    (row,) = read_summary(tmp_path)["rows"]
    assert row == old | {"clip_score_mean": 30.0, "clip_score_ci_low": 29.0, "clip_score_ci_high": 31.0}
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 2, "summary": {"rows": [old]}}))
    assert read_manifest(tmp_path)["summary"][0]["clip_score_ci_high"] == 31.0


def test_an_unreadable_run_is_an_error_not_a_regression(runs, capsys):
    a, b = "study/20260101-100000-aaaaaa", "study/20260102-100000-bbbbbb"
    (runs / b / "results.parquet").write_bytes(b"not a parquet file")
    assert main(["compare", a, b, "--output-root", str(runs), "--fail-if", "clip_score < -1"]) == 2
    assert f"error: cannot compare {a} with {b}:" in capsys.readouterr().err


def _provenance(folder: Path, clip_model: Path, prompts: int = 10) -> None:
    frame = pd.DataFrame({"prompt_id": PROMPTS[:prompts], "prompt": PROMPTS[:prompts]})
    options = MetricOptions(clip_model=str(clip_model))
    RunFolder(folder).write_provenance(metric_provenance(["clip_score"], options, frame, images_per_prompt=2))


def test_a_metric_measured_with_other_weights_is_refused_and_a_copy_of_the_same_weights_is_not(runs, tmp_path, capsys):
    clip = checkpoint_files("toyworld/clip")
    same, changed = tmp_path / "elsewhere" / "clip", tmp_path / "changed" / "clip"
    shutil.copytree(clip, same)
    shutil.copytree(clip, changed)
    weights = next(changed.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one byte of the weights
    weights.write_bytes(bytes(data))
    a, b = (runs / "study" / run for run in ("20260101-100000-aaaaaa", "20260102-100000-bbbbbb"))
    _provenance(a, clip)
    _provenance(b, same, prompts=8)  # the same bytes under another path: the same checkpoint
    comparison = compare_runs(a, b, metrics=["clip_score"])
    assert not any("measured differently" in note for note in comparison.notes)
    assert any("different prompt sets" in note for note in comparison.notes)  # a note, not a refusal
    _provenance(b, changed)
    with pytest.raises(ConfigError, match=r"clip_score \(weights: .* vs .*\).*--allow-mismatch"):
        compare_runs(a, b, metrics=["clip_score"])
    out = ["--out", str(tmp_path / "report.html")]
    assert main(["compare", str(a), str(b), "--metric", "clip_score", *out]) == 2
    assert "measured 1 metric(s) differently" in capsys.readouterr().err
    allowed = compare_runs(a, b, metrics=["clip_score"], allow_mismatch=True)
    assert any("compared although measured differently" in note for note in allowed.notes)
    assert "compared although measured differently" in allowed.summary()
    assert main(["compare", str(a), str(b), "--metric", "clip_score", "--allow-mismatch", *out]) in (0, 1)


def test_runs_without_provenance_compare_with_a_note(runs):
    a, b = (runs / "study" / run for run in ("20260101-100000-aaaaaa", "20260102-100000-bbbbbb"))
    comparison = compare_runs(a, b, metrics=["clip_score"])
    assert "clip_score: provenance unknown in run A and B (made before it was recorded)" in comparison.notes


def test_provenance_names_version_weights_preprocessing_and_the_prompt_set():
    prompts = load_prompts("toyworld", n=3)
    (record,) = metric_provenance(["clip_score"], None, prompts, images_per_prompt=2).values()
    assert record["checkpoint"] == "toyworld/clip" and record["weights"] == checkpoint_hash("toyworld/clip")
    assert record["version"] == METRICS["clip_score"].version and "crop" in record["preprocessing"]
    assert (record["prompt_set"], record["prompts"], record["images_per_prompt"]) == ("toyworld", 3, 2)
    (fid,) = metric_provenance(["fid"], None, prompts, images_per_prompt=1).values()
    assert fid["checkpoint"] == "toyworld/clip" and "toy world" in fid["reference"]
    assert differences(record, {**record, "version": "2"}) == ["version: '1' vs '2'"]
