"""Cutoff splits and customer features, as DuckDB SQL over ``clean.transactions``.

Every function takes the cutoff date explicitly. The time rules (DESIGN.md):

* history = transactions dated on or before the cutoff ``c``;
* label window = dated after ``c`` and on or before ``c + H``;
* a customer belongs to ``c`` when their first purchase is on or before ``c``;
* labels exist only when ``c + H`` is on or before the last date the data covers.

A *purchase day* is a day with at least one non-return line; its amount is the day's
net spend (returns on that day included). Frequency follows BG/NBD: the number of
repeat purchase days.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd

from customer_assets.ingest.logic import daily_sql
from customer_assets.storage import replace_partition, table_columns, table_exists

WINDOWS = (30, 90, 180, 365)

# Model inputs: every column a model may use. All are known at the cutoff.
FEATURE_COLUMNS = [
    "recency_days",
    "frequency",
    "purchase_days",
    "n_transactions",
    "monetary_total",
    "monetary_mean",
    "repeat_monetary_mean",
    "first_purchase_amount",
    "max_day_spend",
    "tenure_days",
    "t_x_days",
    "mean_gap_days",
    "last_gap_days",
    *[f"spend_{w}d" for w in WINDOWS],
    *[f"purchases_{w}d" for w in WINDOWS],
    "momentum_ratio",
    "return_amount",
    "return_count",
]
LABEL_COLUMNS = ["label_spend", "label_purchase", "label_purchase_days", "label_days_to_next_purchase"]


class IncompleteLabelsError(ValueError):
    """Raised when labels are asked for a cutoff whose window is not complete."""


def data_bounds(conn: duckdb.DuckDBPyConnection) -> tuple[date, date]:
    """First and last transaction dates in ``clean.transactions``."""
    row = conn.execute("SELECT min(txn_date), max(txn_date) FROM clean.transactions").fetchone()
    if row is None or row[0] is None:
        raise ValueError("clean.transactions is empty: materialize raw/transactions and clean/transactions first")
    return row[0], row[1]


def labels_complete(cutoff: date, horizon_days: int, data_end: date) -> bool:
    """Labels at ``cutoff`` are complete when ``cutoff + H`` is on or before the data's last date."""
    return cutoff + timedelta(days=horizon_days) <= data_end


def require_complete_labels(cutoff: date, horizon_days: int, data_end: date, what: str) -> None:
    if not labels_complete(cutoff, horizon_days, data_end):
        raise IncompleteLabelsError(
            f"{what} needs complete labels at cutoff {cutoff}, but its label window ({cutoff} + {horizon_days} days "
            f"= {cutoff + timedelta(days=horizon_days)}) ends after the last date the data covers ({data_end}). "
            f"Use a cutoff on or before {data_end - timedelta(days=horizon_days)}."
        )


# What a stored features partition was computed from: the count and a hash sum (ROW_HASH, every field a feature
# reads) of the clean rows in its history and, when its labels were complete, in its label window. A reload that
# adds late rows, corrects or deletes some changes them, so a reader can tell that the partition is out of date.
def inputs_sql(table: str = "clean.transactions") -> str:
    """The same figures as the rows of ``table`` give them now, for a list of cutoffs (parameters: the cutoffs and
    H), from the per-day sums of ``daily_sql``. Of clean.transactions: what a partition would record now; of some of
    its rows: their share of each record."""
    return f"""
WITH daily AS ({daily_sql(table)}), c AS (SELECT unnest(CAST(? AS DATE[])) AS cutoff_date)
SELECT c.cutoff_date,
       coalesce(sum(d.rows) FILTER (WHERE d.txn_date <= c.cutoff_date), 0)::BIGINT AS history_rows,
       coalesce(sum(d.digest) FILTER (WHERE d.txn_date <= c.cutoff_date), 0)::HUGEINT AS history_digest,
       coalesce(sum(d.rows) FILTER (WHERE d.txn_date > c.cutoff_date), 0)::BIGINT AS window_rows,
       coalesce(sum(d.digest) FILTER (WHERE d.txn_date > c.cutoff_date), 0)::HUGEINT AS window_digest
FROM c LEFT JOIN daily d ON d.txn_date <= c.cutoff_date + CAST(? AS INTEGER)
GROUP BY c.cutoff_date
"""


