"""The ``workbench`` command: list models and studies, generate, route prompts, reproduce a saved image, run
studies and sweeps, serve over HTTP, run the demo, train the toy world."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

import workbench.commands as commands
from workbench.errors import WorkbenchError

__all__ = ["main"]

STUDY_HELP = "a notebook path, or the name of a study that ships with the package (workbench studies lists them)"
COMPARE_HELP = """Compare run B against run A, per model, over the (prompt, seed) units both runs made:

  - each per-image metric (clip_score, the other registry metrics, *_score columns, peak_mem_mb): B - A, prompts as
    the paired units (seeds averaged), with its 95% CI, the Wilcoxon p and Holm's adjustment across models
    and metrics;
  - latency_ratio: the median time per image of B over A, with a 95% CI (lower is better);
  - the images that changed most (mean absolute pixel difference, 0-255);
  - with --ratings TASK (a pairwise rating task made from both runs), people's verdict per model: the share of
    votes B's image won against A's, ties counted half, with a 95% CI over resampled prompts and p.

Prints a one-screen summary and writes an HTML report with the images embedded. A setting that differs
between the runs, a model in one run only and failed images are named in both.

exit status: 0 no regression; 1 a --fail-if threshold is crossed (each is printed); 2 an error (a run that
is not there, a --fail-if metric the comparison does not have, no shared units, a metric the two runs measured
differently: another version, checkpoint, preprocessing or reference; --allow-mismatch compares it anyway).

example:
  workbench compare 01_model_evaluation/20260101-120000-ab12cd path/to/other/run \\
      --fail-if 'clip_score < -1' --fail-if 'latency_ratio > 1.2'
"""


class _RenamedOption(argparse.Action):
    """An option's old name (``const``: its new one): stores into the new one's ``dest``, warning on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use {self.const}", file=sys.stderr)
        setattr(namespace, self.dest, values)


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

    sub.add_parser("models", help="list the models that load without a network").set_defaults(
        func=commands.models_command
    )
    sub.add_parser("studies", help="list the studies that ship with the package").set_defaults(
        func=commands.studies_command
    )

    gen = sub.add_parser("generate", help="generate images and save them with their settings")
    gen.add_argument("prompts", nargs="+")
    gen.add_argument("--model", default=commands.DEMO_MODEL)
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
    gen.set_defaults(func=commands.generate_command)

    rep = sub.add_parser("reproduce", help="regenerate a saved PNG from its metadata and compare")
    rep.add_argument("image")
    rep.add_argument("--device")
    rep.add_argument("--tolerance", type=int, default=2, help="largest allowed pixel difference (0-255)")
    rep.set_defaults(func=commands.reproduce_command)

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
    run.set_defaults(func=commands.run_command)

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
    compare.add_argument(
        "--ratings",
        metavar="TASK",
        help="a pairwise rating task made from both runs (its folder, or its id under OUTPUT_ROOT/ratings): its "
        "votes add people's verdict on B against A to the summary and the report",
    )
    compare.set_defaults(func=commands.compare_command)

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
    sweep.set_defaults(func=commands.sweep_command)

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
    srv.add_argument(
        "--deployment", choices=list(commands.DEPLOYMENTS), default="local", help="ray: a Ray Serve deployment"
    )
    srv.add_argument(
        "--backend",
        dest="deployment",
        choices=list(commands.DEPLOYMENTS),
        action=_RenamedOption,
        const="--deployment",
        help=argparse.SUPPRESS,
    )
    srv.add_argument("--min-replicas", type=int, default=1, help="ray: replicas kept running")
    srv.add_argument("--max-replicas", type=int, help="ray: the most replicas (default: one per GPU)")
    srv.set_defaults(func=commands.serve_command)

    route = sub.add_parser("route", help="classify prompts and show the route, model and settings each would take")
    route.add_argument("prompts", nargs="*")
    route.add_argument("--file", help="a text file (one prompt per line) or a CSV with a prompt column")
    route.add_argument("--table", default="toyworld", help="a table in data/routes (toyworld, default) or a YAML path")
    route.add_argument("--classifier", choices=classifier_names(), default="embedding")
    route.add_argument("--threshold", type=float, help="confidence below which the fallback route is used")
    route.add_argument("--preview", action="store_true", help="take the table's preview route")
    route.add_argument("--json", action="store_true", help="one JSON object per line")
    route.set_defaults(func=commands.route_command)

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
    train.set_defaults(func=commands.toyworld_train_command)

    rate = sub.add_parser("rate", help="serve a rating task's page to raters, or print a rater's invitation link")
    rate.add_argument("task", help="a rating task's folder, or its id under OUTPUT_ROOT/ratings")
    rate.add_argument("--invite", nargs="+", metavar="NAME", help="print a personal link for each rater, and exit")
    rate.add_argument("--export-label-studio", metavar="DIR", help="write the task as a Label Studio project, and exit")
    rate.add_argument(
        "--import-label-studio", metavar="FILE", help="store a Label Studio JSON export's votes, and exit"
    )
    rate.add_argument("--host", default="127.0.0.1")
    rate.add_argument("--port", type=int, default=8001)
    rate.add_argument(
        "--public-url", help="the address raters open, for the links (e.g. https://rate.example.org behind a proxy)"
    )
    rate.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (with --ssl-keyfile)")
    rate.add_argument("--ssl-keyfile", help="the certificate's private key")
    rate.add_argument("--output-root", default="outputs")
    rate.set_defaults(func=commands.rate_command)

    demo = sub.add_parser("demo", help="generate a small image grid and say where it is")
    demo.add_argument("--model", default=commands.DEMO_MODEL)
    demo.add_argument("--seeds", type=int, default=4, help="number of seeds per prompt")
    demo.add_argument("--out", default="outputs/demo")
    demo.set_defaults(func=commands.demo_command)
    return parser


@contextlib.contextmanager
def _renames_said():
    """A renamed name or parameter used from the command line says so on stderr, as a renamed option does
    (Python hides DeprecationWarning outside ``__main__``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("default", message=".* is deprecated; use ", category=DeprecationWarning)
        show = warnings.showwarning

        def said(message, category, *args, **kwargs):
            if issubclass(category, DeprecationWarning):
                print(f"warning: {message}", file=sys.stderr)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = said
        yield


def main(argv: list[str] | None = None) -> int:
    with _renames_said():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        from workbench.verbosity import set_verbosity

        set_verbosity(True)
    try:
        commands.check_input_files(args)
        return args.func(args)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file a command could not read or write: one line naming it, not a traceback
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
