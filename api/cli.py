"""`locus-registry`: serve the API, migrate the database, manage API keys, import sources, reindex.

The CLI parses arguments and calls library functions. In embedded mode the Qdrant folder is locked
by one process at a time: stop the server before `import` or `reindex` (`keys` and `db` only touch SQL).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from api import cli_lifecycle
from registry.settings import Settings, get_settings

log = logging.getLogger("locus_registry")


class Bars:
    """tqdm bars per stage, fed by the services' `progress(stage, done, total)` callback."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="")
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from api.server import ServeError, run

    try:
        run(
            settings,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=args.workers or settings.workers,
        )
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from registry import migrate
    from registry.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        if args.db_command == "upgrade":
            migrate.upgrade(engine, args.revision)
        else:
            migrate.downgrade(engine, args.revision)
    finally:
        engine.dispose()
    print(f"database {args.db_command}d to {args.revision}")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from api.wiring import build_engine
    from registry import services
    from registry.db import make_session_factory

    engine = build_engine(settings)
    sessions = services.Sessions(make_session_factory(engine))
    try:
        if args.keys_command == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            created = services.create_api_key(sessions, args.name, scopes)
            print(created.key)
            print(
                f"created key {created.prefix}... ({created.name!r}, scopes {' '.join(created.scopes)})",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            for k in services.list_api_keys(sessions):
                state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
                print(f"{k.id}  {k.prefix}...  {k.name}  [{' '.join(k.scopes)}]  {state}")
        else:
            services.revoke_api_key(sessions, args.id)
            print(f"revoked {args.id}")
    finally:
        engine.dispose()
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """The `import` job run in this process (same handler as POST /v1/jobs), with progress bars."""
    from registry.schemas import ImportJobParams

    params = ImportJobParams(
        path=str(Path(args.path).resolve()),
        local=True,  # a path on this machine; pickles allowed (the API refuses both)
        format=args.format,
        model_name=args.model_name,
        metric=_task_map(args.metric, "--metric"),
        filter=_task_map(args.filter, "--filter"),
        benchmark=_task_map(args.benchmark, "--benchmark", bare=False),
        key_by=args.key_by,
        name=args.name,
        limit_models=args.limit_models,
    )
    return cli_lifecycle.run_job(settings, "import", params.model_dump(mode="json", exclude_defaults=True))


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    """List, show, cancel or wait for background jobs (SQL only: works beside a running server)."""
    from api.wiring import build_engine
    from registry import jobs, services
    from registry.db import make_session_factory

    engine = build_engine(settings)
    sessions = services.Sessions(make_session_factory(engine))
    try:
        if args.jobs_command == "list":
            page = jobs.list_jobs(
                sessions, states=args.state or [], kinds=args.kind or [], limit=args.limit, offset=0
            )
            for j in page.items:
                progress = f"{j.stage or '-'} {j.done}/{j.total if j.total is not None else '?'}"
                print(f"{j.id}  {j.kind:<8} {j.state:<9} {progress:<28} {j.created_at:%Y-%m-%d %H:%M:%S}")
            print(f"{len(page.items)} of {page.total} jobs", file=sys.stderr)
            return 0
        if args.jobs_command == "show":
            print(jobs.get_job(sessions, args.id).model_dump_json(indent=2))
            return 0
        if args.jobs_command == "cancel":
            job = jobs.cancel_job(sessions, args.id, lease_s=settings.job_lease_s)
            what = "cancel requested" if job.state == "running" else job.state
            print(f"job {job.id}: {what}")
            return 0
        job = wait_for_job(lambda: jobs.get_job(sessions, args.id), interval=args.interval)
        print(job.model_dump_json(indent=2))
        return 0 if job.state == "succeeded" else 1
    finally:
        engine.dispose()


def wait_for_job(read: Any, *, interval: float = 1.0, progress: bool = True) -> Any:
    """Poll `read()` (-> JobRead) until the job finishes, drawing one bar per stage."""
    import time

    bars = Bars()
    try:
        while True:
            job = read()
            if progress and job.stage is not None:
                bars(job.stage, job.done, job.total)
            if job.state in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(interval)
    finally:
        bars.close()


def _task_map(values: Sequence[str] | None, flag: str, *, bare: bool = True) -> dict[str, str]:
    """`TASK=VALUE` pairs (and, where `bare`, a plain VALUE for every task) as a dict ("*" = every task)."""
    out: dict[str, str] = {}
    for v in values or ():
        task, sep, value = v.partition("=")
        if not sep:
            if not bare:
                raise ValueError(f"{flag} {v!r}: expected TASK=NAME")
            task, value = "*", v
        if not task.strip() or not value.strip():
            raise ValueError(f"{flag} {v!r}: expected TASK=VALUE")
        out[task.strip()] = value.strip()
    return out


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from api.wiring import build_container
    from registry.exports.litellm import LiteLLMExportOptions, litellm_config
    from registry.ports import ModelFilter

    opts = LiteLLMExportOptions(
        k=args.k,
        same_license=args.same_license,
        no_pricier=args.no_pricier,
        auto_model=args.auto_model,
        format=args.format,
    )
    flt = ModelFilter(
        statuses=tuple(args.status or ()),
        providers=tuple(args.provider or ()),
        licenses=tuple(args.license or ()),
        tags=tuple(args.tag or ()),
        min_context_window=args.min_context_window,
        max_input_price=args.max_input_price,
        max_output_price=args.max_output_price,
    )
    container = build_container(settings)
    try:
        config = litellm_config(container, flt, opts)
    finally:
        container.close()
    text = json.dumps(config.as_dict(), indent=2) + "\n"  # JSON is YAML: usable as LiteLLM's config.yaml
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote {len(config.model_list)} deployments to {args.out}", file=sys.stderr)
    return 0


def cmd_probes(settings: Settings, args: argparse.Namespace) -> int:
    from api.wiring import build_container
    from registry.services.probes import probe_set

    container = build_container(settings)
    try:
        probes = probe_set(container, n=args.n)
    finally:
        container.close()
    if args.format == "json":
        print(probes.model_dump_json(indent=2))
    else:  # the normalised layout's questions.csv: score the endpoint on these
        w = csv.writer(sys.stdout)
        w.writerow(["question_id", "text", "category"])
        for q in probes.questions:
            w.writerow([q.key, q.text, q.category or ""])
        print(f"probe set {probes.version}: {probes.n} questions", file=sys.stderr)
    return 0


def _read_scores(path: Path) -> list[dict[str, Any]]:
    """Scores from a JSON file (a list of {question, score}, or {"evaluations": [...]}) or a CSV file with
    columns question_id (or question) and score."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        items = data.get("evaluations") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a list of {{question, score}} or {{'evaluations': [...]}}")
        return items
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "score" not in rows[0]:
        raise ValueError(f"{path}: the CSV needs a `score` column")
    key = "question_id" if rows and "question_id" in rows[0] else "question"
    return [{"question": r[key], "score": float(r["score"])} for r in rows]


def cmd_drift(settings: Settings, args: argparse.Namespace) -> int:
    from api.wiring import build_container
    from registry.decisions.schemas import ProbeRequest
    from registry.decisions.service import ThresholdProvider
    from registry.decisions.service.drift import check_drift, drifted_models

    container = build_container(settings)
    try:
        if args.drift_command == "check":
            req = ProbeRequest.model_validate(
                {"evaluations": _read_scores(args.scores), "min_shared": args.min_shared}
            )
            check = check_drift(container, args.model, req, ThresholdProvider())
            print(check.model_dump_json(indent=2))
            return 1 if check.verdict == "different" else 0
        page = drifted_models(container, limit=args.limit)
        for item in page.items:
            ev = None if item.latest is None else item.latest.evidence
            rate = "" if ev is None else f"rate {ev.rate:.3f} on {ev.shared_questions} questions"
            since = f"{item.drifted_at:%Y-%m-%d %H:%M}"
            print(f"{item.model.id}  {item.model.name}  drifted since {since}  {rate}")
        print(f"{page.total} model(s) flagged as drifted", file=sys.stderr)
        return 0
    finally:
        container.close()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="locus-registry", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default=None, help="default: LOCUS_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: LOCUS_PORT or 8000")
    serve.add_argument(
        "--workers", type=int, default=None, help="server processes (default: LOCUS_WORKERS or 1)"
    )
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database migrations")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="migrate the schema up (default: to the latest revision)")
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser(
        "downgrade", help="migrate the schema down to a revision ('base' drops everything)"
    )
    down.add_argument("revision")
    db.set_defaults(func=cmd_db)

    keys = sub.add_parser("keys", help="API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key and print its secret (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="read,write", help="comma-separated: read, write, admin")
    ksub.add_parser("list", help="list keys")
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=_uuid)
    keys.set_defaults(func=cmd_keys)

    from api.importing import FORMATS

    imp = sub.add_parser(
        "import",
        help="bulk-load evaluation logs or a score matrix (lm-eval, Inspect, HELM, routing benchmarks, CSV)",
    )
    imp.add_argument("path", type=Path, help="a file or folder in one of the formats")
    imp.add_argument(
        "--format", choices=FORMATS, default=None, help="default: detected from the files present"
    )
    imp.add_argument("--name", default=None, help="source label / question-key prefix of matrix formats")
    imp.add_argument("--limit-models", type=int, default=None, help="import only the first N models")
    imp.add_argument(
        "--model-name", default=None, help="the model's name (single-model logs: lm-eval, Inspect, HELM)"
    )
    imp.add_argument(
        "--metric",
        action="append",
        metavar="[TASK=]METRIC",
        help="per-sample metric (lm-eval, HELM) or scorer (Inspect) that means correct; repeatable",
    )
    imp.add_argument(
        "--filter", action="append", metavar="[TASK=]FILTER", help="lm-eval filter, e.g. strict-match"
    )
    imp.add_argument(
        "--benchmark",
        action="append",
        metavar="TASK=NAME",
        help="name a task's questions under another benchmark",
    )
    imp.add_argument(
        "--key-by",
        choices=["id", "text"],
        default="id",
        help="question identity: the tool's task + document id (default), or a hash of the normalised text",
    )
    imp.set_defaults(func=cmd_import)

    jobs_p = sub.add_parser("jobs", help="background jobs: list, show, cancel, wait")
    jsub = jobs_p.add_subparsers(dest="jobs_command", required=True)
    jlist = jsub.add_parser("list", help="jobs, newest first")
    jlist.add_argument("--state", action="append", help="queued, running, succeeded, failed, cancelled")
    jlist.add_argument("--kind", action="append", help="import, reindex, ...")
    jlist.add_argument("--limit", type=int, default=50)
    for name, text in (
        ("show", "a job's state, progress, log tail, result or error (JSON)"),
        ("cancel", "cancel a queued job, or ask a running one to stop at its next report"),
        ("wait", "wait for a job with a progress bar; exit 0 if it succeeded, 1 otherwise"),
    ):
        one = jsub.add_parser(name, help=text)
        one.add_argument("id", type=_job_id)
        if name == "wait":
            one.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    jobs_p.set_defaults(func=cmd_jobs)

    cli_lifecycle.add_parsers(sub)  # reindex, train, encoders

    probes = sub.add_parser("probes", help="print the probe set to score every endpoint on")
    probes.add_argument("--n", type=int, default=128, help="number of questions")
    probes.add_argument("--format", choices=["csv", "json"], default="csv")
    probes.set_defaults(func=cmd_probes)

    drift = sub.add_parser("drift", help="drift watch: re-probe a model's endpoint, list flagged models")
    dsub = drift.add_subparsers(dest="drift_command", required=True)
    dcheck = dsub.add_parser(
        "check", help="judge an endpoint's new scores against its model's (exit 1 when drifted)"
    )
    dcheck.add_argument("model", type=_model_id, help="the registered model's id")
    dcheck.add_argument("--scores", type=Path, required=True, help="JSON or CSV (question_id, score)")
    dcheck.add_argument("--min-shared", type=int, default=32, help="fewest shared questions to flag on")
    dlist = dsub.add_parser("list", help="models flagged as drifted, with their latest check")
    dlist.add_argument("--limit", type=int, default=1000)
    drift.set_defaults(func=cmd_drift)

    exp = sub.add_parser("export", help="write the registry in another tool's format")
    esub = exp.add_subparsers(dest="export_command", required=True)
    lite = esub.add_parser(
        "litellm", help="a LiteLLM Router config whose fallbacks are the registry's capable neighbours"
    )
    lite.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    lite.add_argument("--format", choices=["router", "proxy"], default="router")
    lite.add_argument("--k", type=int, default=3, help="fallbacks per model")
    lite.add_argument(
        "--same-license", action="store_true", help="fallbacks under the primary's licence only"
    )
    lite.add_argument("--no-pricier", action="store_true", help="fallbacks cost no more than the primary")
    lite.add_argument("--auto-model", default="locus-auto", help="group routed by the registry ('' for none)")
    lite.add_argument("--status", action="append", help="model statuses to export (default: active)")
    lite.add_argument("--provider", action="append")
    lite.add_argument("--license", action="append")
    lite.add_argument("--tag", action="append")
    lite.add_argument("--min-context-window", type=int, default=None)
    lite.add_argument("--max-input-price", type=float, default=None)
    lite.add_argument("--max-output-price", type=float, default=None)
    exp.set_defaults(func=cmd_export)
    return ap


def _uuid(value: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a key id (UUID)") from None


def _model_id(value: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a model id (UUID)") from None


def _job_id(value: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a job id (UUID)") from None


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """Entry point of the `locus-registry` console script."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from registry.errors import RegistryError

    try:
        func: Any = args.func
        code: int = func(settings or get_settings(), args)
        return code
    except (RegistryError, ValueError, OSError) as exc:  # bad input, data or checkpoint: no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
