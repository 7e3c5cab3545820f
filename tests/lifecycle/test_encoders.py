"""Encoder lifecycle: promote, roll back and reindex by building beside the collections in service."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import update

from api.serving import EmbedderCache
from encoder.checkpoint import save_checkpoint
from encoder.model import LocusModel
from encoder.query import QueryEncoder
from registry import repositories_encoders as enc_repo
from registry import services as svc
from registry.errors import Conflict
from registry.schemas import EvaluationIn, ModelCreate, QuestionIn
from registry.services import Context, encoders, history
from registry.services.common import embed_rows
from registry.tables import EmbeddingStateRow, ModelRow
from tests.conftest import SMALL


class Handle:
    """A JobHandle for running a switch in the test's thread; `hook(stage, done)` runs at each report."""

    def __init__(self, hook: Callable[[str, int], None] | None = None) -> None:
        self.id = uuid.uuid4()
        self.params: dict[str, Any] = {}
        self.attempt = 1
        self.lines: list[str] = []
        self.hook = hook

    def progress(self, stage: str, done: int, total: int | None) -> None:
        if self.hook is not None:
            self.hook(stage, done)

    def log(self, message: str) -> None:
        self.lines.append(message)


def _questions(n: int) -> list[QuestionIn]:
    return [
        QuestionIn(key=f"q{i}", text=f"Lifecycle question {i}: what is {i} times {i + 3}?") for i in range(n)
    ]


def _register(ctx: Context, name: str, keys: Sequence[str], seed: int) -> uuid.UUID:
    rng = np.random.default_rng(seed)
    model = svc.register_model(
        ctx,
        ModelCreate(
            name=name, evaluations=[EvaluationIn(question=k, score=float(rng.integers(0, 2))) for k in keys]
        ),
    )
    return model.id


@pytest.fixture
def populated(ctx: Context, tmp_path: Path) -> tuple[Context, list[uuid.UUID]]:
    qs = _questions(24)
    svc.add_questions(ctx, qs)
    ids = [_register(ctx, f"model-{i}", [q.key for q in qs], seed=i) for i in range(6)]
    encoders.ensure_serving(ctx, str(tmp_path / "serving"))
    return ctx, ids


@pytest.fixture
def other_checkpoint(tmp_path: Path) -> str:
    torch.manual_seed(123)
    path = tmp_path / "candidate"
    save_checkpoint(LocusModel(SMALL), path)
    return str(path)


def _loader(ctx: Context, query_encoder: QueryEncoder) -> EmbedderCache:
    return EmbedderCache(ctx.embedder, query_encoder)


