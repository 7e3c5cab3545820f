"""Prometheus metrics at `/metrics`: per-route request counts and latency (prometheus-fastapi-instrumentator)
and the registry's state, read at scrape time: encoder fingerprint, models, vectors, models needing reindex,
and the answer cache's hits, misses and size (`api.answers`).

Each app gets its own `CollectorRegistry`, so several apps in one process (tests, workers built in a loop)
never collide on metric names. `/metrics` needs no key, like `/healthz`: Prometheus scrapes it, and it
shows counts and the encoder version, never model names or data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator

from api.deps import Container
from registry import services

log = logging.getLogger("locus_registry.metrics")


class RegistryCollector(Collector):
    """Gauges of the app's container, computed when Prometheus scrapes (no background thread)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        container: Container | None = getattr(self.app.state, "container", None)
        if container is None:  # before the lifespan has built it
            return
        embedder = container.embedder
        info = InfoMetricFamily("locus_encoder", "the loaded encoder checkpoint")
        info.add_metric(
            [],
            {
                "fingerprint": embedder.fingerprint,
                "query_model": embedder.query_model,
                "embedding_dim": str(embedder.embedding_dim),
            },
        )
        yield info
        # A failing dependency leaves its gauge out of this scrape instead of failing the whole page.
        gauges = {
            "locus_models": (
                "models registered (SQL)",
                lambda: services.list_models(container, None, limit=1).total,
            ),
            "locus_model_vectors": (
                "model embeddings in the vector index for the loaded encoder",
                container.index.count_models,
            ),
            "locus_models_needing_reindex": (
                "models whose stored embedding comes from another encoder version",
                lambda: services.stale_models(container),
            ),
        }
        store = getattr(self.app.state, "answer_cache", None)
        if store is not None and store.max_bytes:
            yield CounterMetricFamily(
                "locus_answer_cache_hits", "similar/fallbacks answered from a stored answer", value=store.hits
            )
            yield CounterMetricFamily(
                "locus_answer_cache_misses",
                "similar/fallbacks computed (then stored when 200)",
                value=store.misses,
            )
            yield GaugeMetricFamily("locus_answer_cache_answers", "stored answers", value=len(store.answers))
            yield GaugeMetricFamily(
                "locus_answer_cache_bytes", "bytes of stored answer bodies", value=store.bytes
            )
        for name, (doc, read) in gauges.items():
            try:
                value = float(read())
            except Exception:
                log.warning("metric %s could not be read", name, exc_info=True)
                continue
            yield GaugeMetricFamily(name, doc, value=value)


def install(app: FastAPI) -> None:
    """Instrument every route and expose `/metrics` (not in the OpenAPI schema)."""
    registry = CollectorRegistry()
    Instrumentator(registry=registry, excluded_handlers=["/metrics"]).instrument(app).expose(
        app, include_in_schema=False
    )
    registry.register(RegistryCollector(app))
