"""Backtests: the models of partition t scored at t + H against what customers then did, side by side with baselines.

Pure functions over feature frames; the assets in ``evaluation/assets.py`` feed them from DuckDB.
"""

import numpy as np
import pandas as pd
import xgboost as xgb

from customer_assets.evaluation import metrics as M
from customer_assets.models import candidates as C
from customer_assets.models import drift as D
from customer_assets.models import logic as L

SEED_FEATURES = ["recency_days", "frequency", "monetary_total", "monetary_mean"]
SEED_LEARNING_RATES = (0.01, 0.05, 0.1, 0.3)
CHAMPION = "champion"


def seed_style_model(train: pd.DataFrame, label: np.ndarray, objective: str) -> xgb.Booster:
    """The typical CLV-repository model: XGBoost on 4 RFM columns, learning rate by random 3-fold CV.

    Kept as a baseline only (random K-fold on temporal data is one of the habits we avoid).
    """
    d = xgb.DMatrix(train[SEED_FEATURES].astype(float).to_numpy(), label=label, feature_names=SEED_FEATURES)
    best = None
    for lr in SEED_LEARNING_RATES:
        params = {"objective": objective, "eta": lr, "max_depth": 3, "seed": 0, "nthread": C.THREADS}
        cv = xgb.cv(params, d, num_boost_round=200, nfold=3, seed=0, early_stopping_rounds=20)
        score = float(cv.iloc[-1, 2])  # test metric mean (lower is better for logloss / rmse)
        if best is None or score < best[0]:
            best = (score, params, len(cv))
    return xgb.train(best[1], d, best[2])


