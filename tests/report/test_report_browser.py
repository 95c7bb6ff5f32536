"""The demo's report in headless Chromium: it loads cleanly and its charts answer the mouse.

Each test opens the page as written (no probe injected, its Content-Security-Policy intact) and
reads what the browser shows: legend texts, canvas pixels, DevTools events (see conftest.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from losskit.report import ema, render
from losskit.tracking import History, Tracker, load, sinks

from .conftest import HEIGHT, WIDTH, Page

HOSTILE = ("<img src=x onerror=alert(1)>", "$x$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of `losskit demo`, three epochs (the gradient norms logged twice)."""
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "losskit", "demo", "--epochs", "3", "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "report.html"


def charts_in(report: Path) -> list[dict[str, Any]]:
    found = re.search(
        r'<script type="application/json" id="losskit-charts">(.*?)</script>',
        report.read_text(),
        re.S,
    )
    assert found
    data: dict[str, Any] = json.loads(found.group(1))
    return list(data["charts"])


def opened(page: Page, report: Path) -> int:
    """Open ``report``, wait until every chart is drawn, and return how many there are."""
    page.open(report.as_uri())
    count = len(charts_in(report))
    page.wait_until(f"document.querySelectorAll('figure.chart .uplot').length === {count}")
    return count


def chart_index(report: Path, title: str) -> int:
    return [c["title"] for c in charts_in(report)].index(title)


def plot_box(page: Page, index: int) -> tuple[float, float, float, float]:
    """The plotting area of chart ``index`` in the viewport, scrolled into view."""
    box = page.evaluate(
        f"""(() => {{
          const figure = document.querySelectorAll("figure.chart")[{index}];
          figure.scrollIntoView({{block: "center"}});
          const r = figure.querySelector(".u-over").getBoundingClientRect();
          return [r.left, r.top, r.width, r.height];
        }})()"""
    )
    return box[0], box[1], box[2], box[3]


def legend(page: Page, index: int) -> dict[str, tuple[str, bool]]:
    """Label → (shown value, hidden) of every legend entry of chart ``index``."""
    rows = page.evaluate(
        f"""Array.from(document.querySelectorAll("figure.chart")[{index}]
              .querySelectorAll(".u-legend .u-series"), row => [
                row.querySelector(".u-label").textContent,
                row.querySelector(".u-value").textContent,
                row.classList.contains("u-off")])"""
    )
    return {label: (value, off) for label, value, off in rows}


def canvas(page: Page, index: int) -> str:
    return str(
        page.evaluate(
            f'document.querySelectorAll("figure.chart")[{index}].querySelector("canvas").toDataURL()'
        )
    )


def pixels_of(page: Page, index: int, colour: str) -> int:
    """How many pixels of chart ``index``'s canvas are (nearly) ``colour``, e.g. ``#ff7f0e``."""
    rgb = [int(colour[k : k + 2], 16) for k in (1, 3, 5)]
    return int(
        page.evaluate(
            f"""(() => {{
              const c = document.querySelectorAll("figure.chart")[{index}].querySelector("canvas");
              const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
              const [r, g, b] = {rgb};
              let n = 0;
              for (let p = 0; p < d.length; p += 4) {{
                if (Math.abs(d[p] - r) < 16 && Math.abs(d[p + 1] - g) < 16 &&
                    Math.abs(d[p + 2] - b) < 16 && d[p + 3] > 200) n++;
              }}
              return n;
            }})()"""
        )
    )


def legend_entry(page: Page, index: int, label: str) -> tuple[float, float]:
    """The middle of the legend label ``label`` of chart ``index``, scrolled into view."""
    x, y = page.evaluate(
        f"""(() => {{
          const row = Array.from(document.querySelectorAll("figure.chart")[{index}]
            .querySelectorAll(".u-legend .u-series"))
            .find(r => r.querySelector(".u-label").textContent === {json.dumps(label)});
          row.scrollIntoView({{block: "center"}});
          const r = row.querySelector(".u-label").getBoundingClientRect();
          return [r.left + r.width / 2, r.top + r.height / 2];
        }})()"""
    )
    return x, y


