"""Architecture configuration of the LOCUS set encoder and correctness predictor."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LocusConfig:
    """Shapes of the set encoder (ISAB x n_isab + PMA) and the predictor MLP; validated on construction."""

    query_dim: int = 384
    width: int = 128
    heads: int = 4
    inducing: int = 64
    n_isab: int = 2
    ffn: int = 256
    embed_dim: int = 128
    pred_hidden: int = 64
    dropout: float = 0.1
    query_model: str = "all-MiniLM-L6-v2"

    def __post_init__(self) -> None:
        for name in ("query_dim", "width", "heads", "inducing", "ffn", "embed_dim", "pred_hidden"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LocusConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_isab < 0:
            raise ValueError(f"LocusConfig.n_isab must be >= 0, got {self.n_isab}")
        if self.width % self.heads:
            raise ValueError(f"LocusConfig.width ({self.width}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LocusConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocusConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown LocusConfig fields: {sorted(unknown)}")
        return cls(**data)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