def _seed_predict(booster: xgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    return booster.predict(xgb.DMatrix(frame[SEED_FEATURES].astype(float).to_numpy(), feature_names=SEED_FEATURES))


def predictions(test: pd.DataFrame, train: pd.DataFrame, models: dict[str, L.ModelRecord], horizon_days: int) -> pd.DataFrame:
    """Every system's purchase score, spend prediction and next-purchase time for the customers of ``test``.

    ``test`` is the feature frame at the scoring cutoff s = t + H; ``train`` the labelled features at t
    (used only by the seed-style baseline). BG/NBD + Gamma-Gamma is fitted on the histories at s.
    """
    test = C.add_bgnbd_features(test, horizon_days)
    out = pd.DataFrame({"customer_id": test["customer_id"].to_numpy()})
    out["purchase:" + CHAMPION] = L.predict_purchase(models["churn"], test, horizon_days)
    out["purchase:bgnbd"] = test["bg_p_purchase"].to_numpy()
    out["purchase:neg_recency"] = -test["recency_days"].to_numpy(dtype=float)
    out["purchase:frequency"] = test["frequency"].to_numpy(dtype=float)
    seed_cls = seed_style_model(train, train["label_purchase"].astype(float).to_numpy(), "binary:logistic")
    out["purchase:seed_xgboost"] = _seed_predict(seed_cls, test)
    out["spend:" + CHAMPION] = L.predict_spend(models["spend"], test, horizon_days)
    out["spend:bgnbd_gamma_gamma"] = test["bg_expected_value"].to_numpy()
    window = L._nearest_window(horizon_days)
    out["spend:last_h_spend"] = test[f"spend_{window}d"].to_numpy(dtype=float)
    seed_reg = seed_style_model(train, train["label_spend"].astype(float).to_numpy(), "reg:squarederror")
    out["spend:seed_xgboost"] = _seed_predict(seed_reg, test)
    out["next:" + CHAMPION] = L.predict_next_purchase(models["next_purchase"], test, horizon_days)
    out["next:recency"] = test["recency_days"].to_numpy(dtype=float)
    out["one_time_buyer"] = test["frequency"].to_numpy() == 0  # a single purchase day by s
    # outside the range of some input of the customers the models learned from: the scores that extrapolate, as
    # scores.scored_customers.outside_training_range names them
    out["outside_training_range"] = D.outside_features([m.feature_profile for m in models.values()], test).notna().to_numpy()
    out["label_purchase"] = test["label_purchase"].astype(float).to_numpy()
    out["label_spend"] = test["label_spend"].astype(float).to_numpy()
    out["label_days"] = test["label_days_to_next_purchase"].astype(float).to_numpy()
    return out


PURCHASE_METRICS = {"roc_auc": M.roc_auc, "pr_auc": M.pr_auc}
PROBABILITY_METRICS = {"brier": M.brier, "log_loss": M.log_loss, "ece": M.expected_calibration_error}
SPEND_METRICS = {"r2": M.r2, "rmse": M.rmse, "aggregate_error": M.aggregate_error, "normalized_gini": M.normalized_gini,
                 "top10_share": M.top_share, "mae": M.mae}
PROBABILISTIC = {CHAMPION, "bgnbd", "seed_xgboost"}
BOOTSTRAP = {"purchase": ("roc_auc", "pr_auc", "brier"), "spend": ("r2", "aggregate_error", "top10_share")}


# The purchase probabilities of one-time buyers (a single purchase day by s), on their own: half of CDNOW's
# customers, and where a model of repeat purchases can go wrong (P(alive) is 1 for them under BG/NBD).
ONE_TIME_TASK = "purchase_one_time_buyers"
def mean_predicted(y, p) -> float:
    return float(np.mean(p))


def mean_actual(y, p) -> float:
    return float(np.mean(y))


ONE_TIME_METRICS = {"mean_predicted": mean_predicted, "observed_rate": mean_actual,
                    "brier": M.brier, "ece": M.expected_calibration_error, "roc_auc": M.roc_auc}


# The champion and BG/NBD (which extrapolates by its formula, where trees cannot) on the customers inside every
# training range and on those outside one (scores.scored_customers.outside_training_range): do the scores that
# extrapolate miss more, or lean one way? Tasks purchase_inside_training_range, purchase_outside_training_range,
# spend_inside_training_range and spend_outside_training_range; a group without customers has no rows.
RANGE_GROUPS = {"inside": False, "outside": True}
RANGE_SYSTEMS = {"purchase": (CHAMPION, "bgnbd"), "spend": (CHAMPION, "bgnbd_gamma_gamma")}
RANGE_METRICS = {
    "purchase": {"mean_predicted": mean_predicted, "observed_rate": mean_actual, "brier": M.brier, "roc_auc": M.roc_auc},
    "spend": {"mean_predicted": mean_predicted, "mean_actual": mean_actual, "aggregate_error": M.aggregate_error, "r2": M.r2},
}


def range_task(task: str, group: str) -> str:
    return f"{task}_{group}_training_range"


def metric_rows(pred: pd.DataFrame, horizon_days: int, n_boot: int = 200, max_rows: int = M.BOOTSTRAP_MAX_ROWS) -> list[dict]:
    """One row per (task, system, metric); baselines carry the champion-minus-baseline difference and its 95% interval.

    The rows of task ``purchase_one_time_buyers`` describe the probabilistic systems on the one-time buyers alone;
    their ``n_customers`` is the number of one-time buyers, and they carry no interval. Likewise the tasks of
    ``RANGE_GROUPS`` (``range_task``): the customers inside every training range and those outside one, when
    ``pred`` has ``outside_training_range``. ``max_rows`` bounds the rows of each bootstrap resample
    (``metrics.paired_bootstrap``).
    """
    rows = []
    y, ys = pred["label_purchase"].to_numpy(), pred["label_spend"].to_numpy()
    for col in [c for c in pred.columns if c.startswith(("purchase:", "spend:"))]:
        task, system = col.split(":")
        y_true = y if task == "purchase" else ys
        metrics = dict(PURCHASE_METRICS) if task == "purchase" else dict(SPEND_METRICS)
        if task == "purchase" and system in PROBABILISTIC:
            metrics.update(PROBABILITY_METRICS)
        for name, fn in metrics.items():
            row = {"task": task, "system": system, "metric": name, "value": fn(y_true, pred[col].to_numpy()),
                   "diff_champion_minus_system": None, "diff_ci_low": None, "diff_ci_high": None}
            if system != CHAMPION and name in BOOTSTRAP[task]:
                d, lo, hi = M.paired_bootstrap(fn, y_true, pred[f"{task}:{CHAMPION}"].to_numpy(), pred[col].to_numpy(), n_boot,
                                               max_rows=max_rows)
                row.update(diff_champion_minus_system=d, diff_ci_low=lo, diff_ci_high=hi)
            rows.append(row)
    one = pred["one_time_buyer"].to_numpy(dtype=bool)
    if one.any():
        for system in sorted(PROBABILISTIC):
            p = pred[f"purchase:{system}"].to_numpy()[one]
            rows += [{"task": ONE_TIME_TASK, "system": system, "metric": name, "value": fn(y[one], p),
                      "n_customers": int(one.sum())} for name, fn in ONE_TIME_METRICS.items()]
    if "outside_training_range" in pred:
        outside = pred["outside_training_range"].to_numpy(dtype=bool)
        for group, flag in RANGE_GROUPS.items():
            members = outside == flag
            if not members.any():
                continue
            for task, systems in RANGE_SYSTEMS.items():
                truth = (y if task == "purchase" else ys)[members]
                rows += [{"task": range_task(task, group), "system": system, "metric": name,
                          "value": fn(truth, pred[f"{task}:{system}"].to_numpy()[members]), "n_customers": int(members.sum())}
                         for system in systems for name, fn in RANGE_METRICS[task].items()]
    days = pred["label_days"].to_numpy()
    bought = ~np.isnan(days)
    horizon_time = np.where(bought, days, float(horizon_days))  # censored at the horizon
    censored = np.column_stack([horizon_time, bought])

    def c_index(y2, p):  # y2: (time censored at the horizon, bought) per customer
        return M.concordance_index(y2[:, 0], y2[:, 1], p)

    for col in [c for c in pred.columns if c.startswith("next:")]:
        system = col.split(":")[1]
        p = pred[col].to_numpy()
        row = {"task": "next_purchase", "system": system, "metric": "c_index", "value": c_index(censored, p)}
        if system != CHAMPION:
            d, lo, hi = M.paired_bootstrap(c_index, censored, pred[f"next:{CHAMPION}"].to_numpy(), p, n_boot, max_rows=max_rows)
            row.update(diff_champion_minus_system=d, diff_ci_low=lo, diff_ci_high=hi)
        rows.append(row)
        if system == CHAMPION:
            rows.append({"task": "next_purchase", "system": system, "metric": "mae_days_buyers",
                         "value": M.mae(days[bought], p[bought]) if bought.any() else float("nan")})
    return rows


def ltv_rows(y: np.ndarray, pred: np.ndarray, system: str) -> list[dict]:
    return [{"task": "ltv", "system": system, "metric": name, "value": fn(y, pred)} for name, fn in SPEND_METRICS.items()]


# For each bootstrapped metric, the sign of "better" (aggregate_error is signed, so neither side is "worse": left out).
BETTER = {"roc_auc": 1, "pr_auc": 1, "brier": -1, "r2": 1, "top10_share": 1, "c_index": 1}


def significantly_worse(rows: pd.DataFrame) -> pd.DataFrame:
    """Baseline rows where the champion is worse than the baseline with 95% confidence.

    Parameters
    ----------
    rows : DataFrame
        ``evaluation.backtest_metrics`` rows of one partition (``task, system, metric, value,
        diff_champion_minus_system, diff_ci_low, diff_ci_high``).

    Returns
    -------
    DataFrame
        The rows whose paired bootstrap interval of champion minus baseline lies wholly on the
        losing side: below 0 where higher is better (ROC-AUC, PR-AUC, R², top-10% share, next purchase's
        concordance index), above 0
        where lower is better (Brier). Empty when the champion is nowhere significantly worse.
    """
    r = rows[rows["metric"].isin(BETTER) & rows["diff_ci_low"].notna() & rows["diff_ci_high"].notna()]
    sign = r["metric"].map(BETTER)
    losing = ((sign > 0) & (r["diff_ci_high"] < 0)) | ((sign < 0) & (r["diff_ci_low"] > 0))
    return r[losing][["task", "system", "metric", "diff_champion_minus_system", "diff_ci_low", "diff_ci_high"]]
