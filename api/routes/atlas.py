"""The atlas: `/atlas` (an offline page: plotly's own basic bundle, vendored under api/static/vendor, no CDN)
and `GET /v1/atlas`, the cached 2-D map of the embedded models the page draws.

The page itself holds no data and needs no key; everything it shows comes from the read API with the
key the user enters (or none when LOCUS_OPEN_READS is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from api.deps import ContainerDep, ReadAuth
from registry.atlas import AtlasCache, AtlasRead, MethodChoice, atlas
from registry.errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"atlas.js": "text/javascript", "atlas.css": "text/css"}
VENDORED_PLOTLY = "plotly-basic.min.js"  # see api/static/vendor/README.md

router = APIRouter(tags=["atlas"])


def get_atlas_cache(request: Request) -> AtlasCache:
    """One layout cache per app."""
    cache: AtlasCache | None = getattr(request.app.state, "atlas_cache", None)
    if cache is None:
        cache = request.app.state.atlas_cache = AtlasCache()
    return cache


@router.get("/v1/atlas")
def get_atlas(
    container: ContainerDep,
    cache: Annotated[AtlasCache, Depends(get_atlas_cache)],
    _: ReadAuth,
    method: Annotated[
        MethodChoice,
        Query(description="projection (scikit-learn): auto = t-SNE up to 300 models, Isomap above"),
    ] = "auto",
) -> AtlasRead:
    """Every embedded model on a 2-D map with its k-means cluster; cached per encoder and registry state."""
    return atlas(container, cache, method)


@router.get("/atlas", include_in_schema=False)
def atlas_page() -> FileResponse:
    return FileResponse(STATIC / "atlas.html", media_type="text/html")


@router.get("/atlas/static/{name}", include_in_schema=False)
def atlas_asset(name: str) -> FileResponse:
    headers = {"Cache-Control": "public, max-age=3600"}
    if name == VENDORED_PLOTLY:
        # plotly.js's basic bundle (scatter, bar, pie: what the page draws), 1.2 MB instead of the full
        # 4.8 MB plotly.min.js, whose evaluation alone took 3-5 s in headless chromium here
        return FileResponse(STATIC / "vendor" / name, media_type="text/javascript", headers=headers)
    if name not in ASSETS:
        raise NotFound(f"no atlas asset named {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=headers)
