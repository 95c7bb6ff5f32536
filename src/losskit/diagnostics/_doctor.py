"""The loss doctor: one forward and backward pass, and a report on every key.

:func:`diagnose` looks, per key, at what the term reads (shapes, dtypes, ranges), whether it
keeps its loss's contract and is finite, its weighted share of the total, the gradient it
induces on each top-level part of the model, which parameters it reaches (and which trainable
parameters no key reaches), and the cosines between the keys' gradients on the shared
parameters. Problems become :class:`Finding` objects with a concrete piece of advice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from losskit._findings import Finding
from losskit.criterion import Criterion
from losskit.diagnostics._gradients import cosines, gram_matrix, key_gradients
from losskit.errors import ConfigError, LossInputError, LossKitError, NonFiniteLossError
from losskit.evaluation import to_device
from losskit.losses.contracts import Contract

if TYPE_CHECKING:
    from losskit.config import RunConfig

__all__ = ["Diagnosis", "Finding", "TensorSummary", "TermReport", "diagnose", "diagnose_config"]

DOMINANCE = 100.0
"""A key whose weighted value (or gradient) exceeds every other's this many times dominates."""

CONFLICT = -0.5
"""Two keys whose gradients' cosine on the shared parameters is below this conflict."""

_CLASS_TARGETS = ("class_indices", "class_indices_or_probabilities")


@dataclass(frozen=True)
class TensorSummary:
    """Shape, dtype, range of the finite values, and the count of non-finite ones."""

    shape: tuple[int, ...]
    dtype: str
    min: float | None
    max: float | None
    nonfinite: int

    @classmethod
    def of(cls, tensor: Tensor) -> TensorSummary:
        """Summarise ``tensor`` (one host sync)."""
        t = tensor.detach()
        dtype = str(t.dtype).removeprefix("torch.")
        if t.numel() == 0:
            return cls(tuple(t.shape), dtype, None, None, 0)
        if not (t.is_floating_point() or t.is_complex()):
            return cls(tuple(t.shape), dtype, float(t.min()), float(t.max()), 0)
        t = t.float()
        finite = torch.isfinite(t)
        kept = t[finite]
        low, high = (float(kept.min()), float(kept.max())) if kept.numel() else (None, None)
        return cls(tuple(t.shape), dtype, low, high, int(t.numel() - int(finite.sum())))

    def __str__(self) -> str:
        text = f"{self.shape} {self.dtype}"
        if self.min is not None and self.max is not None:
            text += f" [{self.min:.4g}, {self.max:.4g}]"
        if self.nonfinite:
            text += f" {self.nonfinite} non-finite"
        return text


@dataclass(frozen=True)
class TermReport:
    """What :func:`diagnose` found out about one key.

    ``grad_norms`` maps each top-level part of the model (its child modules' names) to the norm
    of the gradient of ``weight × term`` on it; ``reaches`` names the trainable parameters the
    term's gradient reaches.
    """

    key: str
    inputs: dict[str, TensorSummary]
    value: float | None
    weight: float | None
    share: float | None
    finite: bool
    grad_norms: dict[str, float] = field(default_factory=dict)
    reaches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    """The doctor's report: one :class:`TermReport` per key, the conflicts and the findings.

    ``conflicts`` maps ``(a, b)`` to the cosine between the two keys' gradients on the
    ``shared`` parameters; ``untrained`` names the trainable parameters no key reaches.
    Print it with rich (``rich.print(report)``) for tables, or use :meth:`to_dict`.
    """

    terms: dict[str, TermReport]
    shared: tuple[str, ...]
    untrained: tuple[str, ...]
    conflicts: dict[tuple[str, str], float]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Whether no finding is an error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        """The findings that break training (non-finite values, contract violations)."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """The findings that hurt training without breaking it."""
        return [f for f in self.findings if f.severity == "warning"]

    def for_key(self, key: str) -> list[Finding]:
        """The findings filed under ``key``."""
        return [f for f in self.findings if f.key == key]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become ``None``)."""
        cleaned: dict[str, Any] = _clean(
            {
                "ok": self.ok,
                "terms": {k: asdict(t) for k, t in self.terms.items()},
                "shared": list(self.shared),
                "untrained": list(self.untrained),
                "conflicts": {f"{a}/{b}": c for (a, b), c in self.conflicts.items()},
                "findings": [asdict(f) for f in self.findings],
            }
        )
        return cleaned

    def __rich__(self) -> Any:
        from losskit.diagnostics._tables import render

        return render(self)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _whole_numbers(t: Tensor) -> tuple[int, float, float] | None:
    """(distinct values, min, max) of a float tensor holding only whole numbers, else None."""
    if not t.is_floating_point() or t.numel() == 0 or not bool(torch.isfinite(t).all()):
        return None
    if not bool((t == t.round()).all()):
        return None
    return int(torch.unique(t).numel()), float(t.min()), float(t.max())


