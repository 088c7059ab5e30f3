"""Scored customers at cutoff s, using the models of partition s - H."""


from datetime import date, timedelta

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets import schemas
from customer_assets.features.assets import MISSING_HINT, require_current_features
from customer_assets.models import candidates as C
from customer_assets.models import drift as D
from customer_assets.models import logic as L
from customer_assets.models.assets import MODEL_NAMES
from customer_assets.partitions import CUTOFF_PARTITIONS, MODEL_FOR_SCORING
from customer_assets.scores import logic as S
from customer_assets.settings import ENV_HORIZON, ENV_LTV_HORIZON, HORIZON_DAYS, LTV_HORIZON_DAYS, currency, drift_limits
from customer_assets.storage import markdown_preview, replace_partition_df, table_exists


def _same_horizons(name: str, partition: date, row) -> None:
    """Refuse a stored model trained for another label horizon (or, for ltv, another LTV horizon) than the one set
    now: its probabilities and spend are for a window of another length. Rows of earlier versions record none."""
    held = [("horizon_days", HORIZON_DAYS, ENV_HORIZON)]
    if name == "ltv":
        held.append(("ltv_horizon_days", LTV_HORIZON_DAYS, ENV_LTV_HORIZON))
    for column, now, variable in held:
        then = row.get(column)
        if then is not None and not pd.isna(then) and int(then) != now:
            raise dg.Failure(
                f"models/{name} of partition {partition} was trained for a {int(then)}-day horizon, but {variable} is "
                f"now {now}: its forecasts are for a window of another length. Materialize models/{name} for partition "
                f"{partition} again (the train_models job), or set {variable} back to {int(then)}.")


def load_model(conn, name: str, model_cutoff: date, scoring_cutoff: date) -> tuple[L.ModelRecord, date, str]:
    """The model of partition ``model_cutoff``, or the last promoted one before it.

    Returns the record, the partition it came from and a note. Fails with a message naming
    the partition when that partition was never materialized.
    """
    missing = dg.Failure(
        f"No models/{name} for partition {model_cutoff} (scoring cutoff {scoring_cutoff} - {HORIZON_DAYS} days). "
        f"Materialize models/{name} for partition {model_cutoff} first, e.g. "
        f"`customer-assets materialize --cutoff {scoring_cutoff}`."
    )
    if not table_exists(conn, "models", name):
        raise missing
    rows = conn.execute(f"SELECT * FROM models.{name} WHERE cutoff_date = ?", [model_cutoff]).df()
    if rows.empty:
        raise missing
    _same_horizons(name, model_cutoff, rows.iloc[0])
    record = L.ModelRecord.from_row(rows.iloc[0].to_dict())
    if record.promoted:
        return record, model_cutoff, "promoted"
    previous = conn.execute(
        f"SELECT * FROM models.{name} WHERE cutoff_date < ? AND promoted ORDER BY cutoff_date DESC LIMIT 1", [model_cutoff]
    ).df()
    if previous.empty:
        raise dg.Failure(
            f"models/{name} of partition {model_cutoff} was not promoted ({'; '.join(record.notes)}) and no earlier "
            f"partition holds a promoted models/{name} to keep using. Train an earlier partition or inspect the data."
        )
    kept = previous.iloc[0]
    _same_horizons(name, kept["cutoff_date"].date(), kept)
    return L.ModelRecord.from_row(kept.to_dict()), kept["cutoff_date"].date(), (
        f"partition {model_cutoff} not promoted ({'; '.join(record.notes)}); kept the last good model of {kept['cutoff_date'].date()}"
    )


def served_models(conn, names: list[str], scoring_cutoff: date, warn) -> dict[str, tuple[L.ModelRecord, date, str]]:
    """``load_model`` for each of ``names`` at ``scoring_cutoff`` (models of scoring_cutoff - H); ``warn`` names any
    partition that was not promoted and the model kept in its place."""
    model_cutoff = scoring_cutoff - timedelta(days=HORIZON_DAYS)
    loaded = {n: load_model(conn, n, model_cutoff, scoring_cutoff) for n in names}
    for n, (_, _, note) in loaded.items():
        if note != "promoted":
            warn(f"models/{n}: {note}")
    return loaded


