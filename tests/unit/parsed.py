"""What the parser tests compare: a parse result in an order-free form."""

from __future__ import annotations

from rtanalytics.core.metrics import PointBatch, Rejection


def canonical(batch: PointBatch, rejected: list[Rejection]) -> tuple:
    """Points sorted by position (every column), windows, and rejections sorted by position:
    the C paths append the points they leave to the Python parser after the others."""
    rows = sorted(zip(*batch.columns(), strict=True))
    return rows, batch.windows, sorted((r.index, r.problems) for r in rejected)
