"""How figures are written in docs/benchmarks.md: thousands separators, ratios, verdicts."""

from __future__ import annotations

from typing import Any


def number(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def ratio(value: float | None, reference: float | None) -> str:
    if not value or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def goal(met: bool) -> str:
    return "met" if met else "**missed**"


def below(have: float, limit: float) -> str:
    return f"{have:.1f} ms: {goal(have < limit)}"


def load_text(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values)
