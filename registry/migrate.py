"""Run Alembic migrations from code (`locus-registry db upgrade`, and at startup on embedded SQLite).

The migration scripts live in the top-level `migrations/` folder of the checkout, the layout the
project asked for. The service is installed from the checkout (`pip install -e .`, the Makefile and
the Dockerfile do so); an installation elsewhere points `LOCUS_MIGRATIONS_DIR` at that folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from registry.db import MIGRATING

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class MigrationsNotFound(RuntimeError):
    """The Alembic scripts folder cannot be found."""


def migrations_dir() -> Path:
    """The Alembic script folder: `LOCUS_MIGRATIONS_DIR`, else `migrations/` next to the package."""
    path = Path(os.environ.get("LOCUS_MIGRATIONS_DIR") or MIGRATIONS)
    if not (path / "env.py").is_file():
        raise MigrationsNotFound(
            f"no Alembic migrations at {path}: run from the source checkout (pip install -e .) "
            "or set LOCUS_MIGRATIONS_DIR to its migrations/ folder"
        )
    return path


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to this engine (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # configparser interpolates '%': escape it in passwords.
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    cfg = alembic_config(engine)
    with _migrating(engine) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Take the database schema down to `revision`."""
    cfg = alembic_config(engine)
    with _migrating(engine) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@contextlib.contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection whose commit bumps no `registry_state` counter (`registry.db`): the table may not
    exist at the revision migrated to, and no process has cached anything of a schema being changed."""
    with engine.connect() as conn:
        conn.info[MIGRATING] = True
        try:
            yield conn
        finally:
            conn.info.pop(MIGRATING, None)