def _contract_finding(
    key: str, exc: LossInputError, contract: Contract, x: Tensor, y: Tensor | None
) -> Finding:
    message = f"term {key!r}: {exc}"
    x = x.detach()
    if (
        contract.input == "logits"
        and x.is_floating_point()
        and x.numel()
        and float(x.min()) >= 0.0
        and float(x.max()) <= 1.0
    ):
        return Finding(
            "probabilities_as_logits",
            "error",
            key,
            f"{message}. The model's output looks like probabilities: drop the final "
            "softmax/sigmoid from that head (the loss applies it, in log space), or pick a loss "
            "made for probabilities",
        )
    whole = _whole_numbers(y.detach()) if y is not None else None
    if whole is not None and contract.target in _CLASS_TARGETS:
        distinct, low, high = whole
        return Finding(
            "integer_coded_target",
            "error",
            key,
            f"{message}. The target holds class indices stored as floats ({distinct} whole "
            f"values in [{low:g}, {high:g}]): convert them with target.long() in the dataset",
        )
    return Finding("contract", "error", key, message)


def _integer_target_warning(key: str, y: Tensor, contract: Contract | None) -> Finding | None:
    """Float targets with a few whole values fed to a regression loss: labels regressed on?"""
    if contract is not None and contract.target not in ("continuous", "any"):
        return None
    whole = _whole_numbers(y)
    if whole is None or whole[0] < 3 or whole[0] > 100:
        return None
    distinct, low, high = whole
    return Finding(
        "integer_coded_target",
        "warning",
        key,
        f"term {key!r}: the target is a float tensor holding only {distinct} whole values in "
        f"[{low:g}, {high:g}]: if they are class labels, regressing on them imposes an order "
        "and distances between classes; use cross_entropy on logits with target.long()",
    )


def _nonfinite_finding(
    key: str, value: Tensor | None, inputs: Mapping[str, TensorSummary]
) -> Finding:
    bad = [f"{role} ({summary})" for role, summary in inputs.items() if summary.nonfinite]
    where = (
        f"its {', '.join(bad)} already hold non-finite values, so the model (or the data) "
        "produced them: look for a diverged head, log/sqrt/division of unchecked values or "
        "NaN in the dataset"
        if bad
        else "its inputs are finite, so the loss itself overflowed: check its arguments and "
        "the inputs' scale (a log of 0, an exp of a large value)"
    )
    shown = "non-finite" if value is None else f"{float(value.detach())}"
    return Finding(
        "nonfinite",
        "error",
        key,
        f"term {key!r} is {shown}: {where}. Criterion(nonfinite='raise', check='always') (in a run "
        'file: check = "always" at the top) stops training at the first such step with a '
        "summary of the inputs",
    )


def _group(name: str) -> str:
    return name.split(".", 1)[0]


def _norm(grads: Iterable[Tensor | None]) -> float:
    total = 0.0
    for g in grads:
        if g is not None:
            total += float(g.detach().float().pow(2).sum())
    return math.sqrt(total)


def _untrained_findings(
    untrained: Sequence[str], named: Sequence[tuple[str, Tensor]], disabled: Sequence[str]
) -> list[Finding]:
    groups: dict[str, list[str]] = {}
    for name in untrained:
        groups.setdefault(_group(name), []).append(name)
    sizes: dict[str, int] = {}
    for name, _ in named:
        sizes[_group(name)] = sizes.get(_group(name), 0) + 1
    note = (
        f" (disabled terms {list(disabled)} are not counted: enable them or check again)"
        if disabled
        else ""
    )
    findings = []
    for group, names in groups.items():
        whole = len(names) == sizes[group] and "." in names[0]
        what = (
            f"the whole of {group!r} ({len(names)} parameters)"
            if whole
            else f"parameters {', '.join(names)}"
        )
        findings.append(
            Finding(
                "untrained_parameters",
                "warning",
                None,
                f"{what} get no gradient from any term: no loss trains them{note}; add a term "
                "on that head's output, or freeze it (requires_grad_(False)) if it is meant to "
                "stay fixed, or remove it",
                parameters=tuple(names),
            )
        )
    return findings


