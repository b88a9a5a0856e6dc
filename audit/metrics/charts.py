"""Server-rendered SVG pictures for the dashboard: heat maps, accuracy bars, progress over time.

No chart library and no script: each function returns an ``<svg>`` string that works under the
strict CSP (colours are SVG presentation attributes or classes from app.css, never ``style=``).
Every picture is accessible: ``role="img"``, ``aria-labelledby`` pointing at its ``<title>`` and
``<desc>``, and the values are drawn as text, not only as colour or length. Labels can come from
imported data (task ids, categories), which is hostile input, so every piece of text goes
through ``escape`` before it is placed; the result is marked safe only as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FONT = 12
# Heat map colour ramp endpoints (light to the accent blue of app.css).
RAMP_LOW = (0xF1, 0xF4, 0xFB)
RAMP_HIGH = (0x2F, 0x5B, 0xD3)


def _num(value: float) -> str:
    """Coordinates with at most one decimal, no trailing zeros: smaller, stable markup."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _svg(
    chart_id: str,
    *,
    width: float,
    height: float,
    title: str,
    desc: str,
    body: Sequence[str],
    css_class: str,
) -> SafeString:
    ident = escape(chart_id)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(css_class)}" '
        f'id="{ident}" viewBox="0 0 {_num(width)} {_num(height)}" '
        f'width="{_num(width)}" height="{_num(height)}" role="img" '
        f'aria-labelledby="{ident}-title" aria-describedby="{ident}-desc" '
        f'preserveAspectRatio="xMinYMin meet" font-size="{FONT}">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
        *body,
        "</svg>",
    ]
    return mark_safe("".join(parts))  # noqa: S308 - every piece above is escaped


def _text(x: float, y: float, content: Any, *, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{escape(cls)}"' if cls else ""
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"{klass}>{escape(content)}</text>'
    )


