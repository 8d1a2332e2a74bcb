import pytest

from workbench.run_index import write_index


def test_the_index_filters_by_study_model_and_date(tmp_path, version_1_run):
    version_1_run(tmp_path, "01_model_evaluation", "r1", started="2026-01-02T10:00:00+0000", models=["m/a"])
    version_1_run(
        tmp_path, "04_ab_test", "r2", started="2026-03-04T10:00:00+0000", models=["m/b"], model_ids=["m/b", "m/c"]
    )
    page = write_index(tmp_path).read_text()
    for control in ('id="filter-study"', 'id="filter-model"', 'id="filter-from" type="date"', 'type="date"'):
        assert control in page
    assert '<option value="01_model_evaluation">' in page and '<option value="04_ab_test">' in page
    assert '<option value="m/c">' in page and "<script>" in page and "src=" not in page  # nothing to fetch
    # Each row carries what the filters read: the manifest's model_ids, else its summary's (a version-1 run).
    quoted = "[&quot;m/b&quot;, &quot;m/c&quot;]"
    assert f'<tr data-study="04_ab_test" data-models="{quoted}" data-started="2026-03-04">' in page
    assert '<tr data-study="01_model_evaluation" data-models="[&quot;m/a&quot;]" data-started="2026-01-02">' in page
    assert page.index('data-study="04_ab_test"') < page.index('data-study="01_model_evaluation"')  # newest first
    assert "m/a: 0.250 s/img, CLIP 30.0" in page and "01_model_evaluation/r1/report.html" in page
    for header in ("study", "started", "status", "parameters", "headline"):
        assert f"<th>{header}</th>" in page


@pytest.mark.browser
def test_the_index_filters_hide_rows_in_a_browser(tmp_path, version_1_run):
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    version_1_run(tmp_path, "01_model_evaluation", "r1", started="2026-01-02T10:00:00+0000", models=["m/a"])
    version_1_run(tmp_path, "01_model_evaluation", "r2", started="2026-02-02T10:00:00+0000", models=["m/b"])
    version_1_run(tmp_path, "04_ab_test", "r3", started="2026-03-04T10:00:00+0000", models=["m/b"])
    index = write_index(tmp_path)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(index.as_uri())

        def shown():
            return page.eval_on_selector_all("tr[data-study]:not([hidden])", "rows => rows.length")

        assert shown() == 3 and page.text_content("#filter-count") == "3 of 3 runs"
        page.select_option("#filter-study", "01_model_evaluation")
        assert shown() == 2
        page.fill("#filter-model", "M/B")
        assert shown() == 1
        page.select_option("#filter-study", "")
        page.fill("#filter-from", "2026-03-01")
        assert shown() == 1 and page.text_content("#filter-count") == "1 of 3 runs"
        page.fill("#filter-model", "")
        page.fill("#filter-to", "2026-03-03")
        assert shown() == 0
        browser.close()


def test_a_run_shows_the_headline_its_study_declares(tmp_path, version_1_run):
    declared = {"label": ["model", "config"], "figures": {"speedup_total": "{:.2f}×", "psnr": "PSNR {:.1f}"}}
    rows = [
        {"model": "m/a", "config": "baseline", "speedup_total": 1.0},
        {"model": "m/a", "config": "tome", "speedup_total": 1.5, "psnr": 31.04},
    ]
    version_1_run(
        tmp_path,
        "05_acceleration",
        "new",
        started="2026-01-03T10:00:00+0000",
        models=[],
        summary=rows,
        headline=declared,
    )
    # Runs from before studies declared their headline: the bundled study's, else one per model (wb.summarize).
    old = [{"metric": "clip_score", "kendall_tau": 0.8123, "auc_wrong": 0.7}]
    version_1_run(tmp_path, "06_metric_validity", "old", started="2026-01-02T10:00:00+0000", models=[], summary=old)
    version_1_run(tmp_path, "my_study", "mine", started="2026-01-01T10:00:00+0000", models=["m/b"], headline=None)
    page = write_index(tmp_path).read_text()
    assert "m/a baseline: 1.00×; m/a tome: 1.50×, PSNR 31.0" in page
    assert "clip_score: τ 0.81" in page and "m/b: 0.250 s/img, CLIP 30.0" in page
