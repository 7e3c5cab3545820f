"""Drift verdicts: does an endpoint, probed again, still behave like the model registered for it?

The same evidence as fingerprinting (`registry.decisions.evidence`): the endpoint's new scores and the
model's stored scores on the questions both cover, their disagreement rate with one-sided
Clopper-Pearson bounds at the registry's tolerance. Drift is a one-model question, so the two sides
of the verdict use different thresholds:

- `same` (not drifted): the upper bound is below the `same` tolerance, lowered to half the model's
  disagreement with its nearest registered neighbour (`candidate_cap`), over all their questions and
  over the re-probed questions alone (`probe_cap`): a swap for that neighbour is never called `same`.
  The second cap matters because a probe set is not a random sample of questions: two weak models
  that disagree on a fifth of all questions can agree on 95% of hard probe questions (zeroeval,
  benchmarks/drift.py), and an endpoint that answers like either of them is then neither.
- `different` (drifted): the lower bound reaches `flag_at` = max(the registry's `same` tolerance,
  `min_drift`) on at least `min_shared` shared questions: an endpoint whose true disagreement with its
  registered scores is at most `flag_at` is flagged with probability at most alpha. `min_drift`
  (default 0.10) is the change that counts as drift: a re-run of one model at temperature > 0
  disagrees with its earlier answers on several percent of questions, and the registry's `same`
  tolerance can sit far below that (lart: 0.008, set by near-constant weak models; flagging there
  flagged every own re-probe with 5% of answers flipped, benchmarks/drift.py). The fingerprint
  verdict of the same evidence (`related`: a close variant, e.g. a quantised or re-prompted model;
  `different`: another model) is kept as the `kind` of drift.
- `undetermined`: anything else, with how many shared questions would decide it at the observed rate.
  Thin evidence never flags: below `min_shared` shared questions the answer is `undetermined`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from registry.decisions.evidence import (
    EvidenceVerdict,
    SharedEvidence,
    Tolerance,
    bounds,
    candidate_cap,
    nearest_disagreements,
    questions_needed,
    smallest_deciding,
    verdict,
)

DriftVerdict = Literal["same", "different", "undetermined"]
MIN_SHARED = 32  # fewest shared questions on which a drift flag may be raised
MIN_DRIFT = 0.10  # disagreement with the registered scores that counts as drift (2x the benchmark's noise)


@dataclass(frozen=True)
class DriftJudgement:
    """The verdict on one re-probe and what it rests on."""

    verdict: DriftVerdict
    kind: EvidenceVerdict  # the fingerprint verdict of the same evidence (uncapped unless `same`)
    same_below: float  # the upper bound must fall below this for `same`
    flag_at: float  # the lower bound must reach this for `different`
    questions_needed: int | None  # shared questions that would decide, at the observed rate
    why: str


def probe_cap(stored: np.ndarray, others: np.ndarray, *, min_shared: int) -> float | None:
    """Half the smallest disagreement, on these questions, between a model's stored scores `stored` (Q,)
    and another registered model's (`others` (M, Q), NaN = not scored), over pairs that share at least
    `min_shared` of them (duplicates and constant pairs left out, as in the tolerance); None: no pair."""
    if len(others) == 0:
        return None
    labels = np.vstack([np.asarray(stored, np.float64)[None, :], np.asarray(others, np.float64)])  # (1+M, Q)
    return candidate_cap(float(nearest_disagreements(labels, min_shared=min_shared)[0]))


def questions_to_flag(rate: float, flag_at: float, alpha: float, limit: int = 100_000) -> int | None:
    """Shared questions at which the observed `rate`, if it held, would flag drift (lower >= flag_at);
    None when it cannot (the rate is not above the threshold) or needs more than `limit`."""
    if not math.isfinite(rate) or rate <= flag_at:
        return None

    def ok(n: int) -> bool:
        return bounds(rate * n, n, alpha)[0] >= flag_at

    return smallest_deciding(ok, limit)


def judge_drift(
    ev: SharedEvidence,
    tol: Tolerance,
    cap: float | None = None,
    *,
    min_shared: int = MIN_SHARED,
    min_drift: float = MIN_DRIFT,
) -> DriftJudgement:
    """The drift verdict of one re-probe's evidence (see the module doc)."""
    same_below = tol.same if cap is None else min(tol.same, cap)
    flag_at = max(tol.same, min_drift)
    if ev.shared == 0:
        return DriftJudgement(
            "undetermined",
            "undetermined",
            same_below,
            flag_at,
            None,
            "no submitted question is among the model's stored scores: probe it on questions it was "
            "registered with (the probe set, GET /v1/probes)",
        )
    said = (
        f"disagrees with its registered scores on {ev.disagreements:g} of {ev.shared} shared questions "
        f"(rate {ev.rate:.3f}, {1 - tol.alpha:.0%} bounds {ev.lower:.3f}-{ev.upper:.3f})"
    )
    if verdict(ev, tol, cap) == "same":
        return DriftJudgement(
            "same", "same", same_below, flag_at, None, f"{said}: the upper bound is below {same_below:.3f}"
        )
    if ev.lower >= flag_at and ev.shared >= min_shared:
        kind: EvidenceVerdict = "related" if ev.rate < tol.related else "different"
        what = "a close variant of it (related)" if kind == "related" else "another model (different)"
        return DriftJudgement(
            "different",
            kind,
            same_below,
            flag_at,
            None,
            f"{said}: the lower bound reaches {flag_at:.3f} (the larger of the same-model tolerance and the "
            f"change that counts as drift); the endpoint now behaves like {what}",
        )
    if ev.rate > flag_at:
        need = max(questions_to_flag(ev.rate, flag_at, tol.alpha) or 0, min_shared)
        why = f"{said}: too few shared questions to flag drift ({need} would, at this rate)"
        return DriftJudgement("undetermined", "undetermined", same_below, flag_at, need, why)
    need_same = questions_needed(ev.rate, tol, cap)
    why = f"{said}: neither bound decides (same needs the upper bound below {same_below:.3f}"
    why += ")" if need_same is None else f"; {need_same} shared questions would, at this rate)"
    return DriftJudgement("undetermined", "undetermined", same_below, flag_at, need_same, why)
