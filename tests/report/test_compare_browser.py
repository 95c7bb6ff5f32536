"""The compare report of a tiny real grid in headless Chromium: variants overlaid, hover values
that are the means over seeds, a legend entry that hides a variant with its band."""

from __future__ import annotations

import json
import statistics
from importlib import resources
from pathlib import Path

import pytest

import losskit as lk
from losskit.config import load_config
from losskit.tracking import load

from .conftest import Page
from .test_report_browser import (
    canvas,
    chart_index,
    charts_in,
    hover,
    legend,
    legend_entry,
    opened,
    pixels_of,
)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two variants of the demo (two epochs, a narrow network), two seeds each."""
    demo = resources.files("losskit").joinpath("demo.toml")
    raw = load_config(demo).model_dump(mode="json")  # type: ignore[arg-type]
    raw["run"]["epochs"] = 2
    raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
    raw["scheduler"]["options"]["T_max"] = 2
    out = tmp_path_factory.mktemp("grid")
    result = lk.experiments.compare(raw, vary={"terms.recon.loss": ["mse", "l1"]}, seeds=2, out=out)
    return result.report


def test_compare_report_overlays_the_variants(grid: Path, page: Page, artifacts: Path) -> None:
    opened(page, grid)
    assert page.problems() == []
    assert [url for url in page.requests() if not url.startswith("data:")] == [grid.as_uri()]
    index = chart_index(grid, "val/loss")
    manifest = json.loads((grid.parent / "compare.json").read_text())
    labels = {v["name"]: v["label"] for v in manifest["variants"]}
    variants = list(labels)
    assert len(variants) == 2
    shown = hover(page, index, 0.99)  # the last epoch
    step = int(shown["step"][0])
    for variant in variants:
        runs = [load(grid.parent / variant / f"seed{seed}") for seed in (0, 1)]
        values = [dict(zip(*_epochs(run)))[step] for run in runs]
        assert float(shown[labels[variant]][0]) == pytest.approx(statistics.fmean(values), rel=1e-4)
    shot = page.screenshot(artifacts / "compare-report-1400x900.png")
    print(f"screenshot: {shot} ({shot.stat().st_size} bytes)")


def _epochs(history: lk.tracking.History) -> tuple[tuple[int, ...], tuple[float, ...]]:
    series = history.series("loss", "val", "epoch")
    return tuple(series.steps), tuple(series.values)


def test_a_variant_hides_with_its_band(grid: Path, page: Page) -> None:
    opened(page, grid)
    index = chart_index(grid, "val/loss")
    spec = charts_in(grid)[index]
    first = spec["series"][0]
    assert [s["band"] for s in spec["series"][:3]] == [None, "low", "high"]
    entries = legend(page, index)
    assert f"{first['label']} (low)" in entries  # in uPlot's legend, but not shown
    visible = page.evaluate(
        f"""Array.from(document.querySelectorAll("figure.chart")[{index}]
              .querySelectorAll(".u-legend .u-series"))
              .filter(r => r.style.display !== "none")
              .map(r => r.querySelector(".u-label").textContent)"""
    )
    assert visible == ["step", *(s["label"] for s in spec["series"] if s["band"] is None)]
    before = canvas(page, index)
    drawn = pixels_of(page, index, first["colour"])
    assert drawn > 20
    page.click(*legend_entry(page, index, first["label"]))
    page.wait_until(
        f"""document.querySelectorAll("figure.chart")[{index}]
              .querySelectorAll(".u-legend .u-off").length === 3"""  # the line and its band
    )
    assert pixels_of(page, index, first["colour"]) < drawn / 20
    assert canvas(page, index) != before
