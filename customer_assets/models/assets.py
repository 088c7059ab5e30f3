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
from customer_assets.models import candidates as C
from customer_assets.models import logic as L
from customer_assets.partitions import CUTOFF_PARTITIONS
from customer_assets.settings import (
    HORIZON_DAYS,
    LTV_HORIZON_DAYS,
    SettingError,
    max_rows_per_cutoff,
    same_season,
    spend_blend_weight,
    stack_options,
)
from customer_assets.storage import markdown_preview, replace_partition_df

FEATURES = dg.AssetKey(["features", "customer_features"])
GROUP = "models"


class ModelConfig(dg.Config):
    """A per-cutoff row cap (unset: ``CUSTOMER_ASSETS_MAX_ROWS_PER_CUTOFF``, else 50,000), and the fewest customers
    with complete labels a model may be trained on."""

    max_rows_per_cutoff: int | None = None
    min_labelled_customers: int = L.MIN_LABELLED_CUSTOMERS


class TrainingConfig(ModelConfig):
    """As ``ModelConfig``, the candidate stackings as "<cutoffs>x<days apart>" (validation picks one; unset, from
    ``CUSTOMER_ASSETS_STACK_OPTIONS``, else 2x30, 4x30, 8x30, 4x60 and 8x15), and when churn and spend correct to
    the scoring window's season a year back: "checked" (where the same correction two years back passes its check),
    "assume_seasonal" (also unchecked, where history is too short to check) or "off"; unset, from
    ``CUSTOMER_ASSETS_SAME_SEASON`` (default "checked")."""

    stack_options: list[str] | None = None
    same_season: str | None = None


class SpendConfig(TrainingConfig):
    """As ``TrainingConfig``, and the weight on BG/NBD + Gamma-Gamma in the spend blend: from 0 to 1 to fix it; unset,
    from ``CUSTOMER_ASSETS_SPEND_BLEND_WEIGHT``, and with neither, validation chooses it among 0, 0.25, 0.5 and 0.75
    (with BG/NBD alone as a candidate family)."""

    spend_blend_weight: float | None = None


# Feature frames computed for training, shared by the model assets of one run: churn, spend and
# next_purchase stack the same cutoffs, and at a million customers each cutoff's feature SQL takes
# seconds. Keyed by run id (cleared when another run starts), so a later run never sees stale rows.
_RUN_FRAMES: dict[tuple, pd.DataFrame] = {}


def _run_cache(run_id: str | None) -> dict[tuple, pd.DataFrame]:
    if run_id is None:
        return {}
    if any(k[0] != run_id for k in _RUN_FRAMES):
        _RUN_FRAMES.clear()
    return _RUN_FRAMES


