"""`locus-registry`: serve the API, migrate the database, manage API keys, import sources, reindex.

The CLI parses arguments and calls library functions. In embedded mode the Qdrant folder is locked
by one process at a time: stop the server before `import` or `reindex` (`keys` and `db` only touch SQL).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from registry.settings import Settings, get_settings

log = logging.getLogger("locus_registry")


class Bars:
    """tqdm bars per stage, fed by the services' `progress(stage, done, total)` callback."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="")
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    host = args.host or settings.host
    port = args.port or settings.port
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level)
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
    from api.wiring import build_container
    from encoder.data import load_source
    from registry import services

    source = load_source(args.path, args.name)
    container = build_container(settings)
    bars = Bars()
    try:
        report = services.import_source(container, source, limit_models=args.limit_models, progress=bars)
    finally:
        bars.close()
        container.close()
    print(json.dumps(report.model_dump(), indent=2))
    return 0


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    from api.wiring import build_container
    from registry import services

    container = build_container(settings)
    bars = Bars()
    try:
        report = services.reindex(container, progress=bars)
    finally:
        bars.close()
        container.close()
    print(json.dumps(report.model_dump(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="locus-registry", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default=None, help="default: LOCUS_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: LOCUS_PORT or 8000")
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

    imp = sub.add_parser("import", help="bulk-load a source (normalised or EmbedLLM layout)")
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", default=None, help="source name (question-key prefix); default: folder name")
    imp.add_argument("--limit-models", type=int, default=None, help="import only the first N models")
    imp.set_defaults(func=cmd_import)

    reidx = sub.add_parser("reindex", help="rebuild every vector from SQL for the loaded encoder")
    reidx.set_defaults(func=cmd_reindex)
    return ap


def _uuid(value: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a key id (UUID)") from None


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
