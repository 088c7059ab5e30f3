"""Run-history benchmark: how long ``customer-assets forget`` takes to search Dagster's run history.

    python benchmarks/run_history.py --runs 300 --ids 1,10000

It writes a small synthetic export (``--customers``, one year), materializes the ingest assets ``--runs`` times
into a Dagster instance in a temporary folder (each run has the previews and check results a nightly ingest has),
then times ``customer_assets.erasure.runs_showing`` for:

* a customer of the raw preview (the first row of the export), who shows in every run;
* requests of ``--ids`` ids that are not customers, so that no run shows them.

It prints one line per search with the runs found, the runs and events searched, and the seconds.
"""

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb

from customer_assets.definitions import ASSETS, CHECKS
from customer_assets.erasure import runs_showing
from customer_assets.generate import COLUMNS, generate
from customer_assets.resources import Warehouse

INGEST = [dg.AssetKey(["raw", "transactions"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--ids", default="1,10000", help="request sizes of absent ids, comma-separated")
    parser.add_argument("--customers", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "export.csv"
        generate(args.customers, 1.0, 0, str(source))
        first = duckdb.sql(f"SELECT CustomerID FROM read_csv('{source}', all_varchar = true) LIMIT 1").fetchone()[0]
        (folder / "home").mkdir()
        config = {"ops": {"raw__transactions": {"config": {"path": str(source), "columns": COLUMNS}}},
                  "loggers": {"console": {"config": {"log_level": "ERROR"}}}}
        with dg.instance_for_test(temp_dir=str(folder / "home")) as instance:
            t0 = time.perf_counter()
            for _ in range(args.runs):
                dg.materialize([*ASSETS, *CHECKS], selection=dg.AssetSelection.assets(*INGEST).downstream(depth=1),
                               resources={"duckdb": Warehouse(database=str(folder / "w.duckdb"))},
                               run_config=config, instance=instance)
            made = time.perf_counter() - t0
            events = sum(len(instance.all_logs(r.run_id)) for r in instance.get_runs())
            print(f"{args.runs} ingest runs ({events:,} events) made in {made:.1f} s")
            requests = [("a customer of every raw preview", [first])]
            requests += [(f"{n:,} absent id(s)", [f"ABSENT-{i}" for i in range(n)]) for n in map(int, args.ids.split(","))]
            for label, ids in requests:
                t0 = time.perf_counter()
                found = runs_showing(instance, ids)
                print(f"{label}: {len(found)} of {args.runs} runs show them; searched in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
