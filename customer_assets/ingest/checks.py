"""Checks on the cleaned data: blocking gates, and warnings that stop nothing."""


import time
from datetime import UTC, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.erasure import REASON as ERASED
from customer_assets.features import logic as features_logic
from customer_assets.ingest import logic
from customer_assets.ingest.assets import clean_materializations
from customer_assets.settings import HORIZON_DAYS, max_stall_days
from customer_assets.storage import markdown_preview, table_exists


@dg.asset_check(asset=dg.AssetKey(["clean", "transactions"]), blocking=True, pool="duckdb",
                description="Every raw row is either clean or rejected: raw = clean + rejected, for the current load "
                            "(raw rows as counted by the load in raw.loads).")
def rows_reconcile(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        load = logic.current_load(conn)
        raw = load.rows
        clean, rejected = conn.execute(
            "SELECT (SELECT count(*) FROM clean.transactions), (SELECT count(*) FROM quality.rejected_transactions)"
        ).fetchone()
        loads = conn.execute(
            "SELECT count(DISTINCT load_id) FROM (SELECT load_id FROM clean.transactions UNION SELECT load_id FROM quality.rejected_transactions "
            "UNION SELECT ?)", [load.load_id]
        ).fetchone()[0]
    ok = raw == clean + rejected and loads <= 1
    return dg.AssetCheckResult(
        passed=bool(ok),
        metadata={"raw_rows": raw, "clean_rows": clean, "rejected_rows": rejected, "lost_rows": raw - clean - rejected, "load_ids": loads},
    )


@dg.asset_check(asset=dg.AssetKey(["clean", "transactions"]), blocking=True, pool="duckdb",
                description="No clean row has a NULL customer id, date or amount, or a date after today or before 1970.")
def clean_values_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        bad = conn.execute(
            "SELECT count(*) FROM clean.transactions WHERE customer_id IS NULL OR customer_id = '' OR txn_date IS NULL "
            f"OR amount IS NULL OR txn_date > current_date OR txn_date < DATE '{logic.MIN_DATE}'"
        ).fetchone()[0]
    return dg.AssetCheckResult(passed=bad == 0, metadata={"invalid_rows": bad})


@dg.asset_check(asset=dg.AssetKey(["clean", "transactions"]), blocking=True, pool="duckdb",
                description="Keys are unique: each source row appears once in clean.transactions and never in both "
                            "clean and rejected.")
def clean_keys_unique(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        repeated, both = conn.execute(
            # one load per table is rows_reconcile's check, so the source row alone is the key here
            "SELECT (SELECT count(*) - count(DISTINCT source_row) FROM clean.transactions), "
            "(SELECT count(*) FROM clean.transactions c SEMI JOIN quality.rejected_transactions r "
            " ON c.load_id = r.load_id AND c.source_row = r.source_row)"
        ).fetchone()
    return dg.AssetCheckResult(passed=repeated == 0 and both == 0,
                               metadata={"repeated_keys": repeated, "rows_both_clean_and_rejected": both})


MAX_REJECTED_SHARE = 0.05


@dg.asset_check(asset=dg.AssetKey(["clean", "transactions"]), blocking=False, pool="duckdb",
                description=f"At most {MAX_REJECTED_SHARE:.0%} of the raw rows are rejected. Warns, stopping nothing: a "
                            "high share usually means a mapping or format problem (a currency sign in the amounts, an "
                            "unexpected date layout, the wrong column mapped). The metadata counts each reason and shows "
                            "examples of the most common one. Rows of erased customers are counted apart, not as rejected.")
def rejected_share_small(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        raw = logic.current_load(conn).rows
        reasons = dict(conn.execute("SELECT reject_reason, count(*) FROM quality.rejected_transactions "
                                    "GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
        # rows of erased customers are set aside on request, not for a problem in the data: counted apart
        erased = reasons.pop(ERASED, 0)
        top = next(iter(reasons), None)
        examples = conn.execute(
            "SELECT source_row, customer_id, txn_date, amount, quantity, unit_price FROM quality.rejected_transactions "
            "WHERE reject_reason = ? ORDER BY source_row LIMIT 3", [top]).df() if top else None
    rejected = sum(reasons.values())
    share = rejected / raw if raw else 0.0
    metadata = {"rejected_rows": rejected, "raw_rows": raw, "rejected_share": round(share, 6),
                "reasons": dg.MetadataValue.json(reasons), "erased_customer_rows": erased}
    if examples is not None:
        metadata[f"examples_{top}"] = dg.MetadataValue.md(markdown_preview(examples, 3))
    return dg.AssetCheckResult(passed=share <= MAX_REJECTED_SHARE, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                               description=(f"{share:.1%} of {raw:,} raw rows rejected"
                                            + (f", most as {top} ({reasons[top]:,})" if top else "")))


@dg.asset_check(asset=dg.AssetKey(["clean", "transactions"]), blocking=False, pool="duckdb",
                description="The source export no longer holds rows of erased customers (customer-assets forget). "
                            "Warns, stopping nothing: the cleaning sets those rows aside with no value, but the export "
                            "is the retailer's copy of them, to delete there. The metadata names each file, with its "
                            "count and the first and last of those rows in it (file_row), and never a customer id.")
def erased_customers_out_of_source(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        files = conn.execute(
            "SELECT source_file AS file, count(*) AS rows, min(file_row) AS first_file_row, max(file_row) AS last_file_row "
            "FROM quality.rejected_transactions WHERE reject_reason = ? GROUP BY 1 ORDER BY 1", [ERASED]).df()
    rows = int(files["rows"].sum()) if len(files) else 0
    return dg.AssetCheckResult(
        passed=rows == 0, severity=dg.AssetCheckSeverity.WARN,
        metadata={"erased_customer_rows": rows, "files": dg.MetadataValue.md(markdown_preview(files, n=50))},
        description=(f"{rows:,} row(s) of erased customers are still in the source export, in {len(files)} file(s): "
                     "delete them there (quality.rejected_transactions lists them by source_file and file_row)"
                     if rows else "The source export holds no row of an erased customer"))


@dg.asset_check(asset=dg.AssetKey(["clean", "transactions"]), blocking=False, pool="duckdb",
                description="Every stored features/customer_features partition matches the transactions as they are now. "
                            "Warns, stopping nothing, when a reload added late rows, corrected or deleted some in the history "
                            "or label window of a stored partition: the metadata lists those cutoffs. Materialize them "
                            "again (features, then segments and scores) to refresh them; training and the backtests "
                            "recompute an out-of-date partition on their own, and segments and scores refuse one.")
def stored_partitions_current(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        stale, unrecorded = features_logic.stale_partitions(conn, HORIZON_DAYS)
        changes = (conn.execute("SELECT count(*), min(txn_date)::VARCHAR FROM quality.history_changes").fetchone()
                   if table_exists(conn, "quality", "history_changes") else (0, None))
    metadata = {"stale_partitions": len(stale), "unrecorded_partitions": unrecorded,
                "history_changed_days": changes[0], "first_changed_date": changes[1] or "",
                "stale_cutoffs": dg.MetadataValue.json([str(c.date()) for c in stale["cutoff_date"]] if len(stale) else [])}
    if len(stale):
        metadata["stale_preview"] = dg.MetadataValue.md(markdown_preview(stale.assign(cutoff_date=stale["cutoff_date"].dt.date), 10))
    description = (f"{len(stale)} stored features partition(s) computed from transactions that have changed since"
                   + (f" (the first at {stale['cutoff_date'].min().date()})" if len(stale) else "")
                   + (f"; {unrecorded} with no record of their inputs" if unrecorded else ""))
    return dg.AssetCheckResult(passed=len(stale) == 0, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                               description=description)


def stalled_since(loads: list[tuple[float, str | None]]) -> tuple[str | None, float | None, int]:
    """The data's last date now, when the loads that keep it began, and how many there are.

    ``loads`` are the materializations of ``clean/transactions``, newest first, as (timestamp, last_date).
    """
    if not loads:
        return None, None, 0
    last, since, n = loads[0][1], loads[0][0], 0
    for timestamp, date_ in loads:
        if date_ != last:
            break
        since, n = timestamp, n + 1
    return last, since, n


def now() -> float:
    return time.time()


@dg.asset_check(asset=dg.AssetKey(["clean", "transactions"]), blocking=False,
                description="The data keep advancing: warns, stopping nothing, when the last transaction date has stayed "
                            "the same across the loads of more than CUSTOMER_ASSETS_MAX_STALL_DAYS days (default 3; 0 "
                            "switches it off). The nightly schedules follow the data's last date, so a stalled export "
                            "shows up here rather than as nights with nothing to run. It reads Dagster's event log, not "
                            "the warehouse.")
def source_advancing(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    limit = max_stall_days()
    loads = [(timestamp, meta.get("last_date")) for _, timestamp, meta in clean_materializations(context.instance, 1000)]
    last, since, n = stalled_since(loads)
    days = (now() - since) / 86400 if since is not None else 0.0
    metadata = {"last_date": last or "", "loads_with_this_last_date": n, "days_without_new_data": round(days, 2),
                "max_stall_days": limit}
    passed = limit == 0 or days <= limit
    start = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M UTC") if since is not None else ""
    description = (f"The data's last date, {last}, is the same in the {n} load(s) since {start} ({days:.1f} days)"
                   + ("" if passed else ": is the export still being updated?"))
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                               description=description)