def training_data(conn, cutoff: date, config: ModelConfig, what: str, run_id: str | None = None,
                  warn=None) -> L.TrainingData:
    """Labelled features at ``cutoff`` (from the warehouse) and, on demand, at earlier cutoffs (same SQL).

    Within one run (``run_id``) the frames are computed once and shared by the model assets. A stored
    partition written before its labels were complete is not used: it is recomputed (``warn`` says so).
    """
    try:  # the settings first: a bad one fails before any feature is computed, saying where it is set
        row_cap = max_rows_per_cutoff(config.max_rows_per_cutoff, L.MAX_ROWS_PER_CUTOFF)
        options = (stack_options(config.stack_options, L.STACK_OPTIONS) if isinstance(config, TrainingConfig)
                   else L.STACK_OPTIONS)
        season = same_season(getattr(config, "same_season", None))
        blend = spend_blend_weight(config.spend_blend_weight) if isinstance(config, SpendConfig) else None
    except SettingError as exc:
        raise dg.Failure(f"{exc} {exc.where()}") from exc
    start, end = F.data_bounds(conn)
    try:
        F.require_complete_labels(cutoff, HORIZON_DAYS, end, f"models/{what} for partition {cutoff}")
    except F.IncompleteLabelsError as exc:
        raise dg.Failure(str(exc)) from exc
    stored = F.stored_labelled_rows(conn, cutoff, HORIZON_DAYS, f"models/{what}", warn)
    # a partition deleted by the retention (keep_cutoffs) is recomputed by the same SQL: identical rows
    n_customers = stored or F.customer_count(conn, cutoff)
    if n_customers == 0:
        raise dg.Failure(f"No customer has a purchase on or before {cutoff}: nothing to train partition {cutoff} on.")
    # large data: train on a fixed hash sample of customers (the same ones at every cutoff), so memory stays bounded
    fraction = min(1.0, row_cap / n_customers)
    threshold = int(fraction * 1_000_000)
    shared = _run_cache(run_id)

    def load(c: date) -> pd.DataFrame:
        """The partition's own features come from the warehouse; earlier cutoffs from the same SQL."""
        if c > cutoff:
            raise AssertionError(f"training at {cutoff} asked for features at a later cutoff {c}")
        key = (run_id, str(c), threshold, HORIZON_DAYS, str(end))
        if key not in shared:
            if c == cutoff and stored:
                frame = conn.execute(
                    "SELECT * FROM features.customer_features WHERE cutoff_date = ?"
                    + ("" if fraction >= 1.0 else f" AND {F.SAMPLE_FILTER}") + " ORDER BY customer_id",
                    [cutoff] + ([] if fraction >= 1.0 else [threshold]),
                ).df()
            else:
                frame = F.compute_features(conn, c, HORIZON_DAYS, end, fraction)
            shared[key] = C.add_bgnbd_features(frame, HORIZON_DAYS)
        return shared[key]

    def histories(c: date) -> pd.DataFrame:
        """Features at ``c`` for a fit on histories alone: a model of partition t may see data up to t + H."""
        if c > cutoff + timedelta(days=HORIZON_DAYS):
            raise AssertionError(f"partition {cutoff} asked for the histories at {c}, after {cutoff} + {HORIZON_DAYS} days")
        return F.compute_features(conn, c, HORIZON_DAYS, end, fraction)

    try:
        return L.TrainingData(cutoff, HORIZON_DAYS, start, load, options, max_rows_per_cutoff=10 * row_cap,
                              min_labelled_customers=config.min_labelled_customers, histories=histories,
                              same_season=season, spend_blend_weight=blend)
    except SettingError as exc:  # a same_season or spend_blend_weight the model refuses: say where it can be set
        raise dg.Failure(f"{exc} {exc.where()}") from exc


def store(conn, record: L.ModelRecord, cutoff: date) -> None:
    row = record.to_row(cutoff)
    frame = pd.DataFrame([row]).assign(trained_at=pd.Timestamp.now(tz="UTC").tz_localize(None),
                                       horizon_days=HORIZON_DAYS, ltv_horizon_days=LTV_HORIZON_DAYS)
    replace_partition_df(conn, "models", record.model_name, cutoff, frame)


IMPORTANCE_KIND = {"json-coefficients": "share of |standardised coefficient|",
                   "ensemble-json": "mean of the members' shares of gain or |coefficient|"}


def charts(record: L.ModelRecord) -> dict:
    """Feature importance, reliability and cumulative gains as images in the asset's metadata."""
    from customer_assets import charts as ch

    out = {}
    imp = list(record.params.get("importance", {}).items())[:15]
    if imp:
        out["feature_importance"] = dg.MetadataValue.md(ch.md_image(
            ch.bar_chart([k for k, _ in imp], [v for _, v in imp], f"models/{record.model_name}: feature importance "
                         f"({IMPORTANCE_KIND.get(record.artifact_format, 'share of gain')})",
                         "{:.1%}"), "feature importance"))
    diag = record.params.get("diagnostics", {})
    if diag.get("reliability"):
        rel = [r for r in diag["reliability"] if r["count"]]
        out["reliability_plot"] = dg.MetadataValue.md(ch.md_image(ch.line_chart(
            {"model (validation)": ([r["mean_predicted"] for r in rel], [r["observed_rate"] for r in rel])},
            "Reliability on the out-of-time validation", "mean predicted probability", "observed purchase rate"),
            "reliability"))
    if diag.get("gains"):
        series = {"model": tuple(diag["gains"])}
        if diag.get("gains_baseline"):
            series["naive baseline"] = tuple(diag["gains_baseline"])
        what = "buyers" if record.model_name == "churn" else "revenue"
        out["cumulative_gains"] = dg.MetadataValue.md(ch.md_image(ch.line_chart(
            series, f"Cumulative gains: share of {what} in the top x of customers", "share of customers targeted",
            f"share of {what} captured"), "cumulative gains"))
    return out


