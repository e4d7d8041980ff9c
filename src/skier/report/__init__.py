"""skier.report: the read side. Self-contained HTML reports, run views and the live dashboard.

No torch here: reports are made from the store and the run directories alone.

>>> from skier.report import write_run_report
>>> write_run_report("runs/20261122-101500-ab12cd")  # doctest: +SKIP
PosixPath('runs/20261122-101500-ab12cd/report.html')
"""

from skier.report.build import render_comparison_report, render_run_report, write_run_report
from skier.report.comparison import RunComparison, compare_runs
from skier.report.html import render_report, write_report
from skier.report.page import render_page
from skier.report.views import RunView, config_differences, load_view, resolve_run

__all__ = [
    "RunComparison",
    "RunView",
    "compare_runs",
    "config_differences",
    "load_view",
    "render_comparison_report",
    "render_page",
    "render_report",
    "render_run_report",
    "resolve_run",
    "write_report",
    "write_run_report",
]
