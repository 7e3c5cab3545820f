"""LiteLLM Router config from the registry: `model_list` with the registry's metadata, and `fallbacks` /
`context_window_fallbacks` from the capability-aware fallbacks use case under hard constraints.

A fallback must hold whatever its primary could: it is active, its context window is at least the
primary's (strictly larger for `context_window_fallbacks`), it passes the request's filters (price,
licence, provider, ...), and with `no_pricier` it costs no more per token. LiteLLM's own fallback lists
are hand-written and ignore all of this (a fallback with a smaller context window fails silently).

How a registered model becomes a deployment: `metadata["litellm_params"]` (a dict, e.g. `{"model":
"openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}`) is copied into `litellm_params`; without a
`model` there, it is `"openai/<name>"` (an OpenAI-compatible endpoint). Keep secrets out of the
registry: use LiteLLM's `os.environ/VAR` references.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, Field

from registry import services
from registry.decisions import service as decisions
from registry.decisions.schemas import ReferenceQueries
from registry.errors import InvalidInput
from registry.ports import ModelFilter
from registry.schemas import ModelRead
from registry.services.context import Context

AUTO_MODEL = "locus-auto"
PAGE = 500


class LiteLLMExportOptions(BaseModel):
    """How the config is built (the model filters come separately, as a `ModelFilter`)."""

    k: int = Field(default=3, ge=1, le=20, description="fallbacks per model")
    same_license: bool = Field(default=False, description="fallbacks only under the primary's licence")
    no_pricier: bool = Field(
        default=False, description="fallbacks cost no more per input and output token than the primary"
    )
    context_window_fallbacks: bool = Field(
        default=True, description="also list, per model, the nearest models with a larger context window"
    )
    auto_model: str = Field(
        default=AUTO_MODEL,
        max_length=100,
        description="model group answered by the registry's routing strategy (empty: none); its "
        "fallback groups `<auto_model>:1..k` are listed for the strategy",
    )
    reference_queries: int = Field(
        default=200, ge=1, le=20_000, description="registry questions used for predicted agreement"
    )
    format: Literal["router", "proxy"] = Field(
        default="router",
        description="router: keyword arguments of `litellm.Router(**config)`; proxy: a LiteLLM proxy "
        "config.yaml body (`model_list` + `router_settings`)",
    )


class LiteLLMConfig(BaseModel):
    """`litellm.Router(**config)` (format router) or the proxy's config.yaml (format proxy)."""

    model_list: list[dict[str, Any]]
    fallbacks: list[dict[str, list[str]]] | None = None
    context_window_fallbacks: list[dict[str, list[str]]] | None = None
    router_settings: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def litellm_params(model: ModelRead) -> dict[str, Any]:
    """The deployment's `litellm_params`: the model's `metadata.litellm_params`, `model` filled in."""
    given = model.metadata.get("litellm_params")
    params: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
    if not isinstance(params.get("model"), str) or not params["model"]:
        # LiteLLM needs a provider prefix it knows; a registry provider ("acme") rarely is one, so the
        # default is an OpenAI-compatible deployment named after the model (give `api_base` alongside).
        params["model"] = f"openai/{model.name}"
    return params


def model_info(model: ModelRead, fingerprint: str) -> dict[str, Any]:
    """Registry metadata in LiteLLM's `model_info` (its own keys where LiteLLM has one)."""
    info: dict[str, Any] = {
        "id": str(model.id),  # the deployment id LiteLLM reports back (`_hidden_params["model_id"]`)
        "registry_id": str(model.id),
        "provider": model.provider,
        "family": model.family,
        "params_b": model.params_b,
        "max_input_tokens": model.context_window,
        "input_cost_per_token": None if model.input_price is None else model.input_price / 1e6,
        "output_cost_per_token": None if model.output_price is None else model.output_price / 1e6,
        "license": model.license,
        "status": model.status,
        "tags": model.tags,
        "encoder_fingerprint": fingerprint if model.embedding is not None else None,
        "n_evaluations": model.embedding.n_evaluations if model.embedding is not None else 0,
    }
    return {k: v for k, v in info.items() if v is not None}


