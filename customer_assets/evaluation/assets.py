"""Backtests as assets: out-of-time evaluation of each model partition, side by side with baselines."""

from datetime import date, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets import schemas
from customer_assets.evaluation import logic as E
from customer_assets.evaluation import metrics as M
from customer_assets.features import logic as F
from customer_assets.models import logic as L
from customer_assets.models.assets import MODEL_NAMES
from customer_assets.partitions import CUTOFF_PARTITIONS, MODEL_FOR_SCORING
from customer_assets.reports import logic as R
from customer_assets.scores.assets import served_models
from customer_assets.segments import logic as SG
from customer_assets.settings import HORIZON_DAYS, LTV_HORIZON_DAYS, segment_count
from customer_assets.storage import markdown_preview, replace_partition_df, table_exists

FEATURES = dg.AssetKey(["features", "customer_features"])
NOT_WORSE = "champion_not_worse_than_baselines"
WITHIN_PAST_MISSES = "total_within_past_misses"
EVAL_FEATURES = dg.TimeWindowPartitionMapping(start_offset=HORIZON_DAYS, end_offset=HORIZON_DAYS)


class BacktestConfig(dg.Config):
    """Bootstrap resamples for the paired 95% intervals."""

    bootstrap_samples: int = 200


def _features(conn, cutoff: date, end: date, reader: str, warn=None) -> pd.DataFrame:
    """Features at ``cutoff`` from the warehouse when materialized with complete labels, else from the same SQL."""
    if F.stored_labelled_rows(conn, cutoff, HORIZON_DAYS, reader, warn):
        return conn.execute("SELECT * FROM features.customer_features WHERE cutoff_date = ?", [cutoff]).df()
    return F.compute_features(conn, cutoff, HORIZON_DAYS, end)


def _segments_at(conn, s: date, test: pd.DataFrame) -> tuple[pd.Series, str]:
    """Each customer's persona at ``s``, indexed by customer id, and where it came from: ``stored`` (the
    ``segments.customer_segments`` partition at s, which scoring at s served) when it covers every customer of
    ``test``, else ``fitted`` here on the features at s, as ``segments/customer_segments`` would fit them."""
    if table_exists(conn, "segments", "customer_segments"):
        stored = conn.execute("SELECT customer_id, segment FROM segments.customer_segments WHERE cutoff_date = ?",
                              [s]).df()
        if len(stored) and set(test["customer_id"]) <= set(stored["customer_id"]):
            return stored.set_index("customer_id")["segment"], "stored"
    try:
        k = segment_count()
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    return SG.personas_of(test[["customer_id", *SG.SEGMENT_FEATURES, "tenure_days"]], k=k or None), "fitted"


def _headline(rows: pd.DataFrame) -> dict:
    pick = rows.set_index(["task", "system", "metric"])["value"]
    out = {}
    for (task, system, metric), v in pick.items():
        if system == E.CHAMPION and metric in ("roc_auc", "pr_auc", "brier", "ece", "r2", "aggregate_error", "top10_share", "c_index"):
            out[f"{task}/{metric}"] = float(v) if v == v else dg.MetadataValue.null()
    return out


def _within_past_misses(known: pd.DataFrame, rows: pd.DataFrame, s: date) -> dg.AssetCheckResult:
    """The check ``total_within_past_misses``: the spend total's error at ``s`` against the range of the errors of
    the backtests known at ``s`` (``reports.logic.range_at``), the range the report at ``s`` showed."""
    misses = R.range_at(known, s, HORIZON_DAYS)
    pick = rows[(rows.task == "spend") & (rows.system == E.CHAMPION) & (rows.metric == "aggregate_error")]["value"]
    error = float(pick.iloc[0]) if len(pick) else float("nan")
    meta = {"scored_at": s.isoformat(), "error": error, "backtests_known": 0 if misses is None else misses[0]}
    if misses is None or error != error:
        return dg.AssetCheckResult(check_name=WITHIN_PAST_MISSES, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   description=f"no earlier backtest had ended by {s}: nothing to compare the total with",
                                   metadata=meta)
    k, low, high = misses
    held = low <= error <= high
    found = None if held else (f"the spend total scored at {s} missed by {error:+.1%}, outside the {low:+.1%} to "
                               f"{high:+.1%} of " + ("the one backtest" if k == 1 else f"the {k} backtests")
                               + " known then")
    return dg.AssetCheckResult(check_name=WITHIN_PAST_MISSES, passed=held, severity=dg.AssetCheckSeverity.WARN,
                               description=found, metadata={**meta, "past_low": low, "past_high": high})


