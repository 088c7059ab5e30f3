"""Warehouse writes: atomic, idempotent partition replacement and small helpers.

Every partitioned table has a ``cutoff_date DATE`` column. Writing a partition is
``DELETE ... WHERE cutoff_date = ?`` and ``INSERT ... BY NAME`` in one transaction,
so a partition is either fully the old rows or fully the new rows, and columns are
matched by name, never by position.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from datetime import date
from typing import Any

import duckdb
import pandas as pd
from dagster import get_dagster_logger

from customer_assets.settings import checked_ident, quote_ident, sql_literal

SCHEMAS = ("raw", "clean", "quality", "features", "segments", "models", "scores", "evaluation")


def ensure_schemas(conn: duckdb.DuckDBPyConnection) -> None:
    for schema in SCHEMAS:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


def object_type(conn: duckdb.DuckDBPyConnection, schema: str, name: str) -> str | None:
    """``'BASE TABLE'``, ``'VIEW'`` (and so on) for ``schema.name``, or None when it does not exist."""
    row = conn.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchone()
    return row[0] if row else None


def table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists, as a table or a view."""
    return object_type(conn, schema, table) is not None


def table_columns(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    """The column names of ``schema.table`` (empty when it does not exist): a table written by an earlier version may
    lack the columns added since."""
    return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND "
                                       "table_name = ?", [schema, table]).fetchall()}


def replace_partition(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    cutoff: date,
    select_sql: str,
    params: list[Any] | None = None,
    ddl: str | None = None,
) -> int:
    """Replace the rows of ``cutoff`` in ``schema.table`` with the rows of ``select_sql``.

    The SELECT must produce a ``cutoff_date`` column; it is overwritten with ``cutoff``. The table
    is created from the SELECT's shape on first write (or from ``ddl``). Delete and
    insert run in one transaction: on any error the old partition stays as it was.

    Returns
    -------
    int
        Rows written for the partition.
    """
    fq = f"{checked_ident(schema)}.{checked_ident(table)}"
    params = params or []
    conn.execute("BEGIN TRANSACTION")
    try:
        ensure_schemas(conn)
        if not table_exists(conn, schema, table):
            if ddl:
                conn.execute(ddl)
            else:
                conn.execute(f"CREATE TABLE {fq} AS SELECT * FROM ({select_sql}) WHERE false", params)
        else:
            add_missing_columns(conn, schema, table, select_sql, params)
        conn.execute(f"DELETE FROM {fq} WHERE cutoff_date = ?", [cutoff])
        # Force the partition's own date, whatever the SELECT said, so a write can never
        # touch another partition.
        conn.execute(
            f"INSERT INTO {fq} BY NAME SELECT * REPLACE (CAST(? AS DATE) AS cutoff_date) FROM ({select_sql})",
            [cutoff, *params],
        )
        n = conn.execute(f"SELECT count(*) FROM {fq} WHERE cutoff_date = ?", [cutoff]).fetchone()[0]
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(n)


def add_missing_columns(conn: duckdb.DuckDBPyConnection, schema: str, table: str, select_sql: str,
                        params: list[Any]) -> list[str]:
    """Add to ``schema.table`` the columns that ``select_sql`` produces and the table lacks, and say so in the log.

    A table written by an earlier version of the project lacks the columns added since; the partitions it holds keep
    NULL there, and a new write fills them. (Columns the table has and the SELECT lacks stay NULL for the new rows,
    as INSERT BY NAME does.) Returns the columns added, as "name TYPE".
    """
    fq = f"{checked_ident(schema)}.{checked_ident(table)}"
    have = table_columns(conn, schema, table)
    added = []
    for name, type_, *_ in conn.execute(f"DESCRIBE SELECT * FROM ({select_sql})", params).fetchall():
        if name not in have:
            conn.execute(f"ALTER TABLE {fq} ADD COLUMN {quote_ident(name)} {type_}")
            added.append(f"{name} {type_}")
    if added:
        get_dagster_logger().warning(
            f"{schema}.{table} was written by an earlier version: added the column(s) {', '.join(added)}. The partitions "
            "written before hold NULL there until they are materialized again.")
    return added