def _all_models(ctx: Context, flt: ModelFilter) -> list[ModelRead]:
    out: list[ModelRead] = []
    while True:
        page = services.list_models(ctx, flt, limit=PAGE, offset=len(out))
        out += page.items
        if not page.items or len(out) >= page.total:
            return out


def _constraints(
    model: ModelRead, base: ModelFilter, opts: LiteLLMExportOptions, larger: bool
) -> ModelFilter:
    window = model.context_window
    need = base.min_context_window
    if window is not None:
        own = window + 1 if larger else window
        need = own if need is None else max(need, own)
    flt = replace(base, statuses=("active",), min_context_window=need)
    if opts.no_pricier:
        flt = replace(
            flt,
            max_input_price=_lowest(flt.max_input_price, model.input_price),
            max_output_price=_lowest(flt.max_output_price, model.output_price),
        )
    return flt


def _lowest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def litellm_config(ctx: Context, flt: ModelFilter | None, opts: LiteLLMExportOptions) -> LiteLLMConfig:
    """A LiteLLM config for the models matching `flt` (default: active ones)."""
    base = flt or ModelFilter()
    if not base.statuses:
        base = replace(base, statuses=("active",))
    models = _all_models(ctx, base)
    if not models:
        raise InvalidInput("no registered model matches the filters: nothing to export")
    names = {m.name for m in models}
    if opts.auto_model and (opts.auto_model in names or ":" in opts.auto_model):
        raise InvalidInput(
            f"auto_model {opts.auto_model!r} must not contain ':' nor be a registered model's name"
        )
    fingerprint = ctx.embedder.fingerprint
    # Fallbacks are chosen among the exported models only: LiteLLM can fall back only to its own groups.
    within = replace(base, include_ids=tuple(m.id for m in models))
    ref = ReferenceQueries(limit=opts.reference_queries)
    fallbacks: list[dict[str, list[str]]] = []
    wider: list[dict[str, list[str]]] = []
    deployments = []
    for m in models:
        info = model_info(m, fingerprint)
        if m.embedding is not None:
            fb = decisions.fallbacks(
                ctx,
                m.id,
                opts.k,
                _constraints(m, within, opts, False),
                same_license=_licensed(m, opts),
                reference=ref,
            )
            if fb.items:
                fallbacks.append({m.name: [f.model.name for f in fb.items]})
                info["locus_fallbacks"] = [
                    {
                        "model": f.model.name,
                        "distance": round(f.distance, 6),
                        "predicted_agreement": f.predicted_agreement,
                    }
                    for f in fb.items
                ]
            if opts.context_window_fallbacks and m.context_window is not None:
                cw = decisions.fallbacks(
                    ctx,
                    m.id,
                    opts.k,
                    _constraints(m, within, opts, True),
                    same_license=_licensed(m, opts),
                    reference=ref,
                )
                if cw.items:
                    wider.append({m.name: [f.model.name for f in cw.items]})
        deployments.append({"model_name": m.name, "litellm_params": litellm_params(m), "model_info": info})
    if opts.auto_model:
        fallbacks.append({opts.auto_model: [f"{opts.auto_model}:{i}" for i in range(1, opts.k + 1)]})
    settings = {"fallbacks": fallbacks, "context_window_fallbacks": wider}
    if opts.format == "proxy":
        return LiteLLMConfig(model_list=deployments, router_settings=settings)
    return LiteLLMConfig(model_list=deployments, fallbacks=fallbacks, context_window_fallbacks=wider)


def _licensed(model: ModelRead, opts: LiteLLMExportOptions) -> bool:
    # A model without a licence cannot constrain its fallbacks' licence: it gets unconstrained ones.
    return opts.same_license and model.license is not None


__all__ = ["AUTO_MODEL", "LiteLLMConfig", "LiteLLMExportOptions", "litellm_config"]
