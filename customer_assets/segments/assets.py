"""K-Means personas per cutoff."""


from datetime import date

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets import schemas
from customer_assets.features.assets import MISSING_HINT, apply_retention, require_current_features
from customer_assets.partitions import CUTOFF_PARTITIONS
from customer_assets.segments import logic
from customer_assets.settings import segment_count
from customer_assets.storage import markdown_preview, replace_partition_df


class SegmentConfig(dg.Config):
    """``k = 0`` chooses k in 3..8 by silhouette; any other value fixes it (unset: ``CUSTOMER_ASSETS_SEGMENTS``, else
    0). ``keep_cutoffs``: how many of the newest cutoffs the table keeps (0 keeps all; unset, from
    ``CUSTOMER_ASSETS_KEEP_CUTOFFS``)."""

    k: int | None = None
    keep_cutoffs: int | None = None


def segment_profile(features: pd.DataFrame, labels, personas: list[str]) -> pd.DataFrame:
    f = features.assign(cluster_id=labels, segment=[personas[i] for i in labels])
    prof = (
        f.groupby(["cluster_id", "segment"])
        .agg(size=("customer_id", "size"), mean_recency_days=("recency_days", "mean"),
             mean_purchase_days=("purchase_days", "mean"), mean_monetary_total=("monetary_total", "mean"),
             mean_tenure_days=("tenure_days", "mean"))
        .reset_index()
    )
    prof["share"] = prof["size"] / prof["size"].sum()
    return prof


@dg.asset(
    key=["segments", "customer_segments"],
    deps=[dg.AssetKey(["features", "customer_features"])],
    partitions_def=CUTOFF_PARTITIONS,
    group_name="segments",
    kinds={"duckdb", "sklearn"},
    pool="duckdb",
    description=(
        "K-Means personas on log-transformed, standardised recency, purchase days and net spend. k is chosen by "
        "silhouette in 3..8 unless configured; names come from the centroids by a fixed rule. Centroids and scaler "
        "parameters are stored as arrays in segments.segment_centroids."
    ),
    metadata={"dagster/column_schema": schemas.column_schema(schemas.CUSTOMER_SEGMENTS)},
)
def customer_segments(context: dg.AssetExecutionContext, config: SegmentConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    cutoff = date.fromisoformat(context.partition_key)
    with duckdb.get_connection() as conn:
        feats = conn.execute(
            f"SELECT customer_id, {', '.join(logic.SEGMENT_FEATURES)}, tenure_days FROM features.customer_features "
            "WHERE cutoff_date = ? ORDER BY customer_id",
            [cutoff],
        ).df()
        if feats.empty:
            raise dg.Failure(f"features/customer_features has no rows for {cutoff}: materialize that partition first." + MISSING_HINT)
        require_current_features(context, conn, cutoff, "segments/customer_segments")
        try:
            k = segment_count(config.k)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from exc
        model, labels = logic.fit_segments(feats, k=k or None)
        _, dist = logic.assign(model, feats)
        context.log.info(f"k={model.k} (silhouette by k: {model.silhouette_by_k}); personas {model.personas}")
        out = pd.DataFrame({
            "cutoff_date": cutoff,
            "customer_id": feats["customer_id"],
            "cluster_id": labels.astype("int32"),
            "segment": [model.personas[i] for i in labels],
            "distance_to_centroid": dist,
        })
        n = replace_partition_df(conn, "segments", "customer_segments", cutoff, out)
        prof = segment_profile(feats, labels, model.personas)
        cent = pd.DataFrame({
            "cutoff_date": cutoff,
            "cluster_id": range(model.k),
            "segment": model.personas,
            "size": [int((labels == i).sum()) for i in range(model.k)],
            "centroid": [list(map(float, c)) for c in model.centroids],
            "feature_names": [model.feature_names] * model.k,
            "scaler_mean": [list(map(float, model.scaler_mean))] * model.k,
            "scaler_scale": [list(map(float, model.scaler_scale))] * model.k,
            "k": model.k,
            "silhouette": model.silhouette_by_k[model.k],
            "mean_recency_days": prof.sort_values("cluster_id")["mean_recency_days"].to_numpy(),
            "mean_purchase_days": prof.sort_values("cluster_id")["mean_purchase_days"].to_numpy(),
            "mean_monetary_total": prof.sort_values("cluster_id")["mean_monetary_total"].to_numpy(),
        })
        replace_partition_df(conn, "segments", "segment_centroids", cutoff, cent)
        retention = apply_retention(context, conn, ["segments", "customer_segments"], config.keep_cutoffs, cutoff)
    from customer_assets import charts as ch

    by_segment = prof.groupby("segment").agg(size=("size", "sum")).sort_values("size", ascending=False)
    chart = ch.md_image(ch.bar_chart(by_segment.index.tolist(), by_segment["size"].astype(float).tolist(),
                                     f"Customers per segment at {cutoff}"), "segments")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "segments_chart": dg.MetadataValue.md(chart),
            "k": model.k,
            "silhouette": model.silhouette_by_k[model.k],
            "silhouette_by_k": dg.MetadataValue.json({str(k): v for k, v in model.silhouette_by_k.items()}),
            "profile": dg.MetadataValue.md(markdown_preview(prof, n=20)),
            "preview": dg.MetadataValue.md(markdown_preview(out)),
            **retention,
        }
    )
