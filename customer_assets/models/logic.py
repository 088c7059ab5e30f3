"""Model training and prediction, as pure functions over feature frames.

Every supervised model follows the same out-of-time recipe at model partition ``t``:

1. *validation fit*: train on the stacked earlier cutoffs ``t-k, t-2k, ...`` and
   evaluate on cutoff ``t`` (whose labels end at ``t + H``). These are the recorded
   validation metrics, and for churn the held-out predictions fit the calibrator;
2. *final fit*: train with the same settings on ``t`` plus the earlier cutoffs.

So the model of partition ``t`` has seen data dated up to ``t + H`` and nothing later.
Artifacts are portable: XGBoost JSON text, and plain JSON parameters for the
probabilistic models. Loading them never executes code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

from customer_assets.evaluation import metrics as M
from customer_assets.features.logic import FEATURE_COLUMNS
from customer_assets.models import probabilistic as P

WEEK = 7.0
MIN_LABELLED_CUSTOMERS = 50
XGB_THREADS = 2


@dataclass
class ModelRecord:
    """A trained model as stored in ``models.<name>`` (one row per partition)."""

    model_name: str
    library: str
    library_version: str
    artifact_format: str
    artifact: str
    features: list[str]
    params: dict[str, Any]
    metrics: dict[str, float]
    training_cutoffs: list[date]
    n_train_rows: int
    calibration: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_row(self, cutoff: date) -> dict[str, Any]:
        return {
            "cutoff_date": cutoff,
            "model_name": self.model_name,
            "library": self.library,
            "library_version": self.library_version,
            "artifact_format": self.artifact_format,
            "artifact": self.artifact,
            "features": json.dumps(self.features),
            "params": json.dumps(self.params),
            "metrics": json.dumps(_finite(self.metrics)),
            "calibration": json.dumps(self.calibration),
            "training_cutoffs": json.dumps([str(c) for c in self.training_cutoffs]),
            "n_train_rows": int(self.n_train_rows),
            "notes": json.dumps(self.notes),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ModelRecord:
        return cls(
            model_name=row["model_name"],
            library=row["library"],
            library_version=row["library_version"],
            artifact_format=row["artifact_format"],
            artifact=row["artifact"],
            features=json.loads(row["features"]),
            params=json.loads(row["params"]),
            metrics=json.loads(row["metrics"]),
            calibration=json.loads(row["calibration"]),
            training_cutoffs=[date.fromisoformat(c) for c in json.loads(row["training_cutoffs"])],
            n_train_rows=int(row["n_train_rows"]),
            notes=json.loads(row["notes"]),
        )


def _finite(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if v is not None and np.isfinite(v) else None) for k, v in d.items()}


class InsufficientDataError(ValueError):
    """Too little data to fit a model; the message says what is missing and what would be enough."""


def check_training_data(frame: pd.DataFrame, model_name: str, min_rows: int = MIN_LABELLED_CUSTOMERS) -> None:
    n = len(frame)
    if n < min_rows:
        raise InsufficientDataError(
            f"{model_name}: only {n} customer rows with complete labels; at least {min_rows} are needed "
            "(more cutoffs of history, or a larger data set)."
        )


def _matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    return frame[features].astype(float).to_numpy()


# ----------------------------------------------------------------------------- XGBoost helpers

CHURN_PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "eta": 0.05,
    "max_depth": 4,
    "min_child_weight": 10,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "seed": 0,
    "nthread": XGB_THREADS,
}
SPEND_PARAMS = {
    "objective": "reg:tweedie",
    "tweedie_variance_power": 1.5,
    "eval_metric": "rmse",
    "eta": 0.05,
    "max_depth": 4,
    "min_child_weight": 10,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "seed": 0,
    "nthread": XGB_THREADS,
}
NEXT_PARAMS = {
    "objective": "survival:aft",
    "eval_metric": "aft-nloglik",
    "aft_loss_distribution": "normal",
    "aft_loss_distribution_scale": 1.0,
    "eta": 0.05,
    "max_depth": 4,
    "min_child_weight": 10,
    "subsample": 0.8,
    "seed": 0,
    "nthread": XGB_THREADS,
}
MAX_ROUNDS = 600
EARLY_STOP = 40


def booster_to_text(booster: xgb.Booster) -> str:
    return bytes(booster.save_raw(raw_format="json")).decode("utf-8")


def booster_from_text(text: str) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(text.encode("utf-8")))
    return booster


def _dmatrix(frame: pd.DataFrame, features: list[str], label=None, lower=None, upper=None) -> xgb.DMatrix:
    d = xgb.DMatrix(_matrix(frame, features), feature_names=features, missing=np.nan)
    if label is not None:
        d.set_label(np.asarray(label, dtype=float))
    if lower is not None:
        d.set_float_info("label_lower_bound", np.asarray(lower, dtype=float))
        d.set_float_info("label_upper_bound", np.asarray(upper, dtype=float))
    return d


def _split(frame: pd.DataFrame, cutoff: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    cd = pd.to_datetime(frame["cutoff_date"]).dt.date
    return frame[cd < cutoff], frame[cd == cutoff]


def _fit_two_stage(frame, cutoff, params, make_dm, log=None):
    """Validation fit on earlier cutoffs (early-stopped on ``cutoff``), then a final fit on all."""
    earlier, latest = _split(frame, cutoff)
    notes = []
    if len(earlier) >= MIN_LABELLED_CUSTOMERS:
        dtrain, dvalid = make_dm(earlier), make_dm(latest)
        val_booster = xgb.train(
            params, dtrain, MAX_ROUNDS, evals=[(dvalid, "validation")], early_stopping_rounds=EARLY_STOP, verbose_eval=False
        )
        rounds = int(val_booster.best_iteration) + 1
        val_pred = val_booster.predict(dvalid, iteration_range=(0, rounds))
    else:
        notes.append("no earlier cutoffs to validate on: validation metrics are in-sample")
        rounds = 200
        val_booster = xgb.train(params, make_dm(latest), rounds)
        val_pred = val_booster.predict(make_dm(latest))
    final = xgb.train(params, make_dm(frame), rounds)
    if log:
        log(f"{params['objective']}: {rounds} boosting rounds, {len(frame)} training rows")
    return final, latest, val_pred, rounds, notes


def train_churn(frame: pd.DataFrame, cutoff: date, features: list[str] | None = None, log=None) -> ModelRecord:
    """Purchase classifier with out-of-time Platt calibration; churn = 1 - P(purchase)."""
    features = features or FEATURE_COLUMNS
    check_training_data(frame, "churn")
    y = frame["label_purchase"].astype(float)
    if y.nunique() < 2:
        raise InsufficientDataError(
            f"churn: the labels at {cutoff} have a single class (all {'buyers' if y.iloc[0] else 'non-buyers'}); "
            "a classifier needs both buyers and non-buyers in the training window."
        )

    def dm(f):
        return _dmatrix(f, features, f["label_purchase"].astype(float))

    final, latest, val_raw, rounds, notes = _fit_two_stage(frame, cutoff, CHURN_PARAMS, dm, log)
    y_val = latest["label_purchase"].astype(float).to_numpy()
    logit = np.log(np.clip(val_raw, 1e-6, 1 - 1e-6) / (1 - np.clip(val_raw, 1e-6, 1 - 1e-6)))
    cal = LogisticRegression(C=1e6).fit(logit.reshape(-1, 1), y_val)
    a, b = float(cal.coef_[0, 0]), float(cal.intercept_[0])
    p_val = 1 / (1 + np.exp(-(a * logit + b)))
    metrics = {
        "validation_roc_auc": M.roc_auc(y_val, p_val),
        "validation_pr_auc": M.pr_auc(y_val, p_val),
        "validation_brier": M.brier(y_val, p_val),
        "validation_log_loss": M.log_loss(y_val, p_val),
        "validation_brier_uncalibrated": M.brier(y_val, val_raw),
        "baseline_neg_recency_roc_auc": M.roc_auc(y_val, -latest["recency_days"].to_numpy()),
        "validation_base_rate": float(y_val.mean()),
    }
    return ModelRecord(
        "churn", "xgboost", xgb.__version__, "xgboost-json", booster_to_text(final), features,
        {**CHURN_PARAMS, "num_boost_round": rounds}, metrics,
        sorted(set(pd.to_datetime(frame["cutoff_date"]).dt.date)), len(frame),
        {"method": "platt", "a": a, "b": b, "fitted_on_cutoff": str(cutoff)}, notes,
    )


def predict_purchase(record: ModelRecord, frame: pd.DataFrame) -> np.ndarray:
    booster = booster_from_text(record.artifact)
    raw = booster.predict(_dmatrix(frame, record.features))
    raw = np.clip(raw, 1e-6, 1 - 1e-6)
    logit = np.log(raw / (1 - raw))
    a, b = record.calibration["a"], record.calibration["b"]
    return 1 / (1 + np.exp(-(a * logit + b)))


def train_spend(frame: pd.DataFrame, cutoff: date, features: list[str] | None = None, log=None) -> ModelRecord:
    """Expected net spend in the horizon (Tweedie boosting; labels below 0 are clipped to 0)."""
    features = features or FEATURE_COLUMNS
    check_training_data(frame, "spend")

    def dm(f):
        return _dmatrix(f, features, np.clip(f["label_spend"].astype(float), 0, None))

    final, latest, val_pred, rounds, notes = _fit_two_stage(frame, cutoff, SPEND_PARAMS, dm, log)
    y_val = latest["label_spend"].astype(float).to_numpy()
    metrics = {
        "validation_r2": M.r2(y_val, val_pred),
        "validation_rmse": M.rmse(y_val, val_pred),
        "validation_aggregate_error": M.aggregate_error(y_val, val_pred),
        "validation_top10_share": M.top_share(y_val, val_pred),
        "baseline_last_h_spend_r2": M.r2(y_val, latest["spend_90d"].to_numpy()),
    }
    return ModelRecord(
        "spend", "xgboost", xgb.__version__, "xgboost-json", booster_to_text(final), features,
        {**SPEND_PARAMS, "num_boost_round": rounds}, metrics,
        sorted(set(pd.to_datetime(frame["cutoff_date"]).dt.date)), len(frame), {}, notes,
    )


def predict_spend(record: ModelRecord, frame: pd.DataFrame) -> np.ndarray:
    return np.clip(booster_from_text(record.artifact).predict(_dmatrix(frame, record.features)), 0, None)


def train_next_purchase(frame: pd.DataFrame, cutoff: date, horizon_days: int, features: list[str] | None = None, log=None) -> ModelRecord:
    """Days to the next purchase: accelerated-failure-time boosting, right-censored at the horizon."""
    features = features or FEATURE_COLUMNS
    check_training_data(frame, "next_purchase")
    if not frame["label_purchase"].astype(bool).any():
        raise InsufficientDataError(f"next_purchase: nobody bought in the label window at {cutoff}; nothing to learn from")

    def dm(f):
        days = f["label_days_to_next_purchase"].astype(float).to_numpy()
        bought = ~np.isnan(days)
        lower = np.where(bought, days, float(horizon_days))
        upper = np.where(bought, days, np.inf)
        return _dmatrix(f, features, None, lower, upper)

    final, latest, val_pred, rounds, notes = _fit_two_stage(frame, cutoff, NEXT_PARAMS, dm, log)
    days = latest["label_days_to_next_purchase"].astype(float).to_numpy()
    bought = ~np.isnan(days)
    time = np.where(bought, days, float(horizon_days))
    metrics = {
        "validation_c_index": M.concordance_index(time, bought, val_pred),
        "validation_mae_days_buyers": float(np.mean(np.abs(np.clip(val_pred[bought], 1, 3650) - days[bought]))) if bought.any() else float("nan"),
    }
    return ModelRecord(
        "next_purchase", "xgboost", xgb.__version__, "xgboost-json", booster_to_text(final), features,
        {**NEXT_PARAMS, "num_boost_round": rounds, "censored_at_days": horizon_days}, metrics,
        sorted(set(pd.to_datetime(frame["cutoff_date"]).dt.date)), len(frame), {}, notes,
    )


def predict_next_purchase(record: ModelRecord, frame: pd.DataFrame) -> np.ndarray:
    return np.clip(booster_from_text(record.artifact).predict(_dmatrix(frame, record.features)), 1, 3650)


# ----------------------------------------------------------------------------- BG/NBD + Gamma-Gamma

def rfm_weeks(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T, m) in weeks from the feature table."""
    x = frame["frequency"].astype(float).to_numpy()
    t_x = frame["t_x_days"].astype(float).to_numpy() / WEEK
    T = frame["tenure_days"].astype(float).to_numpy() / WEEK
    m = frame["repeat_monetary_mean"].astype(float).to_numpy()
    return x, t_x, T, m


