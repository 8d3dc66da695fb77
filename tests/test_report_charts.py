"""Chart geometry, number formatting and heat scaling against hand-computed values."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ckptbench.report.charts import box_plot, box_stats, nice_ticks, rank_intervals, variance_bars
from ckptbench.report.html import format_estimate, format_number, format_percent, sort_key, times_ten
from ckptbench.report.leaderboard import display_exponent
from ckptbench.report.matrices import heat


def test_box_stats_follow_tukey() -> None:
    values = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100, np.nan], dtype=float)
    stats = box_stats(values)
    assert stats is not None
    # numpy's linear percentiles of the 10 finite values: q1 = 3.25, median = 5.5, q3 = 7.75
    assert (stats.q1, stats.median, stats.q3) == (3.25, 5.5, 7.75)
    assert (stats.low_whisker, stats.high_whisker) == (1.0, 9.0)  # 100 is beyond q3 + 1.5 IQR = 14.5
    assert stats.outliers.tolist() == [100.0] and stats.n == 10 and stats.mean == pytest.approx(14.5)
    assert box_stats(np.array([np.nan])) is None


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0.13, 0.97) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = nice_ticks(-0.20394, -0.20369)  # a tight interval far from zero
    steps = np.diff(ticks)
    assert ticks[0] <= -0.20394 and ticks[-1] >= -0.20369 and 3 <= len(ticks) <= 8
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))
    assert nice_ticks(5.0, 5.0)[0] <= 5.0 <= nice_ticks(5.0, 5.0)[-1]
    assert nice_ticks(float("nan"), 1.0) == []


def test_charts_are_well_formed_svg() -> None:
    rng = np.random.default_rng(0)
    charts = [
        box_plot([("a <&>", rng.normal(size=50)), ("b", rng.normal(1, 1, 50)), ("none", np.array([]))], "s", True),
        variance_bars([("s", {"model": 0.2, "prompt": 0.5, "model_x_prompt": 0.1, "seed": 0.2})]),
        rank_intervals([("a", {"rank_ci95": [1, 2], "median_rank": 1.0, "p_rank1": 0.7}),
                        ("b", {"rank_ci95": [1, 2], "median_rank": 2.0, "p_rank1": 0.3})], 2, "s"),
    ]
    for svg in charts:
        assert svg is not None
        root = ET.fromstring(str(svg))
        assert root.tag.endswith("svg")
    assert "a &lt;&amp;&gt;" in str(charts[0])
    assert variance_bars([("s", {})]) is None and box_plot([("a", np.array([]))], "s", True) is None


def test_estimates_show_the_digits_their_interval_resolves() -> None:
    assert format_estimate(-0.20382040832, [-0.20394, -0.20369]) == "-0.20382"
    assert format_estimate(2.0213, [0.058, 4.10]) == "2.0"
    assert format_estimate(6.2512, [6.1, 6.4]) == "6.25"
    # Unnormalised style losses: human units, never "5.3e+09"; in a column shown ×10⁹, the interval's digits.
    assert format_estimate(5.3e9, [5.1e9, 5.5e9]) == "5.3×10⁹"
    assert format_estimate(5.3172e9, [5.1e9, 5.5e9], 9) == "5.32"
    assert format_number(7.1381e9, 4, 9) == "7.138" and format_number(2.5e-7) == "2.5×10⁻⁷"
    assert display_exponent([7.1e9, 1.2e10, None]) == 9 and display_exponent([12.0, 99_999.0]) == 0
    assert times_ten(9) == " ×10⁹" and times_ten(0) == ""
    assert format_estimate(None) == "–" and format_estimate(float("nan")) == "–"
    assert format_percent(0.4375) == "44%" and sort_key(None) == "" and sort_key(2) == "2.0"


def test_heat_is_oriented_by_direction() -> None:
    assert heat([1.0, 2.0, 3.0], True) == [0.0, 0.5, 1.0]
    assert heat([1.0, 2.0, 3.0, None], False) == [1.0, 0.5, 0.0, None]
    assert heat([4.0, 4.0], True) == [0.5, 0.5]
    assert heat([None, float("nan")], True) == [None, None]
