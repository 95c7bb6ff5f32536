"""The linter's thresholds, in one frozen record (defaults chosen to stay quiet on healthy runs).

Example::

    >>> from losskit.lint import Thresholds
    >>> Thresholds(spike_ratio=5.0).spike_ratio
    5.0
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """When a pattern counts as a finding.

    Attributes:
        spike_ratio: a per-step point is a spike above this multiple of the median of the
            ``spike_window`` points before it ...
        spike_z: ... and this many robust deviations (1.4826 x MAD) above that median.
        spike_window: trailing points the spike test compares with.
        spike_floor: ... and by at least this fraction of the curve's starting level (the median
            of its first 5 points), since a loss near zero jitters by large factors.
        divergence_ratio: interval means (running median of 3) that end this multiple above
            their minimum, and stay above half-way there for the last 3 intervals, diverge.
        plateau_band: a stretch of interval means is flat when its least-squares change,
            widened by two standard errors, stays within this fraction of its mean ...
        plateau_fraction: ... and a plateau when it covers this share of the intervals (at least
            5) and either starts the run (nothing learnt) or is followed by a drop of
            ``plateau_drop`` below it (time lost); a flat, converged tail is not a plateau.
        plateau_drop: see ``plateau_band``.
        overfit_rise: validation rising this fraction above its best value (for its last two
            evaluations) while training still falls by ``overfit_train_fall``.
        overfit_train_fall: see ``overfit_rise``.
        oscillation_acf: a window oscillates when the detrended values have an autocorrelation
            below minus this at some lag L and above two thirds of it at 2L ...
        oscillation_amplitude: ... with a detrended standard deviation above this fraction of
            the window's median level.
        share_low, share_high: a weighted share of the total below / above these ...
        share_fraction: ... for this share of the intervals where the term's weight is at least
            half its largest (at least 3 intervals in a row).
        schedule_rise: a term rising by this fraction across the end of its weight schedule.
    """

    spike_ratio: float = 3.0
    spike_z: float = 10.0
    spike_window: int = 20
    spike_floor: float = 0.25
    divergence_ratio: float = 1.5
    plateau_band: float = 0.05
    plateau_fraction: float = 0.25
    plateau_drop: float = 0.10
    overfit_rise: float = 0.05
    overfit_train_fall: float = 0.02
    oscillation_acf: float = 0.6
    oscillation_amplitude: float = 0.15
    share_low: float = 0.01
    share_high: float = 0.99
    share_fraction: float = 0.2
    schedule_rise: float = 0.05
