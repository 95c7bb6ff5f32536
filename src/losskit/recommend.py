"""Which loss for which problem: catalogue names, settings and the reason, from a few facts.

The rules follow what the losses assume about the data: MSE is the Gaussian likelihood, L1 the
Laplace one (robust to outliers), Poisson NLL the count likelihood; cross-entropy is the default
for classes and gets class weights, focal modulation or asymmetric focusing under imbalance;
overlap losses (Dice, Tversky) train segmenters whose foreground is small.

Example::

    >>> [r.loss for r in recommend("regression", outliers=True)]
    ['huber', 'l1', 'log_cosh']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from torch import Tensor

from losskit.errors import ConfigError
from losskit.losses import class_counts, class_weights, pos_weight

__all__ = ["Recommendation", "Task", "recommend"]

Task = Literal[
    "regression", "count", "quantile", "binary", "multiclass", "multilabel", "segmentation"
]


@dataclass(frozen=True)
class Recommendation:
    """One suggested term: the catalogue name, its settings, and why."""

    loss: str
    options: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def toml(self, key: str) -> str:
        """The ``[terms.KEY]`` table to paste into a run configuration."""
        lines = [f"[terms.{key}]", f'loss = "{self.loss}"']
        plain = {k: v for k, v in self.options.items() if not isinstance(v, Tensor)}
        tensors = {k: v.tolist() for k, v in self.options.items() if isinstance(v, Tensor)}
        merged = {**plain, **tensors}
        if merged:
            inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in merged.items())
            lines.append(f"options = {{ {inner} }}")
        return "\n".join(lines)

    def python(self, key: str, *, input: str = "logits", target: str = "target") -> str:
        """Python code (imports included) that builds this term as ``KEY = lk.Term(...)``; the
        loss's settings go in ``options``, as in the TOML, so a class ``weight`` never meets the
        term's own.

        Example::

            >>> print(Recommendation("huber", {"delta": 1.0}).python("reg", input="pred"))
            import torch
            import losskit as lk
            <BLANKLINE>
            reg = lk.Term("huber", input="pred", target="target", options={"delta": 1.0})
        """
        parts = [f'"{self.loss}"', f'input="{input}"', f'target="{target}"']
        if self.options:
            inner = ", ".join(f'"{k}": {_python_value(v)}' for k, v in self.options.items())
            parts.append(f"options={{{inner}}}")
        call = f"{key} = lk.Term({', '.join(parts)})"
        if len(call) > 79:  # one argument a line, as black would
            call = f"{key} = lk.Term(\n" + "".join(f"    {p},\n" for p in parts) + ")"
        return f"import torch\nimport losskit as lk\n\n{call}"


def _python_value(value: Any) -> str:
    if isinstance(value, Tensor):
        if value.is_floating_point():  # six digits, and a float literal (2.0, not 2)
            value = value.double().mul(1e6).round().div(1e6)
        return f"torch.tensor({value.tolist()!r})"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def recommend(
    task: Task,
    *,
    outliers: bool = False,
    imbalance: bool = False,
    targets: Tensor | None = None,
    num_classes: int | None = None,
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
) -> list[Recommendation]:
    """Losses for ``task``, best first, with settings computed from ``targets`` when given.

    Args:
        task: the kind of target (see :data:`Task`).
        outliers: the regression targets have gross errors or heavy tails.
        imbalance: some classes (or the positive class) are rare.
        targets: training targets; with them class weights and ``pos_weight`` are computed.
        num_classes: the number of classes, when counting ``targets``.
        quantiles: the quantiles to predict for ``task="quantile"``.

    Example::

        >>> import torch
        >>> r = recommend("binary", imbalance=True, targets=torch.tensor([1.0, 0.0, 0.0, 0.0]))
        >>> r[0].loss, r[0].options["pos_weight"]
        ('bce_with_logits', tensor(3.))
    """
    if task not in get_args(Task):
        raise ConfigError(f"task must be one of {list(get_args(Task))}, got {task!r}")
    if task == "regression":
        if not outliers:
            return [
                Recommendation("mse", why="Gaussian noise: MSE is its maximum-likelihood loss."),
                Recommendation(
                    "huber",
                    {"delta": 1.0},
                    "Safer if a few targets may be wrong: quadratic "
                    "near zero, linear beyond delta (set delta near the noise scale).",
                ),
            ]
        return [
            Recommendation(
                "huber",
                {"delta": 1.0},
                "Outliers: quadratic for small errors, linear for "
                "large ones, so gross errors cannot dominate; set delta near the noise scale.",
            ),
            Recommendation(
                "l1", why="Heavy tails: L1 estimates the median and ignores outlier magnitude."
            ),
            Recommendation("log_cosh", why="A smooth Huber-like loss with no delta to tune."),
        ]
    if task == "count":
        return [
            Recommendation(
                "poisson_nll",
                {"log_input": True},
                "Counts: the Poisson likelihood; predict the log-rate so the rate stays positive.",
            ),
        ]
    if task == "quantile":
        return [
            Recommendation(
                "quantile",
                {"quantiles": list(quantiles)},
                "Prediction intervals: the pinball "
                "loss of each quantile; the model outputs one value per quantile.",
            ),
        ]
    if task == "binary":
        options: dict[str, Any] = {}
        if imbalance and targets is not None:
            options["pos_weight"] = pos_weight(targets)
        first = Recommendation(
            "bce_with_logits",
            options,
            "Two classes: BCE on logits (stable in log space)"
            + (
                "; pos_weight = negatives / positives rebalances the rare positives."
                if imbalance
                else "."
            ),
        )
        if not imbalance:
            return [first]
        return [
            first,
            Recommendation(
                "focal",
                {"alpha": 0.25, "gamma": 2.0},
                "Extreme imbalance with many easy "
                "negatives (detection): focal modulation down-weights the easy examples.",
            ),
        ]
    if task == "multiclass":
        if not imbalance:
            return [
                Recommendation(
                    "cross_entropy",
                    {"label_smoothing": 0.1},
                    "One class per sample: "
                    "cross-entropy on logits; mild label smoothing improves calibration.",
                ),
            ]
        options = {}
        if targets is not None:
            options["weight"] = class_weights(
                class_counts(targets, num_classes), "effective_number"
            )
        return [
            Recommendation(
                "cross_entropy",
                options,
                "Imbalanced classes: cross-entropy with class "
                "weights from effective numbers (Cui et al., 2019), tempering inverse frequency.",
            ),
            Recommendation(
                "softmax_focal",
                {"gamma": 2.0},
                "Many easy examples of the common classes: "
                "focal modulation concentrates the loss on hard ones.",
            ),
        ]
    if task == "multilabel":
        options = {}
        if imbalance and targets is not None:
            options["pos_weight"] = pos_weight(targets)
        recs = [
            Recommendation(
                "bce_with_logits",
                options,
                "Independent labels: one sigmoid BCE per label"
                + ("; pos_weight per label rebalances rare labels." if options else "."),
            )
        ]
        if imbalance:
            recs.append(
                Recommendation(
                    "asymmetric",
                    {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05},
                    "Few positives per sample: asymmetric focusing (Ridnik et al., 2021) "
                    "discards easy negatives and keeps the positives' gradient.",
                )
            )
        return recs
    # segmentation
    recs = [
        Recommendation(
            "cross_entropy",
            why="Per-pixel classification: combine with an overlap loss "
            "(two terms in one Criterion).",
        ),
        Recommendation(
            "dice",
            {"mode": "multiclass"},
            "Overlap: Dice is insensitive to the background's "
            "size, so small structures count; add it to cross-entropy.",
        ),
    ]
    if imbalance:
        recs.append(
            Recommendation(
                "focal_tversky",
                {"alpha": 0.3, "beta": 0.7, "gamma": 0.75},
                "Small "
                "foreground: Tversky with beta > alpha penalises missed foreground more, and "
                "the focal exponent emphasises hard classes.",
            )
        )
    recs.append(
        Recommendation(
            "lovasz_softmax",
            why="To optimise mean IoU directly (fine-tuning stage): the "
            "Lovasz extension of the Jaccard loss.",
        )
    )
    return recs
