"""The ``workbench`` command: list models and studies, generate, route prompts, reproduce a saved image, run
studies and sweeps, serve over HTTP, run the demo, train the toy world."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.deprecation import renamed_attributes
from workbench.errors import ConfigError, WorkbenchError

__all__ = ["DEPLOYMENTS", "main"]

DEMO_MODEL = "toyworld/sd-small"
STUDY_HELP = "a notebook path, or the name of a study that ships with the package (workbench studies lists them)"
COMPARE_HELP = """Compare run B against run A, per model, over the (prompt, seed) units both runs made:

  - each per-image metric (clip_score, the other registry metrics, *_score columns, peak_mem_mb): B - A, prompts as
    the paired units (seeds averaged), with its 95% CI, the Wilcoxon p and Holm's adjustment across models
    and metrics;
  - latency_ratio: the median time per image of B over A, with a 95% CI (lower is better);
  - the images that changed most (mean absolute pixel difference, 0-255).

Prints a one-screen summary and writes an HTML report with the images embedded. A setting that differs
between the runs, a model in one run only and failed images are named in both.

exit status: 0 no regression; 1 a --fail-if threshold is crossed (each is printed); 2 an error (a run that
is not there, a --fail-if metric the comparison does not have, no shared units).

example:
  workbench compare 01_model_evaluation/20260101-120000-ab12cd path/to/other/run \\
      --fail-if 'clip_score < -1' --fail-if 'latency_ratio > 1.2'