def _expected(ctx: Context, model_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
    """Each model's vector under ctx's encoder, computed straight from SQL."""
    from registry import repositories as repo

    with ctx.session_factory() as s:
        rows = list(repo.get_models(s, list(model_ids)).values())
        points, _ = embed_rows(ctx, s, rows)
        s.rollback()
    return {p.id: p.vector for p in points}


def test_promote_builds_beside_serving_then_switches(
    populated: tuple[Context, list[uuid.UUID]], other_checkpoint: str, query_encoder: QueryEncoder
) -> None:
    ctx, ids = populated
    loader = _loader(ctx, query_encoder)
    cand = encoders.register_encoder(ctx, other_checkpoint, loader)
    assert cand.status == "candidate" and cand.fingerprint != ctx.embedder.fingerprint
    old_vectors = ctx.index.get_model_vectors(ids)

    seen_serving: list[str] = []

    def during_build(stage: str, done: int) -> None:
        # While the candidate builds, the collections in service are untouched.
        if stage == "models":
            seen_serving.append(encoders.serving_encoder(ctx).fingerprint)
            assert ctx.index.count_models() == len(ids)

    report = encoders.switch_to(ctx, cand.id, loader, Handle(during_build), grace_s=0)
    assert report.fingerprint == cand.fingerprint and report.full_build and report.models == len(ids)
    assert set(seen_serving) == {ctx.embedder.fingerprint}
    statuses = {e.fingerprint: e.status for e in encoders.list_encoders(ctx)}
    assert statuses == {cand.fingerprint: "serving", ctx.embedder.fingerprint: "previous"}

    new_emb = loader(other_checkpoint)
    new_ctx = encoders.bound_to(ctx, cand.fingerprint, report.generation, new_emb)
    got = new_ctx.index.get_model_vectors(ids)
    want = _expected(new_ctx, ids)
    for m in ids:  # every model's vector in the new collection is the new encoder's, from SQL
        np.testing.assert_allclose(got[m], want[m], rtol=1e-5, atol=1e-6)
    # the old collections are kept intact for a rollback
    assert all(np.array_equal(ctx.index.get_model_vectors([m])[m], old_vectors[m]) for m in ids)
    assert ctx.index.serving_alias() == new_ctx.index.models_collection  # type: ignore[attr-defined]
    assert encoders.check_consistency(new_ctx)["missing_points"] == 0
    # each model's history records the new encoder's vector, why, and from how many evaluations
    latest = history.model_history(new_ctx, ids[0]).items[0]
    assert (latest.fingerprint, latest.reason, latest.n_evaluations) == (cand.fingerprint, "promote", 24)


def test_writes_during_a_build_are_caught_up(
    populated: tuple[Context, list[uuid.UUID]], other_checkpoint: str, query_encoder: QueryEncoder
) -> None:
    ctx, ids = populated
    loader = _loader(ctx, query_encoder)
    cand = encoders.register_encoder(ctx, other_checkpoint, loader)
    added: list[uuid.UUID] = []

    def write_while_building(stage: str, done: int) -> None:
        if stage == "models" and not added:  # a client registers a model and deletes another mid-build
            added.append(_register(ctx, "late-model", [f"q{i}" for i in range(10)], seed=99))
            svc.delete_model(ctx, ids[-1])

    report = encoders.switch_to(ctx, cand.id, loader, Handle(write_while_building), grace_s=0)
    new_ctx = encoders.bound_to(ctx, cand.fingerprint, report.generation, loader(other_checkpoint))
    points = new_ctx.index.model_ids()
    assert added[0] in points and ids[-1] not in points
    assert report.caught_up >= 1
    counts = encoders.check_consistency(new_ctx)
    assert counts["orphan_points"] == 0 and counts["missing_points"] == 0
    assert counts["points"] == counts["models_with_evaluations"] == len(ids)


def _backdate(ctx: Context) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with ctx.session_factory() as s, s.begin():
        s.execute(update(ModelRow).values(updated_at=long_ago))
        s.execute(update(EmbeddingStateRow).values(updated_at=long_ago))
    with ctx.session_factory() as s, s.begin():
        for row in enc_repo.list_all(s):
            row.promoted_at = long_ago + dt.timedelta(minutes=1)


def test_rollback_catches_up_instead_of_rebuilding(
    populated: tuple[Context, list[uuid.UUID]], other_checkpoint: str, query_encoder: QueryEncoder
) -> None:
    ctx, _ = populated
    loader = _loader(ctx, query_encoder)
    cand = encoders.register_encoder(ctx, other_checkpoint, loader)
    promoted = encoders.switch_to(ctx, cand.id, loader, Handle(), grace_s=0)
    new_ctx = encoders.bound_to(ctx, cand.fingerprint, promoted.generation, loader(other_checkpoint))
    _backdate(ctx)  # the models were registered long before (a test runs in seconds, a registry in months)
    late = _register(new_ctx, "registered-under-new", [f"q{i}" for i in range(12)], seed=7)

    previous = encoders.previous_encoder(new_ctx)
    back = encoders.switch_to(new_ctx, previous.id, loader, Handle(), grace_s=0)
    assert not back.full_build and back.fingerprint == ctx.embedder.fingerprint
    # only the model written under the other encoder (once before the flip, once in the last catch-up, which
    # re-reads models changed in the seconds around it), not every model the promotion relabelled
    assert back.caught_up <= 2
    assert late in ctx.index.model_ids()  # written while the other encoder served: caught up
    want = _expected(ctx, [late])
    np.testing.assert_allclose(ctx.index.get_model_vectors([late])[late], want[late], rtol=1e-5, atol=1e-6)
    assert encoders.serving_encoder(ctx).fingerprint == ctx.embedder.fingerprint


def test_reindex_builds_a_new_generation_and_drops_the_old(
    populated: tuple[Context, list[uuid.UUID]],
) -> None:
    ctx, ids = populated
    serving = encoders.serving_encoder(ctx)
    loader = EmbedderCache(ctx.embedder, None)
    report = encoders.switch_to(ctx, serving.id, loader, Handle(), rebuild=True, grace_s=0)
    assert report.generation == serving.generation + 1 and report.previous_generation == serving.generation
    fresh = encoders.bound_to(ctx, serving.fingerprint, report.generation, ctx.embedder)
    assert fresh.index.model_ids() == set(ids)
    assert encoders.serving_encoder(ctx).generation == report.generation
    with pytest.raises(Conflict):
        encoders.switch_to(ctx, serving.id, loader, Handle(), grace_s=0)  # not a rebuild


def test_a_build_that_dies_leaves_service_untouched_and_reruns(
    populated: tuple[Context, list[uuid.UUID]], other_checkpoint: str, query_encoder: QueryEncoder
) -> None:
    ctx, ids = populated
    loader = _loader(ctx, query_encoder)
    cand = encoders.register_encoder(ctx, other_checkpoint, loader)

    def die(stage: str, done: int) -> None:
        if stage == "models":
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        encoders.switch_to(ctx, cand.id, loader, Handle(die), grace_s=0)
    assert encoders.serving_encoder(ctx).fingerprint == ctx.embedder.fingerprint
    assert ctx.index.model_ids() == set(ids)
    report = encoders.switch_to(ctx, cand.id, loader, Handle(), grace_s=0)  # the job, run again
    new_ctx = encoders.bound_to(ctx, cand.fingerprint, report.generation, loader(other_checkpoint))
    assert new_ctx.index.model_ids() == set(ids)


def test_register_refuses_an_unloadable_checkpoint(
    populated: tuple[Context, list[uuid.UUID]], tmp_path: Path
) -> None:
    ctx, _ = populated
    from registry.errors import InvalidInput

    with pytest.raises(InvalidInput, match="cannot load"):
        encoders.register_encoder(ctx, str(tmp_path / "nowhere"), EmbedderCache(ctx.embedder, None))
