"""Tiny inline-SVG charts for the offline HTML report (no JavaScript, no CDN, no matplotlib).

Each function returns one ``<svg>`` element as a string. Every drawn datum is a ``<rect>`` or
``<circle>`` with ``class="datum"`` and a ``<title>`` (the browser shows it as a tooltip), so a
test can count what was drawn and a reader can hover for exact values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

PALETTE = ("#2f6fb0", "#e07b28", "#3a9a5b", "#c23b3b", "#7d5cb8", "#8c6d46", "#d45fa0", "#6b7b8c")
WIDTH, HEIGHT = 640, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 16, 56

Fmt = Callable[[float], str]


def _fmt_default(v: float) -> str:
    return f"{v:g}"


def _open(label: str, height: int = HEIGHT) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]


def _y_axis(parts: list[str], y_max: float, fmt: Fmt) -> None:
    plot_h = HEIGHT - _TOP - _BOTTOM
    for i in range(5):
        value = y_max * i / 4
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#e3e3e3"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#444">{escape(fmt(value))}</text>'
        )


def _x_label(parts: list[str], x: float, label: str) -> None:
    y = HEIGHT - _BOTTOM + 14
    short = label if len(label) <= 14 else label[:13] + "…"
    parts.append(
        f'<text x="{x:.1f}" y="{y}" font-size="10" text-anchor="end" fill="#444" '
        f'transform="rotate(-35 {x:.1f} {y})">{escape(short)}</text>'
    )


def _nice_max(values: Sequence[float]) -> float:
    """The smallest of 1, 2, 2.5, 5, 10 x 10^k that is >= the largest value."""
    top = max(values, default=0.0)
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    return float(next(s * magnitude for s in (1, 2, 2.5, 5, 10) if s * magnitude >= top))


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    label: str,
    fmt: Fmt = _fmt_default,
    color: str = PALETTE[0],
    counts: bool = False,
) -> str:
    """Vertical bars, one per (label, value). ``counts``: whole-number gridlines."""
    parts = _open(label)
    y_max = _nice_max([v for _, v in items])
    if counts:  # 4 gridline steps of a whole number each
        y_max = float(4 * math.ceil(max([v for _, v in items] + [1]) / 4))
    _y_axis(parts, y_max, fmt)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(items), 1)
    for i, (name, value) in enumerate(items):
        h = plot_h * (value / y_max) if y_max else 0
        x = _LEFT + i * slot + slot * 0.15
        parts.append(
            f'<rect class="datum" x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{max(h, 0.5):.1f}" fill="{color}"><title>{escape(name)}: {escape(fmt(value))}'
            "</title></rect>"
        )
        _x_label(parts, x + slot * 0.35, name)
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    points: Sequence[tuple[str, float]],
    *,
    label: str,
    y_max: float = 1.0,
    threshold: float | None = None,
    fmt: Fmt = _fmt_default,
) -> str:
    """A polyline with a dot per point (e.g. pass rate per eval run) and an optional threshold."""
    parts = _open(label)
    _y_axis(parts, y_max, fmt)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(points), 1)
    coords = [
        (_LEFT + step * (i + 0.5), _TOP + plot_h - plot_h * min(v, y_max) / y_max)
        for i, (_, v) in enumerate(points)
    ]
    if threshold is not None:
        y = _TOP + plot_h - plot_h * threshold / y_max
        parts.append(
            f'<line class="threshold" x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" '
            f'stroke="{PALETTE[3]}" stroke-dasharray="6 4"><title>threshold {escape(fmt(threshold))}'
            "</title></line>"
        )
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>'
        )
    for (name, value), (x, y) in zip(points, coords, strict=True):
        parts.append(
            f'<circle class="datum" cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{PALETTE[0]}">'
            f"<title>{escape(name)}: {escape(fmt(value))}</title></circle>"
        )
        _x_label(parts, x, name)
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(
    rows: Sequence[tuple[str, dict[str, float]]], categories: Sequence[str], *, label: str
) -> str:
    """Horizontal 100% stacked bars: one row per label, one segment per category, plus a legend."""
    row_h, legend_h, name_w = 22, 28, 170
    height = _TOP + legend_h + row_h * max(len(rows), 1) + 8
    parts = _open(label, height)
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(categories)}
    for i, c in enumerate(categories):
        legend_x = name_w + i * 110
        parts.append(f'<rect x="{legend_x}" y="{_TOP}" width="12" height="12" fill="{colors[c]}"/>')
        parts.append(f'<text x="{legend_x + 16}" y="{_TOP + 10}" font-size="11">{escape(c)}</text>')
    bar_w = WIDTH - name_w - _RIGHT
    for r, (name, counts) in enumerate(rows):
        y = _TOP + legend_h + r * row_h
        total = sum(counts.values()) or 1
        parts.append(
            f'<text x="{name_w - 8}" y="{y + 14}" font-size="11" text-anchor="end">'
            f"{escape(name[:28])}</text>"
        )
        x = float(name_w)
        for c in categories:
            n = counts.get(c, 0)
            if not n:
                continue
            w = bar_w * n / total
            parts.append(
                f'<rect class="datum" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" '
                f'fill="{colors[c]}"><title>{escape(name)} — {escape(c)}: {n:g} of {total:g}'
                "</title></rect>"
            )
            x += w
    parts.append("</svg>")
    return "".join(parts)
