"""A small registry fleet shared by the client, integration and atlas tests: 24 questions in 3 categories
and models whose score patterns make near-twins with different context windows and prices."""

from __future__ import annotations

from typing import Any

QUESTIONS = [
    {"key": f"q{i}", "text": f"Question {i}: what is {i} times {i + 3}?", "category": f"c{i % 3}"}
    for i in range(24)
]

PATTERNS: dict[str, list[float]] = {
    # `flagship` and `flagship-mini` differ on one answer; `flagship-long` on two: the mini is the nearest
    # twin, but its context window is 16x smaller.
    "flagship": [1.0 if i % 2 == 0 else 0.0 for i in range(24)],
    "flagship-mini": [1.0 if i % 2 == 0 or i == 23 else 0.0 for i in range(24)],
    "flagship-long": [1.0 if (i % 2 == 0 and i != 22) or i in (21, 23) else 0.0 for i in range(24)],
    "beta": [1.0 if i % 3 else 0.0 for i in range(24)],
    "gamma": [1.0 if i < 12 else 0.0 for i in range(24)],
    "delta": [0.0 if i < 12 else 1.0 for i in range(24)],
}

META: dict[str, dict[str, Any]] = {
    "flagship": {
        "provider": "acme",
        "family": "flag",
        "params_b": 70,
        "input_price": 3.0,
        "output_price": 9.0,
        "license": "closed",
        "context_window": 128000,
    },
    "flagship-mini": {
        "provider": "acme",
        "family": "flag",
        "params_b": 8,
        "input_price": 0.2,
        "output_price": 0.6,
        "license": "closed",
        "context_window": 8192,
    },
    "flagship-long": {
        "provider": "globex",
        "family": "flag",
        "params_b": 72,
        "input_price": 2.0,
        "output_price": 6.0,
        "license": "closed",
        "context_window": 200000,
    },
    "beta": {
        "provider": "globex",
        "family": "b",
        "params_b": 13,
        "input_price": 0.5,
        "output_price": 1.5,
        "license": "apache-2.0",
        "context_window": 32768,
    },
    "gamma": {
        "provider": "initech",
        "family": "g",
        "params_b": 7,
        "input_price": 0.1,
        "output_price": 0.3,
        "license": "apache-2.0",
        "context_window": 32768,
    },
    "delta": {
        "provider": "initech",
        "family": "d",
        "params_b": 400,
        "input_price": 10.0,
        "output_price": 30.0,
        "license": "closed",
        "context_window": 200000,
    },
}


def evals(pattern: list[float]) -> list[dict[str, Any]]:
    return [{"question": q["key"], "score": s} for q, s in zip(QUESTIONS, pattern, strict=True)]


def model_bodies() -> list[dict[str, Any]]:
    """POST /v1/models bodies of the fleet."""
    return [{"name": name, **META[name], "evaluations": evals(p)} for name, p in PATTERNS.items()]
