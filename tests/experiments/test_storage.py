"""A study's storage hands each queued trial to exactly one worker, also on SQLite (whose
driver ignores ``SELECT ... FOR UPDATE``: two workers both read a trial as waiting and both ran
it, 'Cannot tell a FAIL trial' in the two-worker study test)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import optuna

from losskit.experiments._storage import open_study

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
POP = """
import sys, warnings
warnings.simplefilter("ignore")
import optuna
from losskit.experiments._storage import open_study
study = open_study(None, storage=sys.argv[1])
while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
    trial = study.ask()
    print(trial.number, flush=True)
    study.tell(trial, 0.0)
"""


def test_four_processes_popping_a_sqlite_queue_take_each_trial_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(None, storage=url, create={"kind": "compare"}, direction="minimize")
    for i in range(48):
        study.enqueue_trial({"x": i}, skip_if_exists=False)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", POP, url], env=ENV, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    taken = [w.communicate(timeout=240)[0].split() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0]
    counts = collections.Counter(int(n) for numbers in taken for n in numbers)
    assert {n: c for n, c in counts.items() if c > 1} == {}  # none taken twice
    assert set(range(48)) <= set(counts)  # (a worker that found the queue just emptied
    # asks the sampler for one more trial, numbered after the queue's)
    states = {t.state for t in open_study(None, storage=url).get_trials()}
    assert states == {optuna.trial.TrialState.COMPLETE}
