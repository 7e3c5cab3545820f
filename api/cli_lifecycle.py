"""CLI commands of the encoder lifecycle: `reindex`, `train`, `encoders list|register|promote|rollback`.

Each runs the same job kind as the API (`POST /v1/jobs`, `/v1/encoders/...`) in this process with
progress bars (`registry.jobs.run_job_now`), so a job row records it like any other. In embedded mode
stop the server first (local Qdrant is one process per folder); on PostgreSQL + a Qdrant server these
commands run beside the API, or submit the job to it over HTTP instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from registry.settings import Settings


def run_job(settings: Settings, kind: str, params: dict[str, Any]) -> int:
    """Run a job of this kind in this process (recorded in the jobs table) with progress bars."""
    from api import jobs as job_wiring
    from api.cli import Bars
    from api.wiring import build_container
    from registry import jobs
    from registry.schemas import JobCreate

    container = build_container(settings)
    job_wiring.install(settings, local=True)
    bars = Bars()
    try:
        job = jobs.run_job_now(
            container,
            JobCreate(kind=kind, params=params),
            created_by="cli",
            listener=bars,
            lease_s=settings.job_lease_s,
        )
    finally:
        bars.close()
        container.close()
    if job.state != "succeeded":
        print(f"error: {job.error or job.state} (job {job.id})", file=sys.stderr)
        return 2
    print(json.dumps(job.result, indent=2))
    return 0


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild the serving encoder's vectors from SQL into a new collection build, then switch to it."""
    return run_job(settings, "reindex", {})


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "steps": args.steps,
        "seed": args.seed,
        "holdout_models": args.holdout_models,
        "geometry_weight": args.geometry_weight,
        "weights": args.weights,
    }
    if args.metric_steps is not None:
        params["metric_steps"] = args.metric_steps
    if args.benchmark:
        params["benchmarks"] = args.benchmark
    if args.data:
        params["data"] = args.data
    return run_job(settings, "train", params)


def cmd_encoders(settings: Settings, args: argparse.Namespace) -> int:
    from api.lifecycle import loader_for
    from api.wiring import build_container
    from registry.services import encoders

    if args.encoders_command == "promote":
        return run_job(settings, "promote", {"encoder_id": str(args.id)})
    if args.encoders_command == "rollback":
        return run_job(settings, "rollback", {})
    container = build_container(settings)
    try:
        if args.encoders_command == "register":
            cur = container.current()
            loader = loader_for(cur, getattr(container.serving, "loader", None))
            entry = encoders.register_encoder(cur, args.path, loader)
            print(entry.model_dump_json(indent=2))
            return 0
        for e in encoders.list_encoders(container):
            when = f"{e.promoted_at:%Y-%m-%d %H:%M}" if e.promoted_at else "-"
            print(f"{e.id}  {e.fingerprint}  {e.status:9}  g{e.generation}  promoted {when}  {e.path}")
        return 0
    finally:
        container.close()


def add_parsers(sub: Any) -> None:
    """The lifecycle subcommands, added to `locus-registry`'s parser."""
    reidx = sub.add_parser(
        "reindex",
        help="rebuild every vector of the serving encoder from SQL (a new collection build, then a switch)",
    )
    reidx.set_defaults(func=cmd_reindex)

    train = sub.add_parser(
        "train",
        help="train an encoder on the registry's evaluations, compare it with the serving one on held-out "
        "models and questions, and register it as a candidate",
    )
    train.add_argument("--steps", type=int, default=800)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--holdout-models", type=float, default=0.2, help="share of each benchmark's models held out"
    )
    train.add_argument("--geometry-weight", type=float, default=0.0)
    train.add_argument(
        "--metric-steps",
        type=int,
        default=None,
        help="steps fitting the stored-vector metric (default: the job's, the shipped recipe's 600; 0: none)",
    )
    train.add_argument(
        "--weights",
        choices=["train", "serving"],
        default="train",
        help="serving: train nothing, keep the serving encoder's weights and fit only its stored-vector "
        "metric on the registry's models (minutes; promote the candidate to use it)",
    )
    train.add_argument("--benchmark", action="append", help="train on this benchmark only (repeatable)")
    train.add_argument(
        "--data", action="append", help="also a score table folder under LOCUS_IMPORT_ROOT (repeatable)"
    )
    train.set_defaults(func=cmd_train)

    enc = sub.add_parser("encoders", help="registered encoders: list, register, promote, rollback")
    esub = enc.add_subparsers(dest="encoders_command", required=True)
    esub.add_parser("list", help="every registered encoder and its status")
    reg = esub.add_parser("register", help="register a checkpoint folder as a candidate")
    reg.add_argument("path")
    prom = esub.add_parser("promote", help="build a candidate's collections and switch to it")
    prom.add_argument("id", type=uuid.UUID)
    esub.add_parser("rollback", help="switch back to the previous encoder")
    enc.set_defaults(func=cmd_encoders)
