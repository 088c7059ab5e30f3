"""Backtest metrics at scale: the seconds `evaluation/backtest` spends on its metrics and bootstrap intervals.

    python benchmarks/backtest_metrics.py --rows 1000000
    python benchmarks/backtest_metrics.py --rows 1000000 --max-rows 1000000 --bootstrap 20   # every row per resample

It builds synthetic predictions for every system the backtest compares (purchase, spend, next purchase, one-time
buyers) and times ``evaluation.logic.metric_rows`` on them, which computes every metric and the paired bootstrap
intervals. Above ``--max-rows`` rows each resample draws that many rows and the interval is rescaled
(``metrics.paired_bootstrap``); ``--max-rows`` equal to ``--rows`` times the bootstrap over every row.
"""

import argparse
import sys
import time

import numpy as np
import pandas as pd

from customer_assets.evaluation import logic as E
from customer_assets.evaluation import metrics as M

PURCHASE_SYSTEMS = ("champion", "bgnbd", "neg_recency", "frequency", "seed_xgboost")
SPEND_SYSTEMS = ("champion", "bgnbd_gamma_gamma", "last_h_spend", "seed_xgboost")


def synthetic_predictions(rows: int, seed: int = 0) -> pd.DataFrame:
    """Labels with a 15% purchase rate and scores that carry some signal, in ``metric_rows``'s layout."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.15).astype(float)
    pred = pd.DataFrame({"one_time_buyer": rng.random(rows) < 0.5, "label_purchase": y,
                         "label_spend": y * rng.gamma(2.0, 20.0, rows),
                         "label_days": np.where(y > 0, rng.integers(1, 91, rows), np.nan)})
    for s in PURCHASE_SYSTEMS:
        pred[f"purchase:{s}"] = np.clip(0.2 * y + 0.8 * rng.random(rows), 0.001, 0.999)
    for s in SPEND_SYSTEMS:
        pred[f"spend:{s}"] = 10 * y + 30 * rng.random(rows)
    pred["next:champion"] = 90 * rng.random(rows)
    pred["next:recency"] = 300 * rng.random(rows)
    return pred


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="customers scored")
    ap.add_argument("--bootstrap", type=int, default=200, help="resamples (the backtest's default: 200)")
    ap.add_argument("--max-rows", type=int, default=M.BOOTSTRAP_MAX_ROWS, help="rows drawn per resample, at most")
    args = ap.parse_args(argv)
    pred = synthetic_predictions(args.rows)
    t0 = time.perf_counter()
    rows = E.metric_rows(pred, 90, n_boot=args.bootstrap, max_rows=args.max_rows)
    seconds = time.perf_counter() - t0
    intervals = sum(1 for r in rows if r.get("diff_ci_low") is not None)
    print("| customers | resamples | rows per resample | metric rows | intervals | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {args.rows:,} | {args.bootstrap} | {min(args.rows, args.max_rows):,} | {len(rows)} | {intervals} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
