"""Studies on Optuna: workers sharing a study (a journal, SQLite, a real PostgreSQL server), a
killed worker's trial run again, linter pruning, and tune's best configuration."""

from __future__ import annotations

import collections
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

import losskit as lk
from losskit.cli import app
from losskit.config import load_config
from losskit.experiments import (
    compare,
    load_study,
    parse_objective,
    parse_search,
    short_labels,
    tune,
)

DEMO = resources.files("losskit").joinpath("demo.toml")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def tiny_raw(epochs: int = 1, batch_size: int = 256) -> dict[str, Any]:
    """The demo, ``epochs`` epochs of a narrow network on large batches."""
    raw: dict[str, Any] = load_config(DEMO).model_dump(mode="json")  # type: ignore[arg-type]
    raw["run"]["epochs"] = epochs
    raw["model"]["options"] = {"hidden": 16, "bottleneck": 8}
    raw["scheduler"]["options"]["T_max"] = epochs
    raw["data"]["batch_size"] = batch_size
    raw["trainer"]["diagnostics_every"] = None
    return raw


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    from losskit.experiments._runner import write_config

    return write_config(raw, path.parent, path.name)


@pytest.fixture
def tiny_toml(tmp_path: Path) -> Path:
    return write_toml(tmp_path / "tiny.toml", tiny_raw())


GRID = {"optimizer.lr": [0.001, 0.002, 0.003]}  # x 2 seeds: 6 trials
HERE = Path(__file__).parent


def _worker(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "losskit", "worker", *args]
    return subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _ran(process: subprocess.Popen[str], timeout: float = 400) -> int:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    line = next(s for s in out.splitlines() if s.startswith("worker done"))
    return int(line.split("ran ")[1].split()[0])


