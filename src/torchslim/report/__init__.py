"""The measured selection matrix and its report files (see :mod:`torchslim.report.matrix`)."""

from torchslim.report.matrix import COLUMNS, build_matrix, knee, pareto_front, recommend, rule_of_thumb
from torchslim.report.render import rerender, to_html, to_markdown, write_report

__all__ = ["COLUMNS", "build_matrix", "knee", "pareto_front", "recommend", "rerender", "rule_of_thumb",
           "to_html", "to_markdown", "write_report"]
