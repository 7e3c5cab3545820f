"""Service configuration: one pydantic-settings class read from `LOCUS_*` environment variables.

The defaults are the embedded mode: SQLite and Qdrant Edge (Qdrant's engine in-process) under `data/`,
the shipped encoder checkpoint. Production points `LOCUS_DATABASE_URL` at PostgreSQL and `LOCUS_QDRANT_URL` at
a Qdrant server.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_query_cache() -> Path:
    return Path.home() / ".cache" / "locus-registry" / "query"


class Settings(BaseSettings):
    """Everything the service and the CLI can be configured with (env prefix `LOCUS_`)."""

    model_config = SettingsConfigDict(env_prefix="LOCUS_", env_file=None, extra="ignore")

    database_url: str = Field(
        default="sqlite:///data/registry.db",
        description="SQLAlchemy URL (SQLite file or postgresql+psycopg://...).",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset = the embedded vector index at qdrant_path."
    )
    qdrant_path: str = Field(
        default="data/qdrant",
        description="Embedded vector index folder (or ':memory:'); one process at a time.",
    )
    vector_backend: Literal["auto", "edge", "local"] = Field(
        default="auto",
        description="Embedded vector index without qdrant_url: 'edge' = Qdrant Edge (qdrant-edge-py), "
        "'local' = qdrant-client local mode; 'auto' = local mode for ':memory:' or a folder that already "
        "holds local-mode data, else Qdrant Edge.",
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key for a Qdrant server.")
    encoder_checkpoint: Path | None = Field(
        default=None,
        description="Encoder checkpoint folder; unset = the shipped encoder/checkpoints/default.",
    )
    query_model: str | None = Field(
        default=None, description="sentence-transformers model for question texts; unset = the checkpoint's."
    )
    query_cache_dir: Path | None = Field(
        default_factory=_default_query_cache, description="On-disk cache of question encodings."
    )
    open_reads: bool = Field(default=False, description="Allow GET requests without an API key.")
    auto_migrate: bool = Field(
        default=True, description="Run migrations at startup when the database is SQLite (embedded mode)."
    )
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0, description="Largest accepted request body.")
    max_items: int = Field(
        default=100_000, gt=0, description="Most questions or evaluations accepted in one request."
    )
    torch_threads: int | None = Field(
        default=1,
        ge=1,
        description="Intra-op threads of the encoder; 1 suits a server running requests concurrently. "
        "Unset = torch's default (all cores).",
    )
    import_root: Path | None = Field(
        default=None,
        description="Folder whose files admins may import by server path (POST /v1/imports); unset = none.",
    )
    job_workers: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Background-job worker threads per API process; 0 = the process only serves requests.",
    )
    job_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds without a heartbeat after which a running job's worker counts as dead and "
        "another worker takes the job over.",
    )
    job_dir: Path = Field(
        default=Path("data/jobs"), description="Staging folder of uploads that jobs import."
    )
    encoder_dir: Path = Field(
        default=Path("data/encoders"), description="Where `train` jobs write the checkpoints they train."
    )
    host: str = Field(default="127.0.0.1", description="Address `locus-registry serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `locus-registry serve` listens on.")
    log_level: str = Field(default="info", description="Log level of the server.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes of `locus-registry serve`; above 1 needs a Qdrant server (qdrant_url): "
        "local mode is one process per folder.",
    )
    # Database connections per process: a PostgreSQL server with N workers opens up to N * (size + overflow);
    # a SQLite file keeps size + overflow open once opened (no server process per connection).
    db_pool_size: int = Field(default=5, ge=1, le=1000, description="Connections kept open per process.")
    db_max_overflow: int = Field(default=10, ge=0, le=1000, description="Extra connections under load.")
    db_pool_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for a free connection.")
    database_read_url: str | None = Field(
        default=None,
        description="Optional read replica (PostgreSQL streaming replica) for read-only requests; "
        "unset = every request uses database_url.",
    )
    # Qdrant distributed mode: used when a collection is created (existing collections keep theirs).
    qdrant_shard_number: int | None = Field(
        default=None, ge=1, description="Shards per collection; unset = the server's default (1)."
    )
    qdrant_replication_factor: int | None = Field(
        default=None, ge=1, description="Copies of each shard across the cluster; unset = server default."
    )
    qdrant_write_consistency_factor: int | None = Field(
        default=None, ge=1, description="Replicas that must acknowledge a write; unset = server default."
    )
    cache_warmup: bool = Field(
        default=True,
        description="At start, read every model's `similar` inputs into the process's caches in the "
        "background; /readyz answers 503 until it is done (about 1.5 s per 1,000 models).",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Freeze the heap built at start (and after the cache warm-up) out of the garbage "
        "collector's scans (gc.freeze): full collections, which pause every request, then scan only newer "
        "objects.",
    )
    answer_cache_mb: float = Field(
        default=128.0,
        ge=0,
        le=1_000_000,
        description="Megabytes of `similar` and `fallbacks` answers kept per process (about 9 KB each at "
        "k=10), keyed on the registry's change counters read per request, so every worker answers alike; "
        "0 = off.",
    )
    route_outcome_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        description="Days a routing decision accepts an outcome (POST /v1/route/outcomes); older decisions "
        "are deleted.",
    )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings read from the environment (cached)."""
    return Settings()
