"""Small synthetic sources in the normalised layout (questions.csv + labels.csv) for import jobs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_normalised(root: Path, *, models: int, questions: int, seed: int = 0, prefix: str = "m") -> Path:
    """A folder with `models` x `questions` binary scores over distinct short question texts."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "questions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question_id", "text", "category"])
        for j in range(questions):
            w.writerow([f"q{j}", f"What is {j} plus {j % 7}? (item {j})", ["math", "trivia"][j % 2]])
    ability = rng.uniform(0.2, 0.9, size=models)
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "question_id", "label"])
        for i in range(models):
            for j in range(questions):
                w.writerow([f"{prefix}{i:04d}", f"q{j}", int(rng.random() < ability[i])])
    return root
