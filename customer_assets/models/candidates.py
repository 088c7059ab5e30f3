"""Candidate model families, each with a portable artifact (no pickle).

A family knows how to fit on a feature frame, predict, and turn itself into text
and back: XGBoost JSON, LightGBM model text, or JSON coefficients for the
logistic regression. ``bgnbd`` features (P(alive), expected purchases, P(buy),
Gamma-Gamma spend) are computed per cutoff from that cutoff's histories only, so
adding them never leaks labels.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb

from customer_assets.models import probabilistic as P

WEEK = 7.0
THREADS = 2
# Upper bounds on early-stopped boosting rounds during selection. On CDNOW no candidate goes past 170
# rounds, so the caps change nothing there; on large synthetic data they bound the search's cost.
MAX_XGB_ROUNDS = 300
MAX_LGB_ROUNDS = 500
BG_FEATURES = ["bg_p_alive", "bg_expected_purchases", "bg_p_purchase", "gg_expected_spend", "bg_expected_value"]
# The BG/NBD and Gamma-Gamma parameters are estimated on at most this many customers per cutoff
# (a fixed random sample) and then applied to everyone: the estimates barely move, the cost stays flat.
BG_FIT_SAMPLE = 100_000


def add_bgnbd_features(frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """Add BG/NBD + Gamma-Gamma outputs, fitted separately on each cutoff's own histories.

    A cutoff whose rows already carry them (a frame shared between model assets) is kept as is.
    """
    parts = []
    for _, part in frame.groupby("cutoff_date", sort=False):
        if all(c in part.columns for c in BG_FEATURES) and part[BG_FEATURES].notna().all().all():
            parts.append(part)
            continue
        x = part["frequency"].astype(float).to_numpy()
        t_x = part["t_x_days"].astype(float).to_numpy() / WEEK
        T = part["tenure_days"].astype(float).to_numpy() / WEEK
        m = part["repeat_monetary_mean"].astype(float).to_numpy()
        fit = slice(None)
        if len(x) > BG_FIT_SAMPLE:
            fit = np.sort(np.random.default_rng(0).choice(len(x), BG_FIT_SAMPLE, replace=False))
        bg = P.fit_bgnbd(x[fit], t_x[fit], T[fit])
        try:
            gg = P.fit_gamma_gamma(x[fit], m[fit])
            spend = P.gamma_gamma_expected_spend(gg, x, m)
        except ValueError:
            spend = np.full(len(x), float(np.nanmean(part["monetary_mean"])))
        part = part.copy()
        part["bg_p_alive"] = P.bgnbd_p_alive(bg, x, t_x, T)
        part["bg_expected_purchases"] = P.bgnbd_expected_purchases(bg, horizon_days / WEEK, x, t_x, T)
        part["bg_p_purchase"] = P.bgnbd_probability_of_purchase(bg, horizon_days / WEEK, x, t_x, T)
        part["gg_expected_spend"] = spend
        part["bg_expected_value"] = part["bg_expected_purchases"] * spend
        parts.append(part)
    return pd.concat(parts).loc[frame.index]


@dataclass
class Fitted:
    family: str
    features: list[str]
    artifact: str
    artifact_format: str
    library: str
    library_version: str
    rounds: int
    predict: Callable[[pd.DataFrame], np.ndarray]


def with_overrides(defaults: dict, overrides: dict | None) -> dict:
    """``defaults`` updated by ``overrides``; an override of ``None`` removes that parameter."""
    return {k: v for k, v in {**defaults, **(overrides or {})}.items() if v is not None}


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) in float64, with p clipped to [1e-6, 1 - 1e-6]."""
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _x(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    return frame[features].astype(float).to_numpy()


# --------------------------------------------------------------------------- XGBoost

def xgb_params(objective: str) -> dict:
    base = {"eta": 0.05, "max_depth": 4, "min_child_weight": 10, "subsample": 0.8, "colsample_bytree": 0.8,
            "seed": 0, "nthread": THREADS}
    if objective == "binary":
        return {**base, "objective": "binary:logistic", "eval_metric": "logloss"}
    if objective == "tweedie":
        return {**base, "objective": "reg:tweedie", "tweedie_variance_power": 1.5, "eval_metric": "rmse"}
    if objective == "aft":
        return {**base, "objective": "survival:aft", "eval_metric": "aft-nloglik", "aft_loss_distribution": "normal",
                "aft_loss_distribution_scale": 1.0}
    raise ValueError(objective)


def xgb_dmatrix(frame, features, label=None, lower=None, upper=None, weight=None) -> xgb.DMatrix:
    d = xgb.DMatrix(_x(frame, features), feature_names=features, missing=np.nan)
    if label is not None:
        d.set_label(np.asarray(label, dtype=float))
    if weight is not None:
        d.set_weight(np.asarray(weight, dtype=float))
    if lower is not None:
        d.set_float_info("label_lower_bound", np.asarray(lower, dtype=float))
        d.set_float_info("label_upper_bound", np.asarray(upper, dtype=float))
    return d


def xgb_text(booster: xgb.Booster) -> str:
    return bytes(booster.save_raw(raw_format="json")).decode("utf-8")


def xgb_load(text: str) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(text.encode("utf-8")))
    return booster


