"""The four models, each an asset partitioned by its training cutoff t.

A model of partition t is fit on features at t (plus stacked earlier cutoffs) with
labels from (t, t + H], so it has seen data dated up to t + H and nothing later.
Scoring at s uses the models of partition s - H.
"""


from datetime import date, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets import schemas
from customer_assets.features import logic as F
from customer_assets.models import logic as L
from customer_assets.partitions import CUTOFF_PARTITIONS
from customer_assets.settings import HORIZON_DAYS, LTV_HORIZON_DAYS
from customer_assets.storage import markdown_preview, replace_partition_df

FEATURES = dg.AssetKey(["features", "customer_features"])
GROUP = "models"


class TrainingConfig(dg.Config):
    """How many earlier cutoffs to stack into the training set, and how far apart (days)."""

    stacked_cutoffs: int = 4
    stack_step_days: int = 30


def stacked_cutoffs(cutoff: date, data_start: date, n: int, step: int) -> list[date]:
    """``cutoff`` and up to ``n`` earlier cutoffs ``step`` days apart that still have a history."""
    out = [cutoff]
    for j in range(1, n + 1):
        c = cutoff - timedelta(days=j * step)
        if c < data_start + timedelta(days=step):
            break
        out.append(c)
    return out


def training_frame(conn, cutoff: date, config: TrainingConfig, what: str, log) -> pd.DataFrame:
    """Features with complete labels at ``cutoff`` (from the warehouse) plus stacked earlier cutoffs."""
    start, end = F.data_bounds(conn)
    try:
        F.require_complete_labels(cutoff, HORIZON_DAYS, end, f"models/{what} for partition {cutoff}")
    except F.IncompleteLabelsError as exc:
        raise dg.Failure(str(exc)) from exc
    base = conn.execute("SELECT * FROM features.customer_features WHERE cutoff_date = ?", [cutoff]).df()
    if base.empty:
        raise dg.Failure(f"features/customer_features has no rows for partition {cutoff}: materialize it first.")
    frames = [base]
    for c in stacked_cutoffs(cutoff, start, config.stacked_cutoffs, config.stack_step_days)[1:]:
        frames.append(F.compute_features(conn, c, HORIZON_DAYS, end))
    frame = pd.concat(frames, ignore_index=True)
    log(f"training frame for {what}: {len(frame):,} rows from {len(frames)} cutoffs")
    return frame


def store(conn, record: L.ModelRecord, cutoff: date) -> None:
    row = record.to_row(cutoff)
    frame = pd.DataFrame([row]).assign(trained_at=pd.Timestamp.now(tz="UTC").tz_localize(None))
    replace_partition_df(conn, "models", record.model_name, cutoff, frame)


def result(record: L.ModelRecord) -> dg.MaterializeResult:
    md = {f"metric/{k}": (float(v) if v == v else dg.MetadataValue.null()) for k, v in record.metrics.items()}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": 1,
            **md,
            "library": record.library,
            "artifact_format": record.artifact_format,
            "training_cutoffs": dg.MetadataValue.json([str(c) for c in record.training_cutoffs]),
            "n_train_rows": record.n_train_rows,
            "features": dg.MetadataValue.json(record.features),
            "notes": dg.MetadataValue.json(record.notes),
            "metrics": dg.MetadataValue.md(markdown_preview(pd.DataFrame([record.metrics]).T.reset_index()
                                                           .rename(columns={"index": "metric", 0: "value"}), n=50)),
        }
    )


def _model_asset(name: str, kinds: set[str], description: str):
    def decorator(fn):
        return dg.asset(
            key=["models", name],
            deps=[FEATURES],
            partitions_def=CUTOFF_PARTITIONS,
            group_name=GROUP,
            kinds=kinds | {"duckdb"},
            pool="duckdb",
            description=description,
            metadata={"dagster/column_schema": schemas.column_schema(schemas.MODEL_REGISTRY)},
        )(fn)

    return decorator


def _train(context: dg.AssetExecutionContext, duckdb: DuckDBResource, name: str, config: TrainingConfig, fit) -> dg.MaterializeResult:
    """Build the training frame of the partition, fit with ``fit(frame, cutoff)``, store the record."""
    cutoff = date.fromisoformat(context.partition_key)
    with duckdb.get_connection() as conn:
        frame = training_frame(conn, cutoff, config, name, context.log.info)
        record = fit(frame, cutoff)
        store(conn, record, cutoff)
    return result(record)


@_model_asset("churn", {"xgboost", "sklearn"},
              "Purchase classifier (XGBoost) trained at t with Platt calibration fitted out of time; churn = 1 - P(purchase in H).")
def churn(context: dg.AssetExecutionContext, config: TrainingConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "churn", config, lambda f, c: L.train_churn(f, c, log=context.log.info))


@_model_asset("spend", {"xgboost"}, "Expected net spend in the next H days (XGBoost, Tweedie objective).")
def spend(context: dg.AssetExecutionContext, config: TrainingConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "spend", config, lambda f, c: L.train_spend(f, c, log=context.log.info))


@_model_asset("next_purchase", {"xgboost"},
              "Days to the next purchase: XGBoost accelerated failure time, right-censored at the horizon.")
def next_purchase(context: dg.AssetExecutionContext, config: TrainingConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "next_purchase", config,
                  lambda f, c: L.train_next_purchase(f, c, HORIZON_DAYS, log=context.log.info))


@_model_asset("ltv", set(),
              "Lifetime value over the LTV horizon: BG/NBD purchases x Gamma-Gamma spend, fitted on the histories at t "
              "(scipy implementation, parameters stored as JSON).")
def ltv(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "ltv", TrainingConfig(stacked_cutoffs=0),
                  lambda f, c: L.train_ltv(f, c, HORIZON_DAYS, LTV_HORIZON_DAYS, log=context.log.info))


MODEL_ASSETS = [churn, spend, next_purchase, ltv]
MODEL_NAMES = ["churn", "spend", "ltv", "next_purchase"]
