"""The study report's objective over trials is an interactive chart (as the run report's)."""

from __future__ import annotations

import optuna

from losskit.experiments._study_report import over_trials_chart


def test_complete_pruned_and_best_so_far() -> None:
    study = optuna.create_study(direction="maximize")
    dist = {"w": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for value in (0.5, 0.7):
        study.add_trial(
            optuna.trial.create_trial(params={"w": 0.1}, distributions=dist, value=value)
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={"w": 0.2},
            distributions=dist,
            state=optuna.trial.TrialState.PRUNED,
            intermediate_values={1: 0.2, 3: 0.3},
        )
    )
    study.add_trial(optuna.trial.create_trial(params={"w": 0.3}, distributions=dist, value=0.6))
    chart = over_trials_chart(study, ["val/metric/accuracy"])
    assert chart is not None
    assert chart.title == "val/metric/accuracy"
    assert list(chart.steps) == [0, 1, 2, 3]
    series = {s.label: list(s.values) for s in chart.series}
    assert series["complete"] == [0.5, 0.7, None, 0.6]
    assert series["pruned (last value)"] == [None, None, 0.3, None]
    assert series["best so far"] == [0.5, 0.7, 0.7, 0.7]


def test_no_complete_trial_no_chart() -> None:
    study = optuna.create_study()
    assert over_trials_chart(study, ["val/loss"]) is None
