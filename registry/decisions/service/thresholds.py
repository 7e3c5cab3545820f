"""Fingerprint thresholds for the loaded encoder: calibration.json, else calibrated on the registry."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from registry import repositories as repo
from registry.decisions.errors import InvalidDecisionInput
from registry.decisions.evidence import (
    Tolerance,
    distinct_disagreements,
    nearest_disagreements,
    tolerance_from_pairs,
)
from registry.decisions.fingerprint import (
    MATCHED_KEY,
    FingerprintThresholds,
    calibrate,
    calibrate_matched,
    load_calibration,
)
from registry.decisions.schemas import ThresholdsRead, ToleranceRead
from registry.services.common import question_phi, score_matrix
from registry.services.context import Context

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"


class ThresholdProvider:
    """Fingerprint thresholds (global and matched-question) for the loaded encoder.

    First choice: `calibration.json` beside the checkpoint, if it was made for this encoder's
    fingerprint (matched thresholds under its `matched` key). Otherwise each kind is calibrated from
    the registry's own evaluations (see `registry.decisions.fingerprint`), cached until the scores
    change (`repositories.registry_version`), so every worker process answers alike.
    """

    def __init__(
        self,
        calibration_file: Path | None = None,
        *,
        max_same: float = 0.12,
        alpha: float = 0.05,
        max_fpr: float = 0.01,
    ) -> None:
        self.calibration_file = calibration_file
        self.max_same = max_same
        self.alpha = alpha
        self.max_fpr = max_fpr
        self._lock = threading.Lock()
        self._cached: tuple[tuple[str, object], FingerprintThresholds, str] | None = None
        self._cached_matched: tuple[tuple[str, object], FingerprintThresholds | None] | None = None
        self._cached_tolerance: tuple[object, Tolerance, dict[uuid.UUID, float]] | None = None

    @staticmethod
    def _version(ctx: Context) -> object:
        with ctx.session_factory() as s:
            return repo.registry_version(s)

    def get_tolerance(self, ctx: Context) -> tuple[Tolerance, dict[uuid.UUID, float]]:
        """Disagreement thresholds for verdicts on shared-question scores (`registry.decisions.evidence`),
        read from the registered models' own disagreements, and each registered model's smallest
        disagreement with another one (absent: not among the models read, or too few shared questions).
        Cached until the scores change; deterministic for the same data, so every worker answers alike."""
        _, tol, nearest = self._tolerance(ctx)
        return tol, nearest

    def _tolerance(self, ctx: Context) -> tuple[object, Tolerance, dict[uuid.UUID, float]]:
        key = self._version(ctx)  # any write that changes scores invalidates it, in every process
        with self._lock:
            if self._cached_tolerance is None or self._cached_tolerance[0] != key:
                self._cached_tolerance = (key, *self._tolerance_from_registry(ctx))
            return self._cached_tolerance

    def _tolerance_from_registry(
        self, ctx: Context, max_models: int = 400
    ) -> tuple[Tolerance, dict[uuid.UUID, float]]:
        with ctx.session_factory() as s:
            ids = calibration_models(s, max_models)
            scores = repo.model_scores(s, ids)
        use = [m for m in ids if scores.get(m)]
        labels = score_matrix(use, scores, sorted({q for m in use for q, _ in scores[m]}))
        tol = tolerance_from_pairs(
            distinct_disagreements(labels) if len(use) > 1 else np.zeros(0),
            max_same=self.max_same,
            max_fpr=self.max_fpr,
            alpha=self.alpha,
        )
        nearest = nearest_disagreements(labels) if len(use) > 1 else np.zeros(0)
        return tol, {m: float(d) for m, d in zip(use, nearest, strict=True) if np.isfinite(d)}

    def _from_file(
        self, fingerprint: str
    ) -> tuple[FingerprintThresholds, FingerprintThresholds | None] | None:
        path = self.calibration_file
        if path is None or not path.is_file():
            return None
        try:
            th, matched = load_calibration(path)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable fingerprint calibration %s: %s", path, exc)
            return None
        made_for = th.notes.get("checkpoint_fingerprint")
        if made_for is not None and made_for != fingerprint:
            log.warning("%s was calibrated for encoder %s, not %s: ignored", path, made_for, fingerprint)
            return None
        return th, matched

    def get(self, ctx: Context) -> tuple[FingerprintThresholds, str] | None:
        """(global thresholds, where they came from), or None when there is too little data to calibrate."""
        fp = ctx.embedder.fingerprint
        got = self._from_file(fp)
        if got is not None:
            return got[0], str(self.calibration_file)
        key = (fp, self._version(ctx))
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1], self._cached[2]
            result = calibrate_from_registry(ctx)
            if result is None:
                return None
            self._cached = (key, result, "calibrated from the registry's evaluations")
            return result, self._cached[2]

    def get_matched(self, ctx: Context) -> tuple[FingerprintThresholds, str] | None:
        """(matched-question thresholds, where they came from), or None when there is too little data."""
        fp = ctx.embedder.fingerprint
        got = self._from_file(fp)
        if got is not None and got[1] is not None:
            return got[1], f"{self.calibration_file} ({MATCHED_KEY})"
        key = (fp, self._version(ctx))
        with self._lock:
            if self._cached_matched is None or self._cached_matched[0] != key:
                self._cached_matched = (key, calibrate_matched_from_registry(ctx))
            th = self._cached_matched[1]
        return None if th is None else (th, "calibrated from the registry's evaluations (matched questions)")


def calibration_models(s: Session, max_models: int) -> list[uuid.UUID]:
    """The registered models calibration samples from, ordered by name (then id): UUIDs are random, so
    ordering by them would give different thresholds for the same data on every deployment."""
    rows = repo.get_models(s, repo.iter_model_ids(s))
    return [r.id for r in sorted(rows.values(), key=lambda r: (r.name, str(r.id)))][:max_models]


def by_question_key(
    s: Session, scores: dict[uuid.UUID, list[tuple[uuid.UUID, float]]]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, float]]]:
    """Each model's (question id, score) pairs ordered by question key, so seeded samples drawn from
    them are the same for the same data (question ids are random UUIDs)."""
    keys = {
        q: r.key for q, r in repo.get_questions(s, sorted({q for v in scores.values() for q, _ in v})).items()
    }
    return {m: sorted(v, key=lambda p: keys.get(p[0], "")) for m, v in scores.items()}


def calibrate_from_registry(
    ctx: Context, *, n: int = 128, repeats: int = 2, max_models: int = 300, seed: int = 0
) -> FingerprintThresholds | None:
    """Calibrate thresholds on the registered models' evaluations (n shrinks to fit small registries)."""
    with ctx.session_factory() as s:
        ids = calibration_models(s, max_models)
        scores = by_question_key(s, repo.model_scores(s, ids))
        counts = sorted((len(v) for v in scores.values()), reverse=True)
        if len(counts) < 2 or counts[1] < 8:
            return None
        n_eff = min(n, counts[1] // 2)
        use = [m for m in ids if len(scores.get(m, ())) >= 2 * n_eff]
        qids = sorted({q for m in use for q, _ in scores[m]})
        phi, _ = question_phi(ctx, s, qids)
    sets = [
        (
            np.stack([phi[q] for q, _ in scores[m]]).astype(np.float32),
            np.asarray([y for _, y in scores[m]], np.float32),
        )
        for m in use
    ]
    try:
        th, _ = calibrate(sets, ctx.embedder.embed, n=n_eff, repeats=repeats, seed=seed)
    except InvalidDecisionInput:
        return None
    return th


def calibrate_matched_from_registry(
    ctx: Context, *, n: int = 128, max_models: int = 300, max_pairs: int = 2000, seed: int = 0
) -> FingerprintThresholds | None:
    """Matched-question thresholds from the registered models' scores on shared questions.

    n shrinks to the median number of questions shared by a pair when that is smaller (at least 8).
    The registry cannot tell which registered models are one model under two names, so every pair
    counts as distinct: a registry full of duplicates calibrates a stricter `same`.
    """
    with ctx.session_factory() as s:
        ids = calibration_models(s, max_models)
        scores = repo.model_scores(s, ids)
        use = [m for m in ids if scores.get(m)]
        if len(use) < 2:
            return None
        qids = sorted({q for m in use for q, _ in scores[m]})
        keys = {q: r.key for q, r in repo.get_questions(s, qids).items()}
        qids.sort(key=lambda q: keys.get(q, ""))  # sampling order independent of random UUIDs
        labels = score_matrix(use, scores, qids)
        obs = (~np.isnan(labels)).astype(np.int32)
        shared = (obs @ obs.T)[np.triu_indices(len(use), k=1)]
        n_eff = int(min(n, np.median(shared)))
        if n_eff < 8:
            return None
        phi_map, _ = question_phi(ctx, s, qids)
    phi = np.stack([phi_map[q] for q in qids]).astype(np.float32)  # (Q, query_dim)
    try:
        th, _, _ = calibrate_matched(
            labels,
            phi,
            ctx.embedder.embed,
            n=n_eff,
            max_pairs=max_pairs,
            seed=seed,
            notes={"models": len(use)},
        )
    except InvalidDecisionInput:
        return None
    return th


def tolerance_read(tol: Tolerance) -> ToleranceRead:
    return ToleranceRead(
        same=tol.same,
        related=tol.related,
        alpha=tol.alpha,
        distinct_pairs=tol.distinct_pairs,
        distinct_floor=tol.floor,
    )


def thresholds_read(th: FingerprintThresholds, source: str) -> ThresholdsRead:
    return ThresholdsRead(
        same=th.same,
        related=th.related,
        n_evaluations=th.n_evaluations,
        source=source,
        tpr=th.tpr,
        fpr=th.fpr,
    )