def _runs_by_key(study: Any) -> dict[str, list[str]]:
    """Each trial key and the states of the trials that ran it (not the unused ones)."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for t in study.get_trials():
        if "key" in t.user_attrs and t.state != optuna.trial.TrialState.WAITING:
            found[t.user_attrs["key"]].append(t.state.name)
    return dict(found)


def _two_workers_finish_the_grid(config: Path, out: Path, storage: str | None) -> None:
    where = ["--storage", storage] if storage else [str(out)]
    made = compare(config, GRID, seeds=2, out=out, jobs=0, storage=storage)
    assert len(made.comparison.missing) == 6
    assert made.ran == ()
    workers = [_worker(*where), _worker(*where)]
    ran = [_ran(w) for w in workers]
    assert sum(ran) == 6
    study = load_study(out, storage=storage)
    runs = _runs_by_key(study)
    assert sorted(runs) == sorted(
        f"optimizer.lr={lr}/seed{s}" for lr in GRID["optimizer.lr"] for s in (0, 1)
    )
    assert all(states == ["COMPLETE"] for states in runs.values()), runs
    again = compare(config, GRID, seeds=2, out=out, jobs=1, storage=storage)
    assert again.ran == ()
    assert len(again.skipped) == 6
    assert [r.value.n for r in again.comparison.ranking] == [2, 2, 2]


def test_two_workers_on_one_journal_study_run_each_trial_once(
    tiny_toml: Path, tmp_path: Path
) -> None:
    _two_workers_finish_the_grid(tiny_toml, tmp_path / "grid", None)
    assert (tmp_path / "grid" / "study.journal").is_file()


def test_two_workers_on_a_sqlite_study_run_each_trial_once(tiny_toml: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _two_workers_finish_the_grid(tiny_toml, tmp_path / "grid", url)
    assert not (tmp_path / "grid" / "study.journal").exists()


def test_a_killed_worker_is_replaced_and_the_study_completes(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "tiny.toml", tiny_raw(epochs=2, batch_size=64))
    out = tmp_path / "grid"
    grid = {"optimizer.lr": [0.001, 0.002, 0.003]}
    compare(config, grid, seeds=1, out=out, jobs=0)
    first = _worker(str(out))
    deadline = time.monotonic() + 120
    while not list(out.glob("*/seed*/metrics.jsonl")):  # a trial is training
        assert first.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert _ran(_worker(str(out))) == 3  # the killed trial again, and the two left
    study = load_study(out)
    runs = _runs_by_key(study)
    assert len(runs) == 3
    assert sorted(s.count("COMPLETE") for s in runs.values()) == [1, 1, 1]  # none twice
    killed = [k for k, s in runs.items() if "FAIL" in s]
    assert len(killed) == 1
    assert runs[killed[0]] == ["FAIL", "COMPLETE"]
    retried = [t for t in study.get_trials() if "retry_of" in t.user_attrs]
    assert [t.user_attrs["key"] for t in retried] == killed
    assert len(list(out.glob("*/seed*/summary.json"))) == 3


# -- a real PostgreSQL server, started here (Debian's postgresql package) --------------------
def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")), None)
    assert found, f"{name} not found: install Debian's postgresql (make postgres)"
    return found


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture
def postgres_url() -> Iterator[str]:
    home = Path(tempfile.mkdtemp(prefix="losskit-pg-", dir="/tmp"))
    home.chmod(0o755)
    data = home / "data"
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "losskit", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    pg_ctl = _pg_bin("pg_ctl")
    start = [pg_ctl, "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://losskit@127.0.0.1:{port}/postgres"
    finally:
        stop = [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(stop), check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_on_a_postgresql_study_run_each_trial_once(
    tiny_toml: Path, tmp_path: Path, postgres_url: str
) -> None:
    _two_workers_finish_the_grid(tiny_toml, tmp_path / "grid", postgres_url)


# -- tune ---------------------------------------------------------------------------------------
def test_a_planted_diverging_term_is_pruned_with_the_finding_as_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # the trial's process imports planted.py
    raw = tiny_raw(epochs=20, batch_size=64)  # 460 steps; the ink term diverges from the start
    raw["model"] = {**raw["model"], "source": "planted:DriftingInk", "options": {}}
    raw["trainer"]["log_every"] = 2
    result = tune(raw, ["optimizer.lr=[0.003]"], trials=1, out=tmp_path / "t")
    assert result.counts["pruned"] == 1
    assert result.best == ()
    assert result.best_config is None
    (trial,) = load_study(tmp_path / "t").get_trials()
    assert trial.state == optuna.trial.TrialState.PRUNED
    # a diverging term is reported as such, or, when the total still falls, as hidden by it
    kind = trial.user_attrs["finding"]["kind"]
    assert kind in ("divergence", "term_diverges_while_total_falls")
    assert trial.user_attrs["finding"]["key"] == "loss/ink"
    assert trial.user_attrs["pruned_by"].startswith(f"{kind} on train/loss/ink (steps ")
    assert 0 < trial.user_attrs["steps"] < 230  # stopped before half its 20 epochs of 23 steps
    page = result.report.read_text()
    assert f"{kind} on train/loss/ink" in page
    assert "<h2>Pruned trials</h2>" in page


def test_tune_writes_a_best_toml_that_losskit_run_accepts(tmp_path: Path) -> None:
    raw = tiny_raw()
    raw["search"] = {"terms": {"ink": {"weight": "log(0.01, 1)"}}}
    config = write_toml(tmp_path / "tiny.toml", raw)
    runner = CliRunner()
    tuned = runner.invoke(
        app,
        [
            *("tune", str(config), "--search", "balancer=[sum,mean]", "--trials", "3"),
            *("--objective", "val/metric/accuracy", "--no-prune", "--out", str(tmp_path / "t")),
        ],
    )
    assert tuned.exit_code == 0, tuned.output
    assert "best trial" in tuned.output
    assert "study.html" in tuned.output
    study = load_study(tmp_path / "t")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 3
    best = max(complete, key=lambda t: t.values[0])
    folder = tmp_path / "t" / "trials" / best.user_attrs["key"]
    summary = json.loads((folder / "summary.json").read_text())
    assert best.values[0] == summary["final"]["val"]["metric/accuracy"]
    best_toml = tmp_path / "t" / "best.toml"
    text = best_toml.read_text()
    assert f'balancer = "{best.params["balancer"]}"' in text
    assert "search" not in text
    ran = runner.invoke(app, ["run", str(best_toml), "--out", str(tmp_path / "again"), "--quiet"])
    assert ran.exit_code == 0, ran.output
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["final"]["val"]["metric/accuracy"] == summary["final"]["val"]["metric/accuracy"]
    page = (tmp_path / "t" / "study.html").read_text()
    for section in ("Study", "Ranking", "Objective over trials", "Pareto front"):
        assert f"<h2>{section}</h2>" in page
    assert "Parameter importances" in page
    assert "need at least 4" in page


# -- parsing and the ranking's labels (no runs) --------------------------------------------------
def test_search_specs_and_objectives_parse_or_say_what_is_wrong() -> None:
    assert parse_search("terms.cls.options.gamma=float(0,5)").to_text() == (
        "terms.cls.options.gamma=float(0,5)"
    )
    assert parse_search("terms.reg.loss=[mse,l1,huber]").choices == ("mse", "l1", "huber")
    assert parse_search("run.epochs=int(1,4)").kind == "int"
    for bad, says in [
        ("terms.recon.weight=log(0,10)", "LOW > 0"),
        ("terms.recon.weight=float(5,1)", "LOW < HIGH"),
        ("terms.recon.weight=gauss(0,1)", "expected log"),
        ("balancer", "PATH="),
        ("optimizer.lr=log(a,1)", "'a' is not a number"),
    ]:
        with pytest.raises(lk.ConfigError, match=says):
            parse_search(bad)
    assert parse_objective("val/loss").direction == "minimize"
    assert parse_objective("val/loss/cls:max").direction == "maximize"
    with pytest.raises(lk.ConfigError, match="SPLIT/NAME"):
        parse_objective("accuracy")


def test_tune_refuses_a_path_the_configuration_lacks_before_any_trial(tmp_path: Path) -> None:
    with pytest.raises(lk.ConfigError, match="has no table 'nope'"):
        tune(tiny_raw(), ["terms.nope.weight=log(0.1,1)"], trials=1, out=tmp_path)
    assert not (tmp_path / "trials").exists()


def test_a_study_folder_refuses_another_experiment(tmp_path: Path) -> None:
    tune(tiny_raw(), ["terms.ink.weight=log(0.1,1)"], trials=1, out=tmp_path, jobs=0)
    with pytest.raises(lk.ConfigError, match="holds another experiment"):
        tune(tiny_raw(), ["terms.ink.weight=log(0.2,1)"], trials=1, out=tmp_path, jobs=0)


def test_ranking_labels_drop_what_every_variant_shares() -> None:
    labels = [
        "terms.fit.loss=mse, balancer=sum",
        "terms.fit.loss=huber, balancer=sum",
        "terms.fit.loss=l1, balancer=sum",
    ]
    shared, short = short_labels(labels)
    assert shared == "terms.fit.loss, balancer=sum"
    assert [short[label] for label in labels] == ["mse", "huber", "l1"]
    assert short_labels(["base"]) == ("", {"base": "base"})


def test_the_study_report_of_two_objectives_shows_the_pareto_front(tmp_path: Path) -> None:
    from losskit.experiments._storage import open_study
    from losskit.experiments._study_report import best_trials, importances, render_study

    spec = {
        "kind": "tune",
        "root": str(tmp_path),
        "space": [
            {"path": "optimizer.lr", "kind": "log", "low": 1e-4, "high": 1e-1, "choices": []}
        ],
        "objectives": [
            {"split": "val", "name": "metric/accuracy", "direction": "maximize"},
            {"split": "val", "name": "loss/recon", "direction": "minimize"},
        ],
        "prune": True,
        "pruner": "none",
    }
    study = open_study(tmp_path, create=spec, directions=["maximize", "minimize"])
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    # (accuracy, recon): 0 and 1 and 3 are on the front; 2 is dominated by 1
    points = [(0.9, 0.5), (0.8, 0.2), (0.7, 0.3), (0.6, 0.1), (0.5, 0.9)]
    for i, values in enumerate(points):
        study.add_trial(
            optuna.trial.create_trial(
                params={"optimizer.lr": 10.0 ** -(1 + i * 0.5)},
                distributions={"optimizer.lr": lr},
                values=list(values),
                user_attrs={"key": f"trial{i:04d}"},
            )
        )
    front = [t.user_attrs["key"] for t in best_trials(study)]
    assert front == ["trial0000", "trial0001", "trial0003"]  # by accuracy, best first
    found, why = importances(study)
    assert (found, why) == ({"optimizer.lr": 1.0}, "")  # one parameter holds it all
    page = render_study(study, tmp_path).read_text()
    assert "<h2>Pareto front</h2>" in page
    assert page.count("data:image/png;base64,") == 1  # the front (over trials is a chart)
    assert '<script type="application/json" id="losskit-charts">' in page
    assert "run linter only (several objectives)" in page
    for key in front:
        assert key in page


def _log_two_terms(run: Path, weight_b: Any) -> None:
    import torch

    from losskit.tracking import Tracker, sinks

    with Tracker([sinks.JSONL(run)], every=5) as tracker:
        for step in range(1, 101):
            w = float(weight_b(step))
            a, b = 1.0 + 1.0 / step, 2.0 - step / 100  # both learn: no plateau
            tracker.update(
                {
                    "loss": torch.tensor(a + w * b),
                    "loss/a": torch.tensor(a),
                    "loss/b": torch.tensor(b),
                    "weight/a": torch.tensor(1.0),
                    "weight/b": torch.tensor(w),
                }
            )


def test_a_collapsed_share_prunes_but_not_while_its_weight_warms_up(tmp_path: Path) -> None:
    from losskit.experiments._pruning import RunWatch

    _log_two_terms(tmp_path / "fixed", lambda step: 1e-4)
    reason = RunWatch(tmp_path / "fixed")()
    assert reason is not None
    shown = reason.split(" (")[0]
    assert shown in ("share_collapse on train/loss/b", "share_dominance on train/loss/a")
    _log_two_terms(tmp_path / "warming", lambda step: 1e-4 * step)  # still rising at the end
    assert RunWatch(tmp_path / "warming")() is None
