import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from workbench.abtest import PromptABTester, arms_verdict, compare_arms
from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.metrics import CLIPScorer
from workbench.models import load
from workbench.plots import ab_distributions, ab_image_grid, ab_paired_lines
from workbench.prompts import PromptOptimizer
from workbench.ratings import rating_task, simulate_votes
from workbench.stats import bounded_ci, holm

RED = [
    f"a red {shape} {where}, on a {background} background"
    for shape, where, background in [
        ("circle", "in the centre", "white"),
        ("square", "on the left", "black"),
        ("triangle", "at the top", "grey"),
        ("cross", "on the right", "white"),
        ("circle", "at the bottom", "grey"),
        ("square", "in the centre", "white"),
        ("triangle", "on the left", "black"),
        ("cross", "at the top", "grey"),
        ("circle", "on the right", "black"),
        ("square", "at the bottom", "grey"),
    ]
]


@pytest.fixture(scope="module")
def tester():
    pipe = load("toyworld/sd-small", device="cpu")
    return PromptABTester(pipe, CLIPScorer("toyworld/clip"), config=GenerationConfig(steps=12, batch_size=4))


# --- comparisons on fixed data -------------------------------------------------------------------------


def test_compare_arms_averages_seeds_within_prompts_first():
    rows = pd.DataFrame(
        {
            "arm": ["A"] * 4 + ["B"] * 4,
            "prompt_id": ["p0", "p0", "p1", "p1"] * 2,
            "clip_score": [10, 20, 30, 30, 16, 16, 31, 33],
            "status": "ok",
        }
    )
    table = compare_arms(rows, control="A")
    assert list(table.columns) == [
        "metric", "arm", "control", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm", "win_rate", "n_prompts",
        "n_differing", "min_detectable", "prompts_needed",
    ]  # fmt: skip
    assert table.loc[0, "mean_diff"] == pytest.approx(((16 - 15) + (32 - 30)) / 2)
    assert table.loc[0, "n_prompts"] == 2
    with pytest.raises(ConfigError, match=r"reference arm 'C' has no scored rows; arm values: \['A', 'B'\]"):
        compare_arms(rows, control="C")
    with pytest.raises(ConfigError, match="needs lpips values for the control 'A' and at least one other arm"):
        compare_arms(rows, control="A", metric="lpips")


def test_arms_verdict_reads_the_control_column():
    table = pd.DataFrame(
        [{"metric": "clip_score", "arm": "B", "control": "A", "mean_diff": -1.8, "ci_low": -2.5, "ci_high": -1.1,
          "p_value": 0.002, "p_holm": 0.002, "win_rate": 0.1, "n_prompts": 41, "n_differing": 41,
          "min_detectable": 0.9, "prompts_needed": 12}]
    )  # fmt: skip
    assert arms_verdict(table) == "A beats B by 1.80 CLIP points, 95% CI [1.10, 2.50], p = 0.002, 41 prompts"


def test_compare_arms_bounds_a_metric_with_a_known_range():
    rows = pd.DataFrame(
        {
            "arm": ["A"] * 8 + ["B"] * 8,
            "prompt_id": [f"p{i}" for i in range(8)] * 2,
            "composition_all": [1.0] * 8 + [0.0] + [1.0] * 7,  # B breaks one prompt of 8
        }
    )
    row = compare_arms(rows, control="A", metric="composition_all").iloc[0]
    assert (row["ci_low"], row["ci_high"]) == bounded_ci([-1.0] + [0.0] * 7, 1.0) and row["n_differing"] == 1
    assert "rests on 1 prompt that differs (7 tie)" in arms_verdict(compare_arms(rows, "A", metric="composition_all"))


# --- the tester on the toy world ------------------------------------------------------------------------


def test_known_effect_the_right_colour_wins(tester):
    result = tester.run(RED, {"A": "{prompt}", "B": lambda p: p.replace("red", "blue")}, seeds=[0, 1])
    row = result.comparisons.iloc[0]
    assert row["arm"] == "B" and row["control"] == "A" and row["n_prompts"] == len(RED)
    assert row["p_value"] < 0.01 and row["ci_high"] < 0 and row["win_rate"] < 0.2
    assert result.verdict.startswith("A beats B by ")
    # the paired design: every arm saw the same seeds, and the rows say which arm and seed
    assert len(result.rows) == 2 * len(RED) * 2
    assert set(result.rows.groupby("arm")["seed"].apply(frozenset)) == {frozenset({0, 1})}
    assert (result.rows["scored_against"] == "base").all()
    b_prompts = result.rows.loc[result.rows["arm"] == "B", "prompt"]
    assert b_prompts.str.contains("blue").all() and not b_prompts.str.contains("red").any()
    summary = result.summary.set_index("arm")
    assert summary.loc["A", "clip_score_mean"] > summary.loc["B", "clip_score_mean"]


def test_a_a_identical_arms_show_no_difference(tester):
    result = tester.run(RED[:4], {"A": "{prompt}", "A again": "{prompt}"}, seeds=[3])
    row = result.comparisons.iloc[0]
    assert row["n_differing"] == 0 and row["p_value"] == 1.0
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])  # no difference seen, no range: no interval
    assert result.verdict.startswith("no significant difference")
    assert "no prompt differs (all 4 tie), and clip_score has no known range" in result.verdict