# XGBoost's spend labels are rescaled to this mean. It is the order of CDNOW's mean 90-day spend per customer in
# dollars (10.5 to 15.0 at the cutoffs trained on), the scale at which the spend model's parameters were set and
# measured, so CDNOW's fits stay near where they were (test R² within 0.0016 at nine backtest cutoffs). A mean of 1
# (label / mean) was tried first: it lowered the mean test R² over those nine from 0.397 to 0.391, by 0.026 at two.
TWEEDIE_LABEL_MEAN = 10.0


def tweedie_label_scale(label) -> float:
    """The unit a Tweedie (spend) model is fitted in: the mean training label / ``TWEEDIE_LABEL_MEAN``, or 1 where the
    mean is not positive.

    XGBoost's regularisation (``min_child_weight``, ``lambda``) acts on the Tweedie gradients, whose size follows the
    labels' units, so fitted on the raw amounts the same customers in another currency got another model (up to 4.7
    times apart for one customer's forecast; ``benchmarks/currency.py``). Fitted on label / scale, the trees are the
    same in every currency, and the scale goes back into the model's ``base_score``.
    """
    mean = float(np.mean(np.asarray(label, dtype=float))) if len(label) else 0.0
    return mean / TWEEDIE_LABEL_MEAN if np.isfinite(mean) and mean > 0 else 1.0


def _scaled(labels: dict, scale: float) -> dict:
    return {k: (np.asarray(v, dtype=float) / scale if k == "label" else v) for k, v in labels.items()}


def fit_xgb(objective: str, train: pd.DataFrame, features: list[str], label_fn, valid: pd.DataFrame | None,
            rounds: int | None, family: str, overrides: dict | None = None) -> Fitted:
    """Fit XGBoost; with ``rounds=None``, early-stopped on ``valid``.

    ``overrides`` replace default parameters; an override of ``None`` removes one.
    """
    params = with_overrides(xgb_params(objective), overrides)
    labels = label_fn(train)
    scale = tweedie_label_scale(labels["label"]) if objective == "tweedie" else 1.0
    dtrain = xgb_dmatrix(train, features, **_scaled(labels, scale))
    if rounds is None:
        dvalid = xgb_dmatrix(valid, features, **_scaled(label_fn(valid), scale))
        booster = xgb.train(params, dtrain, MAX_XGB_ROUNDS, evals=[(dvalid, "valid")], early_stopping_rounds=40,
                            verbose_eval=False)
        rounds = int(booster.best_iteration) + 1
    else:
        booster = xgb.train(params, dtrain, rounds)
    if scale != 1.0:  # back to the data's units: the Tweedie prediction is base_score x exp(sum of the trees)
        base = float(json.loads(booster.save_config())["learner"]["learner_model_param"]["base_score"].strip("[]"))
        booster.set_param({"base_score": base * scale})

    def predict(frame, b=booster, r=rounds):
        return b.predict(xgb_dmatrix(frame, features), iteration_range=(0, r))

    return Fitted(family, features, xgb_text(booster), "xgboost-json", "xgboost", xgb.__version__, rounds, predict)


# --------------------------------------------------------------------------- LightGBM

