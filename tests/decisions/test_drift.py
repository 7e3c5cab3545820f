"""Drift watch: re-probes judged against the model's stored scores, flags set and cleared, never on thin
evidence (pure verdicts, then the use case over HTTP on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.cli import main
from api.wiring import build_container
from encoder.checkpoint import save_checkpoint
from encoder.model import LocusModel
from registry import services
from registry.decisions.drift import MIN_SHARED, judge_drift, probe_cap, questions_to_flag
from registry.decisions.evidence import Tolerance, bounds, shared_evidence
from registry.schemas import EvaluationIn, ModelCreate, QuestionIn
from registry.settings import Settings
from tests.conftest import SMALL
from tests.decisions.test_fingerprint_api import N_Q, PATTERNS, QUESTIONS, evals, registered

__all__ = ["registered"]

TOL = Tolerance(same=0.08, related=0.25, alpha=0.05)


def flipped(pattern: list[float], rate: float, seed: int) -> list[float]:
    y = np.asarray(pattern, dtype=float)
    pick = np.random.default_rng(seed).choice(len(y), round(rate * len(y)), replace=False)
    y[pick] = 1.0 - y[pick]
    return y.tolist()


def test_own_scores_are_same_and_another_models_are_different() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(128) < 0.5).astype(float)
    same = judge_drift(shared_evidence(a, a, TOL.alpha), TOL)
    assert (same.verdict, same.kind) == ("same", "same")
    b = (rng.random(128) < 0.5).astype(float)
    other = judge_drift(shared_evidence(a, b, TOL.alpha), TOL)
    assert (other.verdict, other.kind) == ("different", "different") and "another model" in other.why


def test_a_close_variant_is_flagged_as_related_drift_but_rerun_noise_is_not() -> None:
    a = (np.random.default_rng(1).random(256) < 0.5).astype(float)
    variant = np.asarray(flipped(a.tolist(), 0.18, seed=2))  # lower bound above `same`, rate below related
    j = judge_drift(shared_evidence(a, variant, TOL.alpha), TOL)
    assert (j.verdict, j.kind) == ("different", "related")
    for seed in range(20):  # 0-5% flips: what a re-run of the same model looks like, never a flag
        for rate in (0.0, 0.02, 0.05):
            noisy = np.asarray(flipped(a.tolist(), rate, seed=seed))
            assert judge_drift(shared_evidence(a, noisy, TOL.alpha), TOL).verdict != "different"


def test_thin_evidence_never_flags_and_says_how_many_questions_would() -> None:
    a = np.ones(12)
    b = np.zeros(12)  # every shared answer differs, but on 12 questions only
    ev = shared_evidence(a, b, TOL.alpha)
    assert ev.lower >= TOL.same  # the bound alone would flag: the minimum sample size must stop it
    j = judge_drift(ev, TOL)
    assert j.verdict == "undetermined" and j.questions_needed == MIN_SHARED and "too few" in j.why
    none = judge_drift(shared_evidence(np.zeros(0), np.zeros(0), TOL.alpha), TOL)
    assert none.verdict == "undetermined" and "probe set" in none.why


def test_the_same_verdict_is_capped_by_the_nearest_neighbour() -> None:
    a = (np.random.default_rng(3).random(200) < 0.5).astype(float)
    near = np.asarray(flipped(a.tolist(), 0.02, seed=4))
    ev = shared_evidence(a, near, TOL.alpha)
    assert judge_drift(ev, TOL).verdict == "same"
    # a registered neighbour 6% away: `same` needs the upper bound below 3%, which 200 questions at a 2%
    # rate do not give; and 2% is no drift either
    capped = judge_drift(ev, TOL, cap=0.03)
    assert capped.verdict == "undetermined" and capped.same_below == 0.03


def test_questions_to_flag_is_the_smallest_deciding_sample() -> None:
    n = questions_to_flag(0.3, TOL.same, TOL.alpha)
    assert n is not None
    assert bounds(0.3 * n, n, TOL.alpha)[0] >= TOL.same > bounds(0.3 * (n - 1), n - 1, TOL.alpha)[0]
    assert questions_to_flag(0.05, TOL.same, TOL.alpha) is None  # below the threshold: never flags


def probe(
    client: TestClient, headers: dict[str, str], model: str, body: dict[str, object]
) -> dict[str, object]:
    r = client.post(f"/v1/models/{model}/probes", json=body, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, object] = r.json()
    return out


def test_reprobe_flags_a_substituted_endpoint_and_a_passing_reprobe_clears_it(
    client: TestClient, writer: dict[str, str], reader: dict[str, str], registered: dict[str, str]
) -> None:
    target = registered["target"]
    n_before = client.get(f"/v1/models/{target}", headers=reader).json()["embedding"]["n_evaluations"]

    own = probe(client, writer, target, {"evaluations": evals(flipped(PATTERNS["target"], 0.02, 0))})
    assert own["verdict"] == "same" and own["drifted"] is False
    assert own["evidence"]["shared_questions"] == N_Q and own["unshared"] == 0  # type: ignore[index]
    assert client.get("/v1/drift", headers=reader).json()["total"] == 0

    swapped = probe(client, writer, target, {"evaluations": evals(PATTERNS["other-0"])})
    assert swapped["verdict"] == "different" and swapped["drifted"] is True
    assert swapped["kind"] in ("related", "different") and swapped["disagreeing"]
    flagged = client.get("/v1/drift", headers=reader).json()
    assert flagged["total"] == 1 and flagged["items"][0]["model"]["id"] == target
    assert flagged["items"][0]["latest"]["id"] == swapped["id"]

    # an undetermined re-probe leaves the flag alone
    thin = probe(client, writer, target, {"evaluations": evals(PATTERNS["target"], range(10))})
    assert thin["verdict"] == "undetermined" and thin["drifted"] is True

    back = probe(client, writer, target, {"evaluations": evals(PATTERNS["target"])})
    assert back["verdict"] == "same" and back["drifted"] is False
    assert client.get("/v1/drift", headers=reader).json()["total"] == 0
    checks = client.get(f"/v1/models/{target}/drift", headers=reader).json()
    assert [c["verdict"] for c in checks["items"]] == ["same", "undetermined", "different", "same"]

    # probe scores describe the endpoint, never the registered model: no evaluation was stored
    after = client.get(f"/v1/models/{target}", headers=reader).json()["embedding"]["n_evaluations"]
    assert after == n_before
    hist = client.get(f"/v1/models/{target}/history", headers=reader).json()
    reasons = [h["reason"] for h in hist["items"]]
    assert reasons.count("probe") == 4 and reasons[-1] == "register"
    assert hist["summary"]["probes"] == 4 and hist["summary"]["embeddings"] == 1


def test_thin_reprobe_is_undetermined_with_the_probe_questions_that_would_decide(
    client: TestClient, writer: dict[str, str], registered: dict[str, str]
) -> None:
    opposite = [1.0 - y for y in PATTERNS["target"]]
    body = probe(client, writer, registered["target"], {"evaluations": evals(opposite, range(12))})
    assert body["verdict"] == "undetermined" and body["drifted"] is False
    assert body["evidence"]["shared_questions"] == 12  # type: ignore[index]
    assert body["questions_needed"] == 32 and "too few shared questions" in str(body["why"])
    missing = body["probe_questions"]
    assert isinstance(missing, list) and missing and not set(missing) & {f"m{i}" for i in range(12)}


def test_bad_probe_requests_are_refused(
    client: TestClient, writer: dict[str, str], reader: dict[str, str], registered: dict[str, str]
) -> None:
    target = registered["target"]
    dup = evals(PATTERNS["target"], [0, 0])
    r = client.post(f"/v1/models/{target}/probes", json={"evaluations": dup}, headers=writer)
    assert r.status_code == 422 and "more than once" in r.json()["detail"]
    r = client.post(
        "/v1/models/00000000-0000-0000-0000-000000000000/probes",
        json={"evaluations": evals(PATTERNS["target"])},
        headers=writer,
    )
    assert r.status_code == 404
    r = client.post(
        f"/v1/models/{target}/probes", json={"evaluations": evals(PATTERNS["target"])}, headers=reader
    )
    assert r.status_code == 403
    # unregistered questions are allowed: they are simply not shared
    unknown = [{"question": "nowhere", "score": 1.0}]
    body = probe(client, writer, target, {"evaluations": unknown})
    assert body["verdict"] == "undetermined" and body["unshared"] == 1


def test_cli_drift_check_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ckpt"
    save_checkpoint(LocusModel(SMALL), ckpt)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        qdrant_path=str(tmp_path / "qdrant"),
        encoder_checkpoint=ckpt,
        query_cache_dir=Path.home() / ".cache" / "locus-registry" / "query",
    )
    assert main(["db", "upgrade"], settings) == 0
    container = build_container(settings)
    try:
        services.add_questions(container, [QuestionIn(**q) for q in QUESTIONS])  # type: ignore[arg-type]
        ids = {
            name: services.register_model(
                container,
                ModelCreate(name=name, evaluations=[EvaluationIn(**e) for e in evals(pattern)]),
            ).id
            for name, pattern in PATTERNS.items()
        }
    finally:
        container.close()
    scores = tmp_path / "probe.csv"
    scores.write_text(
        "question_id,score\n" + "".join(f"m{i},{y}\n" for i, y in enumerate(PATTERNS["other-1"]))
    )
    capsys.readouterr()
    assert main(["drift", "check", str(ids["target"]), "--scores", str(scores)], settings) == 1  # drifted
    assert json.loads(capsys.readouterr().out)["verdict"] == "different"
    assert main(["drift", "list"], settings) == 0
    out = capsys.readouterr()
    assert str(ids["target"]) in out.out and "1 model(s)" in out.err
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"evaluations": evals(PATTERNS["target"])}))
    assert main(["drift", "check", str(ids["target"]), "--scores", str(same)], settings) == 0
    assert json.loads(capsys.readouterr().out)["drifted"] is False
    with pytest.raises(SystemExit):  # argparse refuses it, naming the argument
        main(["drift", "check", "not-a-uuid", "--scores", str(same)], settings)
    assert "not a model id" in capsys.readouterr().err


def test_the_cap_reads_the_neighbour_on_the_reprobed_questions() -> None:
    # two models that disagree on a fifth of all questions but on 2 of the 64 re-probed ones: on those,
    # an endpoint answering like either is close to both, so `same` must be out of reach there
    rng = np.random.default_rng(5)
    a = (rng.random(64) < 0.5).astype(float)
    b = a.copy()
    b[:2] = 1.0 - b[:2]
    cap = probe_cap(a, b[None, :], min_shared=32)
    assert cap is not None and abs(cap - 1 / 64) < 1e-12
    assert probe_cap(a, b[None, :], min_shared=65) is None  # too few shared: no pair counts
    both = np.vstack([b, np.where(rng.random(64) < 0.5, np.nan, 1.0 - a)])
    assert probe_cap(a, both, min_shared=16) == cap  # the nearest of several
    j = judge_drift(shared_evidence(a, a, TOL.alpha), TOL, cap)
    assert j.verdict == "undetermined" and j.same_below == cap  # identical answers, yet not `same`


def test_rerun_noise_never_flags_under_a_tiny_registry_tolerance() -> None:
    # lart's tolerance is 0.008 (near-constant weak models): the bound alone would flag 5% noise
    tiny = Tolerance(same=0.008, related=0.17, alpha=0.05)
    a = (np.random.default_rng(6).random(1000) < 0.5).astype(float)
    noisy = np.asarray(flipped(a.tolist(), 0.05, seed=7))
    ev = shared_evidence(a, noisy, tiny.alpha)
    assert ev.lower >= tiny.same  # "not the same model" by the registry's tolerance...
    j = judge_drift(ev, tiny)
    assert j.verdict == "undetermined" and j.flag_at == 0.10  # ...but not a change that counts as drift
    strict = judge_drift(ev, tiny, min_drift=0.02)  # a deterministic endpoint: 5% is drift
    assert (strict.verdict, strict.kind, strict.flag_at) == ("different", "related", 0.02)


def test_a_neighbour_that_moves_close_takes_same_out_of_reach_at_once(
    client: TestClient, writer: dict[str, str], registered: dict[str, str]
) -> None:
    target = registered["target"]
    first = probe(client, writer, target, {"evaluations": evals(PATTERNS["target"])})
    assert first["verdict"] == "same"
    twin = list(PATTERNS["target"])
    twin[0] = 1.0 - twin[0]  # another registered model now answers like the target but once
    r = client.post(
        f"/v1/models/{registered['other-0']}/evaluations", json={"evaluations": evals(twin)}, headers=writer
    )
    assert r.status_code == 200, r.text
    again = probe(client, writer, target, {"evaluations": evals(PATTERNS["target"])})
    assert again["verdict"] == "undetermined"
    assert again["cap_probe"] == pytest.approx(0.5 / N_Q)  # the neighbour cache saw the write