def diagnose(
    model: nn.Module,
    criterion: Criterion,
    batch: Any,
    *,
    forward: Callable[[nn.Module, Any], Any] | None = None,
    shared: nn.Module | Iterable[Tensor] | None = None,
) -> Diagnosis:
    """Run one forward and backward pass of ``criterion`` on ``batch`` and report every key.

    Args:
        model: the model; its trainable parameters are examined (``.grad`` is left untouched).
        criterion: the keyed criterion (its enabled terms are examined).
        batch: one training batch.
        forward: ``fn(model, batch) -> outputs`` (default ``model(batch)``).
        shared: the shared part for the conflict matrix; by default the parameters two keys or
            more reach.

    Contract violations, non-finite terms and bad selections are reported per key instead of
    raised; the other keys are still examined. The criterion is called once on the keys that
    compute (its weights, balancer included, give the shares).

    Example::

        >>> import torch, losskit as lk
        >>> _ = torch.manual_seed(0)
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.trunk = torch.nn.Linear(4, 8)
        ...         self.cls, self.aux = torch.nn.Linear(8, 3), torch.nn.Linear(8, 1)
        ...     def forward(self, x):
        ...         h = self.trunk(x)
        ...         return {"logits": self.cls(h), "aux": self.aux(h)}
        >>> crit = lk.Criterion({"cls": lk.Term("cross_entropy", input="logits", target="y")})
        >>> batch = {"x": torch.randn(16, 4), "y": torch.randint(0, 3, (16,))}
        >>> report = lk.diagnostics.diagnose(Net(), crit, batch, forward=lambda m, b: m(b["x"]))
        >>> [(f.kind, f.parameters) for f in report.findings]
        [('untrained_parameters', ('aux.weight', 'aux.bias'))]
        >>> report.ok  # warnings only
        True
    """
    run = forward if forward is not None else (lambda m, b: m(b))
    with torch.enable_grad():
        outputs = run(model, batch)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    findings: list[Finding] = []
    inputs: dict[str, dict[str, TensorSummary]] = {}
    values: dict[str, Tensor] = {}
    # What each key's gradient flows from: its value, or its input when the value cannot be
    # computed (the parameters a broken term would reach are not "untrained").
    sources: dict[str, Tensor] = {}
    for key in criterion.enabled:
        term = criterion.term(key)
        loss = term.loss
        found = getattr(loss, "contract", None)
        contract = found if isinstance(found, Contract) else None
        name = str(getattr(loss, "display_name", type(loss).__name__))
        try:
            chosen = term.selected(key, outputs, batch)
        except LossInputError as exc:
            findings.append(Finding("selection", "error", key, str(exc)))
            inputs[key] = {}
            continue
        summaries = {role: TensorSummary.of(t) for role, t in chosen.items()}
        inputs[key] = summaries
        broken = any(s.nonfinite for s in summaries.values())
        x, y = chosen.get("input"), chosen.get("target")
        if x is not None and x.requires_grad:
            sources[key] = x.sum()
        if contract is not None and x is not None and not broken:
            try:
                contract.check_metadata(name, x, y)
                ignore = getattr(loss, "ignore_index", None)
                contract.check_values(
                    name,
                    x,
                    y,
                    ignore_index=ignore if isinstance(ignore, int) else None,
                )
            except LossInputError as exc:
                findings.append(_contract_finding(key, exc, contract, x, y))
                continue
        if y is not None and not broken:
            warning = _integer_target_warning(key, y, contract)
            if warning is not None:
                findings.append(warning)
        try:
            with torch.enable_grad():
                value = term.compute(key, outputs, batch)
        except LossInputError as exc:
            if broken:
                findings.append(_nonfinite_finding(key, None, summaries))
            else:
                findings.append(Finding("contract", "error", key, f"{exc}"))
            continue
        if broken or not bool(torch.isfinite(value.detach()).all()):
            findings.append(_nonfinite_finding(key, value, summaries))
        values[key] = sources[key] = value
    finite = [k for k, v in values.items() if bool(torch.isfinite(v.detach()).all())]
    weights = _weights(criterion, outputs, batch, finite)
    params = [p for _, p in named]
    names = [n for n, _ in named]
    computed = list(sources)
    grads = dict(zip(computed, key_gradients([sources[k] for k in computed], params)))
    reach = {k: tuple(n for n, g in zip(names, grads[k]) if g is not None) for k in computed}
    reached = {n for k in computed for n in reach[k]}
    untrained = tuple(n for n in names if n not in reached)
    disabled = [k for k in criterion.keys if k not in criterion.enabled]
    findings += _untrained_findings(untrained, named, disabled)
    findings += _zero_gradients(finite, grads)
    # Shared parameters: reached by two finite keys or more, or the ones named.
    if shared is not None:
        wanted = {id(p) for p in (shared.parameters() if isinstance(shared, nn.Module) else shared)}
        index = [i for i, p in enumerate(params) if id(p) in wanted]
    else:
        index = [i for i in range(len(params)) if sum(grads[k][i] is not None for k in finite) >= 2]
    conflicts: dict[tuple[str, str], float] = {}
    shared_norms: dict[str, float] = {}
    if index and finite:
        gram = gram_matrix([grads[k] for k in finite], params, index).detach()
        cos = cosines(gram).tolist()
        for i, a in enumerate(finite):
            shared_norms[a] = math.sqrt(max(float(gram[i, i]), 0.0)) * abs(weights.get(a, 1.0))
            for j in range(i + 1, len(finite)):
                conflicts[(a, finite[j])] = cos[i][j]
    findings += _conflict_findings(conflicts)
    contributions = {k: abs(weights.get(k, 1.0) * float(values[k].detach())) for k in finite}
    findings += _dominance_findings(contributions, shared_norms, weights)
    total = sum(contributions.values())
    reports: dict[str, TermReport] = {}
    for key in criterion.enabled:
        computed_value = values.get(key)
        weight = weights.get(key)
        norms: dict[str, float] = {}
        if key in grads and key in finite:
            for group in dict.fromkeys(_group(n) for n in names):
                parts = [g for n, g in zip(names, grads[key]) if _group(n) == group]
                if any(g is not None for g in parts):
                    norms[group] = _norm(parts) * abs(weight if weight is not None else 1.0)
        reports[key] = TermReport(
            key=key,
            inputs=inputs.get(key, {}),
            value=None if computed_value is None else float(computed_value.detach()),
            weight=weight,
            share=contributions[key] / total if key in contributions and total > 0 else None,
            finite=key in finite,
            grad_norms=norms,
            reaches=reach.get(key, ()),
        )
    shared_names = tuple(names[i] for i in index)
    order = {"error": 0, "warning": 1}
    findings.sort(key=lambda f: order[f.severity])
    return Diagnosis(reports, shared_names, untrained, conflicts, tuple(findings))


