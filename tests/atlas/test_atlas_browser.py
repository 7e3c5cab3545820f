"""The atlas in a real headless chromium: it loads with a populated registry, shows every model, and a
click on a model opens its card with neighbours and fallbacks; portfolio, duplicates and search work."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.client.fleet import PATTERNS

POINTS = "#map .scatterlayer .trace:not(:empty) path.point"


def point_position(page: Any, name: str) -> tuple[float, float]:
    """Screen position of a model's marker, from plotly's own axes."""
    xy = page.evaluate(
        """(name) => {
            const p = window.atlasState.byName.get(name.toLowerCase());
            const gd = document.getElementById('map');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
            return [box.left + xa._offset + xa.l2p(p.x), box.top + ya._offset + ya.l2p(p.y)];
        }""",
        name,
    )
    return float(xy[0]), float(xy[1])


def wait_card(page: Any, name: str) -> None:
    page.wait_for_function(
        "(name) => (document.getElementById('card-name')?.textContent || '').startsWith(name)", arg=name
    )


def test_atlas_in_a_real_browser(
    page: Any, live_url: str, fleet: dict[str, str], read_key: str, write_key: str, client: TestClient
) -> None:
    # gamma's endpoint re-probed with delta's answers (every one opposite): flagged as drifted
    probe = client.post(
        f"/v1/models/{fleet['gamma']}/probes",
        json={
            "evaluations": [{"question": f"q{i}", "score": s} for i, s in enumerate(PATTERNS["delta"])],
            "min_shared": 8,
        },
        headers={"Authorization": f"Bearer {write_key}"},
    )
    assert probe.status_code == 201 and probe.json()["drifted"], probe.text
    page.goto(f"{live_url}/atlas")
    page.fill("#key", read_key)
    page.click("#key-form button")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    assert page.locator(POINTS).count() == len(fleet)  # every model is on the map
    assert page.inner_text("#status").startswith(f"{len(fleet)} models")

    x, y = point_position(page, "flagship")
    page.mouse.click(x, y)
    page.wait_for_selector("#neighbours li", timeout=15_000)
    assert page.inner_text("#card-name").startswith("flagship")
    neighbours = page.locator("#neighbours li a").all_inner_texts()
    assert len(neighbours) == len(fleet) - 1 and "flagship" not in neighbours
    assert page.locator("#fallbacks li").count() >= 1
    page.wait_for_selector("#cats .plot-container")  # per-category predicted accuracy chart
    assert "evaluations" in page.inner_text("#card")

    # A neighbour link opens that model's card.
    page.locator("#neighbours li a").first.click()
    wait_card(page, neighbours[0])

    page.fill("#search", "gamma")
    page.press("#search", "Enter")
    wait_card(page, "gamma")

    page.select_option("#pf-mode", "k")
    page.fill("#pf-value", "2")
    page.click("#portfolio-form button[type=submit]")
    page.wait_for_selector("#kept li")
    assert page.locator("#kept li").count() == 2
    assert page.locator("#left-out tr").count() == len(fleet) - 2

    page.click("#dup-show")
    page.wait_for_selector("#duplicates :is(ul, p)")
    page.click("#drift-show")
    page.wait_for_selector("#drifted li")
    assert page.locator("#drifted li a").all_inner_texts() == ["gamma"]
    assert "shared questions" in page.inner_text("#drifted")
    page.select_option("#color-by", "cluster")
    assert page.locator(POINTS).count() >= len(fleet)  # the portfolio ring adds markers, none are lost
    assert not page.js_errors, page.js_errors


def test_atlas_says_what_is_wrong_without_a_key(page: Any, live_url: str, fleet: dict[str, str]) -> None:
    page.goto(f"{live_url}/atlas")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "401 Unauthenticated" in page.inner_text("#error")
