"""``customer-assets`` command line: materialize everything needed to score a cutoff."""

import argparse
import os
import sys
import time
from datetime import date, timedelta

import dagster as dg

from customer_assets.settings import ENV_DB, HORIZON_DAYS


def _instance() -> dg.DagsterInstance:
    """The DAGSTER_HOME instance when one is set (runs then show in the UI), else a throwaway one."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


class Progress:
    """A one-line-per-step progress display for the terminal."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream, self.t0 = total, 0, stream, time.time()

    def step(self, label: str) -> None:
        self.done += 1
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"[{bar}] {self.done}/{self.total} {label} ({time.time() - self.t0:.0f}s)\n")
        self.stream.flush()


def materialize_cutoff(cutoff: str | None, database: str | None = None, skip_ingest: bool = False,
                       instance: dg.DagsterInstance | None = None, log_level: str = "WARNING") -> str:
    """Ingest (unless skipped), train the models of ``cutoff - H`` and score ``cutoff``.

    Returns the scored cutoff. ``cutoff=None`` means the last date in the data.
    """
    import duckdb as ddb

    from customer_assets.definitions import ASSETS, CHECKS, build_definitions
    from customer_assets.jobs import INGEST_SELECTION, SCORE_SELECTION, TRAIN_SELECTION

    defs = build_definitions(database)
    resources = {"duckdb": defs.resources["duckdb"]}
    db_path = resources["duckdb"].database
    instance = instance or _instance()
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    all_defs = [*ASSETS, *CHECKS]
    progress = Progress(3 if not skip_ingest else 2)

    def run(selection, partition_key=None, label=""):
        result = dg.materialize(all_defs, selection=selection, partition_key=partition_key, resources=resources,
                                instance=instance, run_config=run_config, raise_on_error=False)
        if not result.success:
            failures = [e for e in result.all_events if e.is_failure]
            msg = failures[0].event_specific_data.error.message if failures and failures[0].event_specific_data else "see the run log"
            raise SystemExit(f"customer-assets: {label} failed: {msg.strip()}")
        progress.step(label)

    if not skip_ingest:
        run(INGEST_SELECTION, label="ingested and cleaned the transactions")
    if cutoff is None:
        with ddb.connect(db_path, read_only=True) as conn:
            cutoff = str(conn.execute("SELECT max(txn_date) FROM clean.transactions").fetchone()[0])
    try:
        c = date.fromisoformat(cutoff)
    except ValueError:
        raise SystemExit(f"customer-assets: --cutoff must be YYYY-MM-DD, got {cutoff!r}") from None
    train = (c - timedelta(days=HORIZON_DAYS)).isoformat()
    run(TRAIN_SELECTION, partition_key=train, label=f"trained the models of partition {train}")
    run(SCORE_SELECTION, partition_key=cutoff, label=f"scored customers at {cutoff}")
    return cutoff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="customer-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("materialize", help="materialize everything needed to score at a cutoff, in order")
    m.add_argument("--cutoff", help="scoring cutoff YYYY-MM-DD (default: the last date in the data)")
    m.add_argument("--db", help=f"warehouse file (default: ${ENV_DB} or data/warehouse.duckdb)")
    m.add_argument("--skip-ingest", action="store_true", help="reuse the clean transactions already in the warehouse")
    m.add_argument("--log-level", default="WARNING", help="Dagster console log level (default WARNING)")
    args = parser.parse_args(argv)
    if args.command == "materialize":
        cutoff = materialize_cutoff(args.cutoff, args.db, args.skip_ingest, log_level=args.log_level)
        from customer_assets.resources import warehouse_resource

        db = args.db or warehouse_resource().database
        print(f"\nWarehouse: {db}")
        print("Tables: raw.transactions, clean.transactions, quality.rejected_transactions, features.customer_features,")
        print("        segments.customer_segments, models.{churn,spend,ltv,next_purchase}, scores.scored_customers")
        print("Try this query in `make sql` (DuckDB CLI, read-only) or any DuckDB client:")
        print(f"  SELECT segment, count(*) AS customers, round(avg(churn_probability), 3) AS mean_churn, "
              f"round(sum(predicted_ltv)) AS expected_ltv FROM scores.scored_customers WHERE cutoff_date = '{cutoff}' "
              "GROUP BY segment ORDER BY expected_ltv DESC;")
    return 0


if __name__ == "__main__":
    sys.exit(main())
