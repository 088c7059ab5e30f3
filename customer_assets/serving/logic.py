"""The read-only serving copy that analysts query.

DuckDB allows one writer, and a reader's open session on the warehouse blocks the
nightly run. So after each scoring run the user-facing tables are exported to Parquet
under the serving folder, each file written to a temporary name and swapped in with an
atomic ``os.replace``: a reader sees either the old file or the new one, never half of
one, and never holds a lock the pipeline needs. ``serving.duckdb`` in the same folder
holds only views over those files, under the warehouse's own schema and table names,
so the same SQL works on both. It is created once and rewritten only if no one has it
open.
"""

import os
from pathlib import Path

import duckdb

from customer_assets.settings import sql_literal
from customer_assets.storage import table_exists

PUBLISHED = [
    ("scores", "scored_customers"),
    ("scores", "feature_drift"),  # how the customers scored differ from those the models learned from (no customer ids)
    ("quality", "rejected_transactions"),  # what the cleaning set aside, and why (README query 6)
    ("segments", "customer_segments"),
    ("segments", "segment_centroids"),
    ("evaluation", "backtest_metrics"),
    ("evaluation", "reliability"),
    ("evaluation", "spend_deciles"),
    ("evaluation", "segment_metrics"),
    ("evaluation", "ltv_metrics"),
]


def publish(conn: duckdb.DuckDBPyConnection, serving_dir: Path) -> dict[str, int]:
    """Export the published tables to Parquet atomically; return rows per table."""
    serving_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for schema, table in PUBLISHED:
        if not table_exists(conn, schema, table):
            continue
        final = serving_dir / f"{schema}.{table}.parquet"
        tmp = serving_dir / f".{schema}.{table}.parquet.tmp-{os.getpid()}"
        conn.execute(f"COPY (SELECT * FROM {schema}.{table}) TO {sql_literal(str(tmp))} (FORMAT parquet)")
        os.replace(tmp, final)
        counts[f"{schema}.{table}"] = conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
    return counts


def write_views(serving_dir: Path) -> str:
    """(Re)create serving.duckdb's views; skipped, with the reason returned, if a reader has it open."""
    db = serving_dir / "serving.duckdb"
    try:
        conn = duckdb.connect(str(db))
    except duckdb.IOException as exc:
        return f"serving.duckdb is open elsewhere, views left as they were ({str(exc).splitlines()[0][:120]})"
    try:
        for schema, table in PUBLISHED:
            path = serving_dir / f"{schema}.{table}.parquet"
            if path.exists():
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                conn.execute(f"CREATE OR REPLACE VIEW {schema}.{table} AS SELECT * FROM read_parquet({sql_literal(str(path))})")
    finally:
        conn.close()
    return "views written"