def diagnose_config(
    config: RunConfig | str | Path, *, batches: int = 1, steps: int = 0
) -> Diagnosis:
    """:func:`diagnose` on training batches of a run configuration (a path or config).

    The model, criterion, data and forward pass are built as ``losskit run`` builds them.

    Args:
        batches: how many training batches to check; the report is the first one with an
            error, or the last one's.
        steps: then train this many optimizer steps as ``losskit run`` would (checking every
            step's parameters for non-finite values) and check ``batches`` batches again: a
            run that goes NaN at step 13 is found with ``steps >= 13``, and each finding's
            ``start`` and message say after how many steps.
    """
    from losskit.config import load_config  # pydantic: only when a configuration is read
    from losskit.run import build

    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ConfigError(f"batches must be a positive integer, got {batches!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an integer >= 0, got {steps!r}")
    trainer, train, _ = build(
        config if not isinstance(config, (str, Path)) else load_config(config), progress=False
    )
    stream = _endless(train)
    forward = next(iter(trainer.forward.values()))

    def check(count: int) -> Diagnosis:
        report: Diagnosis | None = None
        for _ in range(count):
            trainer.model.train()
            batch = to_device(next(stream), trainer.device)
            report = diagnose(trainer.model, trainer.criterion, batch, forward=forward)
            if not report.ok:
                break
        assert report is not None
        return report

    report = check(batches)
    if not report.ok or steps == 0:
        return report
    from losskit.tracking import Tracker

    trainer.tracker = Tracker([], criterion=trainer.criterion)
    for step in range(1, steps + 1):
        trainer.model.train()
        try:
            trainer.train_window([to_device(next(stream), trainer.device)])
        except NonFiniteLossError as exc:
            found = Finding(
                "nonfinite", "error", None, f"training step {step}: {exc}", start=step, end=step
            )
            return replace(report, findings=(*report.findings, found))
        if not all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters()):
            return _after_steps(check(1), step)  # the keys' values on the spoilt parameters
    return _after_steps(check(batches), steps)


