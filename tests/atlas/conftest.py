"""Atlas fixtures: the app around the test Context, served by a real uvicorn on a free port, and Debian's
chromium driven by playwright. Without chromium the browser tests skip with the reason, unless
LOCUS_TEST_REQUIRE_BROWSER=1 (CI), where a missing browser fails them."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from locus_registry_client import LocusClient
from registry import services
from registry.services import Context
from tests.api.conftest import make_container
from tests.client.fleet import QUESTIONS, model_bodies

CHROMIUM = os.environ.get("LOCUS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The atlas is about the page, not the database: SQLite only (the API tests cover PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def read_key(ctx: Context) -> str:
    return services.create_api_key(ctx, "atlas-reader", ["read"]).key


@pytest.fixture
def write_key(ctx: Context) -> str:
    return services.create_api_key(ctx, "atlas-writer", ["read", "write"]).key


@pytest.fixture
def app(ctx: Context) -> Any:
    return create_app(container=make_container(ctx))


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def fleet(client: TestClient, write_key: str) -> dict[str, str]:
    with LocusClient(http=client, api_key=write_key) as lc:
        lc.add_questions(QUESTIONS)
        return {m.name: str(m.id) for m in (lc.register(**b) for b in model_bodies())}


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def live_url(app: Any) -> Iterator[str]:
    """The app served over real HTTP (a browser cannot use TestClient's in-process transport)."""
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    host, port = sock.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (apt-get install -y chromium, or set LOCUS_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
def page() -> Iterator[Any]:
    """A chromium page (1400x900), via playwright with Debian's browser (no download)."""
    reason = browser_missing()
    if reason:
        if os.environ.get("LOCUS_TEST_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            # Console errors other than HTTP statuses (the page shows those itself, e.g. a 401 before a key).
            pg.on(
                "console",
                lambda msg: (
                    errors.append(msg.text)
                    if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                    else None
                ),
            )
            pg.js_errors = errors  # type: ignore[attr-defined]
            yield pg
        finally:
            browser.close()
