"""How often the report's range of totals held the actual total: the track record, checked out of time.

    python benchmarks/track_record.py --first 1997-07-01 --last 1998-04-01            # CDNOW, monthly
    python benchmarks/track_record.py --report-only ...                               # print again, materialize nothing

The customer report at a cutoff c says what its {H}-day spend forecast comes to if it is off by no more than the
backtests whose windows had ended by c (in the 365 days up to c): the forecast divided by (1 + each past error), with
the forecast itself included (``reports.logic.forecast_range``). The actual total lies in that range exactly when the
error of the scores made at c lies between the smallest past error (or 0) and the largest (or 0)
(``reports.logic.coverage``, which the report also uses to say how often its range held before its cutoff). This
benchmark materializes the backtests of the scores made every ``--every`` days back from ``--last`` to ``--first`` (the models of
s - H, then ``evaluation/backtest``; partitions already in the warehouse are kept, and a partition that cannot be
trained, for want of earlier data, is skipped with the reason), then for each scoring cutoff c with an earlier
backtest known at c, prints that range and the error at c, and how often the range held it.

The nightly schedule adds one backtest a night, so a deployment's report sees about 30 times as many backtests as
this benchmark's monthly ones; their windows overlap, and their errors lie between those of the monthly ones around
them, so the range is about as wide. The figures are read back from ``evaluation.backtest_metrics``.
"""

import argparse
from datetime import date, timedelta
from pathlib import Path

import duckdb

from customer_assets.cli import Runner
from customer_assets.jobs import INGEST_SELECTION
from customer_assets.reports.logic import TRACK_RECORD_DAYS, coverage
from customer_assets.settings import DATA_DIR, HORIZON_DAYS

TRAIN = ("features/calibration_transactions features/holdout_transactions features/customer_features models/churn "
         "models/spend models/ltv models/next_purchase")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first", default="1997-07-01", help="the first scoring cutoff to backtest")
    ap.add_argument("--last", default="1998-04-01", help="the last scoring cutoff to backtest (its window must be complete)")
    ap.add_argument("--every", type=int, default=30, help="days between scoring cutoffs (default 30)")
    ap.add_argument("--db", default=str(DATA_DIR / "benchmarks" / "accuracy.duckdb"),
                    help="the warehouse (default: the accuracy benchmark's, whose backtests it reuses)")
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="materialize nothing: read the backtests in --db")
    args = ap.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    # every --every days back from --last, down to --first
    scoring = sorted(last - timedelta(days=k * args.every) for k in range((last - first).days // args.every + 1))
    skipped = []
    if not args.report_only:
        runner = Runner(args.db, steps=(0 if args.skip_ingest else 1) + 2 * len(scoring))
        if not args.skip_ingest:
            runner.run(INGEST_SELECTION, label="ingest")
        with duckdb.connect(args.db, read_only=True) as conn:
            have = set(conn.execute("SELECT DISTINCT cutoff_date FROM evaluation.backtest_metrics").df()["cutoff_date"].dt.date
                       if conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'evaluation' "
                                       "AND table_name = 'backtest_metrics'").fetchone()[0] else [])
        for s in scoring:
            t = s - timedelta(days=HORIZON_DAYS)
            if t in have:
                runner.progress.total -= 1
                runner.progress.step(f"backtest of {t} (scored at {s}) already in the warehouse")
                continue
            try:
                runner.run(TRAIN, partition_key=t.isoformat(), label=f"models of partition {t}")
                runner.run("evaluation/backtest", partition_key=t.isoformat(), label=f"backtest at {s}")
            except SystemExit as exc:  # too little data before t to train: say so and go on
                runner.progress.total -= 1
                skipped.append(f"scored at {s}: {exc}")
    with duckdb.connect(args.db, read_only=True) as conn:
        errors = conn.execute(
            "SELECT eval_cutoff_date, value FROM evaluation.backtest_metrics WHERE task = 'spend' AND system = 'champion' "
            "AND metric = 'aggregate_error' AND eval_cutoff_date BETWEEN ? AND ? ORDER BY 1", [first, last]).df()
    for line in skipped:
        print(f"skipped: {line}")
    table = coverage(errors, HORIZON_DAYS)
    print(f"\nThe report's range of {HORIZON_DAYS}-day totals, checked out of time ({args.db}): at each scoring cutoff c, "
          f"the errors of the backtests known at c (windows ended by c, in the {TRACK_RECORD_DAYS} days up to it), "
          "0 included, and the error of the scores made at c\n")
    print("| scoring cutoff c | backtests known at c | range of their errors, 0 included | error at c | held |")
    print("| --- | --- | --- | --- | --- |")
    for r in table.itertuples():
        print(f"| {r.cutoff} | {r.known} | {r.low:+.1%} to {r.high:+.1%} | {r.error:+.1%} | {'yes' if r.held else 'no'} |")
    if len(table):
        missed = table[~table["held"]]
        by = [max(r.low - r.error, r.error - r.high) for r in missed.itertuples()]
        print(f"\nThe range held the actual total at {int(table['held'].sum())} of {len(table)} cutoffs"
              + ("" if not by else f"; where it did not, the error lay outside it by {by[0]:.1%}." if len(by) == 1
                 else f"; where it did not, the error lay outside it by {min(by):.1%} to {max(by):.1%}.") )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
