"""Time the full analysis of GhostReview's published results (issue 5: under 5 s on the project machine).

    PYTHONPATH=src python benchmarks/analysis.py [GHOSTREVIEW_RELEASE] [--repeat 3]

Imports the release into a temporary store (timed apart), then times `build_results` — the tidy table
from the store, the per-checkpoint summaries and the whole suite analysis (cluster-t intervals, the joint
cluster bootstrap with 1,000 resamples for the rank distributions, GhostReview standard score, variance
decomposition, every paired comparison with per-pair Wilcoxon and Holm, confidence sets for the best and
the verdicts, Kendall's τ, baseline-anchored and composite scores, style and LoRA matrices with NoTM).
As a yardstick measured in the same run, it also times GhostReview's own published aggregation (plain
means, within-prompt std and pool z-scores with pandas) on the same table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from ckptbench.analysis.joint import joint_weights
from ckptbench.analysis.results import build_results
from ckptbench.imports.ghostreview import import_results
from ckptbench.store import Store

DEFAULT_RELEASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ghostreview"


def ghostreview_aggregation(frame: pd.DataFrame) -> pd.DataFrame:
    """What GhostReview publishes: mean, mean within-prompt std and mean pool z-score per checkpoint."""
    rows = frame.dropna(subset=["value"])
    grouped = rows.groupby(["suite", "scorer", "case_id"])["value"]
    z = (rows["value"] - grouped.transform("mean")) / grouped.transform(lambda x: x.std(ddof=0))
    within = rows.groupby(["suite", "scorer", "checkpoint", "case_id"])["value"].std(ddof=1)
    return pd.DataFrame({
        "mean": rows.groupby(["suite", "scorer", "checkpoint"])["value"].mean(),
        "std": within.groupby(["suite", "scorer", "checkpoint"]).mean(),
        "standard": z.groupby([rows["suite"], rows["scorer"], rows["checkpoint"]]).mean(),
    })


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("release", nargs="?", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder))
        started = time.perf_counter()
        import_results(store, args.release, baseline="dreamshaper_7.safetensors", bootstrap=1000)
        imported = time.perf_counter() - started
        full, yardstick = [], []
        for _ in range(args.repeat):
            joint_weights.cache_clear()  # each repeat draws its bootstrap afresh
            started = time.perf_counter()
            results, frame = build_results(store)
            full.append(time.perf_counter() - started)
            started = time.perf_counter()
            ghostreview_aggregation(frame)
            yardstick.append(time.perf_counter() - started)
        store.close()
    quality = frame[frame["suite"] == "quality"]
    print(f"data: {quality['checkpoint'].nunique()} checkpoints, "
          f"{len(quality.drop_duplicates(['checkpoint', 'case_id', 'seed']))} quality images × "
          f"{quality['scorer'].nunique()} scorers, {len(frame)} score cells in all suites; "
          f"bootstrap resamples: {results['analysis']['settings']['bootstrap_resamples']}")
    print(f"import into the store: {imported:.2f} s")
    print(f"full analysis (build_results): median {statistics.median(full):.2f} s over {args.repeat} runs "
          f"(min {min(full):.2f} s, max {max(full):.2f} s); target < 5 s")
    print(f"GhostReview's published aggregation on the same table: median {statistics.median(yardstick):.3f} s; "
          f"ratio {statistics.median(full) / statistics.median(yardstick):.1f}×")


if __name__ == "__main__":
    main()
