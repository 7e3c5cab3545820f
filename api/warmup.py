"""What `/readyz` says about the start-up cache warm-up (`registry.services.warmup`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WarmupState:
    """Progress of this process's warm-up, written by its thread and read by `/readyz`."""

    enabled: bool
    models: int = 0
    total: int | None = None
    seconds: float | None = None
    error: str | None = None
    done: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def advance(self, done: int, total: int) -> None:
        with self._lock:
            self.models, self.total = done, total

    def finish(self, models: int, seconds: float) -> None:
        with self._lock:
            self.models, self.seconds, self.done = models, round(seconds, 3), True
            if self.total is None:  # nothing to warm: no chunk reported progress
                self.total = models

    def fail(self, error: str) -> None:
        with self._lock:
            self.error, self.done = error, True

    @property
    def ready(self) -> bool:
        """Disabled, finished, or failed (requests then fill the caches as they come)."""
        with self._lock:
            return not self.enabled or self.done

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "enabled": self.enabled,
                "done": self.done or not self.enabled,
                "models": self.models,
                "total": self.total,
                "seconds": self.seconds,
                "error": self.error,
            }