def _endless(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's batches, epoch after epoch."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ConfigError("the training data yields no batch")


def _after_steps(report: Diagnosis, steps: int) -> Diagnosis:
    """``report`` with each finding dated: after ``steps`` training steps."""
    dated = tuple(
        replace(f, message=f"after {steps} training step(s): {f.message}", start=steps, end=steps)
        for f in report.findings
    )
    return replace(report, findings=dated)


def _weights(
    criterion: Criterion, outputs: Any, batch: Any, keys: Sequence[str]
) -> dict[str, float]:
    """The weight of each key in the total, as the criterion (and its balancer) sets it."""
    if not keys:
        return {}
    try:
        with torch.no_grad():
            res = criterion(outputs, batch, keys=keys)
        return {k: float(w) for k, w in res.weights.items()}
    except LossKitError:
        step = criterion.step_count
        return {k: criterion.term(k).weight(step) for k in keys}


def _zero_gradients(
    keys: Sequence[str], grads: Mapping[str, tuple[Tensor | None, ...]]
) -> list[Finding]:
    findings = []
    for key in keys:
        present = [g for g in grads[key] if g is not None]
        if not present:
            findings.append(
                Finding(
                    "zero_gradient",
                    "warning",
                    key,
                    f"term {key!r} reaches no trainable parameter: its input does not depend on "
                    "the model (it is detached, computed under torch.no_grad, or read from the "
                    "batch); the term only shifts the logged total. Feed it the model's output "
                    "(or drop the term)",
                )
            )
        elif all(not bool(g.any()) for g in present):
            findings.append(
                Finding(
                    "zero_gradient",
                    "warning",
                    key,
                    f"term {key!r} has an exactly zero gradient on every parameter it reaches: "
                    "something between the model and the loss blocks it (argmax/round, a clamp "
                    "or a saturated activation, dead ReLUs, a mask that selects nothing)",
                )
            )
    return findings


def _conflict_findings(conflicts: Mapping[tuple[str, str], float]) -> list[Finding]:
    return [
        Finding(
            "conflict",
            "warning",
            a,
            f"terms {a!r} and {b!r} pull the shared parameters in opposite directions (gradient "
            f"cosine {cos:.2f}): one improves at the other's expense. Combine their gradients "
            "with a gradient balancer (balancer={name='upgrad', shared=...} or 'pcgrad'), or "
            "give each task more capacity of its own",
            other=b,
        )
        for (a, b), cos in conflicts.items()
        if cos < CONFLICT
    ]


def _dominance_findings(
    contributions: Mapping[str, float],
    shared_norms: Mapping[str, float],
    weights: Mapping[str, float],
) -> list[Finding]:
    def leader(table: Mapping[str, float]) -> tuple[str, str, float] | None:
        # Zero-weight terms (a warm-up from 0) and exact zeros are not compared: the
        # zero_gradient finding covers a term that does nothing.
        ranked = sorted(
            ((v, k) for k, v in table.items() if weights.get(k, 1.0) != 0.0 and v > 0.0),
            reverse=True,
        )
        if len(ranked) < 2:
            return None
        return ranked[0][1], ranked[1][1], ranked[0][0] / ranked[1][0]

    found: dict[str, list[str]] = {}
    other: dict[str, str] = {}
    ratios: dict[str, float] = {}
    for what, table in (
        ("weighted value", contributions),
        ("gradient on the shared parameters", shared_norms),
    ):
        top = leader(table)
        if top is not None and top[2] > DOMINANCE:
            key, runner, ratio = top
            found.setdefault(key, []).append(f"its {what} is {ratio:.3g}x that of {runner!r}")
            other.setdefault(key, runner)
            ratios.setdefault(key, ratio)
    findings = []
    for key, reasons in found.items():
        weight = weights.get(key, 1.0)
        ratio = ratios[key]
        advice = (
            f"lower its weight (from {weight:g} to about {weight / ratio:.3g} to match "
            f"{other[key]!r})"
        )
        findings.append(
            Finding(
                "dominates",
                "warning",
                key,
                f"term {key!r} dominates the total: {'; '.join(reasons)}, so the other terms "
                f"barely train. {advice.capitalize()}, normalise its target's scale, or let a "
                "balancer equalise them (balancer='magnitude', or 'uncertainty')",
                other=other[key],
            )
        )
    return findings
