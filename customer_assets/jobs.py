"""Asset jobs: ingest, training at t, rescoring at s, and the backtests once their windows are complete."""

from __future__ import annotations

import dagster as dg

from customer_assets.settings import max_runtime_seconds

RAW = dg.AssetKey(["raw", "transactions"])
CLEAN = dg.AssetKey(["clean", "transactions"])
REJECTED = dg.AssetKey(["quality", "rejected_transactions"])
HISTORY_CHANGES = dg.AssetKey(["quality", "history_changes"])
SPLITS = [dg.AssetKey(["features", "calibration_transactions"]), dg.AssetKey(["features", "holdout_transactions"])]
FEATURES = dg.AssetKey(["features", "customer_features"])
SEGMENTS = dg.AssetKey(["segments", "customer_segments"])
MODELS = [dg.AssetKey(["models", n]) for n in ("churn", "spend", "ltv", "next_purchase")]
SCORES = dg.AssetKey(["scores", "scored_customers"])
SERVING = dg.AssetKey(["serving", "snapshot"])
REPORT = dg.AssetKey(["reports", "customer_report"])
BACKTEST = dg.AssetKey(["evaluation", "backtest"])
LTV_BACKTEST = dg.AssetKey(["evaluation", "ltv_backtest"])

INGEST_SELECTION = dg.AssetSelection.assets(RAW, CLEAN, REJECTED, HISTORY_CHANGES)
TRAIN_SELECTION = dg.AssetSelection.assets(*SPLITS, FEATURES, *MODELS)
SCORE_SELECTION = dg.AssetSelection.assets(*SPLITS, FEATURES, SEGMENTS, SCORES, SERVING, REPORT)
# the serving copy and the report too: the schedule republishes them after the night's backtests (runs with an asset
# selection), so that analysts see the backtests and the report's track record holds them
BACKTEST_SELECTION = dg.AssetSelection.assets(BACKTEST, LTV_BACKTEST, SERVING, REPORT)

# Dagster's run monitoring (dagster.yaml) fails a run of these jobs that lasts longer than this
MAX_RUNTIME = max_runtime_seconds()
JOB_TAGS = {"dagster/max_runtime": str(MAX_RUNTIME)} if MAX_RUNTIME else {}

ingest_job = dg.define_asset_job(
    "ingest_transactions", selection=INGEST_SELECTION, description="Read the source file, clean it and reconcile.",
    tags=JOB_TAGS,
)
train_job = dg.define_asset_job(
    "train_models",
    selection=TRAIN_SELECTION,
    description="Features and the four models for a training partition t (labels up to t + H).",
    tags=JOB_TAGS,
)
rescore_job = dg.define_asset_job(
    "rescore_customers",
    selection=SCORE_SELECTION,
    description="Features, segments and scores for a scoring partition s, using the models of s - H.",
    tags=JOB_TAGS,
)
backtest_job = dg.define_asset_job(
    "backtest_models",
    selection=BACKTEST_SELECTION,
    description="Out-of-time backtests: the models of partition t against (t + H, t + 2H], the LTV model against its "
                "horizon; the schedule then republishes the serving copy and the report with them.",
    tags=JOB_TAGS,
)