def scoring_frame(feats: pd.DataFrame, segs: pd.DataFrame, cutoff: date) -> pd.DataFrame:
    """The features at ``cutoff`` with each customer's segment and the BG/NBD outputs that any model may read."""
    if len(segs) == len(feats) and np.array_equal(segs["customer_id"].to_numpy(), feats["customer_id"].to_numpy()):
        df = feats.assign(segment=segs["segment"].to_numpy())  # same customers in the same order: no join needed
    else:
        df = feats.merge(segs[["customer_id", "segment"]], on="customer_id", how="left", validate="one_to_one")
    df = C.add_bgnbd_features(df, HORIZON_DAYS)  # once, shared by every model that uses BG/NBD outputs
    if df["segment"].isna().any():
        raise ValueError(f"{int(df['segment'].isna().sum())} customers at {cutoff} have no segment")
    return df


def score_frame(feats: pd.DataFrame, segs: pd.DataFrame, models: dict[str, L.ModelRecord], cutoff: date, model_cutoff: date,
                kept: dict[str, date] | None = None, prepared: pd.DataFrame | None = None) -> pd.DataFrame:
    """Apply the four models to the features at ``cutoff``. Pure: no warehouse access.

    ``kept`` names the models that came from an earlier partition than ``model_cutoff`` (that partition's model was
    not promoted), with the partition they came from; it fills ``models_kept``. ``prepared`` is ``scoring_frame`` of
    the same arguments, when the caller has it already.
    """
    df = scoring_frame(feats, segs, cutoff) if prepared is None else prepared
    p = L.predict_purchase(models["churn"], df, HORIZON_DAYS).astype("float64")
    out = pd.DataFrame({
        "cutoff_date": cutoff,
        "customer_id": df["customer_id"],
        "segment": df["segment"],
        "purchase_probability": p,
        "churn_probability": 1.0 - p,
        "predicted_spend": L.predict_spend(models["spend"], df, HORIZON_DAYS).astype("float64"),
        "predicted_ltv": L.predict_ltv(models["ltv"], df, LTV_HORIZON_DAYS).astype("float64"),
        "predicted_days_to_next_purchase": L.predict_next_purchase(models["next_purchase"], df, HORIZON_DAYS).astype("float64"),
    })
    out["top_drivers"] = L.top_drivers(models["churn"], models["spend"], df, HORIZON_DAYS)
    out["outside_training_range"] = D.outside_features([m.feature_profile for m in models.values()], df).to_numpy()
    out["value_decile"] = S.value_deciles(out["predicted_ltv"].to_numpy()).astype("int32")
    out["recommended_action"] = S.recommended_actions(out)
    out["horizon_days"] = HORIZON_DAYS
    out["ltv_horizon_days"] = LTV_HORIZON_DAYS
    out["model_cutoff_date"] = model_cutoff
    note = "; ".join(f"{n} {d}" for n, d in sorted((kept or {}).items())) or None
    out["models_kept"] = pd.Series(note, index=out.index, dtype="string")  # typed: an all-NULL column would be INTEGER
    return out[S.SCORED_COLUMNS]


DRIFT_CHECK = "features_like_training"