CURRENT_INPUTS_SQL = inputs_sql()
RECORD_INPUTS_SQL = f"""
SELECT i.cutoff_date, (SELECT any_value(load_id) FROM clean.transactions) AS load_id, i.history_rows, i.history_digest,
       CASE WHEN CAST(? AS BOOLEAN) THEN i.window_rows END AS window_rows,
       CASE WHEN CAST(? AS BOOLEAN) THEN i.window_digest END AS window_digest, now()::TIMESTAMP AS written_at,
       CAST(? AS BIGINT) AS horizon_days
FROM ({CURRENT_INPUTS_SQL}) i
"""


def record_inputs(conn: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int, labelled: bool) -> None:
    """Record in ``features.partition_inputs`` what the features partition at ``cutoff`` was just computed from."""
    replace_partition(conn, "features", "partition_inputs", cutoff, RECORD_INPUTS_SQL,
                      [labelled, labelled, horizon_days, [cutoff], horizon_days])


UNRECORDED = "nothing records which transactions it was computed from (it was written by an earlier version)"


def inputs_changed(conn: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int, labels: bool) -> str | None:
    """Why the stored features partition at ``cutoff`` no longer matches ``clean.transactions``, or None if it does.

    ``labels``: the reader uses the labels, so a change in the label window counts too. A partition written
    before its inputs were recorded (by an earlier version) gives a reason too: nothing says what it came from.
    """
    stored = None
    if table_exists(conn, "features", "partition_inputs"):
        recorded_h = "horizon_days" in table_columns(conn, "features", "partition_inputs")  # not before 2026-11-24
        stored = conn.execute(
            "SELECT history_rows, history_digest, window_rows, window_digest, load_id, "
            f"{'horizon_days' if recorded_h else 'NULL'} FROM features.partition_inputs WHERE cutoff_date = ?",
            [cutoff]).fetchone()
    if stored is None:
        return UNRECORDED
    if labels and stored[2] is not None and stored[5] is not None and stored[5] != horizon_days:
        return (f"its labels were computed for a {stored[5]}-day window, and the horizon is now {horizon_days} days "
                "(CUSTOMER_ASSETS_HORIZON_DAYS)")
    _, rows, digest, window_rows, window_digest = conn.execute(CURRENT_INPUTS_SQL, [[cutoff], horizon_days]).fetchone()
    if (stored[0], stored[1]) != (rows, digest):
        return (f"the transactions dated on or before {cutoff} changed since it was computed from load {stored[4]} "
                f"({stored[0]:,} rows then, {rows:,} now)")
    if labels and stored[2] is not None and (stored[2], stored[3]) != (window_rows, window_digest):
        return (f"the transactions of its label window ({cutoff} + {horizon_days} days) changed since it was computed "
                f"from load {stored[4]} ({stored[2]:,} rows then, {window_rows:,} now)")
    return None


STALE_PARTITIONS_SQL = f"""
WITH now AS ({CURRENT_INPUTS_SQL}),
stored AS (SELECT * FROM features.partition_inputs
           WHERE cutoff_date IN (SELECT DISTINCT cutoff_date FROM features.customer_features))
SELECT s.cutoff_date, s.load_id,
       s.history_rows <> n.history_rows OR s.history_digest <> n.history_digest AS history_changed,
       coalesce(s.window_rows <> n.window_rows OR s.window_digest <> n.window_digest, false) AS window_changed,
       s.history_rows AS history_rows_then, n.history_rows AS history_rows_now,
       s.window_rows AS window_rows_then, n.window_rows AS window_rows_now
FROM stored s JOIN now n USING (cutoff_date)
WHERE history_changed OR window_changed
ORDER BY s.cutoff_date
"""