"""
DEMO_PROMPTS = (
    "a red circle in the centre, on a white background",
    "a photo of a large blue square on the left, on a grey background",
    "a sketch of a small green triangle at the top, on a black background",
)


def _models(args) -> int:
    from workbench.models import describe_models

    for model_id, description in describe_models():
        print(f"{model_id:28s} {description}".rstrip())
    return 0


def _studies(args) -> int:
    from workbench.study_notebooks import describe_studies

    for name, description in describe_studies():
        print(f"{name:28s} {description}".rstrip())
    return 0


def _toyworld_train(args) -> int:
    from dataclasses import replace

    from workbench.toyworld.train import TrainSettings, train_family

    settings = replace(
        TrainSettings(), seed=args.seed, budget_minutes=args.budget_minutes, scale=args.scale, images=args.images
    )
    for result in train_family(args.out, settings, args.phases):
        print(json.dumps(result))
    print(f"pipelines and CLIP written to {args.out} (log: {Path(args.out) / 'train_log.jsonl'})")
    return 0


def _config(args):
    from workbench.config import GenerationConfig

    return GenerationConfig(
        steps=args.steps,
        guidance=args.guidance,
        width=args.width,
        height=args.height,
        negative_prompt=args.negative_prompt,
        scheduler=args.scheduler,
        batch_size=args.batch_size,
    )


def _generate(args) -> int:
    from workbench.generation import generate, save_image
    from workbench.models import load

    pipe = load(args.model, device=args.device)
    records = generate(pipe, args.prompts, _config(args), args.seeds)
    for record in records:
        path = save_image(record, args.out)
        print(f"{path}  seed={record.seed} status={record.status} latency={record.latency_s:.3f}s")
    return 0


def _reproduce(args) -> int:
    from workbench.generation import reproduce

    result = reproduce(args.image, device=args.device, tolerance=args.tolerance)
    print(json.dumps(result.record.settings(), indent=2, sort_keys=True))
    verdict = "matches" if result.matches else "DIFFERS from"
    print(
        f"regenerated image {verdict} {result.path}: max pixel difference {result.max_abs_diff}/255 "
        f"(tolerance {result.tolerance}), mean {result.mean_abs_diff:.3f}"
    )
    return 0 if result.matches else 1


def _route(args) -> int:
    from workbench.errors import ConfigError
    from workbench.routing import Router, read_prompt_file

    prompts = list(args.prompts) + (read_prompt_file(args.file) if args.file else [])
    if not prompts:
        raise ConfigError("give prompts as arguments or with --file")
    router = Router(args.table, args.classifier, threshold=args.threshold)
    for decision in router.route_many(prompts, preview=args.preview):
        if args.json:
            spec = router.table[decision.route]
            print(json.dumps({**decision.to_dict(), "model_id": spec.model_id, "config": spec.config.to_dict()}))
        else:
            print(router.describe(decision) + "\n")
    return 0


def _demo(args) -> int:
    from workbench.config import GenerationConfig
    from workbench.generation import generate, save_image
    from workbench.models import load
    from workbench.plots import image_grid

    pipe = load(args.model)
    seeds = list(range(args.seeds))
    records = generate(pipe, list(DEMO_PROMPTS), GenerationConfig(batch_size=len(seeds)), seeds)
    out = Path(args.out)
    for record in records:
        save_image(record, out / "images")
    grid = image_grid([r.image for r in records], cols=len(seeds), scale=max(1, 128 // records[0].image.width))
    grid.save(out / "grid.png")
    per_image = sum(r.latency_s for r in records) / len(records)
    print(
        f"{len(records)} images from {args.model} ({len(DEMO_PROMPTS)} prompts x {len(seeds)} seeds), "
        f"{per_image:.3f} s per image"
    )
    print(f"grid: {out / 'grid.png'}")
    print(f"images with their settings: {out / 'images'}")
    return 0


def _run(args) -> int:
    from workbench.errors import NotebookRunError
    from workbench.studies import run_study

    def track(folder: Path) -> None:  # --mlflow: the run, finished or failed, with its manifest's status
        from workbench.tracking import log_study_run

        mlflow_run = log_study_run(folder, args.mlflow or None)
        print(f"MLflow run: {mlflow_run}" + (f" ({args.mlflow})" if args.mlflow else ""))

    parameters = {}
    if args.parameters_file:
        where = f"parameters file {args.parameters_file}"
        parameters = _yaml(_read_text(args.parameters_file, "parameters file"), where) or {}
        if not isinstance(parameters, dict):
            raise ConfigError(f"{where}: expected a mapping of NAME: VALUE, got a {type(parameters).__name__}")
    parameters |= {name: _yaml(value, f"parameter {name!r}: VALUE {value!r}") for name, value in args.parameter}
    try:
        run = run_study(args.notebook, parameters, output_root=args.output_root, resume=args.resume)
    except NotebookRunError as failure:
        if args.mlflow is not None:
            try:
                track(failure.executed.parent)
            except WorkbenchError as error:  # the run's own failure is the one to report
                print(f"error: the failed run was not logged to MLflow: {error}", file=sys.stderr)
        raise
    print(f"report: {run.report}")
    print(f"index of all runs: {Path(args.output_root) / 'index.html'}")
    if args.mlflow is not None:
        track(run.folder)
    return 0


def _compare(args) -> int:
    from workbench.compare import Check, compare_runs, find_run

    checks = [Check.parse(text) for text in args.fail_if]
    for run in (args.run_a, args.run_b):  # name the run whose manifest cannot be read
        try:
            find_run(run, args.output_root)
        except WorkbenchError:
            raise
        except (OSError, ValueError, KeyError) as error:
            raise WorkbenchError(f"cannot read run {run}: {type(error).__name__}: {error}") from None
    try:
        comparison = compare_runs(
            args.run_a,
            args.run_b,
            output_root=args.output_root,
            metrics=args.metric,
            top=args.top,
            allow_mismatch=args.allow_mismatch,
        )
        regressions = comparison.regressions(checks)  # refuses an unknown metric before anything is written
        report = args.out or Path(args.output_root) / "compare" / f"{comparison.a.id}_vs_{comparison.b.id}.html"
        comparison.write_html(report, checks)
    except (OSError, ValueError, KeyError) as error:  # an unreadable run is an error (2), never a regression (1)
        raise WorkbenchError(
            f"cannot compare {args.run_a} with {args.run_b}: {type(error).__name__}: {error}"
        ) from None
    print(comparison.summary(checks))
    print(f"report: {report}")
    for line in regressions:
        print(f"REGRESSION {line}")
    return 1 if regressions else 0


def _sweep(args) -> int:
    from workbench.sweeps import read_grid, run_sweep

    _yaml(_read_text(args.grid, "grid file"), f"grid file {args.grid}")  # unreadable or not YAML: one line
    grid, fixed = read_grid(args.grid)
    result = run_sweep(
        args.notebook, grid, fixed=fixed, pool=args.pool, output_root=args.output_root, workers=args.workers
    )
    for point in result.points:
        where = point.run or ""
        print(f"{point.index:3d} {point.status:7s} {json.dumps(point.parameters)} {where}")
    print(f"sweep index: {result.folder / 'index.html'}")
    return 1 if result.failed else 0


# The options that name an input file (argparse dest -> what it is): checked before a command runs, so a
# missing, unreadable or binary file is one line naming it (commands check what the file holds).
_INPUT_FILES = {"file": "prompt file", "grid": "grid file", "parameters_file": "parameters file"}


def _read_text(path: str | Path, what: str) -> str:
    """The text of the file at ``path``, or a one-line ConfigError naming it (``what``) and the problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (not UTF-8)") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None


