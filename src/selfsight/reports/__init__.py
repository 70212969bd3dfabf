"""Reports: ``report(run)`` writes one self-contained HTML page, with its figures as PNGs,
describing a run and its evaluations."""

from selfsight.reports.page import report

__all__ = ["report"]