def result(record: L.ModelRecord) -> dg.MaterializeResult:
    md = {f"metric/{k}": (float(v) if v == v else dg.MetadataValue.null()) for k, v in record.metrics.items()}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": 1,
            **md,
            **charts(record),
            "library": record.library,
            "artifact_format": record.artifact_format,
            "training_cutoffs": dg.MetadataValue.json([str(c) for c in record.training_cutoffs]),
            "n_train_rows": record.n_train_rows,
            "features": dg.MetadataValue.json(record.features),
            "notes": dg.MetadataValue.json(record.notes),
            "family": str(record.params.get("family", record.library)),
            "promoted": record.promoted,
            **({"calibration": dg.MetadataValue.json(record.calibration)} if record.calibration else {}),
            "selection": dg.MetadataValue.md(markdown_preview(pd.DataFrame(record.params.get("selection", [])), n=50)),
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


def _train(context: dg.AssetExecutionContext, duckdb: DuckDBResource, name: str, config: ModelConfig, fit) -> dg.MaterializeResult:
    """Build the training frame of the partition, fit with ``fit(frame, cutoff)``, store the record."""
    cutoff = date.fromisoformat(context.partition_key)
    with duckdb.get_connection() as conn:
        record = fit(training_data(conn, cutoff, config, name, context.run.run_id, warn=context.log.warning))
        store(conn, record, cutoff)
    context.log.info(f"models/{name} {cutoff}: {record.params.get('family', record.library)}, metrics {record.metrics}")
    return result(record)


@_model_asset("churn", {"xgboost", "lightgbm", "sklearn"},
              "P(purchase in H): the best of logistic regression, XGBoost, LightGBM and their BG/NBD-feature blends on an "
              "out-of-time validation, Platt-calibrated on its out-of-time predictions at t, t - 30 and t - 60 days, or on "
              "the scoring window's season a year back where the same correction two years back passes its check; "
              "churn = 1 - P(purchase in H).")
def churn(context: dg.AssetExecutionContext, config: TrainingConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "churn", config, lambda d: L.train_churn(d, log=context.log.info))


@_model_asset("spend", {"xgboost", "lightgbm"}, "Expected net spend in the next H days: the best of XGBoost/LightGBM (Tweedie), their BG/NBD blends and "
              "BG/NBD + Gamma-Gamma itself, and of the stacked cutoffs, on an out-of-time validation; times the level ratio of "
              "the scoring window's season a year back where the same correction two years back passes its check.")
def spend(context: dg.AssetExecutionContext, config: SpendConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "spend", config, lambda d: L.train_spend(d, log=context.log.info))


@_model_asset("next_purchase", {"xgboost"},
              "Days to the next purchase: XGBoost accelerated failure time, right-censored at the horizon; the stacked "
              "cutoffs chosen by the concordance index on an out-of-time validation.")
def next_purchase(context: dg.AssetExecutionContext, config: TrainingConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "next_purchase", config,
                  lambda d: L.train_next_purchase(d, log=context.log.info))


@_model_asset("ltv", set(),
              "Lifetime value over the LTV horizon: BG/NBD purchases x Gamma-Gamma spend (scipy implementation, parameters "
              "stored as JSON). Validated fitted on the histories at t against the spend of (t, t + H]; stored as refitted "
              "on the histories at t + H, the scoring cutoff it serves and the newest data it may see.")
def ltv(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    return _train(context, duckdb, "ltv", ModelConfig(),
                  lambda d: L.train_ltv(d.load(d.cutoff), d.cutoff, HORIZON_DAYS, LTV_HORIZON_DAYS, log=context.log.info,
                                        serve_frame=d.histories(d.cutoff + timedelta(days=HORIZON_DAYS))))


MODEL_ASSETS = [churn, spend, next_purchase, ltv]
MODEL_NAMES = ["churn", "spend", "ltv", "next_purchase"]
