"""/v1/export: the registry in other tools' formats (a LiteLLM Router config)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.deps import ContainerDep, FilterDep, ReadAuth
from registry.exports.litellm import AUTO_MODEL, LiteLLMExportOptions, litellm_config

router = APIRouter(prefix="/v1/export", tags=["export"])


@router.get("/litellm")
def export_litellm(
    container: ContainerDep,
    _: ReadAuth,
    flt: FilterDep,
    k: Annotated[int, Query(ge=1, le=20, description="fallbacks per model")] = 3,
    same_license: Annotated[bool, Query(description="fallbacks under the primary's licence only")] = False,
    no_pricier: Annotated[
        bool, Query(description="fallbacks cost no more per token than the primary")
    ] = False,
    context_window_fallbacks: Annotated[
        bool, Query(description="also the nearest models with a larger context window")
    ] = True,
    auto_model: Annotated[
        str, Query(max_length=100, description="group routed by the registry (empty: none)")
    ] = AUTO_MODEL,
    format: Annotated[
        Literal["router", "proxy"],
        Query(description="router: `litellm.Router(**config)`; proxy: the proxy's config.yaml body"),
    ] = "router",
) -> dict[str, Any]:
    """A LiteLLM config whose fallbacks are the registry's nearest active models that hold the primary's
    context window and meet the filters (default: active models)."""
    opts = LiteLLMExportOptions(
        k=k,
        same_license=same_license,
        no_pricier=no_pricier,
        context_window_fallbacks=context_window_fallbacks,
        auto_model=auto_model,
        format=format,
    )
    return litellm_config(container, flt, opts).as_dict()
