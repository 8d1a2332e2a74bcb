"""Rating tasks made from a run, shown blind; votes stored once each; strengths, ranks and raters from them."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from workbench.config import GenerationConfig
from workbench.errors import ConfigError, VoteConflict
from workbench.evaluation import ModelEvaluator
from workbench.ratings import RatingTask, VoteStore, analyze_ratings, rating_task, simulate_votes
from workbench.ratings.analysis import metrics_against_people, pairwise_outcomes, rater_table, strength_table
from workbench.ratings.davidson import fit_davidson
from workbench.ratings.preference import match_target, people_preference, people_preferences

MODELS = ["toyworld/sd-small", "toyworld/sd-base"]
PROMPTS = [
    "a red circle in the centre, on a white background",
    "a blue square on the left, on a grey background",
    "a green triangle at the top, on a black background",
    "a small yellow circle on the right, on a white background",
    "a large red square at the bottom, on a grey background",
    "a blue triangle in the centre, on a white background",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    config = GenerationConfig(steps=2, batch_size=6)
    ModelEvaluator(PROMPTS, MODELS, [0, 1], config, output_dir=folder, metrics=["clip_score"]).run()
    return folder


@pytest.fixture
def task(run, tmp_path):
    return rating_task(run, "pairwise", output_root=tmp_path, gold_share=0.25, repeat_share=0.25, display_size=64)


def test_a_pairwise_task_pairs_the_targets_on_each_prompt_and_seed_with_hidden_checks(task):
    plain = [item for item in task.items.values() if item.check is None]
    assert len(plain) == len(PROMPTS) * 2 and all(set(item.targets) == set(MODELS) for item in plain)
    gold = [item for item in task.items.values() if item.check == "gold"]
    repeats = [item for item in task.items.values() if item.check == "repeat"]
    assert len(gold) == 3 and len(repeats) == round(0.25 * len(plain))
    for item in gold:  # the right answer to the first question is the image made for this prompt
        assert item.gold["alignment"] == item.images[0] and item.targets[0] == item.targets[1]
    assert all(task.items[item.repeat_of].images == item.images for item in repeats)
    assert task.manifest["targets"] == MODELS and len(task.manifest["runs"]) == 1


def test_raters_see_nothing_that_names_a_model_run_setting_or_check(task, run):
    run_id = task.manifest["runs"][0]["run_id"]
    for view in task.order("ana"):
        shown = json.dumps(view.to_dict())
        assert not any(word in shown for word in [*MODELS, run_id, "toyworld", "gold", "repeat", "steps"])
        for image_id in view.images:
            with Image.open(task.image(image_id)) as image:
                assert image.size == (64, 64) and not image.info and not getattr(image, "text", {})
            assert image_id.isalnum() and len(image_id) == 20
    with pytest.raises(ConfigError, match="no image"):
        task.image("../manifest")


def test_each_rater_has_an_order_of_their_own_repeats_apart_and_swapped(task):
    ana, ben = task.order("ana"), task.order("ben")
    assert [v.item_id for v in ana] == [v.item_id for v in task.order("ana")]  # the same for the same rater
    assert [v.item_id for v in ana] != [v.item_id for v in ben]
    assert sorted(v.item_id for v in ana) == sorted(task.items)
    for views in (ana, ben):
        position = {v.item_id: i for i, v in enumerate(views)}
        for item in (i for i in task.items.values() if i.repeat_of):
            original, repeat = views[position[item.repeat_of]], views[position[item.item_id]]
            assert abs(position[item.item_id] - position[item.repeat_of]) > 1
            assert repeat.images == original.images[::-1]
        pairs = [(task.items[v.item_id].prompt_id, task.items[v.item_id].seed) for v in views]
        assert all(a != b for a, b in itertools.pairwise(pairs))
    assert RatingTask(task.path).order("ana") == ana  # reopened: the same


def test_a_vote_is_stored_once_and_bad_votes_change_nothing(task):
    store = VoteStore(task)
    view = task.order("ana")[0]
    _, new = store.add("ana", view.item_id, "alignment", "left", shown=view.images, vote_id="v1", decided_s=2.5)
    again, new_again = store.add("ana", view.item_id, "alignment", "right", shown=view.images, vote_id="v1")
    assert new and not new_again and again.answer == "left" and len(store.votes("ana")) == 1
    for bad, message in [
        ({"item_id": "i99999"}, "no item 'i99999'"),
        ({"answer": "both"}, r"answer must be one of \['left', 'right', 'tie', 'skip'\]"),
        ({"question": "beauty"}, "no question 'beauty'"),
        ({"shown": ("x", "y")}, "shown must be the item's images"),
        ({"rater": "../ana"}, "a rater's name is letters"),
        ({"interface": "email"}, "interface must be one of"),
    ]:
        arguments = {"rater": "ana", "item_id": view.item_id, "question": "alignment", "answer": "tie",
                     "shown": view.images} | bad  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            store.add(**arguments)
    assert [v.vote_id for v in store.votes()] == ["v1"]
    with pytest.raises(VoteConflict, match="has answered 'alignment' on"):  # a second answer, not a resend
        store.add("ana", view.item_id, "alignment", "right", shown=view.images, vote_id="v9")
    store.undo("ana", "v1")
    assert store.votes() == [] and (task.path / "votes" / "ana.jsonl").read_text().count("\n") == 2
    _, new = store.add("ana", view.item_id, "alignment", "left", shown=view.images, vote_id="v1")  # a late resend
    assert not new and store.votes() == []  # the undone vote stays undone
    with open(task.path / "votes" / "ana.jsonl", "a") as fh:
        fh.write('{"vote_id": "cut sh')  # a crash mid-line: the votes before it stand, the next one is whole
    store.add("ana", view.item_id, "quality", "tie", shown=view.images, vote_id="v2")
    assert [v.vote_id for v in VoteStore(task).votes("ana")] == ["v2"]


def test_davidson_recovers_known_strengths_and_refuses_a_graph_in_pieces():
    rng = np.random.default_rng(0)
    true, tie = np.array([0.8, 0.0, -0.8]), 0.5
    wins, ties = np.zeros((3, 3)), np.zeros((3, 3))
    for i in range(3):
        for j in range(i + 1, 3):
            a, b, t = np.exp(true[i]), np.exp(true[j]), tie * np.exp((true[i] + true[j]) / 2)
            outcome = rng.choice(3, size=4000, p=[a, t, b] / (a + b + t))
            wins[i, j], ties[i, j], wins[j, i] = (outcome == 0).sum(), (outcome == 1).sum(), (outcome == 2).sum()
            ties[j, i] = ties[i, j]
    fit = fit_davidson(["x", "y", "z"], wins, ties)
    assert np.abs(fit.strengths - true).max() < 0.06 and abs(fit.tie - tie) < 0.06
    apart = np.zeros((4, 4))
    apart[0, 1] = apart[2, 3] = 3
    with pytest.raises(ConfigError, match=r"groups that never met \[\['a', 'b'\], \['c', 'd'\]\]"):
        fit_davidson(["a", "b", "c", "d"], apart, np.zeros((4, 4)))


def _vote_all(task, rater, choose, rng):
    """``rater`` answers every item: ``choose(item, shown, rng)`` gives "left", "right" or "tie"."""
    store = VoteStore(task)
    for view in task.order(rater):
        item = task.items[view.item_id]
        for question in task.questions:
            store.add(rater, item.item_id, question.id, choose(item, view.images, rng), shown=view.images,
                      interface="simulated")  # fmt: skip


def _prefers(target):
    def choose(item, shown, rng):
        if item.check == "gold":
            return "left" if shown[0] == item.gold["alignment"] else "right"
        wanted = item.images[item.targets.index(target)]
        return "left" if shown[0] == wanted else "right"

    return choose


def _random(item, shown, rng):
    return str(rng.choice(["left", "right", "tie"]))


def test_strengths_rank_the_preferred_target_first_and_a_careless_rater_is_flagged(task):
    rng = np.random.default_rng(1)
    for rater in ("ana", "ben", "cem"):
        _vote_all(task, rater, _prefers("toyworld/sd-base"), rng)
    _vote_all(task, "dan", _random, rng)
    outcomes = pairwise_outcomes(task, "alignment")
    assert len(outcomes) == 4 * len(PROMPTS) * 2  # checks left out of the fit
    table, rates = strength_table(outcomes, task.manifest["targets"], draws=50)
    assert table["target"].iloc[0] == "toyworld/sd-base" and list(table["rank"]) == [1, 2]
    assert table["ci_low"].iloc[0] > table["ci_high"].iloc[1]
    rate = rates.set_index(["target", "opponent"]).loc[("toyworld/sd-base", "toyworld/sd-small")]
    assert 0.6 < rate["win_rate"] < 0.9 and rate["ci_low"] <= rate["win_rate"] <= rate["ci_high"]
    raters = rater_table(task, "alignment").set_index("rater")
    assert raters.loc[["ana", "ben", "cem"], "agreement"].eq(1.0).all() and not raters.loc["ana", "flagged"]
    assert raters.loc["ana", "gold_accuracy"] == 1.0 and raters.loc["ana", "self_consistency"] == 1.0
    assert raters.loc["dan", "flagged"]
    human = analyze_ratings(task, draws=30)
    assert json.loads((task.path / "human.json").read_text())["task_id"] == task.task_id
    alignment = human["questions"]["alignment"]
    assert alignment["strengths"][0]["target"] == "toyworld/sd-base" and "strengths_without_flagged" in alignment
    assert alignment["verdict"].startswith("toyworld/sd-base is ranked above toyworld/sd-small: people prefer it in ")
    assert alignment["alpha"]["raters"] == 4 and -1 <= alignment["alpha"]["alpha"] <= 1


def test_a_metric_that_prefers_what_people_prefer_agrees_with_them(task):
    def by_clip(item, shown, rng):  # people who prefer the image the CLIP score prefers
        if item.check == "gold":
            return "left" if shown[0] == item.gold["alignment"] else "right"
        best = item.images[int(np.argmax([scores["clip_score"] for scores in item.scores]))]
        return "left" if shown[0] == best else "right"

    rng = np.random.default_rng(2)
    for rater in ("ana", "ben"):
        _vote_all(task, rater, by_clip, rng)
    (row,) = metrics_against_people(task, "alignment", draws=20)
    assert row["metric"] == "clip_score" and row["pairwise_agreement"] == 1.0 == row["ci_low"]
    assert row["n_pairs"] == len(PROMPTS) * 2 and row["kendall_tau"] is None  # two targets: no ranking to compare
    assert {"metric", "kendall_tau", "auc_wrong", "pairwise_agreement", "n_pairs"} <= set(row)


def test_metrics_against_people_rank_three_targets_on_every_metric(tmp_path):
    three = [*MODELS, "toyworld/dit-small"]
    ModelEvaluator(PROMPTS[:4], three, [0], GenerationConfig(steps=2, batch_size=4), output_dir=tmp_path / "run",
                   metrics=["clip_score", "composition"]).run()  # fmt: skip
    task = rating_task(tmp_path / "run", output_root=tmp_path, gold_share=0, repeat_share=0, display_size=16)
    simulate_votes(task, ["ana", "ben"])
    rows = {row["metric"]: row for row in analyze_ratings(task, draws=20)["questions"]["alignment"]["metrics"]}
    assert {"clip_score", "composition"} <= set(rows)  # the second metric is measured too, after the first's tau
    assert all(-1 <= row["kendall_tau"] <= 1 and row["n_pairs"] > 0 for row in rows.values())


# --- people's verdict on one pair ---------------------------------------------------------------------------


def test_people_prefer_the_stronger_target_and_tell_equal_ones_apart_from_no_one(run, tmp_path):
    small, base = MODELS
    strong = rating_task(run, output_root=tmp_path, task_id="strong", display_size=16, gold_share=0.25)
    simulate_votes(strong, strengths={small: -1.0, base: 1.0})
    preference = people_preference(strong, small, base, draws=200)
    assert preference.question == "alignment" and preference.targets == (small, base)
    assert preference.votes == 3 * len(PROMPTS) * 2 and preference.prompts == len(PROMPTS)  # checks left out
    assert preference.share > 0.7 and 0.5 < preference.ci_low <= preference.share <= preference.ci_high
    assert preference.p_value < 0.05 and preference.p_holm == preference.p_value and preference.draws == 200
    assert preference.verdict().startswith(f"people prefer {base} to {small} in {preference.share:.0%} of votes (")
    ties = f"{preference.ties} {'tie' if preference.ties == 1 else 'ties'} counted half"
    assert f"{preference.votes} votes on 6 prompts, {ties})" in preference.verdict()
    assert preference.verdict("A", "B").startswith("people prefer B to A in ")
    reverse = people_preference(strong, base, small, draws=200)  # the same votes from the other side
    assert reverse.share == pytest.approx(1 - preference.share) and reverse.verdict() == preference.verdict()
    assert people_preference(strong, small, base, draws=200, seed=1).share == preference.share
    assert json.dumps(preference.to_dict()) and preference.to_dict()["verdict"] == preference.verdict()

    equal = rating_task(run, output_root=tmp_path, task_id="equal", display_size=16)
    simulate_votes(equal, strengths={small: 0.0, base: 0.0})
    alignment, quality = people_preferences(equal, [(small, base)], draws=200)  # every question with votes
    assert (alignment.question, quality.question) == ("alignment", "quality")
    for preference in (alignment, quality):
        assert preference.ci_low < 0.5 < preference.ci_high and preference.p_value > 0.05
        assert preference.verdict().startswith(f"no clear preference between {small} and {base}: {base} wins ")

    few = rating_task(run, output_root=tmp_path, task_id="few", display_size=16, gold_share=0, repeat_share=0)
    simulate_votes(few, ["sim"], strengths={small: -20.0, base: 20.0}, limit=3)  # three votes, all for base
    unanimous = people_preference(few, small, base, draws=200)
    assert unanimous.share == 1 and unanimous.ci_low == pytest.approx(0.025 ** (1 / 3)) and unanimous.ci_high == 1
    assert unanimous.p_value == 0.25 and not unanimous.preferred  # the sign test: three votes cannot tell


def test_a_preference_names_a_target_by_name_or_variant_and_refuses_others_naming_the_targets(run, tmp_path):
    folder = tmp_path / "arms"
    folder.mkdir()
    targets = ["m [A] @r1", "m [B] @r1", "m [B] @r2", "n"]
    manifest = {"task_id": "arms", "kind": "pairwise", "questions": [], "targets": targets, "seed": 0}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "items.jsonl").write_text("")
    arms = RatingTask(folder)
    assert [match_target(arms, name) for name in ("A", "m [B] @r2", "n")] == ["m [A] @r1", "m [B] @r2", "n"]
    listed = r"its targets: \['m \[A\] @r1', 'm \[B\] @r1', 'm \[B\] @r2', 'n'\]"
    several = r"'B' is the \[variant\] of several targets of rating task 'arms', \['m \[B\] @r1', 'm \[B\] @r2'\]"
    with pytest.raises(ConfigError, match=rf"{several}: name one; {listed}"):
        match_target(arms, "B")
    with pytest.raises(
        ConfigError, match=rf"'C' is neither a target of rating task 'arms' nor the \[variant\] of one; {listed}"
    ):
        match_target(arms, "C")
    task = rating_task(run, output_root=tmp_path, display_size=16)
    with pytest.raises(ConfigError, match="'toyworld/sd-small' and 'toyworld/sd-small' are the same target"):
        people_preference(task, MODELS[0], MODELS[0])
    with pytest.raises(ConfigError, match="has no votes on 'alignment' between 'toyworld/sd-small' and 'toyworld/sd-"):
        people_preference(task, *MODELS)
    with pytest.raises(ConfigError, match="has no votes yet"):
        people_preferences(task, [MODELS])
    with pytest.raises(ConfigError, match="draws must be a whole number >= 1, got 0"):
        people_preference(task, *MODELS, draws=0)
    alignment = rating_task(run, "alignment", output_root=tmp_path, display_size=16)
    with pytest.raises(ConfigError, match=r"needs a pairwise rating task, got task '.*' of kind 'alignment'"):
        people_preference(alignment, *MODELS)


def test_bad_tasks_are_refused_naming_the_value(run, tmp_path):
    with pytest.raises(ConfigError, match=r"kind must be one of \['pairwise', 'alignment', 'choices'\]"):
        rating_task(run, "ranking", output_root=tmp_path)
    with pytest.raises(ConfigError, match=r"unknown target\(s\) \['nobody'\]"):
        rating_task(run, targets=["toyworld/sd-small", "nobody"], output_root=tmp_path)
    with pytest.raises(ConfigError, match="needs two targets or more"):
        rating_task(run, targets=["toyworld/sd-small"], output_root=tmp_path)
    with pytest.raises(ConfigError, match="is not a run folder"):
        rating_task(tmp_path / "nothing", output_root=tmp_path)
    with pytest.raises(ConfigError, match="a choices task needs questions"):
        rating_task(run, "choices", output_root=tmp_path)
    assert not (tmp_path / "ratings").exists()


def test_alignment_and_choices_tasks_show_one_image(run, tmp_path):
    alignment = rating_task(run, "alignment", output_root=tmp_path, gold_share=0.2, repeat_share=0)
    gold = [item for item in alignment.items.values() if item.check == "gold"]
    assert gold and all(item.gold == {"alignment": "no"} for item in gold)
    texts = {item.prompt_id: item.prompt for item in alignment.items.values() if item.check is None}
    assert all(item.prompt != texts[item.prompt_id] for item in gold)  # shown with another prompt's text
    choices = rating_task(run, "choices", questions={"Which shape is this?": ["circle", "square", "triangle"]},
                          output_root=tmp_path)  # fmt: skip
    views = choices.order("ana")
    assert all(view.prompt is None and len(view.images) == 1 for view in views)
    assert views[0].questions[0].answers == ("circle", "square", "triangle")


# --- the rating page ------------------------------------------------------------------------------------


@pytest.fixture
def page(task):
    from fastapi.testclient import TestClient

    from workbench.ratings.page import create_rating_app, invite

    tokens = {rater: invite(task, rater) for rater in ("ana", "ben")}
    client = TestClient(create_rating_app(task))
    return client, {rater: {"Authorization": f"Bearer {token}"} for rater, token in tokens.items()}


def test_the_page_needs_an_invitation_and_shows_nothing_that_unblinds(page, task):
    client, headers = page
    assert client.get("/").status_code == 200  # the page itself holds nothing
    assert client.get("/api/next").status_code == 401
    assert client.get("/api/next", headers={"Authorization": "Bearer forged"}).status_code == 401
    run_id = task.manifest["runs"][0]["run_id"]
    responses = []
    body = client.get("/api/next", headers=headers["ana"]).json()
    assert body["done"] == 0 and body["total"] == len(task.items)
    for image_id in body["item"]["images"]:
        assert client.get(f"/api/image/{image_id}").status_code == 401
        image = client.get(f"/api/image/{image_id}", headers=headers["ana"])
        assert image.headers["content-type"] == "image/png" and image.content.startswith(b"\x89PNG")
        assert not any(chunk in image.content for chunk in (b"tEXt", b"iTXt", b"zTXt"))  # no PNG text chunk
        responses.append(image.text)
    responses.append(json.dumps(body))
    for text in responses:
        assert not any(word in text for word in [*MODELS, run_id, "toyworld", "gold", "repeat"])
    assert client.get("/api/image/nothing", headers=headers["ana"]).status_code == 404


def test_votes_through_the_page_are_stored_once_per_rater_and_bad_ones_change_nothing(page, task):
    client, headers = page
    item = client.get("/api/next", headers=headers["ana"]).json()["item"]
    vote = {"vote_id": "a" * 12, "item_id": item["item_id"], "question": item["questions"][0]["id"],
            "answer": "left", "shown": item["images"], "decided_s": 1.5}  # fmt: skip
    assert client.post("/api/vote", json=vote).status_code == 401
    first = client.post("/api/vote", json=vote, headers=headers["ana"])
    again = client.post("/api/vote", json=vote, headers=headers["ana"])  # a resend after a lost answer
    assert first.json() == {"vote_id": vote["vote_id"], "stored": True} and again.json()["stored"] is False
    for bad, status in [
        ({"item_id": "i99999"}, 422),
        ({"answer": "both"}, 422),
        ({"shown": ["x", "y"]}, 422),
        ({"vote_id": "b" * 12, "answer": "right"}, 409),  # a second answer to the same question
        ({"extra": 1}, 422),
        ({"vote_id": "no spaces allowed"}, 422),
    ]:
        assert client.post("/api/vote", json=vote | bad, headers=headers["ana"]).status_code == status, bad
    assert client.post("/api/vote", content=b"{not json", headers=headers["ana"]).status_code == 422
    assert client.post("/api/vote", content=b"{not json").status_code == 401  # no token: the body is not read
    huge = {**vote, "vote_id": "c" * 12, "reason": "x" * 20_000}
    assert client.post("/api/vote", json=huge, headers=headers["ana"]).status_code == 413
    stored = VoteStore(task).votes()
    assert [(v.rater, v.vote_id, v.interface) for v in stored] == [("ana", vote["vote_id"], "page")]
    after = client.get("/api/next", headers=headers["ana"]).json()
    ben = client.get("/api/next", headers=headers["ben"]).json()
    assert ben["done"] == 0 and after["item"]["questions"][0]["id"] != vote["question"]  # ana's next question
    assert client.post("/api/undo", json={"vote_id": vote["vote_id"]}, headers=headers["ben"]).status_code == 404
    assert client.post("/api/undo", json={"vote_id": vote["vote_id"]}, headers=headers["ana"]).status_code == 200
    assert VoteStore(task).votes() == []


def test_the_rate_command_prints_invitation_links(task, capsys):
    from workbench.cli import main

    assert main(["rate", str(task.path), "--invite", "ana", "ben", "--port", "8123"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ana", "ben"] and "http://127.0.0.1:8123/#token=" in lines[0]
    stored = json.loads((task.path / "raters.json").read_text())
    token = lines[0].split("#token=")[1]
    assert token not in json.dumps(stored) and set(stored) == {"ana", "ben"}  # only hashes are stored
    assert main(["rate", "no-such-task", "--invite", "ana"]) == 2
    assert main(["rate", str(task.path), "--invite", "cy", "--public-url", "https://rate.example.org/team/"]) == 0
    assert capsys.readouterr().out.startswith("cy: https://rate.example.org/team/#token=")
    assert main(["rate", str(task.path), "--invite", "cy", "--host", "0.0.0.0"]) == 0
    assert "0.0.0.0" not in capsys.readouterr().out  # a link names the machine, not the wildcard it listens on
    assert main(["rate", str(task.path), "--invite", "cy", "--ssl-certfile", "cert.pem"]) == 2


# --- the rating panel -----------------------------------------------------------------------------------


def test_the_panel_votes_with_buttons_and_keys_undoes_and_resumes(task):
    from workbench.widgets import RatingPanel

    panel = RatingPanel(task, "ana")
    first = panel.view.item_id
    assert panel.progress.max == len(task.items) and panel.status.value == f"0 of {len(task.items)}"
    assert not any(word in panel.prompt.value + panel.asked.value for word in [*MODELS, "gold", "repeat"])
    for image in panel.images.children:
        assert not any(chunk in image.value for chunk in (b"tEXt", b"iTXt", b"zTXt"))
    next(button for button in panel.buttons.children if button.description == "left").click()
    panel.keys.value = "t"  # the second question of the first item, by key
    assert panel.keys.value == "" and panel.view.item_id != first
    votes = VoteStore(task).votes("ana")
    assert [(v.item_id, v.answer, v.interface) for v in votes] == [(first, "left", "widget"), (first, "tie", "widget")]
    panel.keys.value = "u"
    assert len(VoteStore(task).votes("ana")) == 1 and panel.view.item_id == first
    panel.keys.value = "x"  # not a key: nothing happens
    assert len(VoteStore(task).votes("ana")) == 1
    again = RatingPanel(task, "ana")  # a new session resumes at the first open question
    assert again.view.item_id == first and again.question.id == task.questions[1].id
    assert again.progress.value == 0


# --- the study ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_human_evaluation_study_runs_headless_on_simulated_raters(tmp_path):
    import workbench as wb

    judged = tmp_path / "validity"  # a metric validity run's verdicts, to show beside people's
    judged.mkdir()
    (judged / "validity.json").write_text(json.dumps([
        {"metric": "clip_score", "kendall_tau": 0.8, "auc_wrong": 0.7, "prompts_needed": 8},
        {"metric": "fid", "kendall_tau": 0.6, "auc_wrong": None, "prompts_needed": 16},
    ]))  # fmt: skip
    parameters = {"steps": 2, "draws": 30, "validity_run": str(judged)}
    run = wb.run_study("07_human_evaluation", parameters, output_root=tmp_path, progress=False)
    human = json.loads(next(run.folder.glob("ratings/*/human.json")).read_text())
    quality = human["questions"]["quality"]
    assert {row["target"] for row in quality["strengths"]} == set(MODELS)
    assert human["flagged"] == ["sim-careless"] and "strengths_without_flagged" in quality
    alignment = human["questions"]["alignment"]  # its gold items show the careless rater
    assert [r["rater"] for r in alignment["raters"] if r["flagged"]] == ["sim-careless"]
    assert {row["metric"] for row in quality["metrics"]} >= {"clip_score", "composition"}  # composition: the judge
    report = run.report.read_text()
    assert "Krippendorff" in report and "against people" in report and report.count("data:image/png") >= 2
    assert "kendall_tau_judge" in report and "fid" in report  # each metric against the judge, beside people
    beside = wb.ratings.analysis.beside_judge(quality["metrics"], judged).set_index("metric")
    assert beside.loc["clip_score", "kendall_tau_judge"] == 0.8 and beside.loc["clip_score", "n_pairs"] > 0
    assert pd.isna(beside.loc["fid", "pairwise_agreement"]) and pd.isna(beside.loc["composition", "auc_wrong_judge"])
    with pytest.raises(ConfigError, match=r"no validity\.json"):
        wb.ratings.analysis.beside_judge(quality["metrics"], tmp_path)
    assert run.manifest["status"] == "ok" and run.manifest["summary"][0]["target"] in MODELS


def _page_server(task, port: int):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "workbench.cli", "rate", str(task.path), "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _until_up(url: str, timeout_s: float = 30.0) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"the rating page at {url} did not start")


@pytest.mark.slow
def test_every_vote_answered_as_stored_survives_a_kill_of_the_page_server(task, free_port):
    import signal
    import threading

    import httpx

    from workbench.ratings.page import invite

    headers = {rater: {"Authorization": f"Bearer {invite(task, rater)}"} for rater in ("ana", "ben")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _page_server(task, port)
    answered, stop = {"ana": [], "ben": []}, threading.Event()

    def rate(rater: str) -> None:  # vote as fast as answers come, until the server dies under us
        with httpx.Client(base_url=url, headers=headers[rater], timeout=5) as client:
            number = 0
            while not stop.is_set():
                try:
                    item = client.get("/api/next").json()["item"]
                    if item is None:
                        return
                    vote_id = f"{rater}-{number:06d}"
                    body = {"vote_id": vote_id, "item_id": item["item_id"], "question": item["questions"][0]["id"],
                            "answer": "tie", "shown": item["images"]}  # fmt: skip
                    if client.post("/api/vote", json=body).status_code == 200:
                        answered[rater].append(vote_id)
                    number += 1
                except httpx.HTTPError:
                    return

    try:
        _until_up(url)
        threads = [threading.Thread(target=rate, args=(rater,)) for rater in answered]
        for thread in threads:
            thread.start()
        while sum(map(len, answered.values())) < 6 and all(t.is_alive() for t in threads):
            threading.Event().wait(0.05)
        server.send_signal(signal.SIGKILL)  # mid-rating: no shutdown, no flush
        server.wait(10)
        stop.set()
        for thread in threads:
            thread.join(10)
        server = _page_server(task, port)
        _until_up(url)
        stored = VoteStore(task).votes()
        lines = [json.loads(line) for path in (task.path / "votes").glob("*.jsonl")
                 for line in path.read_text().splitlines()]  # fmt: skip
        ids = [line["vote_id"] for line in lines]
        assert len(ids) == len(set(ids)) == len(stored)  # none twice on disk
        for rater, given in answered.items():
            assert set(given) <= {v.vote_id for v in stored if v.rater == rater}  # every answered vote is there
        resumed = httpx.get(f"{url}/api/next", headers=headers["ana"]).json()["item"]  # where ana left off
        assert (resumed["item_id"], resumed["questions"][0]["id"]) not in VoteStore(task).answered("ana")
        assert sum(map(len, answered.values())) >= 6
    finally:
        server.kill()
        server.wait(10)


def test_alignment_and_choices_votes_give_scores_labels_and_metric_auc(run, tmp_path):
    alignment = rating_task(run, "alignment", output_root=tmp_path, gold_share=0, repeat_share=0)
    store = VoteStore(alignment)
    clip = {item.item_id: item.scores[0]["clip_score"] for item in alignment.items.values()}
    median = {t: np.median([clip[i.item_id] for i in alignment.items.values() if i.targets[0] == t]) for t in MODELS}
    for rater in ("ana", "ben"):  # people say a model's better half by CLIP score shows its prompt, the rest not
        for view in alignment.order(rater):
            item = alignment.items[view.item_id]
            answer = "yes" if clip[item.item_id] >= median[item.targets[0]] else "no"
            if rater == "ben" and item.targets[0] == "toyworld/sd-small":
                answer = "partly"  # ben is less sure of sd-small's
            store.add(rater, item.item_id, "alignment", answer, shown=view.images, interface="simulated")
    human = analyze_ratings(alignment, draws=20)["questions"]["alignment"]
    targets = {row["target"]: row for row in human["targets"]}
    assert targets["toyworld/sd-base"]["yes"] == 0.5 and targets["toyworld/sd-small"]["partly"] == 0.5
    assert 0 < human["alpha"]["alpha"] < 1 and human["alpha"]["ci_low"] <= human["alpha"]["ci_high"]
    (metric,) = human["metrics"]  # within each model, the images people call right score higher: AUC 1
    assert metric["metric"] == "clip_score" and metric["auc_wrong"] == 1.0 and metric["n_pairs"] == 36
    choices = rating_task(run, "choices", questions={"Which shape is this?": ["circle", "square", "triangle"]},
                          output_root=tmp_path, repeat_share=0)  # fmt: skip
    question = choices.questions[0].id
    for rater, answer in (("ana", "circle"), ("ben", "circle"), ("cem", "square")):
        for view in choices.order(rater):
            VoteStore(choices).add(rater, view.item_id, question, answer, shown=view.images, interface="simulated")
    labelled = analyze_ratings(choices)["questions"][question]
    assert {row["label"] for row in labelled["labels"]} == {"circle"} and labelled["labels"][0][
        "share"
    ] == pytest.approx(2 / 3)
    assert labelled["alpha"]["alpha"] is not None and labelled["alpha"]["alpha"] < 1


def test_a_rater_who_calls_mismatched_prompts_right_is_flagged_on_an_alignment_task(run, tmp_path):
    task = rating_task(run, "alignment", output_root=tmp_path, gold_share=0.25, repeat_share=0.25, display_size=32)
    store = VoteStore(task)
    for rater in ("ana", "ben", "cem", "sloppy"):
        for view in task.order(rater):
            item = task.items[view.item_id]
            answer = "yes" if rater == "sloppy" or item.check != "gold" else "no"  # sloppy says yes to everything
            store.add(rater, view.item_id, "alignment", answer, shown=view.images, interface="simulated")
    human = analyze_ratings(task, draws=20)
    raters = {row["rater"]: row for row in human["questions"]["alignment"]["raters"]}
    assert human["flagged"] == ["sloppy"] and raters["sloppy"]["gold_accuracy"] == 0.0
    assert raters["ana"]["gold_accuracy"] == 1.0 and raters["ana"]["self_consistency"] == 1.0
    without = human["questions"]["alignment"]["targets_without_flagged"]
    assert sum(row["answers"] for row in without) == 3 * len(PROMPTS) * 2 * len(MODELS)  # the three others' answers


# --- Label Studio ----------------------------------------------------------------------------------------


def test_a_task_goes_to_label_studio_and_its_export_comes_back_as_votes(task, tmp_path):
    import base64
    import xml.etree.ElementTree as ET

    from workbench.ratings.label_studio import export_label_studio, import_label_studio

    config, tasks_file = export_label_studio(task, tmp_path / "ls")
    view = ET.fromstring(config.read_text())
    assert [p.get("name") for p in view.iter("Pairwise")] == ["alignment", "quality"]
    images = {image.get("name"): image.get("value") for image in view.iter("Image")}
    compared = [p.get("toName").split(",") for p in view.iter("Pairwise")]
    assert [[images[name] for name in names] for names in compared] == [["$left", "$right"]] * 2
    assert len({name for names in compared for name in names}) == 4  # a click on an image answers one Pairwise only
    assert all(c.get("toName") in images for c in view.iter("Choices"))
    assert {c.get("value") for c in view.iter("Choice")} == {"tie", "skip"}  # beside Pairwise: only left/right
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == len(task.items)
    for entry in tasks:
        png = base64.b64decode(entry["data"]["left"].removeprefix("data:image/png;base64,"))
        assert png.startswith(b"\x89PNG") and b"tEXt" not in png
        assert not any(word in json.dumps(entry["data"]["prompt"]) for word in MODELS)
    first, second = tasks[0]["data"], tasks[1]["data"]
    export = [  # Label Studio's JSON export of two annotated tasks, regions as its labelling page makes them
        {"id": 1, "data": first, "annotations": [
            {"id": 11, "completed_by": 3, "lead_time": 4.2, "was_cancelled": False, "result": [
                {"value": {"selected": "left"}, "id": "r1", "from_name": "alignment", "to_name": "alignment",
                 "type": "pairwise", "origin": "manual"},
                {"value": {"choices": ["tie"]}, "id": "r2", "from_name": "quality-other", "to_name": "quality-left",
                 "type": "choices", "origin": "manual"},
            ]},
            {"id": 12, "completed_by": {"id": 4, "email": "ben@example.org"}, "was_cancelled": True, "result": []},
        ]},
        {"id": 2, "data": second, "annotations": [
            {"id": 13, "completed_by": 3, "lead_time": 2.0, "result": [
                {"value": {"selected": "right"}, "id": "r3", "from_name": "quality", "to_name": "quality",
                 "type": "pairwise", "origin": "manual"},
            ]},
        ]},
    ]  # fmt: skip
    assert import_label_studio(task, export) == 3 and import_label_studio(task, export) == 0  # idempotent
    votes = VoteStore(task).votes("ls-3")
    assert [(v.item_id, v.question, v.answer, v.interface) for v in votes] == [
        (first["item_id"], "alignment", "left", "labelstudio"), (first["item_id"], "quality", "tie", "labelstudio"),
        (second["item_id"], "quality", "right", "labelstudio"),
    ]  # fmt: skip
    assert votes[0].shown == tuple(first["shown"]) and votes[0].decided_s == 4.2
    with pytest.raises(ConfigError, match="item_id 'x1' is not an item of this task"):
        import_label_studio(task, [{"data": {"item_id": "x1"}}])
    from workbench.cli import main

    (tmp_path / "export.json").write_text(json.dumps(export))
    assert main(["rate", str(task.path), "--export-label-studio", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "tasks.json").is_file()
    assert main(["rate", str(task.path), "--import-label-studio", str(tmp_path / "export.json")]) == 0  # 0 new


def test_a_blind_copy_keeps_only_the_pixels(tmp_path):
    from PIL import ImageCms
    from PIL.PngImagePlugin import PngInfo

    from workbench.ratings.task import _blind_copy

    info = PngInfo()
    info.add_text("workbench", '{"model_id": "secret/model"}')
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (8, 4), "red").save(tmp_path / "made.png", pnginfo=info, icc_profile=profile)
    _blind_copy(tmp_path / "made.png", tmp_path / "blind.png", 32)
    with Image.open(tmp_path / "blind.png") as image:
        assert image.size == (32, 16) and image.info == {} and image.getpixel((31, 15)) == (255, 0, 0)
    assert b"secret" not in (tmp_path / "blind.png").read_bytes()
