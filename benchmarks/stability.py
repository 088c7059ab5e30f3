"""Stability benchmark: how much the served forecasts move from one night to the next because of retraining.

    python benchmarks/stability.py                              # CDNOW, the 8 nights up to 1998-04-01: 3 to 4 minutes
    python benchmarks/stability.py --last 1998-04-01 --nights 8 --skip-ingest
    python benchmarks/stability.py --skip-ingest --task churn   # the churn model instead

The nightly schedule retrains the newest model partition t (data up to t + H) and scores the latest cutoff s = t + H.
Each night the spend champion is chosen again on validation, and where two families validate almost alike, a small
change in the data can switch between them. For each of ``--nights`` consecutive partitions t, this materializes
``models/spend`` (into its own warehouse, data/benchmarks/accuracy.duckdb unless ``--db``) and prints its family,
its validation R² and the runner-up's (the best other family or ensemble, before the BG/NBD blend), the blend weight
and the 90-day spend it serves at s = t + H, summed over the customers, with the change from the night before.
With ``--task churn`` it retrains ``models/churn`` instead and prints the mean calibrated P(purchase in 90 days) it
serves at s, with the change in points.
"""

import argparse
from datetime import date, timedelta
from pathlib import Path

import duckdb

from customer_assets.cli import Runner
from customer_assets.features import logic as F
from customer_assets.jobs import INGEST_SELECTION
from customer_assets.models import candidates as C
from customer_assets.models import logic as L
from customer_assets.settings import DATA_DIR, HORIZON_DAYS


def runner_up(selection: list[dict], champion: str, stack: tuple[int, int]) -> tuple[str, float] | None:
    """The best validation score among the other families and ensembles at the champion's stacking (the rows of
    blends and of spacing comparisons left out)."""
    rows = [r for r in selection if (r["stacked_cutoffs"], r["stack_step_days"]) == stack and r["family"] != champion
            and "blended" not in r["family"] and " against " not in r["family"] and r["validation_score"] is not None]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["validation_score"])
    return best["family"], float(best["validation_score"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--last", default="1998-04-01", help="the last model partition t (scores at t + H)")
    ap.add_argument("--nights", type=int, default=8)
    ap.add_argument("--db", default=str(DATA_DIR / "benchmarks" / "accuracy.duckdb"))
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--task", choices=("spend", "churn"), default="spend",
                    help="the model retrained each night: spend (the 90-day spend served) or churn (the mean P(purchase))")
    args = ap.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    runner = Runner(args.db, steps=args.nights + (0 if args.skip_ingest else 1))
    if not args.skip_ingest:
        runner.run(INGEST_SELECTION, label="ingest")
    last = date.fromisoformat(args.last)
    nights = [last - timedelta(days=k) for k in range(args.nights - 1, -1, -1)]
    task = args.task
    for t in nights:
        runner.run(f"models/{task}", partition_key=t.isoformat(), label=f"models/{task} {t}")
    score, blend, served = (("ROC-AUC", "", "served at t + H: mean P(purchase in 90 d)") if task == "churn"
                            else ("R²", " BG/NBD blend weight |", "served at t + H: expected 90-day spend"))
    print(f"\n## The {task} model retrained each night: partitions {nights[0]} to {nights[-1]}, each serving t + {HORIZON_DAYS} days\n")
    print(f"| partition t | champion | its validation {score} | runner-up | its validation {score} | margin |{blend} "
          f"{served} | change from the night before |")
    print("| --- " * (8 + (task == "spend")) + "|")
    before = None
    with duckdb.connect(args.db, read_only=True) as conn:
        _, end = F.data_bounds(conn)
        for t in nights:
            row = conn.execute(f"SELECT * FROM models.{task} WHERE cutoff_date = ?", [t]).df().iloc[0].to_dict()
            record = L.ModelRecord.from_row(row)
            params = record.params
            stack = (params["stacked_cutoffs"], params["stack_step_days"])
            family = params["family"]
            own = next(r["validation_score"] for r in params["selection"]
                       if r["family"] == family and (r["stacked_cutoffs"], r["stack_step_days"]) == stack)
            second = runner_up(params["selection"], family, stack)
            s = t + timedelta(days=HORIZON_DAYS)
            frame = C.add_bgnbd_features(F.compute_features(conn, s, HORIZON_DAYS, end, 1.0), HORIZON_DAYS)
            other = f"{second[0]} | {second[1]:.4f} | {own - second[1]:+.4f}" if second else "– | – | –"
            if task == "churn":
                value = float(L.predict_purchase(record, frame, HORIZON_DAYS).mean())
                change = "–" if before is None else f"{value - before:+.4f}"
                print(f"| {t} | {family} | {own:.4f} | {other} | {value:.4f} | {change} |")
            else:
                value = float(L.predict_spend(record, frame, HORIZON_DAYS).sum())
                change = "–" if before is None else f"{value / before - 1:+.1%}"
                weight = record.calibration.get("blend_bgnbd_weight", 0.0)
                print(f"| {t} | {family} | {own:.4f} | {other} | {weight} | {value:,.0f} | {change} |")
            before = value
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
