"""Reports of a run: figures of its log and one self-contained HTML page.

``render(run_dir)`` reads ``run_dir/metrics.jsonl`` (written by
:class:`losskit.tracking.sinks.JSONL`) and writes ``run_dir/report.html``: interactive charts
(:class:`Chart`, drawn in the browser by the uPlot library shipped in ``report/assets``) and
static figures. matplotlib is imported when a figure is drawn, not with this package. The
page's pieces (:func:`write_page`, :func:`chart_figure`, :func:`figure_html`, ...) are public
for other page writers (``losskit.experiments``' reports).

Example::

    >>> import tempfile, torch
    >>> from losskit.tracking import Tracker, sinks
    >>> from losskit import report
    >>> run = tempfile.mkdtemp()
    >>> with Tracker([sinks.JSONL(run)]) as tracker:
    ...     tracker.update({"loss": torch.tensor(0.5)})
    >>> report.render(run).name
    'report.html'
"""

from losskit.report._charts import (
    PALETTE,
    Chart,
    Series,
    align,
    chart_figure,
    should_log,
    thin,
)
from losskit.report._curves import (
    constant_weights,
    curve_charts,
    gradient_norm_charts,
    loss_charts,
    weight_charts,
)
from losskit.report._findings import findings_section, findings_table
from losskit.report._page import (
    chart_controls,
    figure_html,
    format_number,
    page_header,
    render,
    slug,
    write_page,
)
from losskit.report._plots import (
    Plot,
    figures,
    literal,
    new_figure,
    palette_colour,
    style_axes,
)
from losskit.report._smoothing import ema
from losskit.report._summary import SummaryRow, summarize

__all__ = [
    "PALETTE",
    "Chart",
    "Plot",
    "Series",
    "SummaryRow",
    "align",
    "chart_controls",
    "chart_figure",
    "constant_weights",
    "curve_charts",
    "ema",
    "figure_html",
    "figures",
    "findings_section",
    "findings_table",
    "format_number",
    "gradient_norm_charts",
    "literal",
    "loss_charts",
    "new_figure",
    "page_header",
    "palette_colour",
    "render",
    "should_log",
    "slug",
    "style_axes",
    "summarize",
    "thin",
    "weight_charts",
    "write_page",
]
