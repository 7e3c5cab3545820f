"""The registry's stored evaluations as training tables: one per benchmark, questions x models.

What `api.training` trains an encoder on (optionally mixed with files). Question encodings come from
the serving index (every registered question is encoded there), so training never re-encodes text.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from registry import repositories as repo
from registry.errors import InvalidInput
from registry.services.common import question_phi
from registry.services.context import Context

UNNAMED = "registry"  # the table of questions registered without a benchmark


@dataclass
class TrainingTable:
    """One benchmark's scores (the shape of `encoder.data.EvalSource`, plus the query encodings)."""

    name: str
    question_ids: list[str]  # question keys
    texts: list[str]
    categories: list[str]
    model_names: list[str]
    labels: np.ndarray  # (M, Q) float32, NaN where a model was not scored
    phi: np.ndarray  # (Q, query_dim) float32

    @property
    def n_evaluations(self) -> int:
        return int((~np.isnan(self.labels)).sum())


def training_tables(
    ctx: Context,
    *,
    benchmarks: Sequence[str] | None = None,
    min_models: int = 5,
    min_questions: int = 50,
) -> list[TrainingTable]:
    """Every benchmark with at least `min_models` scored models and `min_questions` scored questions
    (or only the named ones, which must qualify), as dense tables."""
    wanted = set(benchmarks) if benchmarks else None
    with ctx.session_factory() as s:
        by_bench: dict[str, list[tuple[uuid.UUID, str, str, str]]] = defaultdict(list)
        for rows in repo.iter_questions(s):
            for q in rows:
                name = q.benchmark or UNNAMED
                if wanted is None or name in wanted:
                    by_bench[name].append((q.id, q.key, q.text, q.category or ""))
        names = {r[0]: r[1] for r in repo.model_summaries(s)}
        scores = repo.model_scores(s, sorted(names))
        tables: list[TrainingTable] = []
        skipped: list[str] = []
        for bench in sorted(by_bench):
            qs = by_bench[bench]
            col = {q[0]: i for i, q in enumerate(qs)}
            rows_m: list[uuid.UUID] = []
            lab_rows: list[np.ndarray] = []
            for m in sorted(names, key=lambda i: names[i]):
                pairs = [(col[q], y) for q, y in scores.get(m, []) if q in col]
                if not pairs:
                    continue
                row = np.full(len(qs), np.nan, dtype=np.float32)
                row[[c for c, _ in pairs]] = [y for _, y in pairs]
                rows_m.append(m)
                lab_rows.append(row)
            if not rows_m:
                skipped.append(f"{bench} (no scores)")
                continue
            labels = np.stack(lab_rows)  # (M, Q)
            scored = ~np.isnan(labels).all(axis=0)
            if len(rows_m) < min_models or scored.sum() < min_questions:
                skipped.append(f"{bench} ({len(rows_m)} models, {int(scored.sum())} scored questions)")
                continue
            keep = np.flatnonzero(scored)
            qids = [qs[i][0] for i in keep]
            phi, _ = question_phi(ctx, s, qids)
            tables.append(
                TrainingTable(
                    name=bench,
                    question_ids=[qs[i][1] for i in keep],
                    texts=[qs[i][2] for i in keep],
                    categories=[qs[i][3] for i in keep],
                    model_names=[names[m] for m in rows_m],
                    labels=labels[:, keep],
                    phi=np.stack([phi[q] for q in qids]).astype(np.float32),
                )
            )
    if wanted is not None:
        missing = sorted(wanted - {t.name for t in tables})
        if missing:
            raise InvalidInput(
                f"benchmark(s) {missing} cannot be trained on: each needs {min_models}+ scored models "
                f"and {min_questions} scored questions (skipped: {', '.join(skipped) or 'none found'})"
            )
    if not tables:
        raise InvalidInput(
            f"nothing to train on: no benchmark has {min_models}+ scored models and {min_questions}+ scored "
            f"questions (skipped: {', '.join(skipped) or 'the registry holds no evaluations'})"
        )
    return tables