def drift_check(cutoff: date, loaded: dict[str, tuple[L.ModelRecord, date, str]], prepared: pd.DataFrame,
                limits: tuple[float, float] = (D.PSI_WARN, D.OUT_OF_RANGE_WARN)
                ) -> tuple[dg.AssetCheckResult, float | None, pd.DataFrame]:
    """``features_like_training``: the customers at ``cutoff`` against the feature profile of each model that scored
    them (``models.drift``), with ``limits`` (PSI, share outside a range) before chance raises them. Returns the
    check's result, the largest PSI (None when no model has a profile) and the rows of ``scores.feature_drift`` for
    ``cutoff``."""
    psi_warn, out_of_range_warn = limits
    table, unprofiled = D.compare_models({n: (v[0].feature_profile, v[1]) for n, v in loaded.items()}, prepared,
                                         psi_warn, out_of_range_warn)
    past = D.drifted(table)
    # the table is created with the types of schemas.FEATURE_DRIFT, and the insert casts to them
    rows = table.assign(cutoff_date=cutoff, past_limits=table.index.isin(past.index))
    max_psi = float(table["psi"].max()) if len(table) else None
    metadata = {
        "cutoff": str(cutoff),
        "limits": f"PSI above {psi_warn:g} (or above what chance gives two samples of these sizes one time in "
                  f"{1 / (1 - D.PSI_CHANCE_QUANTILE):,.0f}, when that is more: psi_limit), or more than "
                  f"{out_of_range_warn:.0%} of the customers outside the range of the rows the model was fitted on "
                  "(or what chance gives when so few customers were compared: outside_limit); set with CUSTOMER_ASSETS_DRIFT_PSI "
                  "and CUSTOMER_ASSETS_DRIFT_OUTSIDE",
        "model_features_compared": len(table),
        "features_past_limits": len(past),
        "feature_drift": dg.MetadataValue.md(markdown_preview(table.sort_values("psi", ascending=False), n=60)),
    }
    if max_psi is not None:
        metadata["max_psi"] = max_psi
    if unprofiled:
        metadata["models_without_profile"] = ", ".join(
            f"{n} {loaded[n][1]} (trained before feature profiles were kept: materialize models/{n} for {loaded[n][1]} "
            "again to compare it)" for n in unprofiled)
    description = None
    if len(past):
        description = (f"The customers at {cutoff} differ from those the models learned from: "
                       + "; ".join(D.summary(past)) + ". Trees score customers beyond the training range as the most "
                       "extreme ones they saw. Look for what changed (the acquisition of customers, the season, the "
                       "source or its mapping) before relying on these scores.")
    return dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=past.empty, severity=dg.AssetCheckSeverity.WARN,
                               description=description, metadata=metadata), max_psi, rows


