"""What each ``workbench`` command does (``cli`` parses the command line and calls one): each takes the parsed
arguments and returns the exit status. Heavy imports happen inside, so ``workbench --help`` stays fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from workbench.errors import ConfigError, WorkbenchError

__all__ = [
    "DEMO_MODEL",
    "DEPLOYMENTS",
    "check_input_files",
    "compare_command",
    "demo_command",
    "deployment",
    "generate_command",
    "models_command",
    "rate_command",
    "reproduce_command",
    "route_command",
    "run_command",
    "serve_command",
    "studies_command",
    "sweep_command",
    "toyworld_train_command",
]


DEMO_MODEL = "toyworld/sd-small"


DEMO_PROMPTS = (
    "a red circle in the centre, on a white background",
    "a photo of a large blue square on the left, on a grey background",
    "a sketch of a small green triangle at the top, on a black background",
)


def models_command(args) -> int:
    from workbench.models import describe_models

    for model_id, description in describe_models():
        print(f"{model_id:28s} {description}".rstrip())
    return 0


def studies_command(args) -> int:
    from workbench.study_notebooks import describe_studies

    for name, description in describe_studies():
        print(f"{name:28s} {description}".rstrip())
    return 0


def toyworld_train_command(args) -> int:
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


def generate_command(args) -> int:
    from workbench.generation import generate, save_image
    from workbench.models import load

    pipe = load(args.model, device=args.device)
    records = generate(pipe, args.prompts, _config(args), args.seeds)
    for record in records:
        path = save_image(record, args.out)
        print(f"{path}  seed={record.seed} status={record.status} latency={record.latency_s:.3f}s")
    return 0


def reproduce_command(args) -> int:
    from workbench.generation import reproduce

    result = reproduce(args.image, device=args.device, tolerance=args.tolerance)
    print(json.dumps(result.record.settings(), indent=2, sort_keys=True))
    verdict = "matches" if result.matches else "DIFFERS from"
    print(
        f"regenerated image {verdict} {result.path}: max pixel difference {result.max_abs_diff}/255 "
        f"(tolerance {result.tolerance}), mean {result.mean_abs_diff:.3f}"
    )
    return 0 if result.matches else 1


def route_command(args) -> int:
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


def demo_command(args) -> int:
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


def run_command(args) -> int:
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


def compare_command(args) -> int:
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
            ratings=args.ratings,
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


def sweep_command(args) -> int:
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


def check_input_files(args) -> None:
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


def deployment(name: str):
    try:
        return DEPLOYMENTS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"deployment must be one of {list(DEPLOYMENTS)}, got {name!r}", "deployment") from None


def serve_command(args) -> int:
    import os

    from workbench.client import API_KEY_ENV
    from workbench.serve.settings import ServeSettings, check_exposure

    serve = deployment(args.deployment)
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


def rate_command(args) -> int:
    """``workbench rate TASK``: serve the rating page, or with ``--invite NAME`` print a rater's link."""
    from workbench.ratings.page import create_rating_app, invite, page_address
    from workbench.ratings.task import find_task
    from workbench.serve.settings import is_loopback

    task = find_task(args.task, args.output_root)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ConfigError("HTTPS needs both --ssl-certfile and --ssl-keyfile", "ssl")
    address = page_address(args.host, args.port, public_url=args.public_url, https=bool(args.ssl_certfile))
    if args.invite:
        for rater in args.invite:
            print(f"{rater}: {address}#token={invite(task, rater)}")
        return 0
    if args.export_label_studio or args.import_label_studio:
        from workbench.ratings.label_studio import export_label_studio, import_label_studio

        if args.export_label_studio:
            config, tasks = export_label_studio(task, args.export_label_studio)
            print(f"Label Studio project: labelling config {config}, tasks {tasks}")
        if args.import_label_studio:
            _read_text(args.import_label_studio, "Label Studio export")
            print(f"{import_label_studio(task, args.import_label_studio)} new votes from {args.import_label_studio}")
        return 0
    import uvicorn

    if not args.ssl_certfile and not is_loopback(args.host):
        print(
            f"WARNING: serving {args.host} over plain HTTP: raters' tokens and votes can cross the network "
            "unencrypted; serve it with --ssl-certfile and --ssl-keyfile, or bind 127.0.0.1 behind an HTTPS proxy "
            "(--public-url)",
            file=sys.stderr,
        )
    print(f"rating page for task {task.task_id}: {address} (raters open their invitation links)")
    uvicorn.run(create_rating_app(task), host=args.host, port=args.port, ssl_certfile=args.ssl_certfile,
                ssl_keyfile=args.ssl_keyfile)  # fmt: skip
    return 0
