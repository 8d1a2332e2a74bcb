from workbench.cli import main
from workbench.generation import read_settings


def test_generate_then_reproduce(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "images"
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--model",
                str(tiny_model_dir),
                "--seeds",
                "1",
                "2",
                "--steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    paths = sorted(out.glob("*.png"))
    assert len(paths) == 2
    assert {read_settings(p)["seed"] for p in paths} == {1, 2}
    assert main(["reproduce", str(paths[0])]) == 0
    assert "matches" in capsys.readouterr().out


def test_models_lists_what_loads_offline(capsys):
    assert main(["models"]) == 0
    assert "arch/sd15" in capsys.readouterr().out


def test_errors_are_one_clear_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["generate", "x", "--model", "nobody/nothing-here"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'nobody/nothing-here'") and "Traceback" not in err
    assert main(["generate", "x", "--model", "arch/tiny", "--width", "30"]) == 2
    assert "width must be a multiple of 8" in capsys.readouterr().err