@dg.asset(
    key=["scores", "scored_customers"],
    deps=[
        dg.AssetKey(["features", "customer_features"]),
        dg.AssetKey(["segments", "customer_segments"]),
        *[dg.AssetDep(dg.AssetKey(["models", n]), partition_mapping=MODEL_FOR_SCORING) for n in MODEL_NAMES],
    ],
    partitions_def=CUTOFF_PARTITIONS,
    group_name="scores",
    kinds={"duckdb", "xgboost"},
    pool="duckdb",
    description=(
        "One row per customer per scoring cutoff s: purchase and churn probability, expected spend in (s, s + H], "
        "lifetime value, days to next purchase, value decile and recommended action. Uses the models of partition s - H, "
        "whose labels end at s: nothing after s is touched."
    ),
    metadata={"dagster/column_schema": schemas.column_schema(schemas.SCORED_CUSTOMERS)},
    check_specs=[dg.AssetCheckSpec(
        DRIFT_CHECK, asset=["scores", "scored_customers"], blocking=False,
        description=f"The customers scored look like those each model learned from: for every input feature, a "
                    f"population stability index of at most {D.PSI_WARN} over the deciles of the customers at the "
                    f"model's partition, and at most {D.OUT_OF_RANGE_WARN:.0%} of the customers outside the range of "
                    "every row the model was fitted on (both limits higher where so few customers were compared that chance alone would pass "
                    "them; CUSTOMER_ASSETS_DRIFT_PSI and CUSTOMER_ASSETS_DRIFT_OUTSIDE set the two). Fails with WARN: "
                    "nothing downstream is stopped.",
    )],
)
def scored_customers(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    cutoff = date.fromisoformat(context.partition_key)
    model_cutoff = cutoff - timedelta(days=HORIZON_DAYS)
    try:  # before anything is written: a bad limit fails the run with what to set, and the scores stay as they were
        limits, money = drift_limits(), currency()
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    with duckdb.get_connection() as conn:
        loaded = served_models(conn, MODEL_NAMES, cutoff, context.log.warning)
        models = {n: v[0] for n, v in loaded.items()}
        feats = conn.execute("SELECT * FROM features.customer_features WHERE cutoff_date = ? ORDER BY customer_id", [cutoff]).df()
        if feats.empty:
            raise dg.Failure(f"features/customer_features has no rows for {cutoff}: materialize that partition first." + MISSING_HINT)
        require_current_features(context, conn, cutoff, "scores/scored_customers")
        segs = conn.execute("SELECT customer_id, segment FROM segments.customer_segments WHERE cutoff_date = ? ORDER BY customer_id",
                            [cutoff]).df()
        if segs.empty:
            raise dg.Failure(f"segments/customer_segments has no rows for {cutoff}: materialize that partition first." + MISSING_HINT)
        context.log.info(f"Scoring {len(feats):,} customers at {cutoff} with the models of {model_cutoff}")
        kept = {n: v[1] for n, v in loaded.items() if v[1] != model_cutoff}
        prepared = scoring_frame(feats, segs, cutoff)
        out = score_frame(feats, segs, models, cutoff, model_cutoff, kept, prepared=prepared)
        n = replace_partition_df(conn, "scores", "scored_customers", cutoff, out)
        drift, max_psi, drift_rows = drift_check(cutoff, loaded, prepared, limits)
        replace_partition_df(conn, "scores", "feature_drift", cutoff, drift_rows, columns=schemas.FEATURE_DRIFT)
    by_segment = S.segment_profile(out, feats)
    from customer_assets import charts as ch

    deciles = out.groupby("value_decile")["predicted_ltv"].sum().sort_index(ascending=False)
    decile_chart = ch.md_image(ch.bar_chart([f"decile {d}" for d in deciles.index], deciles.tolist(),
                                            f"Expected {LTV_HORIZON_DAYS}-day value by value decile", money + "{:,.0f}"), "value deciles")
    at_risk = (out[out["churn_probability"] >= 0.5].assign(value_at_risk=lambda f: f["predicted_ltv"] * f["churn_probability"])
               .sort_values("value_at_risk", ascending=False)
               [["customer_id", "segment", "churn_probability", "predicted_ltv", "value_at_risk", "recommended_action"]])
    return dg.MaterializeResult(
        check_results=[drift],
        metadata={
            "dagster/row_count": n,
            **({"feature_drift_max_psi": max_psi} if max_psi is not None else {}),
            "value_decile_chart": dg.MetadataValue.md(decile_chart),
            "top_customers_at_risk": dg.MetadataValue.md(markdown_preview(at_risk, n=15)),
            "model_cutoff_date": str(model_cutoff),
            "models_used": dg.MetadataValue.json({n: {"partition": str(v[1]), "status": v[2], "family": v[0].params.get("family")}
                                                  for n, v in loaded.items()}),
            "mean_churn_probability": float(out["churn_probability"].mean()),
            "expected_spend_in_horizon": float(out["predicted_spend"].sum()),
            "expected_ltv_total": float(out["predicted_ltv"].sum()),
            "segment_profile": dg.MetadataValue.md(markdown_preview(by_segment, n=20)),
            "segment_value_chart": dg.MetadataValue.md(ch.md_image(ch.bar_chart(
                by_segment["segment"].tolist(), by_segment["expected_ltv"].tolist(),
                f"Expected {LTV_HORIZON_DAYS}-day value by segment", money + "{:,.0f}"), "segment value")),
            "preview": dg.MetadataValue.md(markdown_preview(out.sort_values("predicted_ltv", ascending=False))),
        }
    )
