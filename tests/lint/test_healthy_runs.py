"""No finding on healthy runs: 20 seeded demo runs (three terms, one warming up), linted."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from losskit.config import load_config
from losskit.lint import lint
from losskit.run import run

EPOCHS, SEEDS = 3, 20


@pytest.fixture(scope="session")
def healthy_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The packaged demo, shortened to 3 epochs (69 steps, 8 intervals) and seeded 0..19."""
    base = load_config(resources.files("losskit").joinpath("demo.toml"))  # type: ignore[arg-type]
    folders = []
    for seed in range(SEEDS):
        raw = base.model_dump(mode="json")
        raw["run"].update(epochs=EPOCHS, seed=seed)
        raw["trainer"]["patience"] = None
        raw["scheduler"]["options"]["T_max"] = EPOCHS
        folder = tmp_path_factory.mktemp(f"demo{seed}")
        run(load_config(raw), out=folder, progress=False)
        folders.append(folder)
    return folders


def test_no_finding_on_twenty_healthy_demo_runs(healthy_runs: list[Path]) -> None:
    found = {str(folder): lint(folder) for folder in healthy_runs}
    assert {k: v for k, v in found.items() if v} == {}
    # the runs are what they claim: they learnt (the classification loss fell well below chance)
    from losskit.tracking import load

    for folder in healthy_runs:
        cls = load(folder).series("loss/cls", "val", "epoch").values
        assert cls[-1] < 0.5 * cls[0]
