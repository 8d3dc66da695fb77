"""Static SVG charts for the report, written by hand.

Three chart types are needed (box plots, 100% stacked bars, dot-and-interval rows); each is a few dozen
lines of SVG, so the report takes no plotting dependency (matplotlib would add ~40 MB and a font cache
for the same three pictures) and the charts stay crisp, small, searchable text inside the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from markupsafe import Markup, escape

WIDTH = 720
LABEL_WIDTH = 170
RIGHT_MARGIN = 90
ROW_HEIGHT = 24
AXIS_HEIGHT = 34
PLOT_LEFT = LABEL_WIDTH + 10
PLOT_RIGHT = WIDTH - RIGHT_MARGIN

COMPONENT_COLOURS = {"model": "#4e79a7", "prompt": "#f28e2b", "model_x_prompt": "#e15759", "seed": "#76b7b2"}
COMPONENT_LABELS = {"model": "model", "prompt": "prompt", "model_x_prompt": "model × prompt", "seed": "seed"}


@dataclass(frozen=True)
class BoxStats:
    low_whisker: float
    q1: float
    median: float
    q3: float
    high_whisker: float
    mean: float
    outliers: np.ndarray
    n: int


def box_stats(values: np.ndarray) -> BoxStats | None:
    """Tukey box: quartiles, whiskers at the furthest data within 1.5 IQR, the rest drawn as outliers."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    reach = 1.5 * (q3 - q1)
    inside = values[(values >= q1 - reach) & (values <= q3 + reach)]
    outliers = values[(values < q1 - reach) | (values > q3 + reach)]
    return BoxStats(float(inside.min()), float(q1), float(median), float(q3), float(inside.max()),
                    float(values.mean()), outliers, int(values.size))


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        pad = abs(low) * 0.05 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    count = math.ceil((high - start) / step - 1e-9)  # the first tick at or above ``high`` ends the axis
    return [round(start + i * step, 12) for i in range(count + 1)]


def _scale(low: float, high: float) -> tuple[float, float]:
    span = high - low or 1.0
    return PLOT_LEFT, (PLOT_RIGHT - PLOT_LEFT) / span


def _svg(height: int, body: list[str], label: str) -> Markup:
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
                  f'height="{height}" role="img" aria-label="{escape(label)}" class="chart">'
                  + "".join(body) + "</svg>")


def _axis(ticks: Sequence[float], x_of: object, top: int, bottom: int, caption: str) -> list[str]:
    assert callable(x_of)
    parts = [f'<line x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{bottom}" y2="{bottom}" class="axis"/>']
    for tick in ticks:
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 13}" class="tick">{escape(_tick_label(tick))}</text>')
    parts.append(f'<text x="{(PLOT_LEFT + PLOT_RIGHT) / 2:.1f}" y="{bottom + 28}" class="caption">'
                 f'{escape(caption)}</text>')
    return parts


def _tick_label(value: float) -> str:
    return f"{value:.4g}"


def _row_label(y: float, text: str) -> str:
    short = text if len(text) <= 26 else text[:25] + "…"
    return f'<text x="{LABEL_WIDTH}" y="{y:.1f}" class="label"><title>{escape(text)}</title>{escape(short)}</text>'


def box_plot(groups: Sequence[tuple[str, np.ndarray]], scorer: str, higher_is_better: bool | None) -> Markup | None:
    """One horizontal box per checkpoint: the distribution of a scorer's per-image values."""
    stats = [(label, box_stats(values)) for label, values in groups]
    drawn = [s for _, s in stats if s is not None]
    if not drawn:
        return None
    low = min(min(s.low_whisker, *s.outliers) if s.outliers.size else s.low_whisker for s in drawn)
    high = max(max(s.high_whisker, *s.outliers) if s.outliers.size else s.high_whisker for s in drawn)
    ticks = nice_ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    origin, unit = _scale(low, high)

    def x_of(value: float) -> float:
        return origin + (value - low) * unit

    height = len(stats) * ROW_HEIGHT + AXIS_HEIGHT + 6
    bottom = len(stats) * ROW_HEIGHT + 4
    direction = {True: "higher is better", False: "lower is better"}.get(higher_is_better, "")  # type: ignore[arg-type]
    body = _axis(ticks, x_of, 0, bottom, f"{scorer} per image ({direction})" if direction else f"{scorer} per image")
    for index, (label, s) in enumerate(stats):
        middle = index * ROW_HEIGHT + ROW_HEIGHT / 2 + 2
        body.append(_row_label(middle + 4, label))
        if s is None:
            body.append(f'<text x="{PLOT_LEFT}" y="{middle + 4:.1f}" class="note">no values</text>')
            continue
        top = middle - 7
        body.append(f'<g class="box"><title>{escape(label)}: n={s.n}, median {s.median:.4g}, IQR '
                    f'{s.q1:.4g}–{s.q3:.4g}, mean {s.mean:.4g}</title>'
                    f'<line x1="{x_of(s.low_whisker):.1f}" x2="{x_of(s.q1):.1f}" y1="{middle}" y2="{middle}"/>'
                    f'<line x1="{x_of(s.q3):.1f}" x2="{x_of(s.high_whisker):.1f}" y1="{middle}" y2="{middle}"/>'
                    f'<rect x="{x_of(s.q1):.1f}" y="{top:.1f}" width="{max(x_of(s.q3) - x_of(s.q1), 1):.1f}" '
                    f'height="14"/>'
                    f'<line x1="{x_of(s.median):.1f}" x2="{x_of(s.median):.1f}" y1="{top:.1f}" y2="{top + 14:.1f}" '
                    f'class="median"/>'
                    f'<circle cx="{x_of(s.mean):.1f}" cy="{middle}" r="2.5" class="mean"/></g>')
        for value in s.outliers[:200]:  # a few hundred dots already say "many outliers"
            body.append(f'<circle cx="{x_of(float(value)):.1f}" cy="{middle}" r="1.6" class="outlier"/>')
        body.append(f'<text x="{PLOT_RIGHT + 6}" y="{middle + 4:.1f}" class="note">n={s.n}</text>')
    return _svg(height, body, f"distribution of {scorer} per checkpoint")