def _ramp(share: float) -> str:
    share = min(max(share, 0.0), 1.0)
    channels = (round(lo + (hi - lo) * share) for lo, hi in zip(RAMP_LOW, RAMP_HIGH, strict=True))
    return "#" + "".join(f"{channel:02x}" for channel in channels)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def heatmap(
    chart_id: str,
    *,
    matrix: Sequence[Sequence[int]],
    rows: Sequence[str],
    columns: Sequence[str],
    title: str,
    row_title: str,
    column_title: str,
    cell: int = 76,
) -> SafeString:
    """A grid of counts, darker for more; each cell shows its number and has a tooltip."""
    label_width = min(max((len(str(r)) for r in rows), default=4) * 7 + 16, 190)
    top = 44
    left = label_width + 8
    width = left + cell * len(columns) + 8
    height = top + cell * len(rows) + 8
    peak = max((value for row in matrix for value in row), default=0) or 1
    body = [
        _text(left + cell * len(columns) / 2, 14, column_title, anchor="middle", cls="axis-title"),
        _text(4, 14, row_title, cls="axis-title"),
    ]
    for j, column in enumerate(columns):
        body.append(_text(left + cell * (j + 0.5), 34, _truncate(str(column), 12), anchor="middle"))
    for i, row in enumerate(rows):
        y = top + cell * i
        body.append(_text(left - 8, y + cell / 2 + 4, _truncate(str(row), 26), anchor="end"))
        for j, column in enumerate(columns):
            value = matrix[i][j]
            share = value / peak
            x = left + cell * j
            ink = "cell-ink-light" if share > 0.55 else "cell-ink"
            body.append(
                f'<g class="cell"><title>{escape(row)} → {escape(column)}: {value}</title>'
                f'<rect x="{_num(x)}" y="{_num(y)}" width="{cell - 2}" height="{cell - 2}" '
                f'rx="4" fill="{_ramp(share)}"/>'
                + _text(x + (cell - 2) / 2, y + (cell - 2) / 2 + 5, value, anchor="middle", cls=ink)
                + "</g>"
            )
    desc = "; ".join(
        f"{row} → {column}: {matrix[i][j]}"
        for i, row in enumerate(rows)
        for j, column in enumerate(columns)
    )
    return _svg(
        chart_id, width=width, height=height, title=title, desc=desc, body=body, css_class="heatmap"
    )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def accuracy_bars(
    chart_id: str,
    *,
    groups: Sequence[dict[str, Any]],
    title: str,
    empty_label: str = "(none)",
    width: int = 560,
) -> SafeString:
    """Horizontal paired bars per group: accuracy as imported (grey) and current (blue), each
    with its percentage and n written beside it. ``groups`` rows come from
    ``metrics.accuracy_by``."""
    label_width = 170
    bar_area = width - label_width - 120
    row_height = 34
    top = 26
    height = top + row_height * max(len(groups), 1) + 8
    body = [
        f'<rect x="{label_width}" y="6" width="10" height="10" class="bar-imported"/>',
        _text(label_width + 14, 15, "as imported"),
        f'<rect x="{label_width + 100}" y="6" width="10" height="10" class="bar-reviewed"/>',
        _text(label_width + 114, 15, "current"),
    ]
    for step in (0, 0.5, 1):
        x = label_width + bar_area * step
        body.append(
            f'<line x1="{_num(x)}" y1="{top - 4}" x2="{_num(x)}" y2="{height - 6}" '
            f'class="gridline"/>'
        )
    lines = []
    for i, group in enumerate(groups):
        key = str(group["key"]) or empty_label
        y = top + row_height * i
        body.append(_text(label_width - 8, y + 19, _truncate(key, 24), anchor="end"))
        for k, (basis, cls) in enumerate(
            (("as_imported", "bar-imported"), ("current", "bar-reviewed"))
        ):
            figures = group[basis]
            accuracy = figures["accuracy"]
            bar = bar_area * (accuracy or 0)
            by = y + 3 + k * 14
            body.append(
                f'<rect x="{label_width}" y="{_num(by)}" width="{_num(bar)}" height="12" '
                f'rx="2" class="{cls}"><title>{escape(key)}, {basis.replace("_", " ")}: '
                f"{_percent(accuracy)} of {figures['n']}</title></rect>"
            )
            body.append(
                _text(
                    label_width + bar + 6,
                    by + 10,
                    f"{_percent(accuracy)} (n={figures['n']})",
                    cls="bar-value",
                )
            )
        lines.append(
            f"{key}: {_percent(group['as_imported']['accuracy'])} as imported, "
            f"{_percent(group['current']['accuracy'])} current"
        )
    if not groups:
        body.append(_text(label_width, top + 20, "No records match the filters.", cls="muted"))
    desc = "; ".join(lines) or "No data."
    return _svg(
        chart_id, width=width, height=height, title=title, desc=desc, body=body, css_class="bars"
    )