def _yaml(text: str, where: str):
    """``text`` read as YAML, or a one-line ConfigError naming ``where`` and the line of the problem."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
        raise ConfigError(f"{where} is not valid YAML: {problem}{at}") from None


def _check_input_files(args) -> None:
    for dest, what in _INPUT_FILES.items():
        if getattr(args, dest, None):
            _read_text(getattr(args, dest), what)


def _acceleration(text: str):
    """``compile=true,dtype=float16`` as an AccelerationConfig (None when empty); values are read as YAML."""
    import yaml

    from workbench.config import AccelerationConfig

    if not text.strip():
        return None
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    bad = [name for name, sep, _ in pairs if not sep or not name.strip()]
    if bad:
        raise ConfigError(f"--acceleration takes NAME=VALUE pairs separated by commas, got {text!r}", "acceleration")
    known = set(AccelerationConfig.__dataclass_fields__)
    unknown = sorted({name.strip() for name, _, _ in pairs} - known)
    if unknown:
        raise ConfigError(f"unknown acceleration toggle(s) {unknown}; toggles: {sorted(known)}", "acceleration")
    return AccelerationConfig(**{name.strip(): yaml.safe_load(value) for name, _, value in pairs})


def _serve_locally(settings, args) -> None:
    import uvicorn

    from workbench.serve.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port)


def _serve_on_ray(settings, args) -> None:
    from workbench.serve.ray_deployment import Autoscaling, serve_on_ray

    autoscaling = Autoscaling(min_replicas=args.min_replicas, max_replicas=args.max_replicas)
    serve_on_ray(settings, host=args.host, port=args.port, autoscaling=autoscaling)


# How ``workbench serve --deployment NAME`` serves: name -> function(settings, args), imports done when called.
DEPLOYMENTS = {"local": _serve_locally, "ray": _serve_on_ray}


def _deployment(name: str):
    try:
        return DEPLOYMENTS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"deployment must be one of {list(DEPLOYMENTS)}, got {name!r}", "deployment") from None


class _RenamedOption(argparse.Action):
    """An option's old name (``const``: its new one): stores into the new one's ``dest``, warning on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use {self.const}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _serve(args) -> int:
    import os

    from workbench.client import API_KEY_ENV
    from workbench.serve.settings import ServeSettings, check_exposure

    serve = _deployment(args.deployment)
    check_exposure(args.host, args.api_key or os.environ.get(API_KEY_ENV), insecure=args.insecure_no_auth)
    settings = ServeSettings(
        **({"devices": tuple(args.devices.split(","))} if args.devices else {}),
        routes=args.routes,
        classifier=args.classifier,
        models=tuple(args.models.split(",")) if args.models else None,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        max_request_s=args.max_request_s,
        **({"api_key": args.api_key} if args.api_key else {}),
        preload=not args.no_preload,
        acceleration=_acceleration(args.acceleration),
    )
    serve(settings, args)
    return 0