def lgb_params(objective: str) -> dict:
    base = {"learning_rate": 0.03, "num_leaves": 15, "min_data_in_leaf": 50, "bagging_fraction": 0.8, "bagging_freq": 1,
            "feature_fraction": 0.8, "seed": 0, "num_threads": THREADS, "verbosity": -1, "deterministic": True}
    if objective == "binary":
        return {**base, "objective": "binary"}
    if objective == "tweedie":
        return {**base, "objective": "tweedie", "tweedie_variance_power": 1.5}
    raise ValueError(objective)


def fit_lgb(objective: str, train, features, label_fn, valid, rounds, family, overrides: dict | None = None) -> Fitted:
    """Fit LightGBM; with ``rounds=None``, early-stopped on ``valid``. ``overrides`` as in ``fit_xgb``."""
    params = with_overrides(lgb_params(objective), overrides)
    dtrain = lgb.Dataset(_x(train, features), label=label_fn(train)["label"], feature_name=features, free_raw_data=False)
    if rounds is None:
        dvalid = lgb.Dataset(_x(valid, features), label=label_fn(valid)["label"], reference=dtrain)
        booster = lgb.train(params, dtrain, MAX_LGB_ROUNDS, valid_sets=[dvalid], callbacks=[lgb.early_stopping(60, verbose=False)])
        rounds = int(booster.best_iteration or booster.current_iteration())
    else:
        booster = lgb.train(params, dtrain, rounds)
    text = booster.model_to_string(num_iteration=rounds)
    return Fitted(family, features, text, "lightgbm-text", "lightgbm", lgb.__version__, rounds,
                  lambda frame, b=booster, r=rounds: b.predict(_x(frame, features), num_iteration=r))


def lgb_load(text: str) -> lgb.Booster:
    return lgb.Booster(model_str=text)


# --------------------------------------------------------------------------- logistic regression

def _logit_design(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    x = _x(frame, features)
    x = np.where(np.isnan(x), 0.0, x)
    return np.sign(x) * np.log1p(np.abs(x))


def fit_logistic(train, features, label_fn, family="logistic") -> Fitted:
    from sklearn.linear_model import LogisticRegression

    x = _logit_design(train, features)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=2000).fit((x - mean) / scale, label_fn(train)["label"])
    art = {"coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0]), "mean": mean.tolist(),
           "scale": scale.tolist(), "transform": "sign(x) * log1p(|x|), NaN -> 0, standardised"}
    return Fitted(family, features, json.dumps(art), "json-coefficients", "scikit-learn", "", 0,
                  lambda frame: logistic_predict(art, frame, features))