def stale_partitions(conn: duckdb.DuckDBPyConnection, horizon_days: int) -> tuple[pd.DataFrame, int]:
    """The stored features partitions whose history or label window changed since they were computed (one row each,
    with the row counts then and now), and how many stored partitions have no record of their inputs."""
    if not table_exists(conn, "features", "customer_features"):
        return pd.DataFrame(), 0
    recorded = table_exists(conn, "features", "partition_inputs")
    unrecorded = conn.execute(
        "SELECT count(DISTINCT cutoff_date) FROM features.customer_features"
        + (" WHERE cutoff_date NOT IN (SELECT cutoff_date FROM features.partition_inputs)" if recorded else "")
    ).fetchone()[0]
    if not recorded:
        return pd.DataFrame(), int(unrecorded)
    cutoffs = [r[0] for r in conn.execute("SELECT cutoff_date FROM features.partition_inputs").fetchall()]
    return conn.execute(STALE_PARTITIONS_SQL, [cutoffs, horizon_days]).df(), int(unrecorded)


def stored_labelled_rows(conn: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int, reader: str, warn=None) -> int:
    """Rows stored in ``features.customer_features`` at ``cutoff`` if they were written with complete labels from
    the transactions as they are now, else 0.

    A partition written before its label window ended (for example by the rescore job, on the day after
    its cutoff) holds NULL labels, and one computed before a reload changed its transactions (late rows,
    corrections; see ``inputs_changed``) holds old figures. Readers that
    need labels get 0 for either, recompute it by the same SQL instead of training or evaluating on it, and
    ``warn`` says so, naming ``reader``.
    """
    if not table_exists(conn, "features", "customer_features"):
        return 0
    rows, labelled = conn.execute(
        "SELECT count(*), coalesce(bool_and(labels_complete), false) FROM features.customer_features WHERE cutoff_date = ?",
        [cutoff],
    ).fetchone()
    if rows and not labelled:
        if warn is not None:
            warn(f"features/customer_features {cutoff} was written before its label window ended (labels NULL): "
                 f"{reader} recomputes it from clean.transactions. Materialize that partition again to refresh it.")
        return 0
    why = inputs_changed(conn, cutoff, horizon_days, labels=True) if rows else None
    if why:
        if warn is not None:
            warn(f"features/customer_features {cutoff} is out of date: {why}. {reader} recomputes it from "
                 "clean.transactions. Materialize that partition again to refresh it.")
        return 0
    return int(rows)


WINDOW_SQL = """
WITH p AS (SELECT CAST(? AS DATE) AS c, CAST(? AS INTEGER) AS h, CAST(? AS DATE) AS data_start, CAST(? AS DATE) AS data_end)
SELECT p.c AS cutoff_date, p.h AS horizon_days, p.data_start AS history_start, p.c AS history_end,
       CAST(p.c + 1 AS DATE) AS holdout_start, CAST(p.c + p.h AS DATE) AS holdout_end, p.data_end AS data_end_date,
       (p.c + p.h <= p.data_end) AS labels_complete,
       (SELECT count(*) FROM clean.transactions t WHERE t.txn_date <= p.c) AS history_rows,
       (SELECT count(*) FROM clean.transactions t WHERE t.txn_date > p.c AND t.txn_date <= p.c + p.h) AS holdout_rows,
       (SELECT count(DISTINCT customer_id) FROM clean.transactions t WHERE t.txn_date <= p.c AND NOT t.is_return) AS customers
FROM p
"""

