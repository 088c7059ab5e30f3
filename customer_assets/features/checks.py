"""Blocking checks on the features table (all partitions: cheap grouped scans)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

FEATURES = dg.AssetKey(["features", "customer_features"])
NOT_NULL = ["customer_id", "recency_days", "frequency", "monetary_total", "tenure_days", "spend_90d", "purchases_90d", "momentum_ratio"]


@dg.asset_check(asset=FEATURES, blocking=True, pool="duckdb",
                description="Exactly one row per customer per cutoff.")
def one_row_per_customer(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT cutoff_date, customer_id FROM features.customer_features "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
    return dg.AssetCheckResult(passed=dupes == 0, metadata={"duplicated_customer_cutoffs": dupes})


@dg.asset_check(asset=FEATURES, blocking=True, pool="duckdb",
                description="Recency lies within the history (0 <= recency <= tenure) and required features are not NULL.")
def features_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    nulls = " OR ".join(f"{c} IS NULL" for c in NOT_NULL)
    with duckdb.get_connection() as conn:
        bad_recency, null_rows = conn.execute(
            f"SELECT count(*) FILTER (WHERE recency_days < 0 OR recency_days > tenure_days), count(*) FILTER (WHERE {nulls}) "
            "FROM features.customer_features"
        ).fetchone()
    return dg.AssetCheckResult(passed=bad_recency == 0 and null_rows == 0,
                               metadata={"recency_out_of_range": bad_recency, "rows_with_nulls": null_rows})