def hover(page: Page, index: int, fraction: float = 0.5) -> dict[str, tuple[str, bool]]:
    """Move the mouse over chart ``index`` at ``fraction`` of its width; return its legend."""
    left, top, width, height = plot_box(page, index)
    page.mouse("mouseMoved", left + fraction * width, top + 0.5 * height)
    page.wait_until(
        f"""document.querySelectorAll("figure.chart")[{index}]
              .querySelector(".u-legend .u-series .u-value").textContent !== "\u2013" """
    )
    return legend(page, index)


def train_points(history: History, key: str) -> dict[int, tuple[int, float]]:
    series = history.series(key, "train", "step")
    return {step: (i, value) for i, (step, value) in enumerate(zip(series.steps, series.values))}


def test_demo_report_loads_without_errors_or_requests(
    demo: Path, page: Page, artifacts: Path
) -> None:
    count = opened(page, demo)
    assert count >= 5  # four loss keys and the gradient norms at least
    assert page.problems() == []
    fetched = [url for url in page.requests() if not url.startswith("data:")]
    assert fetched == [demo.as_uri()]  # the page itself, nothing else: images are data: URIs
    images = page.evaluate(
        "Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) >= 2  # shares and the conflict matrix stay images
    assert all(done and width > 0 and height > 0 for _, done, width, height in images), images
    page.evaluate("window.scrollTo(0, 0)")
    first = page.evaluate(
        "(() => { const r = document.querySelector('figure.chart').getBoundingClientRect();"
        " return [r.top, r.bottom, innerWidth, innerHeight]; })()"
    )
    assert first[2:] == [WIDTH, HEIGHT]
    assert 0 < first[0] < first[1] <= HEIGHT  # the whole first chart above the fold
    shot = page.screenshot(artifacts / "demo-report-1400x900.png")
    print(f"screenshot: {shot} ({shot.stat().st_size} bytes)")
    assert shot.stat().st_size > 50_000  # charts drawn, not a blank page


def test_hovering_shows_the_value_at_that_step(demo: Path, page: Page) -> None:
    opened(page, demo)
    history = load(demo.parent)
    points = train_points(history, "loss")
    weight = float(page.evaluate("document.getElementById('smoothing').value"))
    smooth = ema(history.series("loss", "train", "step").values, weight)
    index = chart_index(demo, "loss")
    for fraction in (0.3, 0.7):
        shown = hover(page, index, fraction)
        step = int(shown["step"][0])
        assert step in points
        at, value = points[step]
        assert float(shown["train"][0]) == pytest.approx(value, rel=1e-4)
        assert float(shown["train (EMA)"][0]) == pytest.approx(smooth[at], rel=1e-4)


def test_a_legend_entry_hides_and_shows_its_key(demo: Path, page: Page, artifacts: Path) -> None:
    opened(page, demo)
    index = chart_index(demo, "gradient norms")
    spec = charts_in(demo)[index]
    recon = next(s for s in spec["series"] if s["label"] == "recon")
    before = canvas(page, index)
    drawn = pixels_of(page, index, recon["colour"])
    assert drawn > 20
    page.click(*legend_entry(page, index, "recon"))
    hidden = f"document.querySelectorAll('figure.chart')[{index}].querySelector('.u-legend .u-off')"
    page.wait_until(f"{hidden} !== null")
    assert legend(page, index)["recon"][1]  # marked hidden
    assert pixels_of(page, index, recon["colour"]) < drawn / 20
    shot = page.screenshot(artifacts / "demo-report-recon-hidden.png")
    print(f"screenshot: {shot}")
    page.click(*legend_entry(page, index, "recon"))
    page.wait_until(
        f"!document.querySelectorAll('figure.chart')[{index}].querySelector('.u-legend .u-off')"
    )
    assert canvas(page, index) == before


def test_the_smoothing_slider_redraws_the_ema(demo: Path, page: Page) -> None:
    opened(page, demo)
    history = load(demo.parent)
    index = chart_index(demo, "loss")
    before = canvas(page, index)
    page.evaluate(
        """(() => { const s = document.getElementById("smoothing");
                    s.value = "0.5"; s.dispatchEvent(new Event("input")); })()"""
    )
    assert page.evaluate("document.getElementById('smoothing-value').textContent") == "0.50"
    assert canvas(page, index) != before
    shown = hover(page, index, 0.5)
    at, _ = train_points(history, "loss")[int(shown["step"][0])]
    smooth = ema(history.series("loss", "train", "step").values, 0.5)
    assert float(shown["train (EMA)"][0]) == pytest.approx(smooth[at], rel=1e-4)


def test_the_slider_weight_is_per_step(demo: Path, page: Page) -> None:
    """Gradient norms logged every 50 steps are smoothed with weight ** 50 per value."""
    opened(page, demo)
    history = load(demo.parent)
    page.evaluate(
        """(() => { const s = document.getElementById("smoothing");
                    s.value = "0.99"; s.dispatchEvent(new Event("input")); })()"""
    )
    index = chart_index(demo, "gradient norms")
    shown = hover(page, index, 0.99)
    series = history.series("grad_norm/cls", "train", "step")
    assert int(shown["step"][0]) == series.steps[-1]
    assert series.steps[1] - series.steps[0] == 50
    expected = ema(series.values, 0.99**50)[-1]
    assert float(shown["cls"][0]) == pytest.approx(expected, rel=1e-4)
    assert expected != pytest.approx(series.values[-1], rel=1e-2)  # smoothed, visibly


def test_the_log_switch_redraws_the_y_axis(demo: Path, page: Page) -> None:
    opened(page, demo)
    index = chart_index(demo, "loss")
    before = canvas(page, index)
    page.evaluate(
        f"""(() => {{ const box = document.querySelectorAll("figure.chart")[{index}]
                        .querySelector(".chart-log"); box.click(); }})()"""
    )
    after = canvas(page, index)
    assert after != before
    assert (
        page.evaluate(
            f"document.querySelectorAll('figure.chart')[{index}].querySelector('.chart-log').checked"
        )
        != charts_in(demo)[index]["log"]
    )


def test_hostile_keys_render_as_text(tmp_path: Path, page: Page, artifacts: Path) -> None:
    with Tracker([sinks.JSONL(tmp_path)]) as tracker:
        for step in range(1, 41):
            tracker.update(
                {
                    f"loss/{HOSTILE[0]}": torch.tensor(1.0 / step),
                    f"loss/{HOSTILE[1]}": torch.tensor(0.5 + 0.01 * step),
                    f"weight/{HOSTILE[0]}": torch.tensor(float(step)),
                    f"weight/{HOSTILE[1]}": torch.tensor(1.0),
                }
            )
    report = render(tmp_path)
    opened(page, report)
    assert page.problems() == []  # no dialog, no blocked load of "x", no error
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror]').length") == 0
    titles = page.evaluate(
        "Array.from(document.querySelectorAll('.chart-title'), t => t.textContent)"
    )
    assert [f"loss/{key}" for key in HOSTILE] == titles[:2]
    index = chart_index(report, "weight of every key that changes")
    assert HOSTILE[0] in legend(page, index)  # the changing weight, its label as text
    text = page.evaluate("document.body.innerText")
    assert f"Constant weights (not drawn): {HOSTILE[1]} = 1." in text
    shot = page.screenshot(artifacts / "hostile-keys.png")
    print(f"screenshot: {shot}")


