"""The metric validity study: its measures on a ladder whose truth is made by hand, and the bundled notebook
under papermill with small parameters."""

import json

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import metric_validity
from workbench.errors import ConfigError


def _ladder_rows(rates: dict[str, float], prompts: int = 40, seed: int = 0) -> pd.DataFrame:
    """One image per rung and prompt; the judge says right with the rung's rate; clip_score follows the
    judge (plus a little noise), pickscore is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for rung, rate in rates.items():
        right = rng.permutation(np.arange(prompts) < round(rate * prompts))  # exactly the rate, in random places
        for i in range(prompts):
            rows.append(
                {
                    "rung": rung, "prompt_id": f"p{i:02d}", "seed": 0, "status": "ok",
                    "composition_all": float(right[i]), "composition": 0.5 + 0.5 * right[i],
                    "clip_score": 10.0 * right[i] + rng.normal(0, 0.5), "pickscore": rng.normal(0, 1),
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_a_metric_that_follows_the_judge_agrees_and_noise_does_not():
    rows = _ladder_rows({"good": 0.9, "middle": 0.5, "bad": 0.1, "awful": 0.05})
    table = metric_validity.validity(rows, ".", ["clip_score", "pickscore", "composition_all"], draws=100)
    table = table.set_index("metric")
    assert table.loc["clip_score", "kendall_tau"] == 1.0 and table.loc["composition_all", "kendall_tau"] == 1.0
    assert table.loc["clip_score", "auc_wrong"] > 0.99 and table.loc["composition_all", "auc_wrong"] == 1.0
    assert 0.3 < table.loc["pickscore", "auc_wrong"] < 0.7
    # good-middle and middle-bad are 40 points apart: a few prompts order them; bad-awful (5 points) is harder
    assert table.loc["clip_score", "pairs"] == 3 and 2 <= table.loc["clip_score", "prompts_needed"] <= 20
    assert table.loc["pickscore", "prompts_needed"] is None or np.isnan(table.loc["pickscore", "prompts_needed"])
    records = metric_validity.validity_records(table.reset_index())
    assert [set(r) for r in records] == [{"metric", "kendall_tau", "auc_wrong", "prompts_needed"}] * 3
    assert records[1]["prompts_needed"] is None


def test_a_reversed_metric_has_tau_minus_one_and_lower_is_better_counts_as_better():
    rows = _ladder_rows({"good": 0.9, "middle": 0.5, "bad": 0.1})
    rows["clip_score"] = -rows["clip_score"]
    (tau,) = metric_validity.validity(rows, ".", ["clip_score"], draws=20)["kendall_tau"]
    assert tau == -1.0


def test_prompt_subsets_go_up_to_half_the_prompts():
    assert metric_validity._prompt_grid(40) == [2, 4, 8, 16, 20]
    assert metric_validity._prompt_grid(4) == [2]


def test_the_ladder_and_its_prompts_are_checked():
    assert len(metric_validity.ladder(["a", "b"], [1, 2], [5.0])) == 4
    with pytest.raises(ConfigError, match=r"at least two rungs"):
        metric_validity.ladder(["a"], [1], [5.0])
    prompts = metric_validity.toy_prompts(50, seed=3)
    assert prompts["prompt"].is_unique and prompts.equals(metric_validity.toy_prompts(50, seed=3))
    with pytest.raises(ConfigError, match=r"n_prompts must be between 2 and"):
        metric_validity.toy_prompts(10**6)


def test_the_validity_notebook_runs_headlessly_and_writes_its_tables(tmp_path):
    parameters = {
        "models": ["toyworld/sd-small"], "steps": [2, 8], "guidances": [5.0], "n_prompts": 24, "draws": 20,
        "judge_scenes": 60, "batch_size": 24,
    }  # fmt: skip
    run = wb.run_study("06_metric_validity", parameters, output_root=tmp_path, progress=False)
    validity = json.loads((run.folder / "validity.json").read_text())
    assert [r["metric"] for r in validity] == [
        "clip_score", "composition", "composition_all", "pickscore", "fid", "kid", "cmmd",
    ]  # fmt: skip
    keys = {"metric", "kendall_tau", "auc_wrong", "prompts_needed", "auc_wrong_readings", "readings_ci_low",
            "readings_ci_high"}  # fmt: skip
    assert all(set(r) == keys for r in validity)
    assert all(0 <= by["auc_wrong_readings"] <= 1 for by in validity if by["metric"] in ("clip_score", "pickscore"))
    assert all(by["auc_wrong_readings"] is None for by in validity if by["metric"] in ("fid", "kid", "cmmd"))
    by_metric = {r["metric"]: r for r in validity}
    assert by_metric["composition_all"]["kendall_tau"] == 1.0  # the judge against itself
    assert all(by_metric[m]["auc_wrong"] is None for m in ("fid", "kid", "cmmd"))
    assert all(0 <= by_metric[m]["auc_wrong"] <= 1 for m in ("clip_score", "pickscore"))
    judge = json.loads((run.folder / "judge.json").read_text())
    attributes = {"shape", "colour", "size", "position", "background", "style"}
    assert set(judge["rendered"]) == attributes and all(v >= 0.95 for v in judge["rendered"].values())
    by_eye = judge["read_by_eye"]  # the committed generated images, against their readings
    assert set(by_eye["attributes"]) == attributes | {"style (first reading)"} and by_eye["images"] >= 460
    assert all(0 <= e["judge_agreed"]["share"] <= 1 for e in by_eye["attributes"].values())
    assert 0 <= by_eye["composition_all"]["share"] <= 1 and 0 <= by_eye["composition_all_agreed"]["share"] <= 1
    assert by_eye["composition_all_agreed"]["n"] < by_eye["composition_all"]["n"]
    report = run.report.read_text()
    assert "How far each metric agrees with the truth" in report and "kendall_tau" in report
    assert "Per-set metrics: what to conclude" in report
    assert run.manifest["status"] == "ok" and run.manifest["images"] == 48
    provenance = json.loads((run.folder / "provenance.json").read_text())  # every metric, per-set ones too
    assert {"clip_score", "pickscore", "fid", "kid", "cmmd"} <= set(provenance)
    assert provenance["fid"]["reference"] and provenance["cmmd"]["weights"]
    rows = wb.RunFolder(run.folder).results()
    assert set(rows["run_id"]) == {run.folder.name}  # one run id in rows and manifest