def progress_chart(
    chart_id: str, *, days: Sequence[dict[str, Any]], title: str, width: int = 640
) -> SafeString:
    """Reviews per day as bars, with the running total as a line on its own scale (right)."""
    height = 220
    left, right, top, bottom = 40, 52, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        f'class="axis"/>'
    ]
    if not days:
        body.append(
            _text(width / 2, top + plot_h / 2, "No reviews yet.", anchor="middle", cls="muted")
        )
        return _svg(
            chart_id,
            width=width,
            height=height,
            title=title,
            desc="No reviews yet.",
            body=body,
            css_class="progress",
        )
    peak = max(day["reviews"] + day["adjudications"] for day in days) or 1
    total = days[-1]["cumulative"] or 1
    slot = plot_w / len(days)
    bar_w = max(min(slot * 0.7, 36), 2)
    for tick in (0, peak):
        y = top + plot_h - plot_h * tick / peak
        body.append(_text(left - 6, y + 4, tick, anchor="end", cls="tick"))
    body.append(_text(left + plot_w + 6, top + 4, total, cls="tick line-ink"))
    label_every = max(1, round(len(days) / 8))
    points = []
    for i, day in enumerate(days):
        x = left + slot * i + (slot - bar_w) / 2
        reviews, adjudications = day["reviews"], day["adjudications"]
        h = plot_h * reviews / peak
        h_adj = plot_h * adjudications / peak
        when: date | str = day["day"]
        label = when.isoformat() if isinstance(when, date) else str(when)
        body.append(
            f'<g class="day"><title>{escape(label)}: {reviews} reviews, '
            f"{adjudications} adjudications, {day['cumulative']} reviews so far</title>"
            f'<rect x="{_num(x)}" y="{_num(top + plot_h - h)}" width="{_num(bar_w)}" '
            f'height="{_num(h)}" class="bar-reviewed"/>'
            f'<rect x="{_num(x)}" y="{_num(top + plot_h - h - h_adj)}" width="{_num(bar_w)}" '
            f'height="{_num(h_adj)}" class="bar-adjudicated"/></g>'
        )
        if i % label_every == 0 or i == len(days) - 1:
            body.append(
                _text(x + bar_w / 2, top + plot_h + 16, label[5:], anchor="middle", cls="tick")
            )
        points.append(
            (x + bar_w / 2, top + plot_h - plot_h * day["cumulative"] / total, day["cumulative"])
        )
    path = " ".join(f"{_num(px)},{_num(py)}" for px, py, _ in points)
    body.append(f'<polyline points="{path}" class="cumulative" fill="none"/>')
    for px, py, _ in points:
        body.append(f'<circle cx="{_num(px)}" cy="{_num(py)}" r="2.5" class="cumulative-dot"/>')
    body.append(
        f'<rect x="{left}" y="{height - 12}" width="10" height="10" class="bar-reviewed"/>'
        + _text(left + 14, height - 3, "reviews per day")
        + f'<rect x="{left + 124}" y="{height - 12}" width="10" height="10" '
        f'class="bar-adjudicated"/>'
        + _text(left + 138, height - 3, "adjudications")
        + f'<line x1="{left + 236}" y1="{height - 7}" x2="{left + 256}" y2="{height - 7}" '
        f'class="cumulative"/>' + _text(left + 260, height - 3, "running total (right scale)")
    )
    desc = (
        "; ".join(
            f"{day['day']}: {day['reviews']} reviews, {day['adjudications']} adjudications"
            for day in days
        )
        + f". {days[-1]['cumulative']} reviews in all."
    )
    return _svg(
        chart_id,
        width=width,
        height=height,
        title=title,
        desc=desc,
        body=body,
        css_class="progress",
    )