def logistic_predict(art: dict, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    z = (_logit_design(frame, features) - np.asarray(art["mean"])) / np.asarray(art["scale"])
    return 1 / (1 + np.exp(-(z @ np.asarray(art["coef"]) + art["intercept"])))


# --------------------------------------------------------------------------- ensembles

def combine(predictions: list[np.ndarray], link: str) -> np.ndarray:
    """The members' mean on the ``link`` scale: ``"logit"`` (probabilities), ``"log"`` (positive amounts: the
    geometric mean) or ``"identity"``."""
    if link == "logit":
        return 1 / (1 + np.exp(-np.mean([logit(p) for p in predictions], axis=0)))
    if link == "log":
        return np.exp(np.mean([np.log(np.clip(np.asarray(p, dtype=float), 1e-12, None)) for p in predictions], axis=0))
    if link == "identity":
        return np.mean(predictions, axis=0)
    raise ValueError(f"Unknown ensemble link {link!r}")


def _union(lists: list[list[str]]) -> list[str]:
    return list(dict.fromkeys(f for features in lists for f in features))


def ensemble(members: list[Fitted], link: str, family: str) -> Fitted:
    """Fitted members averaged on the ``link`` scale, stored as one JSON artifact that nests each member's own.

    The artifact holds every member's portable text (XGBoost JSON, LightGBM text, JSON coefficients),
    its features and rounds, so loading it parses text and runs no code, like a single model.
    """
    art = {"link": link, "members": [{"family": m.family, "artifact_format": m.artifact_format, "artifact": m.artifact,
                                      "features": m.features, "rounds": m.rounds, "library": m.library,
                                      "library_version": m.library_version} for m in members]}
    return Fitted(family, _union([m.features for m in members]), json.dumps(art), "ensemble-json",
                  "+".join(dict.fromkeys(m.library for m in members)),
                  "+".join(dict.fromkeys(m.library_version for m in members if m.library_version)), 0,
                  lambda frame: combine([m.predict(frame) for m in members], link))


def load_predictor(artifact_format: str, artifact: str, features: list[str], rounds: int):
    """Rebuild a predictor from a stored artifact. Parsing only: no code is executed."""
    if artifact_format == "ensemble-json":
        art = json.loads(artifact)
        parts = [load_predictor(m["artifact_format"], m["artifact"], m["features"], m["rounds"]) for m in art["members"]]
        return lambda frame: combine([predict(frame) for predict in parts], art["link"])
    if artifact_format == "xgboost-json":
        booster = xgb_load(artifact)
        return lambda frame: booster.predict(xgb_dmatrix(frame, features), iteration_range=(0, rounds) if rounds else (0, 0))
    if artifact_format == "lightgbm-text":
        booster = lgb_load(artifact)
        return lambda frame: booster.predict(_x(frame, features))
    if artifact_format == "json-coefficients":
        art = json.loads(artifact)
        return lambda frame: logistic_predict(art, frame, features)
    raise ValueError(f"Unknown artifact format {artifact_format!r}")


def contributions(artifact_format: str, artifact: str, features: list[str], rounds: int, frame: pd.DataFrame) -> np.ndarray | None:
    """Per-row, per-feature contributions to the model's raw (link-scale) output, shape (n, len(features)).

    The gradient-boosting libraries' own attributions (XGBoost ``pred_contribs``, LightGBM
    ``pred_contrib``; the bias column is dropped); coefficient x standardised value for the
    logistic regression. For an ensemble averaged on the logit scale (purchase members) or the log scale (Tweedie
    spend members), the members' contributions averaged over the union of their features: that mean is additive on
    the same scale. ``None`` for models without per-feature inputs, and for ensembles averaged on another scale.
    """
    if artifact_format == "ensemble-json":
        art = json.loads(artifact)
        if art["link"] not in ("logit", "log"):
            return None
        out = np.zeros((len(frame), len(features)))
        index = {f: i for i, f in enumerate(features)}
        for m in art["members"]:
            part = contributions(m["artifact_format"], m["artifact"], m["features"], m["rounds"], frame)
            out[:, [index[f] for f in m["features"]]] += part / len(art["members"])
        return out
    if artifact_format == "xgboost-json":
        booster = xgb_load(artifact)
        # approx_contribs: XGBoost's path-based (Saabas) attribution, ~10x faster than exact TreeSHAP and
        # ranking features almost the same way; exact SHAP cost 60 s per million customers here.
        out = booster.predict(xgb_dmatrix(frame, features), pred_contribs=True, approx_contribs=True,
                              iteration_range=(0, rounds) if rounds else (0, 0))
        return np.asarray(out)[:, :-1]
    if artifact_format == "lightgbm-text":
        out = lgb_load(artifact).predict(_x(frame, features), pred_contrib=True)
        return np.asarray(out)[:, :-1]
    if artifact_format == "json-coefficients":
        art = json.loads(artifact)
        z = (_logit_design(frame, features) - np.asarray(art["mean"])) / np.asarray(art["scale"])
        return z * np.asarray(art["coef"])
    return None


def importance(artifact_format: str, artifact: str, features: list[str]) -> dict[str, float]:
    """Each feature's share of the model's total importance (gain for the boosters, |coefficient| otherwise).

    For an ensemble, the mean of its members' shares.
    """
    if artifact_format == "ensemble-json":
        members = json.loads(artifact)["members"]
        raw: dict[str, float] = {}
        for m in members:
            for k, v in importance(m["artifact_format"], m["artifact"], m["features"]).items():
                raw[k] = raw.get(k, 0.0) + v / len(members)
    elif artifact_format == "xgboost-json":
        raw = xgb_load(artifact).get_score(importance_type="total_gain")
    elif artifact_format == "lightgbm-text":
        booster = lgb_load(artifact)
        raw = dict(zip(booster.feature_name(), booster.feature_importance(importance_type="gain"), strict=True))
    elif artifact_format == "json-coefficients":
        raw = dict(zip(features, np.abs(json.loads(artifact)["coef"]), strict=True))
    else:
        return {}
    total = float(sum(raw.values())) or 1.0
    return {k: float(v) / total for k, v in sorted(raw.items(), key=lambda kv: -kv[1])}
