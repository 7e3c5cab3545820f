"""Checkpoints: `config.json` + `model.safetensors` + `FINGERPRINT` (hash of config and weights).

The registry stores the fingerprint next to every vector, so vectors made by two encoder versions
never mix. Extra JSON files (a training report, a fingerprint calibration) may sit beside them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from encoder.config import LocusConfig
from encoder.model import LocusModel

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FINGERPRINT_FILE = "FINGERPRINT"


class CheckpointError(ValueError):
    """A checkpoint folder is missing files, or its fingerprint does not match its contents."""


def fingerprint(cfg: LocusConfig, state: dict[str, torch.Tensor]) -> str:
    """sha256 over the canonical config and every weight tensor (name, dtype, shape, bytes), 16 hex chars."""
    h = hashlib.sha256(cfg.canonical_json().encode())
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(model: LocusModel, directory: Path | str, *, extra: dict[str, Any] | None = None) -> str:
    """Write config.json, model.safetensors and FINGERPRINT; returns the fingerprint."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    fp = fingerprint(model.cfg, state)
    doc: dict[str, Any] = {"architecture": model.cfg.to_dict(), "fingerprint": fp}
    if extra:
        doc["training"] = extra
    (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    save_file(state, str(out / WEIGHTS_FILE), metadata={"fingerprint": fp})
    (out / FINGERPRINT_FILE).write_text(fp + "\n")
    return fp


def load_checkpoint(directory: Path | str) -> tuple[LocusModel, str]:
    """Load a checkpoint in eval mode; verifies that the stored fingerprint matches the contents."""
    src = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (src / name).is_file():
            raise CheckpointError(f"{src}: missing {name}")
    doc = json.loads((src / CONFIG_FILE).read_text())
    try:
        cfg = LocusConfig.from_dict(doc["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{src / CONFIG_FILE}: bad architecture section: {exc}") from exc
    state = load_file(str(src / WEIGHTS_FILE))
    model = LocusModel(cfg)
    try:
        if "metric" in state:  # the stored-vector metric fitted after training (`encoder.metric`)
            model.set_metric(state["metric"])
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{src / WEIGHTS_FILE}: weights do not fit config: {exc}") from exc
    fp = fingerprint(cfg, state)
    stored = doc.get("fingerprint")
    if stored is not None and stored != fp:
        raise CheckpointError(f"{src}: fingerprint mismatch (config says {stored}, contents hash to {fp})")
    model.eval()
    return model, fp
