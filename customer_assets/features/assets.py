"""Per-cutoff split sets and customer features."""


from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets import schemas
from customer_assets.features import logic
from customer_assets.partitions import CUTOFF_PARTITIONS
from customer_assets.settings import HORIZON_DAYS, keep_cutoffs
from customer_assets.storage import ensure_schemas, markdown_preview, prune_partitions, replace_partition

GROUP = "features"
CLEAN = dg.AssetKey(["clean", "transactions"])


def partition_cutoff(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


class RetentionConfig(dg.Config):
    """``keep_cutoffs``: how many of the newest cutoffs this table keeps (0 keeps all). Unset, it comes from
    ``CUSTOMER_ASSETS_KEEP_CUTOFFS``, whose default is 0."""

    keep_cutoffs: int | None = None


def apply_retention(context: dg.AssetExecutionContext, conn, key: list[str], keep: int | None, current: date) -> dict:
    """Delete the partitions beyond the retention and say so in the log and the metadata.

    Features and segments are derived data: a deleted partition is recomputed exactly by materializing it again.
    Dagster keeps showing a deleted partition as materialized (its SQLite event log cannot wipe single
    partitions), so the metadata lists the cutoffs the table holds.
    """
    try:
        keep = keep_cutoffs(keep)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    pruned = [d.isoformat() for d in prune_partitions(conn, key[0], key[1], keep, current)]
    if pruned:
        context.log.info(f"Retention keeps the newest {keep} cutoffs of {'/'.join(key)}: deleted {len(pruned)} older "
                         f"partition(s) ({pruned[0]} .. {pruned[-1]}); materialize one again to recompute it exactly.")
    out = {"keep_cutoffs": keep, "pruned_cutoffs": dg.MetadataValue.json(pruned)}
    if keep:
        stored = conn.execute(f"SELECT DISTINCT cutoff_date::VARCHAR FROM {key[0]}.{key[1]} ORDER BY 1").fetchall()
        out["stored_cutoffs"] = dg.MetadataValue.json([r[0] for r in stored])
    return out


def require_current_features(context: dg.AssetExecutionContext, conn, cutoff: date, reader: str) -> None:
    """Refuse to build ``reader`` on a features partition whose history changed after it was computed (a reload
    with late rows or corrections). A partition with no record of its inputs (an earlier version wrote it) is used,
    with a warning."""
    why = logic.inputs_changed(conn, cutoff, HORIZON_DAYS, labels=False)
    if why == logic.UNRECORDED:
        context.log.warning(f"features/customer_features {cutoff}: {why}; materialize it again to record them.")
    elif why:
        raise dg.Failure(f"features/customer_features {cutoff} is out of date: {why}. Materialize "
                         f"features/customer_features {cutoff} again (the rescore job does) before {reader}.")


MISSING_HINT = (" If it was materialized before, the retention (CUSTOMER_ASSETS_KEEP_CUTOFFS) may have deleted it: "
                "materializing it again recomputes the same rows.")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["features", "calibration_transactions"],
            deps=[CLEAN],
            group_name=GROUP,
            kinds={"duckdb"},
            partitions_def=CUTOFF_PARTITIONS,
            description=(
                "The calibration history of each cutoff c: clean transactions dated on or before c. A view over "
                "clean.transactions joined to features.cutoff_windows, so a partition stores one narrow row, not a copy."
            ),
            metadata={"dagster/column_schema": schemas.column_schema(schemas.CALIBRATION_TRANSACTIONS)},
        ),
        dg.AssetSpec(
            ["features", "holdout_transactions"],
            deps=[CLEAN],
            group_name=GROUP,
            kinds={"duckdb"},
            partitions_def=CUTOFF_PARTITIONS,
            description="The label window of each cutoff c: transactions in (c, c + H]. A view, like the calibration set.",
            metadata={"dagster/column_schema": schemas.column_schema(schemas.HOLDOUT_TRANSACTIONS)},
        ),
    ],
    pool="duckdb",
)
def cutoff_split(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    cutoff = partition_cutoff(context)
    with duckdb.get_connection() as conn:
        start, end = logic.data_bounds(conn)
        if cutoff < start:
            raise dg.Failure(f"Cutoff {cutoff} is before the first transaction ({start}): no customer has any history.")
        ensure_schemas(conn)
        replace_partition(
            conn, "features", "cutoff_windows", cutoff, logic.WINDOW_SQL, [cutoff, HORIZON_DAYS, start, end]
        )
        conn.execute(logic.CALIBRATION_VIEW)
        conn.execute(logic.HOLDOUT_VIEW)
        w = conn.execute("SELECT * FROM features.cutoff_windows WHERE cutoff_date = ?", [cutoff]).df()
    row = w.iloc[0]
    if not row["labels_complete"]:
        context.log.info(
            f"Label window of {cutoff} ends {row['holdout_end'].date()}, after the data ends ({end}): labels are incomplete."
        )
    common = {"labels_complete": bool(row["labels_complete"]), "window": dg.MetadataValue.md(markdown_preview(w))}
    yield dg.MaterializeResult(
        asset_key=["features", "calibration_transactions"],
        metadata={"dagster/row_count": int(row["history_rows"]), "customers": int(row["customers"]), **common},
    )
    yield dg.MaterializeResult(
        asset_key=["features", "holdout_transactions"],
        metadata={"dagster/row_count": int(row["holdout_rows"]), **common},
    )


@dg.asset(
    key=["features", "customer_features"],
    deps=[dg.AssetKey(["features", "calibration_transactions"]), dg.AssetKey(["features", "holdout_transactions"])],
    partitions_def=CUTOFF_PARTITIONS,
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    description=(
        "One row per customer whose first purchase is on or before the cutoff: RFM, tenure, gaps, windowed spend and "
        "counts, momentum, and the labels of (c, c + H] when that window is complete. With a retention "
        "(`keep_cutoffs`, CUSTOMER_ASSETS_KEEP_CUTOFFS) only the newest cutoffs are kept; older ones recompute exactly."
    ),
    metadata={"dagster/column_schema": schemas.column_schema(schemas.CUSTOMER_FEATURES)},
)
def customer_features(context: dg.AssetExecutionContext, config: RetentionConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    cutoff = partition_cutoff(context)
    with duckdb.get_connection() as conn:
        _, end = logic.data_bounds(conn)
        n = replace_partition(
            conn, "features", "customer_features", cutoff, logic.FEATURE_SQL,
            logic.feature_params(cutoff, HORIZON_DAYS, end),
        )
        # after the partition: a crash in between leaves the old record (or none), which matches only if the
        # transactions are the ones the old partition was computed from; else the partition reads as out of date
        logic.record_inputs(conn, cutoff, HORIZON_DAYS, logic.labels_complete(cutoff, HORIZON_DAYS, end))
        stats = conn.execute(
            "SELECT avg(recency_days), avg(frequency), avg(monetary_total), avg(label_purchase::DOUBLE), bool_and(labels_complete) "
            "FROM features.customer_features WHERE cutoff_date = ?",
            [cutoff],
        ).fetchone()
        preview = conn.execute(
            "SELECT customer_id, recency_days, frequency, monetary_total, tenure_days, spend_90d, label_spend "
            "FROM features.customer_features WHERE cutoff_date = ? ORDER BY customer_id LIMIT 5",
            [cutoff],
        ).df()
        retention = apply_retention(context, conn, ["features", "customer_features"], config.keep_cutoffs, cutoff) if n else {}
    if n == 0:
        raise dg.Failure(f"No customer has a purchase on or before {cutoff}; nothing to build features from.")
    context.log.info(f"{n:,} customers at {cutoff}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "mean_recency_days": float(stats[0]),
            "mean_frequency": float(stats[1]),
            "mean_monetary_total": float(stats[2]),
            "labels_complete": bool(stats[4]),
            "purchase_rate_in_horizon": float(stats[3]) if stats[3] is not None else dg.MetadataValue.null(),
            "preview": dg.MetadataValue.md(markdown_preview(preview)),
            **retention,
        }
    )
