from __future__ import annotations

from rich.console import Console

from ckptbench.report.terminal import leaderboard_table


def _render(results: dict) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(leaderboard_table(results))
    return console.export_text()


def test_terminal_leaderboard_orders_by_first_scorer_direction_and_shows_intervals() -> None:
    results = {
        "benchmark": {"name": "t"},
        "spec": {"scorers": {"use": ["loss", "aesthetic"]}},
        "scorers": {"aesthetic": {"higher_is_better": True}, "loss": {"higher_is_better": False}},
        "checkpoints": [
            {"name": "high-loss", "status": "ok", "images": {"ok": 4, "planned": 4},
             "scores": {"loss": {"mean": 2.0, "ci95": [1.5, 2.5]}, "aesthetic": {"mean": 6.0, "ci95": [5.9, 6.1]}}},
            {"name": "low-loss", "status": "ok", "images": {"ok": 4, "planned": 4},
             "scores": {"loss": {"mean": 1.0, "ci95": [0.99991, 1.00009]}, "aesthetic": {"mean": 5.0, "ci95": [4, 6]}}},
            {"name": "broken", "status": "failed", "images": {"ok": 0, "planned": 4}, "scores": {}},
        ],
    }
    text = _render(results)
    assert text.index("low-loss") < text.index("high-loss") < text.index("broken")
    assert "loss ↓" in text and "aesthetic ↑" in text
    assert "1.00000 [0.99991, 1.00009]" in text  # enough decimals for the interval to show
    assert "2.000 [1.500, 2.500]" in text
    assert "(failed)" in text and "0/4" in text
