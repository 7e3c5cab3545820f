"""Atlas speed in a real headless chromium: how long /atlas takes to show N models, cold (projection
computed) and warm (cached layout), and how long a click takes to open a model's card.

The registry is built in a temporary folder with the shipped encoder: either a simulated pool of
`--models` models (encoder.simulate, synthetic metadata for colours and sizes) or real sources
(`--source DIR...`, e.g. ../shared/data/lart). `--screenshot` saves what a person sees.

    python -m benchmarks.atlas --models 1000
    python -m benchmarks.atlas --source ../shared/data/lart --screenshot docs/atlas.png --out /tmp/a.json
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from api.app import create_app
from api.wiring import build_container
from benchmarks._common import provenance, write_json
from encoder.data import load_source
from encoder.simulate import PoolSpec, simulate_pool
from registry import services
from registry.schemas import ModelUpdate
from registry.settings import Settings

CHROMIUM = os.environ.get("LOCUS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TARGET_S = 2.0
log = logging.getLogger("benchmarks.atlas")


def populate(container: Any, args: argparse.Namespace) -> str:
    if args.source:
        for path in args.source:
            services.import_source(container, load_source(path))
        return "real sources: " + ", ".join(str(p) for p in args.source)
    pool = simulate_pool(PoolSpec(n_models=args.models, n_questions=args.questions, seed=0))
    services.import_source(container, pool.to_source("sim"))
    rng = np.random.default_rng(0)
    page = services.list_models(container, None, limit=args.models + 1)
    row_of = {name: i for i, name in enumerate(pool.model_names)}
    for m in page.items:  # synthetic metadata, so colours and sizes mean something on the map
        fam = int(pool.family[row_of[m.name]])
        services.update_model(
            container,
            m.id,
            ModelUpdate(
                provider=f"provider-{fam % 7}",
                family=f"family-{fam}",
                params_b=float(np.round(np.exp(rng.normal(3.0, 1.2)), 1)),
            ),
        )
    return f"simulated pool: {args.models} models x {args.questions} questions (encoder.simulate, seed 0)"


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    host, port = sock.getsockname()
    return server, thread, f"http://{host}:{port}"


def load_once(context: Any, url: str, color_by: str, shot: Path | None = None) -> dict[str, Any]:
    """Open /atlas in a new page of `context` (a browser profile: its HTTP cache persists between pages);
    seconds until every model is drawn, and the click-to-card time."""
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{url}/atlas")
    page.wait_for_selector("body[data-ready=true]", timeout=600_000)
    shown = time.perf_counter() - started
    n = int(page.get_attribute("body", "data-models") or 0)
    drawn = page.locator("#map .scatterlayer .trace path.point").count()
    status = page.inner_text("#status")
    timing = page.evaluate("window.atlasTiming")
    if color_by != "provider":
        page.select_option("#color-by", color_by)
    name = page.evaluate("window.atlasState.points[0].name")
    started = time.perf_counter()
    page.fill("#search", name)
    page.press("#search", "Enter")
    page.wait_for_selector("#neighbours li", timeout=120_000)
    card = time.perf_counter() - started
    if shot is not None:  # what a person sees: a card open and a portfolio of 8 overlaid
        page.fill("#pf-value", "8")
        page.click("#portfolio-form button[type=submit]")
        page.wait_for_selector("#kept li", timeout=120_000)
        page.wait_for_timeout(500)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
    page.close()
    return {"seconds_to_map": round(shown, 3), "models": n, "points_drawn": drawn,
            "seconds_search_to_card": round(card, 3), "status_line": status,
            "page_timing_ms": {k: round(v, 1) for k, v in timing.items()}}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--source", type=Path, nargs="*", default=None, help="real sources instead of simulated")
    ap.add_argument("--warm-loads", type=int, default=3)
    ap.add_argument("--color-by", choices=["provider", "family", "cluster"], default="provider")
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/atlas.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/registry.db", qdrant_path=f"{tmp}/qdrant", open_reads=True
        )
        container = build_container(settings)
        started = time.perf_counter()
        workload = populate(container, args)
        log.info("registry built in %.1f s: %s", time.perf_counter() - started, workload)
        app = create_app(container=container)
        server, thread, url = serve(app)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                viewport = {"width": 1600, "height": 1000}
                # cold: a new profile and the projection computed; first visit: a new profile (plotly's
                # 4.8 MB fetched and compiled) but the projection cached; warm: a returning visitor
                # (the same profile: plotly from the browser's cache, the projection from the server's)
                profile = browser.new_context(viewport=viewport)
                cold = load_once(profile, url, args.color_by)
                first = [
                    load_once(browser.new_context(viewport=viewport), url, args.color_by)
                    for _ in range(args.warm_loads)
                ]
                warm = [load_once(profile, url, args.color_by) for _ in range(args.warm_loads)]
                if args.screenshot is not None:
                    load_once(profile, url, args.color_by, args.screenshot)
                browser.close()
            computations = app.state.atlas_cache.computations
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            container.close()
    best = min(w["seconds_to_map"] for w in warm)
    doc = {
        **provenance(),
        "workload": workload,
        "browser": f"{CHROMIUM} {' '.join(ARGS)}",
        "target_s": TARGET_S,
        "results": {
            "cold": cold,
            "first_visit": first,
            "first_visit_median_seconds_to_map": float(np.median([w["seconds_to_map"] for w in first])),
            "warm": warm,
            "warm_best_seconds_to_map": best,
            "warm_median_seconds_to_map": float(np.median([w["seconds_to_map"] for w in warm])),
            "projections_computed": computations,
            "meets_target_warm": best < TARGET_S,
            "meets_target_cold": cold["seconds_to_map"] < TARGET_S,
            "meets_target_first_visit": min(w["seconds_to_map"] for w in first) < TARGET_S,
        },
    }
    write_json(args.out, doc)
    print(f"{workload}\ncold {cold['seconds_to_map']:.2f} s (projection computed), first visit "
          f"{[w['seconds_to_map'] for w in first]} s, warm "
          f"{[w['seconds_to_map'] for w in warm]} s, projections computed: {computations}, "
          f"search->card {cold['seconds_search_to_card']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
