"""`asyncinfer`: run the pipeline, its parts, or submit images. Subcommands call library code.

A process that cannot start as configured raises a StartupError (shared/errors.py); `main`
prints its message as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from cli.processes import EXIT_STARTUP
from client.records import SUBMIT_TOP_K
from shared.config import Settings, get_settings
from shared.constants import MAX_TOP_K
from shared.errors import StartupError


def _cmd_api(args: argparse.Namespace) -> int:
    from api.serving import run_gateway

    # --host/--port go into the settings the app sees, so that its Consul registration and
    # health check (ASYNCINFER_MESH=consul) name the port it really listens on.
    overrides = {name: value for name, value in (("host", args.host), ("port", args.port)) if value}
    run_gateway(get_settings().with_overrides(**overrides), log_level=args.log_level)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import run_worker

    settings = get_settings()
    if args.model:
        settings = settings.with_overrides(model=args.model)
    run_worker(settings, loglevel=args.log_level, hostname=args.hostname)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from cli.doctor import run_doctor

    overrides = {name: value for name, value in (("model", args.model), ("runtime", args.runtime),
                                                 ("device", args.device)) if value}
    return run_doctor(get_settings(), overrides, largest=args.largest, repeats=args.repeats)


def _cmd_models_list(args: argparse.Namespace) -> int:
    from cli.models import list_models

    return list_models(get_settings())


def _cmd_models_split(args: argparse.Namespace) -> int:
    from cli.models import set_split

    return set_split(get_settings(), args.model, args.weights, clear=args.clear)


def _cmd_webhooks_dead_letters(args: argparse.Namespace) -> int:
    from cli.webhooks import list_dead_letters

    return list_dead_letters(get_settings())


def _cmd_webhooks_replay(args: argparse.Namespace) -> int:
    from cli.webhooks import replay

    return replay(get_settings(), args.targets, every=args.all)


def _cmd_keys_new(args: argparse.Namespace) -> int:
    from cli.keys import print_new_key

    return print_new_key(args.tenant, args.id)


def _cmd_up(args: argparse.Namespace) -> int:
    from cli.up import run_pipeline

    if args.gateway_processes:  # the gateway reads it from the environment up passes on
        os.environ["ASYNCINFER_GATEWAY_PROCESSES"] = str(args.gateway_processes)
    gpus = args.gpus
    if gpus == "all":
        from workers.model.keras_runtime import select_backend, visible_gpus

        select_backend()
        gpus = len(visible_gpus())
    return run_pipeline(get_settings(), mesh=args.mesh, workers=args.workers, log_level=args.log_level,
                        gpus=int(gpus or 0))


def _cmd_autoscale(args: argparse.Namespace) -> int:
    from cli.autoscale import Bounds, run_autoscaler
    from cli.pipeline import LocalPipeline
    from cli.processes import stop_on_sigterm

    settings = get_settings()
    bounds = Bounds.from_settings(settings)
    if args.workers:
        bounds.min_workers, bounds.max_workers = args.workers
    pipeline = LocalPipeline(env=os.environ.copy(), port=settings.port, die_with_parent=True)
    stop_on_sigterm()
    try:
        return run_autoscaler(settings, pipeline, bounds)
    finally:
        pipeline.stop()  # each worker drains: it finishes what it holds, then exits


def _workers(text: str) -> tuple[int, int]:
    from cli.autoscale import parse_workers

    try:
        return parse_workers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _cmd_submit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from client import SubmitOptions, run_submit

    settings = get_settings()
    options = SubmitOptions(
        paths=args.paths,
        url=args.url or f"http://{settings.host}:{settings.port}",
        api_key=args.api_key,
        top_k=args.top_k,
        model=args.model,
        concurrency=args.concurrency,
        out=Path(args.out) if args.out else None,
        resume=args.resume,
        recursive=args.recursive,
        timeout_s=args.timeout,
        retry_for_s=args.retry_for,
    )
    return run_submit(options)


def _gpus(text: str) -> str:
    if text == "all" or (text.isdigit() and 0 < int(text) <= 64):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: a number of GPUs from 1 to 64, or all")


def _checked_as_setting(name: str) -> Callable[[str], Any]:
    """An argparse type that checks a value with the Settings field `name`'s own bounds."""
    from pydantic import TypeAdapter, ValidationError

    field = Settings.model_fields[name]
    checked: Any = Annotated[field.annotation, *field.metadata]
    adapter: TypeAdapter[Any] = TypeAdapter(checked)

    def parse(text: str) -> Any:
        try:
            return adapter.validate_python(text)
        except ValidationError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e.errors()[0]['msg']}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyncinfer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start Redis (if none answers), the gateway and a worker")
    up.add_argument("--mesh", choices=["none", "consul"], default=None)
    up.add_argument("--workers", type=_workers, metavar="MIN..MAX",
                    help="a pool of MIN to MAX workers that follows the backlog (default: one worker)")
    up.add_argument("--log-level", choices=["debug", "info"], default="info",
                    help="info: a line per service as it is ready, their logs in files; debug: all their output here")
    up.add_argument("--gpus", type=_gpus, metavar="N|all",
                    help="one worker per GPU, each pinned by CUDA_VISIBLE_DEVICES (all: each GPU TensorFlow sees)")
    up.add_argument("--gateway-processes", type=_checked_as_setting("gateway_processes"), metavar="N",
                    help="gateway processes sharing the port (default: ASYNCINFER_GATEWAY_PROCESSES, else 1)")
    up.set_defaults(run=_cmd_up)

    autoscale = commands.add_parser(
        "autoscale", help="run workers on this host, as many as the backlog needs",
        description="Start and drain worker processes on this host to follow the backlog in Redis: up at once, "
        "down after ASYNCINFER_SCALE_DOWN_AFTER_S, to zero after ASYNCINFER_SCALE_TO_ZERO_AFTER_S.")
    autoscale.add_argument("--workers", type=_workers, metavar="MIN..MAX",
                           help="bounds (default: ASYNCINFER_SCALE_MIN_WORKERS..ASYNCINFER_SCALE_MAX_WORKERS)")
    autoscale.set_defaults(run=_cmd_autoscale)

    api = commands.add_parser("api", help="run the gateway")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--log-level", default="INFO")
    api.set_defaults(run=_cmd_api)

    worker = commands.add_parser("worker", help="run an inference worker")
    worker.add_argument("--log-level", default="INFO")
    worker.add_argument("--hostname")
    worker.add_argument("--model", metavar="NAME[@VERSION]",
                        help="the one model this worker serves (default: ASYNCINFER_MODEL, else the default model)")
    worker.set_defaults(run=_cmd_worker)

    doctor = commands.add_parser(
        "doctor", help="the devices, runtime and providers found, images/s per batch size and the batch size "
        "a worker would use")
    doctor.add_argument("--model", metavar="NAME[@VERSION]", help="default: ASYNCINFER_MODEL, else the default model")
    doctor.add_argument("--runtime", help="keras or onnxruntime (default: ASYNCINFER_RUNTIME)")
    doctor.add_argument("--device", help="auto, cpu or gpu (default: ASYNCINFER_DEVICE)")
    doctor.add_argument("--largest", type=int, default=0, metavar="N",
                        help="the largest batch size measured (default: twice the model's own for the device)")
    doctor.add_argument("--repeats", type=int, default=3, metavar="N", help="timed calls per batch size")
    doctor.set_defaults(run=_cmd_doctor)

    models = commands.add_parser("models", help="the models this installation serves, and their traffic splits")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    models_commands.add_parser("list", help="each model and version, with its traffic share").set_defaults(
        run=_cmd_models_list)
    split = models_commands.add_parser(
        "split", help="split the jobs that name only the model between its versions: split mobilenet_v2 1=90 2=10",
        description="Every gateway follows a new split within a second. The choice is sticky: a retry with the same "
        "Idempotency-Key (or the same image) gets the same version while the split stands.")
    split.add_argument("model", help="the model's name")
    split.add_argument("weights", nargs="*", metavar="VERSION=WEIGHT", help="relative weights; none with --clear")
    split.add_argument("--clear", action="store_true", help="remove the split: the latest version takes all")
    split.set_defaults(run=_cmd_models_split)

    webhooks = commands.add_parser("webhooks", help="the webhook deliveries given up: list and replay them")
    webhooks_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    webhooks_commands.add_parser(
        "dead-letters",
        help="one JSON line per delivery given up: its target (a job id, or batch:<id>), URL, attempts, last status "
        "and error"
    ).set_defaults(run=_cmd_webhooks_dead_letters)
    replay = webhooks_commands.add_parser(
        "replay", help="deliver given-up webhooks again (a new round of attempts, the same webhook-id)")
    replay.add_argument("targets", nargs="*", metavar="TARGET",
                        help="a job id, or batch:<id>, as dead-letters lists it")
    replay.add_argument("--all", action="store_true", help="every delivery in the dead-letter list")
    replay.set_defaults(run=_cmd_webhooks_replay)

    keys = commands.add_parser("keys", help="API keys: make a new one")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_new = keys_commands.add_parser(
        "new", help="print a new API key (stdout) and the hashed entry the gateway needs (stderr)",
        description="The gateway keeps only the entry (key-id:sha256:<hash>:tenant); a tenant may have two keys at "
        "once (two ids), to rotate one without downtime.")
    keys_new.add_argument("--tenant", required=True, help="the tenant the key belongs to")
    keys_new.add_argument("--id", help="the key's id (letters, digits, `-`); default: random")
    keys_new.set_defaults(run=_cmd_keys_new)

    submit = commands.add_parser(
        "submit",
        help="submit images (files or directories); record each result as it arrives",
        description="Submit images with bounded concurrency, wait for their results and write one record per "
        "file. Re-running is safe: each file's Idempotency-Key comes from its content, so no job is created twice.",
    )
    submit.add_argument("paths", nargs="+", metavar="PATH", help="image files, or directories of images")
    submit.add_argument("-r", "--recursive", action="store_true", help="also look in subdirectories")
    submit.add_argument("-c", "--concurrency", type=int, default=8, help="files in flight at once (default 8)")
    submit.add_argument("-m", "--model", metavar="NAME[@VERSION]", help="the model (default: the gateway's)")
    submit.add_argument("-k", "--top-k", type=int, default=SUBMIT_TOP_K,
                        help=f"predictions per image (default {SUBMIT_TOP_K}), 1-{MAX_TOP_K} and within the model's")
    submit.add_argument("-o", "--out", metavar="FILE",
                        help="results.jsonl or results.csv (default: JSON lines on stdout)")
    submit.add_argument("--resume", action="store_true", help="skip files already settled in --out; append the rest")
    submit.add_argument("--url", default=None, help="gateway URL (default: from settings)")
    submit.add_argument("--api-key", default=None, help="sent as X-API-Key")
    submit.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each job (default 600)")
    submit.add_argument("--retry-for", type=float, default=120.0,
                        help="seconds to keep retrying a busy or unreachable gateway (default 120)")
    submit.set_defaults(run=_cmd_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except StartupError as e:
        print(f"asyncinfer {args.command}: {one_line(str(e))}", file=sys.stderr)
        return EXIT_STARTUP


def one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