@dg.asset(
    key=["evaluation", "backtest"],
    deps=[*[dg.AssetKey(["models", n]) for n in MODEL_NAMES], dg.AssetDep(FEATURES, partition_mapping=EVAL_FEATURES)],
    partitions_def=CUTOFF_PARTITIONS,
    group_name="evaluation",
    kinds={"duckdb", "xgboost"},
    pool="duckdb",
    description=(
        "Out-of-time backtest of the models of partition t (or, where they were not promoted, of the last good models "
        "that scored in their place): scored at s = t + H (features dated <= s) against the purchases "
        "of (s, s + H], next to the baselines (last-H-days spend, -recency, frequency, BG/NBD + Gamma-Gamma fitted at s, "
        "seed-style XGBoost). Baseline rows carry the champion-minus-baseline difference with a paired bootstrap 95% "
        "interval. Reliability bins in evaluation.reliability; the spend forecast by decile in evaluation.spend_deciles; "
        "the forecasts by segment at s in evaluation.segment_metrics."
    ),
    metadata={"dagster/column_schema": schemas.column_schema(schemas.BACKTEST_METRICS)},
    check_specs=[dg.AssetCheckSpec(
        NOT_WORSE, asset=["evaluation", "backtest"], blocking=False,
        description="The champion is not worse than any baseline with 95% confidence (paired bootstrap) on ROC-AUC, PR-AUC, "
                    "Brier, spend R², top-10% share or next purchase's concordance index, out of time. Fails with WARN: a signal to look at the models, "
                    "nothing downstream is stopped.",
    ), dg.AssetCheckSpec(
        WITHIN_PAST_MISSES, asset=["evaluation", "backtest"], blocking=False,
        description="The champion's spend total over (s, s + H] missed by no more than the backtests known at s did "
                    "(those whose windows had ended by s, in the 365 days up to it; 0 included): the range of totals "
                    "that the report at s showed held. Fails with WARN: the level of the forecasts was off by more "
                    "than in any backtest of the last year. Passes, saying so, when no earlier backtest was known at s.",
    )],
)
def backtest(context: dg.AssetExecutionContext, config: BacktestConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    t = date.fromisoformat(context.partition_key)
    s = t + timedelta(days=HORIZON_DAYS)
    with duckdb.get_connection() as conn:
        _, end = F.data_bounds(conn)
        try:
            F.require_complete_labels(s, HORIZON_DAYS, end, f"evaluation/backtest of model partition {t} (scored at {s})")
        except F.IncompleteLabelsError as exc:
            raise dg.Failure(str(exc)) from exc
        # the models that scored s: those of t, or the last promoted ones when t's were not promoted (as scoring does)
        loaded = served_models(conn, MODEL_NAMES, s, context.log.warning)
        models = {n: v[0] for n, v in loaded.items()}
        train, test = (_features(conn, c, end, "evaluation/backtest", context.log.warning) for c in (t, s))
        context.log.info(f"Backtest: models of {t} scored at {s} on {len(test):,} customers")
        pred = E.predictions(test, train, models, HORIZON_DAYS)
        rows = pd.DataFrame(E.metric_rows(pred, HORIZON_DAYS, config.bootstrap_samples))
        rows.insert(0, "cutoff_date", t)
        rows.insert(1, "eval_cutoff_date", s)
        rows["n_customers"] = rows["n_customers"].fillna(len(test)).astype(int) if "n_customers" in rows else len(test)
        rel = pd.DataFrame(M.reliability_table(pred["label_purchase"], pred["purchase:" + E.CHAMPION]))
        rel.insert(0, "cutoff_date", t)
        rel.insert(1, "system", E.CHAMPION)
        deciles = pd.DataFrame(M.decile_table(pred["label_spend"], pred["spend:" + E.CHAMPION], pred["label_purchase"],
                                              pred["purchase:" + E.CHAMPION]))
        deciles.insert(0, "cutoff_date", t)
        deciles.insert(1, "eval_cutoff_date", s)
        deciles.insert(2, "system", E.CHAMPION)
        segments, segments_from = _segments_at(conn, s, test)
        by_segment = pd.DataFrame(M.segment_table(segments.reindex(pred["customer_id"]).to_numpy(), pred["label_spend"],
                                                   pred["spend:" + E.CHAMPION], pred["label_purchase"],
                                                   pred["purchase:" + E.CHAMPION]))
        by_segment = by_segment.assign(cutoff_date=t, eval_cutoff_date=s, system=E.CHAMPION, segments_from=segments_from)
        n = replace_partition_df(conn, "evaluation", "backtest_metrics", t, rows)
        replace_partition_df(conn, "evaluation", "reliability", t, rel)
        replace_partition_df(conn, "evaluation", "spend_deciles", t, deciles, columns=schemas.SPEND_DECILES)
        replace_partition_df(conn, "evaluation", "segment_metrics", t, by_segment, columns=schemas.SEGMENT_METRICS)
        # the other backtests' spend totals, for the check total_within_past_misses (it keeps those known at s)
        known = conn.execute("SELECT eval_cutoff_date, value FROM evaluation.backtest_metrics "
                             "WHERE system = 'champion' AND task = 'spend' AND metric = 'aggregate_error' "
                             "AND cutoff_date <> ?", [t]).df()
    table = rows[rows.metric.isin(["roc_auc", "pr_auc", "brier", "r2", "aggregate_error", "top10_share", "c_index"])]
    worse = E.significantly_worse(rows)
    by_range = rows[rows.task.str.endswith("_training_range")]
    found = None
    if len(worse):
        found = ("the champion is significantly worse than a baseline on "
                 + "; ".join(f"{r.task} {r.metric} vs {r.system}" for r in worse.itertuples()))
        context.log.warning(f"Backtest {t}: {found}")
    return dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(
            check_name=NOT_WORSE, passed=worse.empty, severity=dg.AssetCheckSeverity.WARN, description=found,
            metadata={"partition": t.isoformat(), "comparisons": int(rows["diff_ci_low"].notna().sum()),
                      "significantly_worse": dg.MetadataValue.md(markdown_preview(worse, n=20)) if len(worse) else "none"},
        ), _within_past_misses(known, rows, s)],
        metadata={
            "dagster/row_count": n,
            "eval_cutoff_date": str(s),
            "models_evaluated": dg.MetadataValue.json({n: str(v[1]) for n, v in loaded.items()}),
            **_headline(rows),
            "metrics": dg.MetadataValue.md(markdown_preview(table[["task", "system", "metric", "value", "diff_ci_low", "diff_ci_high"]], n=80)),
            "reliability": dg.MetadataValue.md(markdown_preview(rel, n=10)),
            # where the spend total's error comes from: the forecast against the truth, decile by decile
            "spend_deciles": dg.MetadataValue.md(markdown_preview(deciles.drop(columns=["cutoff_date", "eval_cutoff_date",
                                                                                       "system"]), n=10)),
            # how right the forecasts were for each persona at s
            "segment_metrics": dg.MetadataValue.md(markdown_preview(by_segment[[
                "segment", "customers", "mean_purchase_probability", "observed_purchase_rate", "roc_auc",
                "predicted_spend", "actual_spend", "aggregate_error"]], n=10)),
            "segments_from": segments_from,
            # do the scores that extrapolate (outside a range of the inputs the models learned from) miss more?
            "by_training_range": dg.MetadataValue.md(markdown_preview(
                by_range[["task", "system", "metric", "value", "n_customers"]], n=40)) if len(by_range) else "no rows",
        }
    )


