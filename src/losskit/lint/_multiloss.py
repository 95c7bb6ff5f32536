"""What only a run with several losses shows: shares that collapse or dominate, a term that
diverges while the total falls, a weight schedule that ends while its term still rises.

Example::

    >>> from losskit.lint._curves import Curve
    >>> from losskit.lint._multiloss import shares
    >>> steps = tuple(range(10, 110, 10))
    >>> starts = tuple(s - 9 for s in steps)
    >>> big = {"loss/a": Curve("loss/a", "train", starts, steps, (1.0,) * 10),
    ...        "loss/b": Curve("loss/b", "train", starts, steps, (1e-4,) * 10)}
    >>> ones = {k.replace("loss", "weight"): Curve(k.replace("loss", "weight"), "train",
    ...         starts, steps, (1.0,) * 10) for k in big}
    >>> [(f.key, f.kind, f.start, f.end) for f in shares(big, ones)]
    [('loss/a', 'share_dominance', 1, 100), ('loss/b', 'share_collapse', 1, 100)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

from losskit._findings import Finding, finding
from losskit.lint._curves import Curve, rolling_median
from losskit.lint._thresholds import Thresholds

__all__ = ["schedule_ends", "shares", "term_diverges"]

_DEFAULT = Thresholds()


def _stretches(flags: list[bool]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i, on in enumerate(flags):
        if not on:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def shares(
    losses: Mapping[str, Curve], weights: Mapping[str, Curve], t: Thresholds = _DEFAULT
) -> list[Finding]:
    """Terms whose ``|weight x loss| / sum`` stays below ``share_low`` or above ``share_high``.

    ``losses`` maps ``loss/<key>`` and ``weights`` maps ``weight/<key>`` to interval means of the
    same split; only intervals where every trained term is logged count, and for each term
    only those where its weight is at least half its largest (a warm-up is not a collapse).
    """
    names = [k for k in losses if k.replace("loss/", "weight/", 1) in weights]
    if len(names) < 2:
        return []
    by_end: dict[int, dict[str, float]] = {}
    starts: dict[int, int] = {}
    for name in names:
        curve, weight = losses[name], weights[name.replace("loss/", "weight/", 1)]
        w_at = dict(zip(weight.ends, weight.values))
        for start, end, value in zip(curve.starts, curve.ends, curve.values):
            if end in w_at and math.isfinite(value) and math.isfinite(w_at[end]):
                by_end.setdefault(end, {})[name] = abs(w_at[end] * value)
                by_end[end]["weight:" + name] = w_at[end]
                starts[end] = start
    ends = sorted(e for e, row in by_end.items() if all(n in row for n in names))
    if len(ends) < 3:
        return []
    findings = []
    for name in names:
        top = max(by_end[e]["weight:" + name] for e in ends)
        eligible = [e for e in ends if by_end[e]["weight:" + name] >= 0.5 * top]
        if len(eligible) < 3:
            continue
        share = []
        for e in eligible:
            total = sum(by_end[e][n] for n in names)
            share.append(by_end[e][name] / total if total > 0 else math.nan)
        needed = max(3, math.ceil(t.share_fraction * len(eligible)))
        for kind, flags in (
            ("share_collapse", [s < t.share_low for s in share]),
            ("share_dominance", [s > t.share_high for s in share]),
        ):
            for first, last in _stretches(flags):
                if last - first + 1 < needed:
                    continue
                seen = share[first : last + 1]
                if kind == "share_collapse":
                    message = (
                        f"its weighted share of the total stayed below {t.share_low:.0%} "
                        f"(at most {max(seen):.2%})"
                    )
                    advice = (
                        "it barely steers training: raise its weight, use a loss-level balancer "
                        "(balancer='magnitude'), or make it a monitor-only term if it is only "
                        "watched"
                    )
                else:
                    message = (
                        f"its weighted share of the total stayed above {t.share_high:.0%} "
                        f"(at least {min(seen):.2%}): the other terms barely count"
                    )
                    advice = (
                        "lower its weight or normalise the terms' scales "
                        "(balancer='magnitude' or 'uncertainty')"
                    )
                findings.append(
                    finding(
                        name,
                        kind,
                        starts[eligible[first]],
                        eligible[last],
                        losses[name].split,
                        message,
                        advice,
                    )
                )
    return findings


def term_diverges(divergence: Finding, total: Curve) -> Finding | None:
    """The divergence of a term, restated when the total fell over the same steps."""
    c = total.finite()
    if len(c) < 3:
        return None
    smooth = rolling_median(c.values, 3)
    at_start = [v for v, e in zip(smooth, c.ends) if e < divergence.start]
    if not at_start or smooth[-1] >= at_start[-1] or divergence.key is None:
        return None
    return finding(
        divergence.key,
        "term_diverges_while_total_falls",
        divergence.start,
        divergence.end,
        divergence.split,
        f"{divergence.message}, while the total fell from {at_start[-1]:.4g} to {smooth[-1]:.4g}: "
        "the other terms hide it",
        "the total looks healthy but this term is being traded away: raise its weight, use a "
        "balancer that protects it (magnitude, uncertainty, or a gradient method such as "
        "upgrad if gradients conflict), or check its target",
    )


def schedule_ends(loss: Curve, weight: Curve, t: Thresholds = _DEFAULT) -> list[Finding]:
    """A weight that stops changing (its schedule ends) while its term is still rising."""
    w = weight.finite()
    n = len(w)
    if n < 4:
        return []
    final = w.values[-1]
    tolerance = 1e-6 * max(1.0, abs(final))
    end = n - 1
    while end > 0 and abs(w.values[end - 1] - final) <= tolerance:
        end -= 1
    if end == 0 or end >= n - 1:
        return []  # constant throughout, or still changing at the last interval
    schedule_end = w.starts[end]
    lc = loss.finite()
    values, ends = lc.values, lc.ends
    around = [i for i, e in enumerate(ends) if e >= schedule_end]
    if not around:
        return []
    at = around[0]
    lo, hi = max(0, at - 3), min(len(values) - 1, at + 2)
    if hi - lo < 3:
        return []
    window = values[lo : hi + 1]
    rises = sum(b > a for a, b in itertools.pairwise(window))
    if window[-1] < (1 + t.schedule_rise) * window[0] or rises < len(window) - 2:
        return []
    last = hi
    while last + 1 < len(values) and values[last + 1] > values[last]:
        last += 1
    return [
        finding(
            loss.key,
            "schedule_ends_while_rising",
            schedule_end,
            ends[last],
            loss.split,
            f"its weight reached its final value {final:.4g} at step {schedule_end} while the "
            f"term was still rising ({window[0]:.4g} to {window[-1]:.4g})",
            "lengthen the schedule (more steps) or end it later, so the term settles before its "
            "weight stops moving",
        )
    ]
