"""The report's Findings section: what :func:`losskit.lint.lint` sees in the run's log.

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, load, sinks
    >>> from losskit.report._findings import findings_section
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     tracker.update({"loss": torch.tensor(float("nan"))})
    >>> "nonfinite" in findings_section(load(run))
    True
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence

from losskit.errors import LossKitWarning
from losskit.lint import Finding, lint
from losskit.tracking import History

__all__ = ["findings_section", "findings_table"]


def findings_table(found: Sequence[Finding], *, with_run: bool = False) -> str:
    """An HTML table of findings (``with_run``: a column naming each finding's run)."""
    head: tuple[str, ...] = ("run",) if with_run else ()
    head += ("severity", "split/key", "kind", "steps", "what", "advice")
    rows = []
    for f in found:
        cells: tuple[str, ...] = (f.run,) if with_run else ()
        cells += (f.severity, f"{f.split}/{f.key}", f.kind, f"{f.start}–{f.end}", f.message)
        cells += (f.advice,)
        rows.append(
            "<tr>" + "".join(f'<td class="text">{html.escape(c)}</td>' for c in cells) + "</tr>"
        )
    header = "".join(f'<th class="text">{html.escape(h)}</th>' for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def findings_section(history: History) -> str:
    """The section: a table of findings, or a line saying there are none."""
    try:
        found = lint(history)
    except Exception as exc:  # the report must not be lost to a linter bug: say so, loudly
        warnings.warn(f"the linter failed on {history.path}: {exc!r}", LossKitWarning, stacklevel=2)
        note = html.escape(f"The linter failed on this log: {exc!r}.")
        return f'<section id="findings"><h2>Findings</h2><p class="note">{note}</p></section>'
    if not found:
        body = '<p class="muted">No findings: the linter saw nothing to act on.</p>'
    else:
        body = (
            f'<p class="note">{len(found)} finding(s); <code>losskit lint RUN_DIR</code> lists '
            "them too.</p>" + findings_table(found)
        )
    return f'<section id="findings"><h2>Findings</h2>{body}</section>'
