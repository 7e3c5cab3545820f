"""Shared helpers of the benchmark scripts: loading sources with cached encodings, provenance, JSON."""

from __future__ import annotations

import json
import math
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoder.data import EvalSource, load_source
from encoder.query import QueryEncoder

ROOT = Path(__file__).resolve().parent.parent
QUERY_CACHE = Path.home() / ".cache" / "locus-registry" / "query"


def load_sources(
    paths: Sequence[str], encoder: QueryEncoder | None = None
) -> list[tuple[EvalSource, np.ndarray]]:
    """Load each source and its question encodings (from the shared on-disk cache when present)."""
    enc = encoder or QueryEncoder(cache_dir=QUERY_CACHE)
    out = []
    for p in paths:
        source = load_source(p)
        out.append((source, enc.encode(source.texts)))
    return out


def provenance() -> dict[str, Any]:
    """The exact command, git commit (and whether the tree was dirty), host and library versions."""
    import torch

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median / min / max wall-clock seconds of fn over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
    }


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample sd over seeds, ignoring NaN; n is the number of finite values."""
    xs = [v for v in values if not math.isnan(v)]
    if not xs:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically, NaN as null."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return clean(x.item())
        return x

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(doc), indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
