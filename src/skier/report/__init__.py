"""skier.report: a self-contained HTML report of a run.

>>> from skier.report import write_report
>>> write_report("report.html", title="run", config={}, result={}, figures={},
...              history=None)  # doctest: +SKIP
"""

from skier.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