# Views over clean.transactions joined to the narrow per-partition window rows. A
# partition stores one row (its dates and counts) instead of copying the history,
# which for a daily backfill would multiply the transactions by the number of cutoffs.
CALIBRATION_VIEW = """
CREATE OR REPLACE VIEW features.calibration_transactions AS
SELECT w.cutoff_date, t.customer_id, t.txn_date, t.amount, t.quantity, t.is_return, t.order_id, t.product_id
FROM features.cutoff_windows w JOIN clean.transactions t ON t.txn_date <= w.cutoff_date
"""
HOLDOUT_VIEW = """
CREATE OR REPLACE VIEW features.holdout_transactions AS
SELECT w.cutoff_date, w.labels_complete, t.customer_id, t.txn_date, t.amount, t.quantity, t.is_return, t.order_id, t.product_id
FROM features.cutoff_windows w JOIN clean.transactions t
  ON t.txn_date > w.cutoff_date AND t.txn_date <= w.holdout_end
"""


def _window_cols(kind: str) -> str:
    if kind == "spend":
        return ",\n".join(
            f"coalesce(sum(day_amount) FILTER (WHERE txn_date > p.c - {w}), 0) AS spend_{w}d" for w in WINDOWS
        )
    return ",\n".join(f"count(*) FILTER (WHERE txn_date > p.c - {w}) AS purchases_{w}d" for w in WINDOWS)


FEATURE_SQL = f"""
WITH p AS (SELECT CAST(? AS DATE) AS c, CAST(? AS INTEGER) AS h, CAST(? AS DATE) AS data_end),
days AS (
    -- money is summed as DECIMAL: exact, so the result does not depend on the order in which
    -- DuckDB's threads add the rows up (a DOUBLE sum differs in the last bits from run to run)
    SELECT t.customer_id, t.txn_date, sum(t.amount::DECIMAL(38, 6)) AS day_amount,
           bool_or(NOT t.is_return) AS is_purchase,
           count(*) FILTER (WHERE NOT t.is_return) AS n_lines,
           coalesce(sum(t.amount::DECIMAL(38, 6)) FILTER (WHERE t.is_return), 0) AS day_return_amount,
           count(*) FILTER (WHERE t.is_return) AS n_returns
    FROM clean.transactions t, p WHERE t.txn_date <= p.c
    GROUP BY t.customer_id, t.txn_date
),
pagg AS (
    -- purchase days only; the last gap from the two latest dates (no window sort), the repeat spend as the
    -- total minus the first day's (exact: DECIMAL)
    SELECT customer_id, min(txn_date) AS first_date, max(txn_date) AS last_date, count(*) AS purchase_days,
           max(txn_date, 2) AS last_two_dates, min_by(day_amount, txn_date) AS first_amount,
           sum(day_amount) AS purchase_amount, max(day_amount) AS max_day_spend,
           {_window_cols("count")}
    FROM days, p WHERE is_purchase GROUP BY customer_id
),
dagg AS (
    SELECT customer_id, sum(day_amount) AS monetary_total, sum(n_lines) AS n_transactions,
           sum(day_return_amount) AS return_amount, sum(n_returns) AS return_count,
           {_window_cols("spend")}
    FROM days, p GROUP BY customer_id
),
lab AS (
    SELECT t.customer_id, sum(t.amount::DECIMAL(38, 6)) AS label_spend,
           min(t.txn_date) FILTER (WHERE NOT t.is_return) AS next_date,
           count(DISTINCT t.txn_date) FILTER (WHERE NOT t.is_return) AS label_purchase_days
    FROM clean.transactions t, p WHERE t.txn_date > p.c AND t.txn_date <= p.c + p.h
    GROUP BY t.customer_id
)
SELECT p.c AS cutoff_date, a.customer_id,
       (p.c - a.last_date)::INTEGER AS recency_days,
       (a.purchase_days - 1)::INTEGER AS frequency,
       a.purchase_days::INTEGER AS purchase_days,
       d.n_transactions::INTEGER AS n_transactions,
       d.monetary_total::DOUBLE AS monetary_total,
       (d.monetary_total / a.purchase_days)::DOUBLE AS monetary_mean,
       coalesce(CASE WHEN a.purchase_days > 1 THEN (a.purchase_amount - a.first_amount) END
                / nullif(a.purchase_days - 1, 0), 0)::DOUBLE AS repeat_monetary_mean,
       a.first_amount::DOUBLE AS first_purchase_amount,
       a.max_day_spend::DOUBLE AS max_day_spend,
       (p.c - a.first_date)::INTEGER AS tenure_days,
       (a.last_date - a.first_date)::INTEGER AS t_x_days,
       CASE WHEN a.purchase_days > 1 THEN (a.last_date - a.first_date) / (a.purchase_days - 1) END::DOUBLE AS mean_gap_days,
       (a.last_two_dates[1] - a.last_two_dates[2])::DOUBLE AS last_gap_days,
       {", ".join(f"d.spend_{w}d::DOUBLE AS spend_{w}d" for w in WINDOWS)},
       {", ".join(f"a.purchases_{w}d::INTEGER AS purchases_{w}d" for w in WINDOWS)},
       ((a.purchases_90d / 90.0) / (a.purchase_days / ((p.c - a.first_date) + 1.0)))::DOUBLE AS momentum_ratio,
       d.return_amount::DOUBLE AS return_amount,
       d.return_count::INTEGER AS return_count,
       a.first_date AS first_purchase_date,
       a.last_date AS last_purchase_date,
       (p.c + p.h <= p.data_end) AS labels_complete,
       CASE WHEN p.c + p.h <= p.data_end THEN coalesce(l.label_spend, 0) END::DOUBLE AS label_spend,
       CASE WHEN p.c + p.h <= p.data_end THEN coalesce(l.label_purchase_days, 0) > 0 END AS label_purchase,
       CASE WHEN p.c + p.h <= p.data_end THEN coalesce(l.label_purchase_days, 0) END::INTEGER AS label_purchase_days,
       CASE WHEN p.c + p.h <= p.data_end THEN (l.next_date - p.c) END::INTEGER AS label_days_to_next_purchase
FROM pagg a JOIN dagg d USING (customer_id) CROSS JOIN p LEFT JOIN lab l USING (customer_id)
ORDER BY a.customer_id
"""