def _parser() -> argparse.ArgumentParser:
    from workbench.config import SCHEDULERS, GenerationConfig
    from workbench.routing import classifier_names
    from workbench.sweeps import POOLS

    defaults = GenerationConfig()
    parser = argparse.ArgumentParser(prog="workbench", description="A research workbench for text-to-image models.")
    parser.add_argument(
        "--verbose", action="store_true", help="show diffusers' and transformers' warnings and loading bars"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the models that load without a network").set_defaults(func=_models)
    sub.add_parser("studies", help="list the studies that ship with the package").set_defaults(func=_studies)

    gen = sub.add_parser("generate", help="generate images and save them with their settings")
    gen.add_argument("prompts", nargs="+")
    gen.add_argument("--model", default=DEMO_MODEL)
    gen.add_argument("--seeds", type=int, nargs="+", default=[0])
    gen.add_argument("--steps", type=int, default=defaults.steps)
    gen.add_argument("--guidance", type=float, default=defaults.guidance)
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--negative-prompt")
    gen.add_argument("--scheduler", choices=sorted(SCHEDULERS))
    gen.add_argument("--batch-size", type=int, default=defaults.batch_size)
    gen.add_argument("--device")
    gen.add_argument("--out", default="outputs/images")
    gen.set_defaults(func=_generate)

    rep = sub.add_parser("reproduce", help="regenerate a saved PNG from its metadata and compare")
    rep.add_argument("image")
    rep.add_argument("--device")
    rep.add_argument("--tolerance", type=int, default=2, help="largest allowed pixel difference (0-255)")
    rep.set_defaults(func=_reproduce)

    run = sub.add_parser("run", help="execute a study notebook into outputs/<study>/<run_id>/ with a report")
    run.add_argument("notebook", help=STUDY_HELP)
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter (VALUE is read as YAML: 3, 0.5, [0, 1], text)",
    )
    run.add_argument("-f", "--parameters-file", help="a YAML file of parameters (-p wins)")
    run.add_argument("--output-root", default="outputs")
    run.add_argument("--resume", metavar="RUN", help="finish an earlier, interrupted run (its folder or run id)")
    run.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        metavar="URI",
        help="log the run to MLflow when it ends (a failed run too, with its status) and print the MLflow run id: "
        "to tracking URI (e.g. sqlite:///mlflow.db), or without one to MLflow's default; "
        "put it after the notebook or write --mlflow=URI",
    )
    run.set_defaults(func=_run)

    compare = sub.add_parser(
        "compare",
        help="compare two runs of a study: per model, B - A for each metric and the latency ratio B / A",
        description=COMPARE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, side in (("run_a", "A, the baseline"), ("run_b", "B, compared with A")):
        compare.add_argument(name, metavar=name.upper(), help=f"run {side}: its folder, or STUDY/RUN_ID")
    compare.add_argument("--output-root", default="outputs", help="where STUDY/RUN_ID is looked up (default outputs)")
    compare.add_argument(
        "--out", help="the HTML report's path (default: OUTPUT_ROOT/compare/<A's run id>_vs_<B's run id>.html)"
    )
    compare.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="EXPR",
        help="a regression threshold, METRIC OP VALUE with OP one of <, <=, >, >= (e.g. 'clip_score < -1', "
        "'latency_ratio > 1.2'): a regression when the whole 95%% CI of B - A (or of the ratio B / A) lies "
        "beyond VALUE; repeatable",
    )
    compare.add_argument(
        "--metric",
        action="append",
        help="a per-image column to compare (repeatable; default: every per-image metric both runs have, peak_mem_mb)",
    )
    compare.add_argument("--top", type=int, default=8, help="images per model shown in the report (default 8)")
    compare.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare metrics measured differently in the two runs (another metric version, checkpoint or "
        "preprocessing), saying so in the report; without it such a comparison is refused (exit 2)",
    )
    compare.set_defaults(func=_compare)

    sweep = sub.add_parser("sweep", help="run a study notebook at every point of a parameter grid")
    sweep.add_argument("notebook", help=STUDY_HELP)
    sweep.add_argument("--grid", required=True, help="a YAML file: grid (name: [values]) and optional fixed")
    sweep.add_argument("--pool", choices=list(POOLS), default="local", help="ray: each point a Ray task")
    sweep.add_argument(
        "--backend", dest="pool", choices=list(POOLS), action=_RenamedOption, const="--pool", help=argparse.SUPPRESS
    )
    sweep.add_argument("--output-root", default="outputs")
    sweep.add_argument(
        "--workers", type=int, help="shard each point's evaluation over N worker processes (one per visible GPU)"
    )
    sweep.set_defaults(func=_sweep)

    srv = sub.add_parser("serve", help="serve generation over HTTP (docs at /docs, progress as Server-Sent Events)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--devices", help="comma-separated, one worker each (default: every GPU, else the CPU)")
    srv.add_argument("--routes", default="toyworld", help="a route table in data/routes or a YAML path")
    srv.add_argument("--classifier", choices=classifier_names(), default="embedding")
    srv.add_argument(
        "--models", help="comma-separated model ids requests may name (default: the routes' and toy world)"
    )
    srv.add_argument("--max-queue", type=int, default=64, help="requests that may wait; more get 429")
    srv.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take before it is stopped")
    srv.add_argument(
        "--max-request-s", type=float,
        help="refuse up front a request predicted to take longer than this (default: --timeout)",
    )  # fmt: skip
    srv.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $WORKBENCH_API_KEY, if set)")
    srv.add_argument("--no-preload", action="store_true", help="load models on first use, not at start")
    srv.add_argument(
        "--acceleration", default="", metavar="NAME=VALUE,...",
        help="toggles for every request, e.g. compile=true,dtype=float16 (the only way to set compile, "
        "compile_mode, dtype, cpu_offload, channels_last: a request may not)",
    )  # fmt: skip
    srv.add_argument(
        "--insecure-no-auth", action="store_true",
        help="serve a non-loopback address without an API key (anyone who reaches the port can use it)",
    )  # fmt: skip
    srv.add_argument("--deployment", choices=list(DEPLOYMENTS), default="local", help="ray: a Ray Serve deployment")
    srv.add_argument(
        "--backend",
        dest="deployment",
        choices=list(DEPLOYMENTS),
        action=_RenamedOption,
        const="--deployment",
        help=argparse.SUPPRESS,
    )
    srv.add_argument("--min-replicas", type=int, default=1, help="ray: replicas kept running")
    srv.add_argument("--max-replicas", type=int, help="ray: the most replicas (default: one per GPU)")
    srv.set_defaults(func=_serve)

    route = sub.add_parser("route", help="classify prompts and show the route, model and settings each would take")
    route.add_argument("prompts", nargs="*")
    route.add_argument("--file", help="a text file (one prompt per line) or a CSV with a prompt column")
    route.add_argument("--table", default="toyworld", help="a table in data/routes (toyworld, default) or a YAML path")
    route.add_argument("--classifier", choices=classifier_names(), default="embedding")
    route.add_argument("--threshold", type=float, help="confidence below which the fallback route is used")
    route.add_argument("--preview", action="store_true", help="take the table's preview route")
    route.add_argument("--json", action="store_true", help="one JSON object per line")
    route.set_defaults(func=_route)

    toy = sub.add_parser("toyworld", help="the toy world model family").add_subparsers(dest="action", required=True)
    train = toy.add_parser("train", help="train the family from scratch (seeded)")
    train.add_argument("--out", default="outputs/toyworld")
    train.add_argument(
        "--budget-minutes", type=float, help="wall-clock cap: CLIP and VAE stop at 25%% of it, the rest at 95%%"
    )
    train.add_argument("--images", type=int, default=40_000, help="scenes drawn per model")
    train.add_argument("--scale", type=float, default=1.0, help="multiply every step count (0.01 = a quick try)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--phases",
        nargs="+",
        metavar="PHASE",
        help="only these phases (e.g. dit-small), into an --out that holds what they need (clip, vae)",
    )
    train.set_defaults(func=_toyworld_train)

    demo = sub.add_parser("demo", help="generate a small image grid and say where it is")
    demo.add_argument("--model", default=DEMO_MODEL)
    demo.add_argument("--seeds", type=int, default=4, help="number of seeds per prompt")
    demo.add_argument("--out", default="outputs/demo")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        from workbench.verbosity import set_verbosity

        set_verbosity(True)
    try:
        _check_input_files(args)
        return args.func(args)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file a command could not read or write: one line naming it, not a traceback
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 2


__getattr__ = renamed_attributes(__name__, {"SERVE_BACKENDS": "DEPLOYMENTS"}, globals())

if __name__ == "__main__":
    sys.exit(main())