def test_drag_zooms_shift_drag_pans_and_double_click_resets(demo: Path, page: Page) -> None:
    opened(page, demo)
    index = chart_index(demo, "loss")
    first = int(hover(page, index, 0.0)["step"][0])
    left, top, width, height = plot_box(page, index)
    middle = top + height / 2

    def drag(start: float, end: float, **keys: Any) -> None:
        page.mouse("mouseMoved", left + start * width, middle, **keys)
        page.mouse(
            "mousePressed", left + start * width, middle, button="left", clickCount=1, **keys
        )
        page.mouse("mouseMoved", left + end * width, middle, button="left", **keys)
        page.mouse("mouseReleased", left + end * width, middle, button="left", clickCount=1, **keys)

    drag(0.4, 0.6)
    zoomed = int(hover(page, index, 0.0)["step"][0])
    assert zoomed > first + 5  # the left edge moved into the selected range
    drag(0.2, 0.6, modifiers=8)  # shift: pan right by 40% of the view (earlier steps)
    panned = int(hover(page, index, 0.0)["step"][0])
    assert panned < zoomed
    for clicks in (1, 2):  # a double click
        for kind in ("mousePressed", "mouseReleased"):
            page.mouse(kind, left + width / 2, middle, button="left", clickCount=clicks)
    assert int(hover(page, index, 0.0)["step"][0]) == first