def feature_params(cutoff: date, horizon_days: int, data_end: date) -> list:
    return [cutoff, horizon_days, data_end]


SAMPLE_FILTER = "(hash(customer_id) % 1000000) < ?"


def customer_count(conn: duckdb.DuckDBPyConnection, cutoff: date) -> int:
    """Rows the feature SQL gives at ``cutoff``: customers with a purchase (not only returns) on or before it.

    One distinct count, the same as ``customers`` in ``features.cutoff_windows``, instead of the feature SQL itself.
    """
    return int(conn.execute("SELECT count(DISTINCT customer_id) FROM clean.transactions WHERE txn_date <= ? AND NOT is_return",
                            [cutoff]).fetchone()[0])


def compute_features(
    conn: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int, data_end: date, sample_fraction: float = 1.0
) -> pd.DataFrame:
    """Features (and labels, when complete) of every customer belonging to ``cutoff``.

    Parameters
    ----------
    conn : duckdb connection holding ``clean.transactions``.
    cutoff : date
        History is every transaction dated on or before it.
    horizon_days : int
        Label window length H.
    data_end : date
        Last date the data covers; labels are NULL unless ``cutoff + H <= data_end``.
    sample_fraction : float
        Keep this share of customers, chosen by a hash of the id (the same customers at every cutoff).
    """
    if sample_fraction >= 1.0:
        return conn.execute(FEATURE_SQL, feature_params(cutoff, horizon_days, data_end)).df()
    return conn.execute(
        f"SELECT * FROM ({FEATURE_SQL}) WHERE {SAMPLE_FILTER} ORDER BY customer_id",
        [*feature_params(cutoff, horizon_days, data_end), int(sample_fraction * 1_000_000)],
    ).df()
