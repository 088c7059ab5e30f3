"""Blocking checks on the features table.

In a partitioned run a check looks at the run's partition only (so a backfill's checks do
not rescan every earlier partition); run on its own, it checks the whole table.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.partitions import check_scope
from customer_assets.storage import duplicated_customers

FEATURES = dg.AssetKey(["features", "customer_features"])
NOT_NULL = ["customer_id", "recency_days", "frequency", "monetary_total", "tenure_days", "spend_90d", "purchases_90d", "momentum_ratio"]


@dg.asset_check(asset=FEATURES, blocking=True, pool="duckdb",
                description="Exactly one row per customer per cutoff.")
def one_row_per_customer(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    where, params = check_scope(context)
    with duckdb.get_connection() as conn:
        dupes = duplicated_customers(conn, "features.customer_features", where, params)
    return dg.AssetCheckResult(passed=dupes == 0, metadata={"duplicated_customer_cutoffs": dupes})


@dg.asset_check(asset=FEATURES, blocking=True, pool="duckdb",
                description="Recency lies within the history (0 <= recency <= tenure) and required features are not NULL.")
def features_valid(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    nulls = " OR ".join(f"{c} IS NULL" for c in NOT_NULL)
    where, params = check_scope(context)
    with duckdb.get_connection() as conn:
        bad_recency, null_rows = conn.execute(
            f"SELECT count(*) FILTER (WHERE recency_days < 0 OR recency_days > tenure_days), count(*) FILTER (WHERE {nulls}) "
            f"FROM features.customer_features {where}", params
        ).fetchone()
    return dg.AssetCheckResult(passed=bad_recency == 0 and null_rows == 0,
                               metadata={"recency_out_of_range": bad_recency, "rows_with_nulls": null_rows})