def prune_partitions(conn: duckdb.DuckDBPyConnection, schema: str, table: str, keep: int, current: date) -> list[date]:
    """Delete the partitions of ``schema.table`` that are neither among the ``keep`` newest cutoffs nor ``current``.

    ``keep = 0`` keeps everything. ``current`` (the partition just written) always stays, so that the same
    run's downstream steps can read it even when it is older than the newest ``keep``. One transaction.

    Returns
    -------
    list of date
        The cutoffs deleted, oldest first.
    """
    if keep <= 0 or not table_exists(conn, schema, table):
        return []
    fq = f"{checked_ident(schema)}.{checked_ident(table)}"
    cutoffs = [r[0] for r in conn.execute(f"SELECT DISTINCT cutoff_date FROM {fq} ORDER BY cutoff_date DESC").fetchall()]
    drop = sorted(c for c in cutoffs[keep:] if c != current)
    if not drop:
        return []
    with transaction(conn):
        conn.execute(f"DELETE FROM {fq} WHERE cutoff_date IN (SELECT unnest(?::DATE[]))", [drop])
    return drop


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection, temp_tables: tuple[str, ...] = (), commit: bool = True):
    """One transaction: committed when the block ends (rolled back instead when ``commit`` is false, as for a dry
    run), rolled back on any error. The ``temp_tables`` the block used are dropped either way."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
        conn.execute("COMMIT" if commit else "ROLLBACK")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        for name in temp_tables:
            conn.execute(f"DROP TABLE IF EXISTS {checked_ident(name)}")


def replace_partition_df(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, cutoff: date, frame: pd.DataFrame,
    columns: list[tuple[str, str, str]] | None = None,
) -> int:
    """Replace a partition with the rows of a pandas frame (matched by column name).

    ``columns`` (name, DuckDB type, description), where given, create the table on first write with those types,
    so that a first write of no rows does not guess them from an empty frame.
    """
    if "cutoff_date" not in frame.columns:
        raise ValueError(f"{schema}.{table}: the frame to write has no cutoff_date column")
    ddl = None
    if columns:
        ddl = (f"CREATE TABLE {checked_ident(schema)}.{checked_ident(table)} ("
               + ", ".join(f"{quote_ident(name)} {type_}" for name, type_, *_ in columns) + ")")
    conn.register("_partition_frame", frame)
    try:
        return replace_partition(conn, schema, table, cutoff, "SELECT * FROM _partition_frame", ddl=ddl)
    finally:
        conn.unregister("_partition_frame")


def markdown_preview(frame: pd.DataFrame, n: int = 5) -> str:
    """A small markdown table of the first rows (no extra dependency)."""
    head = frame.head(n)
    if head.empty:
        return "_no rows_"

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:,.4g}"
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in head.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def query_df(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    return conn.execute(sql, params or []).df()


def duplicated_customers(conn: duckdb.DuckDBPyConnection, table: str, where: str = "", params: list | None = None) -> int:
    """How many (cutoff_date, customer_id) pairs of ``table`` (``schema.name``) have more than one row; ``where``
    (with ``params``) narrows it, e.g. to one partition."""
    return int(conn.execute(
        f"SELECT count(*) FROM (SELECT cutoff_date, customer_id FROM {table} {where} GROUP BY ALL HAVING count(*) > 1)",
        params or []).fetchone()[0])


def copy_to_fresh_file(conn: duckdb.DuckDBPyConnection, database: str) -> str:
    """Copy every schema, table, view and macro of the warehouse open on ``conn`` into a new file next to it,
    ``<database>.rewrite``, and return its path; swap it in with ``os.replace`` once ``conn`` is closed.

    DuckDB does not overwrite what a DELETE or UPDATE removed: the old values stay in the file's free blocks until
    they are reused, where anyone with the file can read them. A new file holds only what the tables hold now. The
    row count of every table is compared between the two before the path is returned; a difference is an error and
    the new file is removed, so nothing is lost.
    """
    if database.startswith("md:") or database == ":memory:":
        raise ValueError(f"{database} is not a file that can be rewritten")
    fresh = database + ".rewrite"

    def remove_fresh():
        for leftover in (fresh, fresh + ".wal"):
            if os.path.exists(leftover):
                os.remove(leftover)

    remove_fresh()  # of a rewrite that was interrupted
    name = conn.execute("SELECT current_database()").fetchone()[0]
    tables = conn.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                          "WHERE database_name = current_database() ORDER BY ALL").fetchall()
    conn.execute("CHECKPOINT")
    conn.execute(f"ATTACH {sql_literal(fresh)} AS _rewrite")
    try:
        conn.execute(f"COPY FROM DATABASE {quote_ident(name)} TO _rewrite")
        for schema, table in tables:
            ident = f"{quote_ident(schema)}.{quote_ident(table)}"
            old, new = (conn.execute(f"SELECT count(*) FROM {db}.{ident}").fetchone()[0]
                        for db in (quote_ident(name), "_rewrite"))
            if old != new:
                raise ValueError(f"the rewritten {schema}.{table} has {new:,} rows, not {old:,}; the warehouse was "
                                 "left as it was")
        conn.execute("DETACH _rewrite")
    except BaseException:
        conn.execute("DETACH DATABASE IF EXISTS _rewrite")
        remove_fresh()
        raise
    return fresh