# Net spend in the LTV window, from the transactions alone: the features partition at c may have been
# deleted by the retention (keep_cutoffs) and recomputed by _features, so it is not joined here.
LTV_LABEL_SQL = """
SELECT customer_id, sum(amount) AS actual
FROM clean.transactions
WHERE txn_date > ? AND txn_date <= ?
GROUP BY customer_id
"""


@dg.asset(
    key=["evaluation", "ltv_backtest"],
    deps=[dg.AssetDep(dg.AssetKey(["models", "ltv"]), partition_mapping=MODEL_FOR_SCORING), FEATURES],
    partitions_def=CUTOFF_PARTITIONS,
    group_name="evaluation",
    kinds={"duckdb"},
    pool="duckdb",
    description=(
        "Lifetime value checked on the full LTV horizon at cutoff c: the LTV that scoring at c serves (the models/ltv "
        "of partition c - H: BG/NBD + Gamma-Gamma validated on the histories at c - H, fitted on and applied to those "
        "at c) against the spend of (c, c + LTV horizon], next to BG/NBD + Gamma-Gamma refitted here on the histories "
        "at c (the published model as a library user would fit it at c; equal to the served one unless models/ltv was "
        "fitted on a sample of customers or the data have returns, which the served LTV nets out) and the "
        "last-365-days spend. Needs c + LTV horizon within the data "
        "(CDNOW: c <= 1997-06-30)."
    ),
    metadata={"dagster/column_schema": schemas.column_schema(schemas.LTV_METRICS)},
)
def ltv_backtest(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    c = date.fromisoformat(context.partition_key)
    window_end = c + timedelta(days=LTV_HORIZON_DAYS)
    with duckdb.get_connection() as conn:
        _, end = F.data_bounds(conn)
        if window_end > end:
            raise dg.Failure(
                f"evaluation/ltv_backtest at {c} needs spend up to {window_end} ({LTV_HORIZON_DAYS} days), but the data end "
                f"{end}. Use a cutoff on or before {end - timedelta(days=LTV_HORIZON_DAYS)}."
            )
        record, used, _ = served_models(conn, ["ltv"], c, context.log.warning)["ltv"]
        feats = _features(conn, c, end, "evaluation/ltv_backtest", context.log.warning)
        actual = conn.execute(LTV_LABEL_SQL, [c, window_end]).df()
        frame = feats.merge(actual, on="customer_id", how="left")
        y = frame["actual"].fillna(0).to_numpy()
        try:  # the comparison refit must not cost the check of what is served
            refit_rows = E.ltv_rows(y, L.predict_ltv(L.train_ltv(frame, c, HORIZON_DAYS, LTV_HORIZON_DAYS, net_of_returns=False), frame,
                                                     LTV_HORIZON_DAYS), "bgnbd_gamma_gamma")
        except L.InsufficientDataError as exc:
            context.log.warning(f"BG/NBD + Gamma-Gamma could not be refitted on the histories at {c} ({exc}): "
                                "the bgnbd_gamma_gamma rows are left out")
            refit_rows = []
        rows = pd.DataFrame(
            E.ltv_rows(y, L.predict_ltv(record, frame, LTV_HORIZON_DAYS), E.CHAMPION)
            + refit_rows
            + E.ltv_rows(y, frame["spend_365d"].to_numpy(dtype=float), "last_365d_spend")
        )
        rows.insert(0, "cutoff_date", c)
        rows["window_end"] = window_end
        rows["n_customers"] = len(frame)
        n = replace_partition_df(conn, "evaluation", "ltv_metrics", c, rows)
    champ = rows[rows.system == E.CHAMPION].set_index("metric")["value"]
    return dg.MaterializeResult(
        metadata={"dagster/row_count": n, **{f"ltv/{k}": float(v) for k, v in champ.items()},
                  "model_partition": str(used), "served_at": str(c),
                  "metrics": dg.MetadataValue.md(markdown_preview(rows, n=20))}
    )
