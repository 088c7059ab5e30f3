"""Erasing customers: a data subject's request to be forgotten (GDPR article 17, CCPA deletion).

``erase_customers`` removes the customers' rows from every warehouse table that holds them by id, in one
transaction, and adds a one-way hash of each id to ``quality.erased_customers``, so that every later cleaning
sets their rows aside as ``erased_customer`` without keeping any of their values. The ids themselves are not
stored. Aggregates (segment centroids, model parameters, evaluation metrics) are not per customer and stay as
they are; ``customer-assets forget`` then publishes the serving copy again and rewrites the HTML reports that
named the customers.

Rows are never lost, so the invariant raw = clean + rejected still holds: a clean row of an erased customer
becomes a rejected row with reason ``erased_customer`` and every value NULL, keeping only its ``source_row`` (and
file), which is how the retailer finds the rows to delete from its own export.

Dagster's run history is the other place a customer may show: the previews in the metadata of earlier runs (five
rows of a table, the top customers at risk). ``runs_showing`` finds those runs, and ``delete_runs`` deletes them.
New previews leave erased customers out (``not_erased``), even while the source export still holds their rows.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb

from customer_assets.settings import quote_ident, sql_literal
from customer_assets.storage import object_type, table_exists, transaction

REASON = "erased_customer"

ERASED_DDL = "CREATE TABLE IF NOT EXISTS quality.erased_customers (customer_key VARCHAR, erased_at TIMESTAMP)"
# a customer's key: the id as cleaning normalises it, hashed; the same expression in SQL and for a request
KEY_SQL = "sha256(upper(trim({})))"


def normalise(ids: list[str]) -> list[str]:
    """The ids as ``clean.transactions`` holds them, trimmed and upper-cased by DuckDB as the cleaning does (Python's
    own ``upper`` differs for some letters: it makes "ß" "SS", DuckDB the capital "ẞ"); a blank id is refused."""
    out = []
    con = duckdb.connect()
    for raw in ids:
        value = con.execute("SELECT upper(trim(?))", [str(raw)]).fetchone()[0]
        if not value:
            raise ValueError("An empty customer id cannot be erased: give the ids as they appear in clean.transactions")
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("No customer id was given")
    return out


def erased_ids_in(conn: duckdb.DuckDBPyConnection, table: str) -> str | None:
    """A temp table ``_erased_now`` of the normalised ids in ``table`` (a relation with a ``customer_id`` column)
    whose key is in ``quality.erased_customers``; its name, or None when nothing has been erased.

    Each distinct id is hashed once, so the cost grows with the customers, not the rows."""
    if not table_exists(conn, "quality", "erased_customers"):
        return None
    if conn.execute("SELECT count(*) FROM quality.erased_customers").fetchone()[0] == 0:
        return None
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _erased_now AS SELECT customer_id FROM "
        f"(SELECT DISTINCT upper(trim(customer_id)) AS customer_id FROM {table} WHERE customer_id IS NOT NULL) "
        f"WHERE {KEY_SQL.format('customer_id')} IN (SELECT customer_key FROM quality.erased_customers)"
    )
    return "_erased_now"


def not_erased(conn: duckdb.DuckDBPyConnection, column: str = "customer_id") -> str:
    """A SQL condition that holds for the rows whose ``column`` is not the id of an erased customer (and for every
    row when nothing has been erased): the filter of a preview that reads the source, which still holds their rows
    until the retailer deletes them."""
    if not table_exists(conn, "quality", "erased_customers"):
        return "TRUE"
    return f"({column} IS NULL OR {KEY_SQL.format(column)} NOT IN (SELECT customer_key FROM quality.erased_customers))"


# the events whose metadata may show a customer: the previews of materializations and the metadata of check results
SHOWN = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION,
         dg.DagsterEventType.ASSET_CHECK_EVALUATION}
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _cells(value: dg.MetadataValue) -> list[str]:
    """The texts a metadata value shows as a whole: each cell of a markdown table (the previews), or a text value."""
    if isinstance(value, dg.TextMetadataValue):
        return [value.value]
    if not isinstance(value, dg.MarkdownMetadataValue):
        return []
    cells = []
    for line in value.value.splitlines():
        if line.startswith("|"):
            cells += [c.replace("\\|", "|") for c in _CELL_SPLIT.split(line)[1:-1]]
    return cells


def _metadata(entry) -> tuple[str, dict]:
    """(what the event is about, its metadata) for an event of ``SHOWN``."""
    if entry.asset_materialization is not None:
        return entry.asset_materialization.asset_key.to_user_string(), entry.asset_materialization.metadata
    if entry.asset_observation is not None:
        return entry.asset_observation.asset_key.to_user_string(), entry.asset_observation.metadata
    evaluation = entry.dagster_event.event_specific_data
    return evaluation.asset_check_key.to_user_string(), evaluation.metadata


def runs_showing(instance: dg.DagsterInstance, ids: list[str]) -> dict[str, list[str]]:
    """The runs of ``instance`` whose metadata shows one of the customers ``ids``: run id -> the places, as
    "asset: metadata key" (a check's as "asset:check: key").

    A customer shows when a cell of a metadata table (the previews), or a text value, is their id, trimmed and
    upper-cased as the cleaning does (a preview of ``raw/transactions`` shows the ids as the export wrote them). A
    number elsewhere in a text, such as a row count, is not taken for an id.
    """
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE ids AS SELECT unnest(CAST(? AS VARCHAR[])) AS id", [normalise(ids)])
    found: dict[str, list[str]] = {}
    for run in instance.get_runs():
        places: dict[str, set[str]] = {}
        for entry in instance.all_logs(run.run_id, of_type=SHOWN):
            where, metadata = _metadata(entry)
            for key, value in metadata.items():
                for cell in _cells(value):
                    places.setdefault(cell, set()).add(f"{where}: {key}")
        if not places:
            continue
        hits = con.execute("SELECT c FROM unnest(CAST(? AS VARCHAR[])) t(c) WHERE upper(trim(c)) IN (SELECT id FROM ids)",
                           [list(places)]).fetchall()
        if hits:
            found[run.run_id] = sorted(set().union(*(places[c] for (c,) in hits)))
    return found


def delete_runs(instance: dg.DagsterInstance, run_ids: list[str]) -> tuple[list[str], list[str]]:
    """Delete the finished runs of ``run_ids`` from ``instance``: the runs, their event logs (and so their metadata)
    and the logs their steps' output was captured in. A run still queued or in progress is left alone: deleting its
    records would break it. Returns (the runs deleted, the runs left)."""
    deleted, left = [], []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            left.append(run_id)
            continue
        instance.delete_run(run_id)
        instance.compute_log_manager.delete_logs(prefix=[run_id])
        deleted.append(run_id)
    return deleted, left


def locate(conn: duckdb.DuckDBPyConnection, ids: list[str], serving: Path | None = None,
           reports: Path | None = None) -> dict[str, int]:
    """Where the customers ``ids`` still are: place -> rows (or files). Nothing is changed.

    * every warehouse table with a ``customer_id`` column, by rows whose id, trimmed and upper-cased, is one of
      theirs, and ``raw.transactions`` when it is a view over the source export (what the export still holds);
    * ``quality.erased_customers``: how many of them have been erased;
    * the Parquet file of each of those tables in the serving copy in ``serving``, by rows;
    * the HTML reports in ``reports`` that show one of them in a table cell, by files.

    Places where none is found are left out. The run history is ``runs_showing``'s.
    """
    customers = normalise(ids)
    conn.execute("CREATE OR REPLACE TEMP TABLE _locate AS SELECT unnest(CAST(? AS VARCHAR[])) AS customer_id", [customers])
    found: dict[str, int] = {}
    try:
        tables = conn.execute(  # tables, and the view over the export (the other views read clean.transactions)
            "SELECT c.table_schema, c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_catalog, table_schema, table_name) WHERE c.column_name = 'customer_id' "
            "AND c.table_catalog = current_database() AND (t.table_type = 'BASE TABLE' OR "
            "(c.table_schema, c.table_name) = ('raw', 'transactions')) ORDER BY 1, 2").fetchall()
        relations = []  # (place, the relation to count in); a table's serving copy follows it
        for schema, table in tables:
            relations.append((f"{schema}.{table}", f"{quote_ident(schema)}.{quote_ident(table)}"))
            copy = serving / f"{schema}.{table}.parquet" if serving else None
            if copy is not None and copy.is_file():
                relations.append((f"serving copy: {copy.name}", f"read_parquet({sql_literal(str(copy))})"))
        for place, relation in relations:
            n = conn.execute(f"SELECT count(*) FROM {relation} WHERE upper(trim(customer_id)) IN "
                             "(SELECT customer_id FROM _locate)").fetchone()[0]
            if n:
                found[place] = n
        if table_exists(conn, "quality", "erased_customers"):
            n = conn.execute(f"SELECT count(DISTINCT customer_id) FROM _locate WHERE {KEY_SQL.format('customer_id')} "
                             "IN (SELECT customer_key FROM quality.erased_customers)").fetchone()[0]
            if n:
                found["quality.erased_customers"] = n
    finally:
        conn.execute("DROP TABLE IF EXISTS _locate")
    if shown := reports_showing(reports, customers):
        found["reports"] = len(shown)
    return found


def reports_showing(folder: Path | None, customers: list[str]) -> list[Path]:
    """The HTML reports in ``folder`` that show one of the (normalised) ``customers``: a customer id is a table cell
    of a report."""
    reports = sorted(folder.glob("customer_report_*.html")) if folder and folder.is_dir() else []
    return [r for r in reports if any(f">{html.escape(c)}<" in r.read_text(encoding="utf-8") for c in customers)]


def erase_customers(conn: duckdb.DuckDBPyConnection, ids: list[str], horizon_days: int,
                    dry_run: bool = False) -> dict[str, int]:
    """Erase the customers ``ids`` from the warehouse, in one transaction; returns the rows changed per table.
    With ``dry_run`` the transaction is rolled back: the counts are what it would change, and nothing is changed.

    * ``clean.transactions``: their rows move to ``quality.rejected_transactions`` as ``erased_customer``, with
      every value NULL (raw = clean + rejected still holds);
    * ``quality.rejected_transactions``: their rejected rows become ``erased_customer`` rows the same way;
    * ``raw.transactions``, when it is a stored copy: every field of their rows is set to NULL (a view reads the
      source file, which only the retailer can change);
    * ``features.customer_features``, ``segments.customer_segments``, ``scores.scored_customers``: their rows are
      deleted, in every partition;
    * ``features.partition_inputs``: their rows' share is subtracted, so no stored partition looks out of date.

    Each id's hash is added to ``quality.erased_customers`` (once), which later cleanings read.
    """
    from customer_assets.features.logic import inputs_sql
    from customer_assets.ingest.logic import current_load, files_of_rows

    customers = normalise(ids)
    counts: dict[str, int] = {}
    now = datetime.now(UTC).replace(tzinfo=None)
    conn.execute("CREATE OR REPLACE TEMP TABLE _erase AS SELECT unnest(CAST(? AS VARCHAR[])) AS customer_id", [customers])
    with transaction(conn, temp_tables=("_erase", "_erased_rows", "_files"), commit=not dry_run):
        conn.execute("CREATE SCHEMA IF NOT EXISTS quality")
        conn.execute(ERASED_DDL)
        counts["quality.erased_customers"] = conn.execute(
            f"INSERT INTO quality.erased_customers SELECT DISTINCT {KEY_SQL.format('customer_id')}, ?::TIMESTAMP "
            f"FROM _erase WHERE {KEY_SQL.format('customer_id')} NOT IN (SELECT customer_key FROM quality.erased_customers)",
            [now]).fetchone()[0]
        if object_type(conn, "clean", "transactions") == "BASE TABLE":
            conn.execute("CREATE OR REPLACE TEMP TABLE _erased_rows AS SELECT * FROM clean.transactions "
                         "WHERE customer_id IN (SELECT customer_id FROM _erase)")
            if table_exists(conn, "features", "partition_inputs"):
                # their rows' share of what each stored features partition records it was computed from
                cutoffs = [r[0] for r in conn.execute("SELECT cutoff_date FROM features.partition_inputs").fetchall()]
                conn.execute(
                    "UPDATE features.partition_inputs p SET history_rows = p.history_rows - d.history_rows, "
                    "history_digest = p.history_digest - d.history_digest, "
                    "window_rows = CASE WHEN p.window_rows IS NOT NULL THEN p.window_rows - d.window_rows END, "
                    "window_digest = CASE WHEN p.window_digest IS NOT NULL THEN p.window_digest - d.window_digest END "
                    f"FROM ({inputs_sql('_erased_rows')}) d WHERE p.cutoff_date = d.cutoff_date", [cutoffs, horizon_days])
            if table_exists(conn, "quality", "rejected_transactions"):
                for column, kind in (("source_file", "VARCHAR"), ("file_row", "BIGINT")):  # tables of older versions
                    conn.execute(f"ALTER TABLE quality.rejected_transactions ADD COLUMN IF NOT EXISTS {column} {kind}")
                file_of, file_join, file_params = files_of_rows(conn, current_load(conn))
                conn.execute(
                    "INSERT INTO quality.rejected_transactions (load_id, source_row, reject_reason, source_file, file_row) "
                    f"SELECT c.load_id, c.source_row, ?, {file_of} FROM _erased_rows c {file_join}", [REASON, *file_params])
            counts["clean.transactions"] = conn.execute(
                "DELETE FROM clean.transactions WHERE customer_id IN (SELECT customer_id FROM _erase)").fetchone()[0]
            conn.execute("DROP TABLE _erased_rows")
        if table_exists(conn, "quality", "rejected_transactions"):
            counts["quality.rejected_transactions"] = conn.execute(
                "UPDATE quality.rejected_transactions SET reject_reason = ?, customer_id = NULL, txn_date = NULL, "
                "amount = NULL, quantity = NULL, unit_price = NULL, order_id = NULL, product_id = NULL "
                "WHERE upper(trim(customer_id)) IN (SELECT customer_id FROM _erase)", [REASON]).fetchone()[0]
        if object_type(conn, "raw", "transactions") == "BASE TABLE":
            counts["raw.transactions"] = conn.execute(
                'UPDATE raw.transactions SET customer_id = NULL, "date" = NULL, amount = NULL, quantity = NULL, '
                "unit_price = NULL, order_id = NULL, product_id = NULL "
                "WHERE upper(trim(customer_id)) IN (SELECT customer_id FROM _erase)").fetchone()[0]
        for schema, table in (("features", "customer_features"), ("segments", "customer_segments"),
                              ("scores", "scored_customers")):
            if table_exists(conn, schema, table):
                counts[f"{schema}.{table}"] = conn.execute(
                    f"DELETE FROM {schema}.{table} WHERE customer_id IN (SELECT customer_id FROM _erase)").fetchone()[0]
    return counts
