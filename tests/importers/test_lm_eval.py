"""lm-evaluation-harness logs made by the real tool (`--model dummy`, see tests/fixtures/lm_eval) import
to exactly the per-question scores lm-eval reports, with provenance, idempotently."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from registry import importers, services
from registry.errors import QuestionConflict
from registry.importers import ImportFormatError, ImportOptions
from registry.schemas import EvaluationFilter
from registry.services import Context
from tests.importers.conftest import LM_EVAL, lm_eval_questions, lm_eval_results

SEED1 = LM_EVAL / "seed1"
SEED2 = LM_EVAL / "seed2"


def test_each_task_mean_equals_lm_evals_own_aggregate() -> None:
    for run in (SEED1, SEED2):
        batch = importers.read(run, "lm-eval")
        results = lm_eval_results(run)
        assert batch.models == [f"dummy-{run.name}"]
        assert {p.task for p in batch.provenances} == {"toy_mc", "toy_mc_2shot", "toy_gen"}
        for i, prov in enumerate(batch.provenances):
            metric, flt = prov.generation["metric"], prov.generation["filter"]
            mine = batch.scores[batch.source_idx == i]
            assert len(mine) == results["n-samples"][prov.task]["effective"]
            assert float(np.mean(mine, dtype=np.float64)) == pytest.approx(
                results["results"][prov.task][f"{metric},{flt}"], abs=1e-9
            )
            assert prov.n_shot == results["n-shot"][prov.task]
            assert prov.tool == "lm-eval" and prov.tool_version == results["lm_eval_version"]
            assert prov.task_version == str(results["versions"][prov.task])


def test_scores_vary_and_questions_are_task_and_doc_id() -> None:
    batch = importers.read(SEED1, "lm-eval")
    mc = batch.provenances.index(next(p for p in batch.provenances if p.task == "toy_mc"))
    ys = batch.scores[batch.source_idx == mc]
    assert 0 < ys.mean() < 1  # the dummy model gives varied 0/1 acc
    keys = {q.key: q.text for q in batch.questions}
    for doc_id, text in lm_eval_questions(SEED1, "toy_mc"):
        assert keys[f"toy_mc:{doc_id}"] == text
    # The 2-shot task's question text is the rendered doc_to_text, without the few-shot examples.
    for doc_id, text in lm_eval_questions(SEED1, "toy_mc_2shot"):
        assert keys[f"toy_mc_2shot:{doc_id}"] == text


def test_metric_and_filter_are_chosen_per_task() -> None:
    opts = ImportOptions(metric={"toy_mc": "acc_norm"}, filter={"toy_gen": "loose"})
    batch = importers.read(SEED2, "lm-eval", opts)
    results = lm_eval_results(SEED2)
    by_task = {p.task: (i, p) for i, p in enumerate(batch.provenances)}
    i, p = by_task["toy_mc"]
    assert p.generation["metric"] == "acc_norm"
    assert float(batch.scores[batch.source_idx == i].mean(dtype=np.float64)) == pytest.approx(
        results["results"]["toy_mc"]["acc_norm,none"]
    )
    assert by_task["toy_gen"][1].generation["filter"] == "loose"
    assert by_task["toy_mc_2shot"][1].generation["metric"] == "acc"  # default for the others
    with pytest.raises(ImportFormatError, match=r"no metric 'bleu'.*--metric"):
        importers.read(SEED2, "lm-eval", ImportOptions(metric={"*": "bleu"}))
    with pytest.raises(ImportFormatError, match=r"no filter 'nope'"):
        importers.read(SEED2, "lm-eval", ImportOptions(filter={"toy_gen": "nope"}))


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def test_malformed_files_name_the_file_and_line(tmp_path: Path) -> None:
    run = _copy(SEED1, tmp_path / "run")
    samples = next(run.glob("samples_toy_mc_2026*.jsonl"))
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join([*lines[:3], "{not json", *lines[3:]]) + "\n")
    with pytest.raises(ImportFormatError, match=rf"{samples.name}, line 4: not valid JSON"):
        importers.read(run, "lm-eval")
    samples.write_text(
        "\n".join([*lines[:3], lines[3].replace('"acc": 1.0', '"acc": 7').replace('"acc": 0.0', '"acc": 7')])
    )
    with pytest.raises(
        ImportFormatError, match=rf"{samples.name}, line 4: metric 'acc' 7 is outside \[0, 1\]"
    ):
        importers.read(run, "lm-eval")
    samples.unlink()
    with pytest.raises(ImportFormatError, match=r"no samples file samples_toy_mc_2026.*--log_samples"):
        importers.read(run, "lm-eval")


def test_import_round_trip_provenance_and_idempotence(ctx: Context) -> None:
    first = services.import_batch(ctx, importers.read(SEED1, "lm-eval"))
    assert (first.models_created, first.evaluations, first.sources_created) == (1, 60, 3)
    second = services.import_batch(ctx, importers.read(SEED2, "lm-eval"))
    assert (second.questions_created, second.questions_existing, second.models_created) == (0, 60, 1)

    models = {m.name: m for m in services.list_models(ctx).items}
    model = models["dummy-seed1"]
    page = services.list_evaluations(ctx, model.id, limit=1000)
    assert page.total == 60 and all(e.provenance is not None for e in page.items)
    results = lm_eval_results(SEED1)
    for task in ("toy_mc", "toy_mc_2shot", "toy_gen"):
        rows = [e for e in page.items if e.provenance and e.provenance.task == task]
        prov = rows[0].provenance
        assert prov is not None and prov.n_shot == results["n-shot"][task]
        key = f"{prov.generation['metric']},{prov.generation['filter']}"
        assert np.mean([e.score for e in rows]) == pytest.approx(results["results"][task][key])

    only = services.list_evaluations(ctx, model.id, flt=EvaluationFilter(tasks=["toy_mc_2shot"]), limit=1000)
    assert only.total == 20 and {e.provenance.task for e in only.items if e.provenance} == {"toy_mc_2shot"}
    assert services.list_evaluations(ctx, model.id, flt=EvaluationFilter(tools=["helm"])).total == 0
    assert services.list_evaluations(ctx, model.id, flt=EvaluationFilter(with_provenance=False)).total == 0

    card = services.model_provenance(ctx, model.id)
    assert sorted((c.provenance.task, c.evaluations) for c in card if c.provenance) == [
        ("toy_gen", 20),
        ("toy_mc", 20),
        ("toy_mc_2shot", 20),
    ]

    before = [(e.question, e.score, e.provenance.id if e.provenance else None) for e in page.items]
    again = services.import_batch(ctx, importers.read(SEED1, "lm-eval"))
    assert (again.sources_created, again.sources_existing, again.questions_created, again.models_created) == (
        0,
        3,
        0,
        0,
    )
    after = services.list_evaluations(ctx, model.id, limit=1000)
    assert [(e.question, e.score, e.provenance.id if e.provenance else None) for e in after.items] == before
    assert services.list_evaluation_sources(ctx).total == 6


def test_nothing_is_half_imported(ctx: Context, tmp_path: Path) -> None:
    # Two runs in one folder; the second one conflicts with the first on a question text.
    root = tmp_path / "runs"
    _copy(SEED1, root / "a")
    b = _copy(SEED2, root / "b")
    samples = next(b.glob("samples_toy_gen_*.jsonl"))
    samples.write_text(samples.read_text().replace('"question": "What is', '"question": "Compute'))
    with pytest.raises(QuestionConflict, match=r"toy_gen:0.*different text"):
        services.import_batch(ctx, importers.read(root, "lm-eval"))
    assert services.list_models(ctx).total == 0
    assert services.list_questions(ctx).total == 0

    # A clash with what is already stored is refused in the one transaction too.
    services.import_batch(ctx, importers.read(SEED1, "lm-eval"))
    with pytest.raises(QuestionConflict):
        services.import_batch(ctx, importers.read(b, "lm-eval"))
    assert [m.name for m in services.list_models(ctx).items] == ["dummy-seed1"]
