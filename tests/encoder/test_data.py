"""Loaders on tiny fixtures, including malformed files, and the question/model splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoder.data import DataFormatError, holdout_models, load_source, split_questions
from tests.encoder.conftest import write_normalised


def test_normalised_layout(tmp_path: Path) -> None:
    src = load_source(write_normalised(tmp_path / "tiny", n_models=5, n_questions=40))
    assert src.name == "tiny"
    assert src.labels.shape == (5, 40)
    assert src.model_names[0] == "model-0" and src.question_ids[3] == "q3"
    assert set(src.categories) == {"algebra", "history", "code", "law"}
    assert not np.isnan(src.labels).any()


def test_missing_pairs_are_nan(tmp_path: Path) -> None:
    root = write_normalised(tmp_path / "gaps", n_models=2, n_questions=4)
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join(lines[:-1]) + "\n")  # drop model-1, q3
    src = load_source(root)
    assert np.isnan(src.labels[1, 3]) and src.observed().sum() == 7


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "labels.csv",
            "model,question_id,label\nm,q0,1\nm,q1,2\n",
            r"labels\.csv, line 3: score '2' is outside",
        ),
        ("labels.csv", "model,question_id,label\nm,q0,yes\n", r"line 2: score 'yes' is not a number"),
        ("labels.csv", "model,question_id,label\nm,nope,1\n", r"line 2: unknown question_id 'nope'"),
        ("labels.csv", "model,question,label\nm,q0,1\n", r"lacks column\(s\) \['question_id'\]"),
        (
            "questions.csv",
            "question_id,text\nq0,a\nq0,b\n",
            r"questions\.csv, line 3: duplicate question_id 'q0'",
        ),
        ("questions.csv", "question_id,text\nq0,\n", r"line 2: empty text"),
    ],
)
def test_malformed_files_name_file_and_row(tmp_path: Path, file: str, content: str, message: str) -> None:
    root = write_normalised(tmp_path / "bad", n_models=1, n_questions=4)
    (root / file).write_text(content)
    with pytest.raises(DataFormatError, match=message):
        load_source(root)


def test_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not a recognised layout"):
        load_source(tmp_path)


def _write_embedllm(root: Path) -> None:
    root.mkdir()
    header = "prompt_id,model_id,category_id,label,prompt,model_name,category\n"
    (root / "train.csv").write_text(
        header
        + "0,0,0,1,What is 2+2?,alpha,math\n"
        + "0,1,0,0,What is 2+2?,beta,math\n"
        + "0,1,0,1,What is 2+2?,beta,math\n"  # duplicate (prompt, model): the first row wins
        + "1,0,1,0,Capital of France?,alpha,geo\n"
    )
    (root / "test.csv").write_text(header + "2,1,0,1,What is 3*3?,beta,math\n")
    (root / "model_order.csv").write_text("model_id,model_name\n0,alpha-7b\n1,beta-13b\n")


def test_embedllm_layout_with_duplicates(tmp_path: Path) -> None:
    _write_embedllm(tmp_path / "embedllm")
    src = load_source(tmp_path / "embedllm")
    assert src.model_names == ["alpha-7b", "beta-13b"]
    assert src.labels.shape == (2, 3)
    assert src.labels[1, 0] == 0.0  # first duplicate kept
    assert np.isnan(src.labels[0, 2])
    split = split_questions(src)
    assert split.train.tolist() == [0, 1] and split.test.tolist() == [2] and len(split.val) == 0


def test_embedllm_bad_ids_name_the_row(tmp_path: Path) -> None:
    _write_embedllm(tmp_path / "e")
    with (tmp_path / "e" / "test.csv").open("a") as f:
        f.write("x,1,0,1,Hi,beta,math\n")
    with pytest.raises(DataFormatError, match=r"test\.csv, line 3: prompt_id/model_id must be integers"):
        load_source(tmp_path / "e")


def test_split_is_disjoint_stratified_and_seeded(tmp_path: Path) -> None:
    src = load_source(write_normalised(tmp_path / "s", n_questions=200))
    a = split_questions(src, seed=1)
    b = split_questions(src, seed=1)
    c = split_questions(src, seed=2)
    assert all(
        np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test), strict=True)
    )
    assert not np.array_equal(a.test, c.test)
    union = np.concatenate([a.train, a.val, a.test])
    assert len(union) == 200 == len(set(union.tolist()))
    cats = np.asarray(src.categories)
    for part in (a.val, a.test):
        assert set(cats[part]) == set(src.categories)
    assert len(a.test) == 40 and len(a.val) == 20


def test_holdout_models(tmp_path: Path) -> None:
    src = load_source(write_normalised(tmp_path / "h", n_models=10))
    mask = holdout_models(src, fraction=0.2, seed=0)
    assert mask.sum() == 2
    assert np.array_equal(mask, holdout_models(src, fraction=0.2, seed=0))
