import pytest

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


def test_serve_backends_are_a_registry_behind_the_backend_option(monkeypatch, capsys):
    from workbench import cli
    from workbench.errors import ConfigError
    from workbench.serve.app import ServeSettings

    assert list(cli.SERVE_BACKENDS) == ["local", "ray"]
    served = []
    monkeypatch.setitem(cli.SERVE_BACKENDS, "local", lambda settings, args: served.append((settings, args.port)))
    assert main(["serve", "--classifier", "keyword", "--no-preload", "--port", "8123", "--devices", "cpu"]) == 0
    ((settings, port),) = served
    assert isinstance(settings, ServeSettings) and port == 8123
    assert settings.devices == ("cpu",) and settings.classifier == "keyword" and not settings.preload
    with pytest.raises(SystemExit):
        main(["serve", "--backend", "kubernetes"])
    assert "invalid choice: 'kubernetes'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"backend must be one of \['local', 'ray'\], got 'kubernetes'"):
        cli._serve_backend("kubernetes")
