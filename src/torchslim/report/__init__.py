"""The measured selection matrix and its report files (see :mod:`torchslim.report.matrix` for the
``matrix.json`` schema and :mod:`torchslim.report.scenarios` for the recommendations)."""

from torchslim.report.matrix import COLUMNS, build_matrix, knee, pareto_front, recommend, rule_of_thumb
from torchslim.report.render import rerender, to_html, to_markdown, write_report

__all__ = ["COLUMNS", "build_matrix", "knee", "pareto_front", "recommend", "rerender", "rule_of_thumb",
           "to_html", "to_markdown", "write_report"]