# Series colours of the ROC plot (presentation attributes, so no style is needed), then the
# dash patterns that tell the series apart without colour.
ROC_COLOURS = ("#2f5bd3", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0e7490", "#a16207")
ROC_DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4")
ROC_MARKERS = ("circle", "square", "diamond")


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    if kind == "square":
        return (
            f'<rect x="{_num(x - 4)}" y="{_num(y - 4)}" width="8" height="8" '
            f'fill="{colour}" stroke="#ffffff"/>'
        )
    if kind == "diamond":
        return (
            f'<polygon points="{_num(x)},{_num(y - 5)} {_num(x + 5)},{_num(y)} '
            f'{_num(x)},{_num(y + 5)} {_num(x - 5)},{_num(y)}" fill="{colour}" stroke="#ffffff"/>'
        )
    return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4.5" fill="{colour}" stroke="#ffffff"/>'


def roc_chart(
    chart_id: str,
    *,
    curves: Sequence[dict[str, Any]],
    points: Sequence[dict[str, Any]],
    title: str,
    size: int = 300,
) -> SafeString:
    """ROC curves (false positive rate across, true positive rate up) of score signals, and
    binary signals as single points, beside the chance diagonal. ``curves``: ``label``,
    ``points`` ([fpr, tpr] pairs) and ``value`` (the text beside its legend entry, e.g. its
    AUROC and n); ``points``: ``label``, ``fpr``, ``tpr`` and ``value``. The legend writes
    every value out, and ``<desc>`` repeats them."""
    left, top, bottom = 44, 12, 40
    legend_x = left + size + 24
    rows = len(curves) + len(points)
    longest = max((len(f"{s['label']}: {s['value']}") for s in [*curves, *points]), default=30)
    width = legend_x + 36 + longest * 7
    height = max(top + size + bottom, top + 18 * rows + 20)

    def x(fpr: float) -> float:
        return left + size * fpr

    def y(tpr: float) -> float:
        return top + size * (1 - tpr)

    body = []
    for tick in (0, 0.25, 0.5, 0.75, 1):
        body.append(
            f'<line x1="{_num(x(tick))}" y1="{top}" x2="{_num(x(tick))}" y2="{top + size}" '
            'class="gridline"/>'
            f'<line x1="{left}" y1="{_num(y(tick))}" x2="{left + size}" y2="{_num(y(tick))}" '
            'class="gridline"/>'
        )
        body.append(_text(x(tick), top + size + 14, f"{tick:g}", anchor="middle", cls="tick"))
        body.append(_text(left - 6, y(tick) + 4, f"{tick:g}", anchor="end", cls="tick"))
    body += [
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" class="axis"/>',
        f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" class="axis" '
        'stroke-dasharray="4 4"><title>chance (AUROC 0.5)</title></line>',
        _text(
            left + size / 2,
            top + size + 32,
            "false positive rate",
            anchor="middle",
            cls="axis-title",
        ),
        f'<text x="12" y="{_num(top + size / 2)}" text-anchor="middle" class="axis-title" '
        f'transform="rotate(-90 12 {_num(top + size / 2)})">true positive rate</text>',
    ]
    lines = []
    for i, curve in enumerate(curves):
        colour = ROC_COLOURS[i % len(ROC_COLOURS)]
        dash = ROC_DASHES[i % len(ROC_DASHES)]
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        path = " ".join(f"{_num(x(fpr))},{_num(y(tpr))}" for fpr, tpr in curve["points"])
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"'
            f"{dashes}><title>{escape(curve['label'])}: {escape(curve['value'])}</title>"
            "</polyline>"
        )
        ly = top + 18 * i + 8
        body.append(
            f'<line x1="{legend_x}" y1="{ly}" x2="{legend_x + 22}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2"{dashes}/>'
            + _text(legend_x + 28, ly + 4, f"{curve['label']}: {curve['value']}")
        )
        lines.append(f"{curve['label']}: {curve['value']}")
    for j, point in enumerate(points):
        colour = ROC_COLOURS[(len(curves) + j) % len(ROC_COLOURS)]
        kind = ROC_MARKERS[j % len(ROC_MARKERS)]
        body.append(
            f'<g class="roc-point"><title>{escape(point["label"])}: {escape(point["value"])}'
            f"</title>{_marker(kind, x(point['fpr']), y(point['tpr']), colour)}</g>"
        )
        ly = top + 18 * (len(curves) + j) + 8
        body.append(
            _marker(kind, legend_x + 11, ly, colour)
            + _text(legend_x + 28, ly + 4, f"{point['label']}: {point['value']}")
        )
        lines.append(f"{point['label']}: {point['value']}")
    if not rows:
        body.append(
            _text(
                left + size / 2,
                top + size / 2,
                "No signal has a defined figure yet.",
                anchor="middle",
                cls="muted",
            )
        )
    desc = "; ".join(lines) or "No signal has a defined figure yet."
    return _svg(
        chart_id, width=width, height=height, title=title, desc=desc, body=body, css_class="roc"
    )