def train_ltv(frame: pd.DataFrame, cutoff: date, horizon_days: int, ltv_horizon_days: int, log=None) -> ModelRecord:
    """BG/NBD + Gamma-Gamma fitted on the histories at ``cutoff``; validated on its label window."""
    check_training_data(frame, "ltv")
    x, t_x, T, m = rfm_weeks(frame)
    bg = P.fit_bgnbd(x, t_x, T)
    gg = P.fit_gamma_gamma(x, m)
    notes = []
    if not bg.converged:
        notes.append(f"BG/NBD optimiser: {bg.method}")
    if not gg.converged:
        notes.append(f"Gamma-Gamma optimiser: {gg.method}")
    if gg.q <= 1:
        raise InsufficientDataError(f"ltv: Gamma-Gamma q = {gg.q:.3f} <= 1 gives an infinite mean spend; more repeat buyers are needed")
    metrics: dict[str, float] = {"bgnbd_log_likelihood": bg.log_likelihood, "gamma_gamma_log_likelihood": gg.log_likelihood}
    if "label_spend" in frame and frame["label_spend"].notna().all():
        pred_h = P.bgnbd_expected_purchases(bg, horizon_days / WEEK, x, t_x, T) * P.gamma_gamma_expected_spend(gg, x, m)
        y = frame["label_spend"].astype(float).to_numpy()
        metrics.update({
            "in_window_r2": M.r2(y, pred_h),
            "in_window_aggregate_error": M.aggregate_error(y, pred_h),
            "in_window_top10_share": M.top_share(y, pred_h),
            "in_window_purchase_roc_auc": M.roc_auc(frame["label_purchase"].astype(float), P.bgnbd_probability_of_purchase(bg, horizon_days / WEEK, x, t_x, T)),
        })
    if log:
        log(f"BG/NBD r={bg.r:.3f} alpha={bg.alpha:.3f} a={bg.a:.3f} b={bg.b:.3f}; Gamma-Gamma p={gg.p:.3f} q={gg.q:.3f} v={gg.v:.3f}")
    params = {"bgnbd": bg.to_dict(), "gamma_gamma": gg.to_dict(), "time_unit_days": WEEK, "ltv_horizon_days": ltv_horizon_days}
    return ModelRecord(
        "ltv", "customer_assets.probabilistic (scipy)", "1", "json-params", json.dumps(params),
        ["frequency", "t_x_days", "tenure_days", "repeat_monetary_mean"], params, metrics, [cutoff], len(frame), {}, notes,
    )


def _ltv_params(record: ModelRecord) -> tuple[P.BGNBDParams, P.GammaGammaParams]:
    params = json.loads(record.artifact)
    return P.BGNBDParams(**params["bgnbd"]), P.GammaGammaParams(**params["gamma_gamma"])


def predict_ltv(record: ModelRecord, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Expected spend over ``horizon_days``: E[purchases] x E[spend per purchase]."""
    bg, gg = _ltv_params(record)
    x, t_x, T, m = rfm_weeks(frame)
    return P.bgnbd_expected_purchases(bg, horizon_days / WEEK, x, t_x, T) * P.gamma_gamma_expected_spend(gg, x, m)
