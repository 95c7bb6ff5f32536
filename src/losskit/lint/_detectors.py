"""Detectors of one key: non-finite onset, spikes, divergence, plateau, overfitting, oscillation.

Each takes :class:`~losskit.lint._curves.Curve` values and returns findings; the linter runs them
on the total and on every term. They look at per-step points where one step matters (a NaN, a
spike, a fast oscillation) and at interval means where a trend matters.

Example::

    >>> from losskit.lint._curves import Curve
    >>> from losskit.lint._detectors import nonfinite
    >>> curve = Curve("loss", "train", (1, 2, 3), (1, 2, 3), (0.5, float("nan"), 0.4))
    >>> [(f.kind, f.start, f.end) for f in nonfinite(curve)]
    [('nonfinite', 2, 2)]
"""

from __future__ import annotations

import math
import statistics

from losskit._findings import Finding, finding
from losskit.lint._curves import Curve, acf, moving_average, rolling_median
from losskit.lint._thresholds import Thresholds

__all__ = ["divergence", "nonfinite", "oscillation", "overfitting", "plateau", "spikes"]

_DEFAULT = Thresholds()


def _ranges(indices: list[int], gap: int = 1) -> list[tuple[int, int]]:
    """Runs of indices no more than ``gap`` apart, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and i - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def nonfinite(curve: Curve, t: Thresholds = _DEFAULT) -> list[Finding]:
    """The first NaN or infinite value, to the last one."""
    bad = [i for i, v in enumerate(curve.values) if not math.isfinite(v)]
    if not bad:
        return []
    first, last = bad[0], bad[-1]
    what = "NaN" if math.isnan(curve.values[first]) else "infinite"
    return [
        finding(
            curve.key,
            "nonfinite",
            curve.starts[first],
            curve.ends[last],
            curve.split,
            f"{what} from step {curve.starts[first]} ({len(bad)} of {len(curve)} values "
            "non-finite)",
            "run with Criterion(check='always') (in a run file: check = \"always\" at the top) "
            "to stop at that step with a summary of the term's inputs; lower the learning "
            "rate, clip gradients (clip_grad_norm) or compute the loss in float32 (log-space "
            "losses under AMP)",
        )
    ]


def spikes(curve: Curve, t: Thresholds = _DEFAULT) -> list[Finding]:
    """Isolated jumps far above the recent level that come back down."""
    c = curve.finite()
    values = c.values
    hits: list[int] = []
    # near convergence a tiny loss jitters by large factors: a spike must also be large on the
    # curve's own starting scale
    scale = statistics.median(values[:5]) if values else 0.0
    for i in range(5, len(values)):
        window = values[max(0, i - t.spike_window) : i]
        median = statistics.median(window)
        spread = 1.4826 * statistics.median(abs(v - median) for v in window)
        value = values[i]
        if median <= 0 or value <= t.spike_ratio * median:
            continue
        if spread > 0 and value - median <= t.spike_z * spread:
            continue
        if value - median < t.spike_floor * scale:
            continue
        after = values[i + 1 : i + 6]
        if after and min(after) > median + 0.5 * (value - median):
            continue  # it stays up: a level shift or a divergence, not a spike
        hits.append(i)
    findings = []
    for first, last in _ranges(hits, gap=2):
        peak = max(values[first : last + 1])
        findings.append(
            finding(
                c.key,
                "spike",
                c.starts[first],
                c.ends[last],
                c.split,
                f"jumped to {peak:.4g}, over {t.spike_ratio:g}x the recent median, and came back",
                "look for the batch behind it (bad labels, an outlier, an empty mask); clip "
                "gradients or use a robust loss (huber) if outliers are real",
            )
        )
    return findings


def divergence(curve: Curve, t: Thresholds = _DEFAULT) -> list[Finding]:
    """Interval means that end far above their minimum and stay there."""
    c = curve.finite()
    if len(c) < 6:
        return []
    smooth = rolling_median(c.values, 3)
    low = min(range(len(smooth)), key=smooth.__getitem__)
    floor = smooth[low]
    if floor <= 0 or low >= len(smooth) - 3:
        return []
    tail = smooth[-3:]
    if smooth[-1] < t.divergence_ratio * floor or min(tail) < (1 + t.divergence_ratio) / 2 * floor:
        return []
    # The rise starts after the last interval still near the minimum (noise moves the argmin).
    near = max(i for i in range(low, len(smooth)) if smooth[i] <= 1.05 * floor)
    start = c.starts[near + 1]
    return [
        finding(
            c.key,
            "divergence",
            start,
            c.ends[-1],
            c.split,
            f"rose from {floor:.4g} (its minimum, before step {start}) to {smooth[-1]:.4g}, "
            f"{smooth[-1] / floor:.1f}x",
            "lower the learning rate or warm it up, clip gradients; resume from the checkpoint "
            "before the rise",
        )
    ]


def _flat_until(values: list[float], i: int, band: float) -> int:
    """The last j such that values[i..j] are confidently flat: the least-squares change over
    the stretch, widened by two standard errors, stays within ``band`` of the stretch's mean
    (noise alone never makes a stretch flat). Returns i - 1 when no stretch of 3 is."""
    sx = sy = sxx = sxy = syy = 0.0
    best = i - 1
    for j in range(i, len(values)):
        x, y = float(j - i), values[j]
        sx, sy, sxx, sxy, syy = sx + x, sy + y, sxx + x * x, sxy + x * y, syy + y * y
        m = j - i + 1
        if m < 3:
            continue
        dxx = sxx - sx * sx / m
        slope = (sxy - sx * sy / m) / dxx
        residual = max(0.0, syy - sy * sy / m - slope * slope * dxx)
        se = math.sqrt(residual / (m - 2) / dxx)
        if (abs(slope) + 2 * se) * (m - 1) <= band * abs(sy / m):
            best = j
    return best


def plateau(curve: Curve, t: Thresholds = _DEFAULT) -> list[Finding]:
    """A long flat stretch at the start (nothing learnt) or before a later drop (time lost)."""
    c = curve.finite()
    n = len(c)
    needed = max(5, math.ceil(t.plateau_fraction * n))
    if n < needed:
        return []
    values = list(c.values)
    stride = max(1, n // 200)
    findings = []
    i = 0
    while i <= n - needed:
        j = _flat_until(values, i, t.plateau_band)
        level = statistics.mean(values[i : j + 1]) if j >= i else 0.0
        later = values[j + 1 :]
        dropped = bool(later) and min(later) < (1 - t.plateau_drop) * level
        if j - i + 1 >= needed and level > 0 and (i == 0 or dropped):
            what = "from the start" if i == 0 else f"then fell to {min(later):.4g} afterwards"
            findings.append(
                finding(
                    c.key,
                    "plateau",
                    c.starts[i],
                    c.ends[j],
                    c.split,
                    f"flat at {level:.4g} (a change within ±{t.plateau_band:.0%}, noise "
                    f"included) for {j - i + 1} intervals, {what}",
                    "a term that never moves may be detached from the model or weighted 0; "
                    "otherwise raise the learning rate, warm it up, or check the "
                    "initialisation",
                )
            )
            i = j + 1
        else:
            i += stride
    return findings


def overfitting(train: Curve, val: Curve, t: Thresholds = _DEFAULT) -> list[Finding]:
    """Validation rising from its best while training still falls."""
    v, tr = val.finite(), train.finite()
    if len(v) < 3 or len(tr) < 3:
        return []
    best = min(range(len(v)), key=v.values.__getitem__)
    floor = v.values[best]
    after = v.values[best + 1 :]
    if len(after) < 2 or floor <= 0:
        return []
    if (
        after[-1] < (1 + t.overfit_rise) * floor
        or min(after[-2:]) < (1 + t.overfit_rise / 2) * floor
    ):
        return []
    at_best = [x for x, e in zip(tr.values, tr.ends) if e <= v.ends[best]]
    if not at_best:
        return []
    before = statistics.median(at_best[-3:])
    now = statistics.median(tr.values[-3:])
    if now > (1 - t.overfit_train_fall) * before:
        return []
    return [
        finding(
            v.key,
            "overfitting",
            v.ends[best],
            v.ends[-1],
            v.split,
            f"{v.split} rose from {floor:.4g} (best, step {v.ends[best]}) to {after[-1]:.4g} "
            f"while {tr.split} fell from {before:.4g} to {now:.4g}",
            "keep the best checkpoint (best.pt), stop earlier (trainer patience), or add "
            "regularisation (weight decay, dropout, augmentation)",
        )
    ]


def _oscillates(values: list[float], width: int, lags: range, t: Thresholds) -> int | None:
    """The half-period L at which ``values`` oscillate, or None."""
    trend = moving_average(values, width)
    residual = [v - m for v, m in zip(values, trend)]
    level = statistics.median(abs(v) for v in values)
    if level == 0 or statistics.pstdev(residual) <= t.oscillation_amplitude * level:
        return None
    for lag in lags:
        low, high = acf(residual, lag), acf(residual, 2 * lag)
        if low < -t.oscillation_acf and high > 2 * t.oscillation_acf / 3:
            return lag
    return None


def _swinging(values: list[float], first: int, last: int) -> tuple[int, int]:
    """Narrow a flagged span of windows to where the swings are at least half their largest."""
    trend = moving_average(values[first : last + 1], 9)
    residual = [abs(v - m) / abs(m) if m else 0.0 for v, m in zip(values[first : last + 1], trend)]
    big = max(residual)
    wide = [i for i, r in enumerate(residual) if r >= 0.5 * big]
    return first + wide[0], first + wide[-1]


def oscillation(points: Curve, means: Curve, t: Thresholds = _DEFAULT) -> list[Finding]:
    """Regular up-and-down swings: periods of 2 to 8 steps in the per-step points (windows of
    48), or of 2 to 6 intervals in the interval means."""
    findings = []
    p = points.finite()
    window = 48
    flagged: list[tuple[int, int, int]] = []
    if len(p) >= window:
        begins = list(range(0, len(p) - window + 1, window // 3))
        if begins[-1] != len(p) - window:
            begins.append(len(p) - window)  # a last window flush with the end
        for begin in begins:
            lag = _oscillates(list(p.values[begin : begin + window]), 9, range(1, 5), t)
            if lag is not None:
                if flagged and begin <= flagged[-1][1]:
                    flagged[-1] = (flagged[-1][0], begin + window - 1, lag)
                else:
                    flagged.append((begin, begin + window - 1, lag))
    for first, last, lag in flagged:
        first, last = _swinging(list(p.values), first, min(last, len(p) - 1))
        findings.append(
            finding(
                p.key,
                "oscillation",
                p.starts[first],
                p.ends[last],
                p.split,
                f"swings up and down with a period of about {2 * lag} steps",
                "lower the learning rate (or beta2 / momentum); with adversarial or competing "
                "terms, lower the weight of the one driving the swing",
            )
        )
    m = means.finite()
    if not flagged and len(m) >= 16 and m.starts != m.ends:
        lag = _oscillates(list(m.values), 5, range(1, 4), t)
        if lag is not None:
            findings.append(
                finding(
                    m.key,
                    "oscillation",
                    m.starts[0],
                    m.ends[-1],
                    m.split,
                    f"interval means swing up and down with a period of about {2 * lag} intervals",
                    "lower the learning rate; with competing terms, check the balancer and the "
                    "weights of the terms that swing against each other",
                )
            )
    return findings