def variance_bars(rows: Sequence[tuple[str, Mapping[str, float | None]]]) -> Markup | None:
    """One 100% bar per scorer: the share of variance from model, prompt, model × prompt and seed."""
    usable = [(label, shares) for label, shares in rows if shares and any(shares.get(c) for c in COMPONENT_COLOURS)]
    if not usable:
        return None
    legend_height = 22
    height = len(usable) * ROW_HEIGHT + legend_height + 8
    body = []
    x = PLOT_LEFT
    for component, colour in COMPONENT_COLOURS.items():
        body.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>'
                    f'<text x="{x + 16}" y="14" class="legend">{escape(COMPONENT_LABELS[component])}</text>')
        x += 130
    for index, (label, shares) in enumerate(usable):
        top = legend_height + index * ROW_HEIGHT + 4
        body.append(_row_label(top + 14, label))
        left = float(PLOT_LEFT)
        for component, colour in COMPONENT_COLOURS.items():
            share = float(shares.get(component) or 0.0)
            width = share * (PLOT_RIGHT - PLOT_LEFT)
            if width <= 0:
                continue
            body.append(f'<rect x="{left:.1f}" y="{top}" width="{width:.1f}" height="18" fill="{colour}">'
                        f'<title>{escape(label)}: {escape(COMPONENT_LABELS[component])} {share:.1%}</title></rect>')
            if width > 34:
                body.append(f'<text x="{left + width / 2:.1f}" y="{top + 13}" class="share">{share:.0%}</text>')
            left += width
    return _svg(height, body, "variance decomposition per scorer")


def rank_intervals(rows: Sequence[tuple[str, Mapping[str, object] | None]], count: int, label: str) -> Markup | None:
    """Bootstrap rank distribution: median rank (dot), 95% rank interval (bar), P(rank 1) (text)."""
    usable = [(name, entry) for name, entry in rows if entry and entry.get("rank_ci95")]
    if not usable or count < 1:
        return None
    low, high = 0.5, count + 0.5
    origin, unit = _scale(low, high)

    def x_of(value: float) -> float:
        return origin + (value - low) * unit

    bottom = len(usable) * ROW_HEIGHT + 4
    height = bottom + AXIS_HEIGHT + 2
    body = _axis(list(range(1, count + 1)), x_of, 0, bottom, f"rank by {label} (1 = best) over bootstrap resamples")
    for index, (name, entry) in enumerate(usable):
        middle = index * ROW_HEIGHT + ROW_HEIGHT / 2 + 2
        interval = entry["rank_ci95"]
        assert isinstance(interval, Sequence)
        first, last = float(interval[0]), float(interval[1])
        median = float(entry.get("median_rank") or first)  # type: ignore[arg-type]
        p_first = float(entry.get("p_rank1") or 0.0)  # type: ignore[arg-type]
        body.append(_row_label(middle + 4, name))
        body.append(f'<g class="rank"><title>{escape(name)}: median rank {median:g}, 95% of resamples rank it '
                    f'{first:g}–{last:g}, P(rank 1) = {p_first:.0%}</title>'
                    f'<line x1="{x_of(first) - 6:.1f}" x2="{x_of(last) + 6:.1f}" y1="{middle}" y2="{middle}"/>'
                    f'<circle cx="{x_of(median):.1f}" cy="{middle}" r="5"/></g>')
        body.append(f'<text x="{PLOT_RIGHT + 6}" y="{middle + 4:.1f}" class="note">P(#1) {p_first:.0%}</text>')
    return _svg(height, body, f"bootstrap rank distribution by {label}")
