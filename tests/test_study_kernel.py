import json

from workbench.studies import run_study


def test_a_study_console_shows_no_kernel_or_library_chatter(tmp_path, capfd, write_notebook):
    notebook = write_notebook(
        tmp_path / "quiet.ipynb",
        'output_dir = "."',
        "from diffusers.utils import logging as diffusers_logging\n\n"
        'for _ in diffusers_logging.tqdm(range(3), desc="Loading pipeline components..."):\n    pass\n'
        'print("done")',
    )
    run = run_study(notebook, {}, output_root=tmp_path / "out", progress=False)
    err = capfd.readouterr().err
    assert "without encryption" not in err and "IPKernelApp" not in err, err
    outputs = json.loads((run.folder / "executed.ipynb").read_text())["cells"][-1]["outputs"]
    assert [o.get("text") for o in outputs] == [["done\n"]]  # no progress bars in the report