def test_optimizer_arms_carry_negative_prompts_and_plots_draw(tester, tmp_path):
    optimizer = PromptOptimizer(tester.target)
    arms = {"raw": "{prompt}", "photo": lambda p: optimizer.optimize(p, "photo"), "sketch": "a sketch of {prompt}"}
    result = PromptABTester(tester.target, tester.scorer, output_dir=tmp_path, config=GenerationConfig(steps=4)).run(
        RED[:3], arms, seeds=[0, 1], control="raw", score_against="arm"
    )
    photo = result.rows[result.rows["arm"] == "photo"]
    assert photo["negative_prompt"].str.contains("sketch").all() and photo["prompt"].str.startswith("a photo of").all()
    assert len(result.comparisons) == 2 and (result.comparisons["p_holm"] >= result.comparisons["p_value"]).all()
    assert all((tmp_path / path).is_file() for path in result.rows["image_path"])
    assert ab_image_grid(result).size[1] > ab_image_grid(result).size[0]  # 3 arms in rows, 2 seeds in columns
    ab_distributions(result)
    ab_paired_lines(result)


def test_people_judge_each_arm_against_the_control_holm_adjusted_next_to_the_metric(tester, tmp_path):
    arms = {"A": "{prompt}", "B": "a photo of {prompt}", "C": "a sketch of {prompt}"}
    ab = PromptABTester(tester.target, tester.scorer, output_dir=tmp_path / "ab", config=GenerationConfig(steps=2))
    result = ab.run(RED[:6], arms, seeds=[0], control="A")
    task = rating_task(tmp_path / "ab", output_root=tmp_path, display_size=16, gold_share=0, repeat_share=0)
    assert result.people is None and result.people_verdict == ""
    with pytest.raises(ConfigError, match="has no votes yet"):
        result.with_people(task)
    simulate_votes(task, strengths={t: 3.0 if "[B]" in t else 0.0 for t in task.manifest["targets"]})
    rated = result.with_people(task, questions=["quality"], draws=200)
    people = rated.people.set_index("arm")
    assert list(people.index) == ["B", "C"] and set(people["control"]) == {"A"} and result.people is None
    assert list(people["p_holm"]) == pytest.approx(holm(list(people["p_value"])))
    assert (people["comparisons"] == 2).all() and (people["prompts"] == 6).all() and (people["votes"] == 18).all()
    assert people.loc["B", "share"] > 0.7 and people.loc["B", "ci_low"] > 0.5 and people.loc["B", "p_holm"] < 0.05
    assert people.loc["B", "verdict"].startswith("people prefer B to A in ")
    assert rated.people_verdict.splitlines()[0].startswith("quality: people prefer B to A in ")
    assert "(Holm); 18 votes on 6 prompts" in rated.people_verdict
    assert len(result.with_people(task, draws=50).people) == 4  # both questions by default, Holm within each
    result.save(tmp_path / "saved")
    rated.save(tmp_path / "rated")
    for name in ("verdict.txt", "comparisons.json"):  # the metric's verdict stays as it was
        assert (tmp_path / "rated" / name).read_text() == (tmp_path / "saved" / name).read_text()
    assert (tmp_path / "rated" / "people_verdict.txt").read_text() == rated.people_verdict + "\n"
    saved = json.loads((tmp_path / "rated" / "people_comparisons.json").read_text())
    assert [row["arm"] for row in saved] == ["B", "C"] and not (tmp_path / "saved" / "people_verdict.txt").exists()
    with pytest.raises(ConfigError, match=r"was not made from this test's run 'other'; it draws on the runs \["):
        replace(result, rows=result.rows.assign(run_id="other")).with_people(task)


def test_bad_variations_are_named(tester):
    with pytest.raises(ConfigError, match=r"arm 'B': a template must contain \{prompt\}"):
        tester.run(RED[:1], {"A": "{prompt}", "B": "a blue circle"}, seeds=[0])
    with pytest.raises(ConfigError, match="at least two arm names"):
        tester.run(RED[:1], {"A": "{prompt}"}, seeds=[0])
    with pytest.raises(ConfigError, match="control must be one of the arms"):
        tester.run(RED[:1], {"A": "{prompt}", "B": "x {prompt}"}, seeds=[0], control="C")
    with pytest.raises(ConfigError, match="arm 'B': a variation must return"):
        tester.run(RED[:1], {"A": "{prompt}", "B": lambda p: 3}, seeds=[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("notebook", "params", "arms"),
    [
        ("03_prompt_optimization", {"styles": ["photo"]}, {"raw", "photo"}),
        ("04_ab_test", {"variations": {"A": "{prompt}", "B": "a sketch of {prompt}"}, "control": "A"}, {"A", "B"}),
    ],
)
def test_the_ab_notebooks_run_headlessly_into_a_report(tmp_path, notebook, params, arms):
    from workbench.studies import run_study

    small = {"n_prompts": 3, "seeds": [0], "steps": 4, "batch_size": 1, **params}
    run = run_study(Path(__file__).parent.parent / "notebooks" / f"{notebook}.ipynb", small, output_root=tmp_path)
    rows = pd.read_parquet(run.folder / "results.parquet")
    assert set(rows["arm"]) == arms and len(rows) == 3 * len(arms)
    assert (run.folder / "verdict.txt").read_text().strip() and (run.folder / "comparisons.json").is_file()
    assert run.report.read_text().count("data:image/png;base64") >= 3  # two plots and the grids
