"""Model training and prediction, as pure functions over feature frames.

Every supervised model of partition ``t`` is chosen and fitted without peeking:

1. *validation*: candidates (families x stacking depths) are fit on cutoffs whose label
   windows end by ``t`` (``t - H``, ``t - H - step``, ...) and scored on cutoff ``t``,
   whose labels end at ``t + H``. Those are the recorded validation metrics, and the
   churn calibration is fitted on the champion's out-of-time predictions there, pooled with
   those at ``t - 30`` and ``t - 60`` days (``CALIBRATION_OFFSETS_DAYS``);
2. *final fit*: the champion is refit on ``t, t - step, ...`` with the same settings.

So the model of partition ``t`` has seen data dated up to ``t + H`` and nothing later.
A champion that does not beat the naive baseline on validation is stored with
``promoted = false``; scoring then keeps the last promoted model. Artifacts are
portable: XGBoost JSON, LightGBM model text, JSON coefficients or parameters.
Loading them never executes code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from customer_assets.evaluation import metrics as M
from customer_assets.features.logic import FEATURE_COLUMNS
from customer_assets.models import candidates as C
from customer_assets.models import drift as D
from customer_assets.models import probabilistic as P
from customer_assets.models.candidates import logit
from customer_assets.settings import SettingError

WEEK = 7.0
MIN_LABELLED_CUSTOMERS = 50


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
    # the customers it learned from, feature by feature (``drift.feature_profile``); {} for a record stored before
    # profiles were kept
    feature_profile: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return bool(self.params.get("promoted", True))

    def to_row(self, cutoff: date) -> dict[str, Any]:
        return {
            "cutoff_date": cutoff,
            "model_name": self.model_name,
            "family": str(self.params.get("family", self.library)),
            "promoted": bool(self.params.get("promoted", True)),
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
            "feature_profile": json.dumps(self.feature_profile),
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
            # NULL in a row written before the column existed (the table gained it on a later write)
            feature_profile=json.loads(row["feature_profile"]) if isinstance(row.get("feature_profile"), str) else {},
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


# ----------------------------------------------------------------------------- selection and training

# Stacking options as (cutoffs, days apart); validation picks one. The default is one of the options
# DEFAULT_STACK_STEP_DAYS apart (the deepest or the best-scoring, see DEEPEST_STACK_TASKS). Another option replaces it
# only when it scores better with a paired bootstrap 95% interval of the difference (customers resampled) above zero:
# spend's validation R² is carried by a
# few big spenders, and on CDNOW choosing the spacing by the plain best R² picked 8 cutoffs every 15 days at two of
# four partitions by less than 0.005 R², inside that interval, and the test R² fell (0.514 to 0.494 at 1998-04-01).
STACK_OPTIONS = ((2, 30), (4, 30), (8, 30), (4, 60), (8, 15))
# For churn and next purchase the default depth is the deepest 30-day option, and a shallower one must beat it beyond
# noise too. Their validation scores differ between depths in the fourth decimal, and picking the plain best made the
# served churn forecast jump: on 1998-03-26, 4 cutoffs beat 8 by 0.0003 ROC-AUC, and the mean served P(purchase in
# 90 d) rose by 0.015 for that night alone (benchmarks/stability.py --task churn). At nine CDNOW backtest cutoffs
# churn's test ROC-AUC moved by -0.0008 to +0.0014 (mean 0.0000) and next purchase's concordance index by -0.0007
# to +0.0028 (mean +0.0005). Spend keeps the best depth: the same rule lowered its test R² at two of the
# nine (0.514 to 0.500 at 1998-04-01, 0.321 to 0.299 at 1997-12-01), where a shallower stack led by about 0.01 R².
DEEPEST_STACK_TASKS = ("churn", "next_purchase")
# Spend's candidate weights on BG/NBD + Gamma-Gamma in the blend with the learned champion; 1.0 is BG/NBD +
# Gamma-Gamma alone. Until 2026-11-25 BG/NBD alone competed with the learned families before the blend instead: where
# it validated a hair above them it won unblended, though a blend validated better, and on CDNOW the served 90-day
# forecast switched by 14% to 17% on three of eight consecutive nights (benchmarks/stability.py).
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_STACK_STEP_DAYS = 30
SPACING_BOOTSTRAP_SAMPLES = 200
MAX_ROWS_PER_CUTOFF = 50_000
# "bgnbd" is BG/NBD's own output, no supervised fit: P(purchase in H) for churn (Platt-calibrated like the others),
# the expected spend (BG/NBD x Gamma-Gamma) for spend. Where the purchases follow BG/NBD's story closely it can
# beat every learned family on validation, and then it should be the champion: on the 1M synthetic warehouse of
# benchmarks/scale.py its validation ROC-AUC was 0.8760 against 0.8748 for the best learned family. For spend it is
# scored with the families for the record, but it is the blend's weight 1.0 (BLEND_WEIGHTS), not their rival.
CHURN_FAMILIES = ("logistic", "logistic+bgnbd", "xgboost", "lightgbm", "xgboost+bgnbd", "lightgbm+bgnbd", "bgnbd")
# Ensembles compared with the single families on the same validation, from the members' validation
# predictions (no extra fit): name -> (member families, the scale they are averaged on).
CHURN_ENSEMBLES = {"ensemble(xgboost, logistic+bgnbd)": (("xgboost", "logistic+bgnbd"), "logit")}
SPEND_FAMILIES = ("xgboost", "lightgbm", "xgboost+bgnbd", "lightgbm+bgnbd", "bgnbd")
# Spend ensembles average their members on the log scale (the geometric mean), the scale both Tweedie members
# predict and explain on, so the scored table's per-customer drivers stay additive. On CDNOW's six rolling scoring
# cutoffs 1997-11-01 ... 1998-04-01, validation picked one at two partitions, and the test R² rose at both (0.3390 to
# 0.3401 and 0.4496 to 0.4679) with the others unchanged; averaged on the plain scale, one pick, 0.4496 to 0.4691.
SPEND_ENSEMBLES = {"ensemble(xgboost, lightgbm+bgnbd)": (("xgboost", "lightgbm+bgnbd"), "log"),
                   "ensemble(xgboost+bgnbd, lightgbm+bgnbd)": (("xgboost+bgnbd", "lightgbm+bgnbd"), "log")}


@dataclass
class TrainingData:
    """What a model of partition ``cutoff`` may use: labelled features at ``cutoff`` and earlier cutoffs.

    ``load(c)`` returns the features of cutoff ``c`` with complete labels; ``histories(c)``, where given, the
    features of a cutoff up to ``cutoff + H`` without labels (the data a model of partition ``cutoff`` may see).
    """

    cutoff: date
    horizon_days: int
    data_start: date
    load: Any
    stack_options: tuple = STACK_OPTIONS
    max_rows_per_cutoff: int = MAX_ROWS_PER_CUTOFF
    min_labelled_customers: int = MIN_LABELLED_CUSTOMERS
    # histories(c): the features (no labels needed) at a cutoff c <= cutoff + H, for models that fit on histories alone
    histories: Any = None
    # the same-season correction of churn and spend (``SEASON_MODES``, ``same_season_spend``, ``same_season_churn``)
    same_season: str = "checked"
    # spend's weight on BG/NBD + Gamma-Gamma in its blend: None, chosen on validation among BLEND_WEIGHTS; else fixed
    spend_blend_weight: float | None = None

    def __post_init__(self):
        if self.same_season not in SEASON_MODES:
            raise SettingError("same_season", f"same_season {self.same_season!r} is not one of: "
                               + "; ".join(f"{k} ({v})" for k, v in SEASON_MODES.items()))
        if self.spend_blend_weight is not None and not 0.0 <= self.spend_blend_weight <= 1.0:
            raise SettingError("spend_blend_weight", f"spend_blend_weight {self.spend_blend_weight!r} is not between 0 and "
                               "1 (the weight on BG/NBD + Gamma-Gamma; leave it unset to choose it on validation)")

    def cutoffs(self, last: date, n: int, step: int) -> list[date]:
        """``last`` and up to ``n - 1`` earlier cutoffs ``step`` days apart that still have 30 days of history."""
        out = []
        for j in range(n):
            c = last - timedelta(days=j * step)
            if c < self.data_start + timedelta(days=30):
                break
            out.append(c)
        return out

    def frame(self, cutoffs: list[date]) -> pd.DataFrame:
        parts = []
        for c in cutoffs:
            f = self.load(c)
            if len(f) > self.max_rows_per_cutoff:
                # deterministic sample by customer id hash, so reruns give the same rows
                keep = pd.util.hash_pandas_object(f["customer_id"], index=False) % len(f) < self.max_rows_per_cutoff
                f = f[keep.to_numpy()]
            parts.append(f)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def task_spec(task: str, horizon_days: int):
    """label function, objective and validation metric of a task.

    The metric takes the label function's dict and the predictions; higher is better.
    """
    if task == "churn":
        return (lambda f: {"label": f["label_purchase"].astype(float).to_numpy()}), "binary", lambda y, p: M.roc_auc(y["label"], p)
    if task == "spend":
        return (lambda f: {"label": np.clip(f["label_spend"].astype(float).to_numpy(), 0, None)}), "tweedie", lambda y, p: M.r2(y["label"], p)
    if task == "next_purchase":
        def label(f):
            days = f["label_days_to_next_purchase"].astype(float).to_numpy()
            bought = ~np.isnan(days)
            return {"lower": np.where(bought, days, float(horizon_days)), "upper": np.where(bought, days, np.inf)}
        return label, "aft", lambda y, p: M.concordance_index(y["lower"], np.isfinite(y["upper"]), p)
    raise ValueError(task)


def _fit_family(family: str, objective: str, train, valid, label_fn, rounds=None) -> C.Fitted:
    features = FEATURE_COLUMNS + (C.BG_FEATURES if family.endswith("+bgnbd") else [])
    base = family.split("+")[0]
    if base == "xgboost":
        return C.fit_xgb(objective, train, features, label_fn, valid, rounds, family)
    if base == "lightgbm":
        return C.fit_lgb(objective, train, features, label_fn, valid, rounds, family)
    if base == "logistic":
        return C.fit_logistic(train, features, label_fn, family)
    raise ValueError(family)


# The BG/NBD output that family "bgnbd" predicts with, by task.
BGNBD_OUTPUT = {"churn": "bg_p_purchase", "spend": "bg_expected_value"}


def _bgnbd_value(frame: pd.DataFrame, task: str) -> np.ndarray:
    if task not in BGNBD_OUTPUT:
        raise ValueError(f"{task}: BG/NBD alone is a candidate for {sorted(BGNBD_OUTPUT)} only")
    return frame[BGNBD_OUTPUT[task]].to_numpy(dtype=float)


def choose_stacking(options, results, y_val: dict, metric, rows: list[dict[str, Any]], task: str, log,
                    samples: int = SPACING_BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[int, int]:
    """The stacking validation picks a default among the options ``DEFAULT_STACK_STEP_DAYS`` apart, and another
    option replaces it only when it beats it with a paired bootstrap 95% interval of the difference above zero.

    The default is the deepest of them (the most training data) for a ``task`` in ``DEEPEST_STACK_TASKS``, else the
    one with the best validation score. ``results`` maps each option to
    (validation score, validation predictions, rounds). Each other option that scores higher than the default gets
    a row in ``rows`` with its difference and interval; of those whose interval lies above zero, the best score
    wins. With no option at the default spacing, all options are candidates for the default.
    """
    default = [o for o in options if o[1] == DEFAULT_STACK_STEP_DAYS] or list(options)
    best = max(default, key=(lambda o: (o[0], results[o][0])) if task in DEEPEST_STACK_TASKS else (lambda o: results[o][0]))
    n_rows = len(next(iter(y_val.values())))

    def on_rows(rows_index, pred):  # the metric on the resampled customers: the bootstrap resamples row numbers
        i = rows_index.astype(int)
        return metric({k: v[i] for k, v in y_val.items()}, pred)

    significant = []
    for opt in options:
        if opt == best or not results[opt][0] > results[best][0]:
            continue
        _, low, high = M.paired_bootstrap(on_rows, np.arange(n_rows), results[opt][1], results[best][1], samples, seed)
        rows.append({"family": f"xgboost, {opt[0]} cutoffs every {opt[1]} days against {best[0]} every {best[1]}",
                     "stacked_cutoffs": opt[0], "stack_step_days": opt[1], "train_rows": None, "rounds": None,
                     "validation_score": results[opt][0] - results[best][0], "interval_95": [low, high]})
        log(f"{task}: {opt[0]} cutoffs every {opt[1]} days beats {best[0]} every {best[1]} by "
            f"{results[opt][0] - results[best][0]:+.4f} [{low:+.4f}, {high:+.4f}]: {'adopted' if low > 0 else 'within noise, not adopted'}")
        if low > 0:
            significant.append(opt)
    return max([best, *significant], key=lambda o: results[o][0])


def select_and_fit(task: str, data: TrainingData, families: tuple[str, ...], log=None,
                   ensembles: dict[str, tuple[tuple[str, ...], str]] | None = None) -> dict[str, Any]:
    """Out-of-time model selection inside the training data, then the final fit.

    Validation: candidates are fit on cutoffs whose label windows end by ``t`` (``t - H``,
    ``t - H - step``, ...) and scored on ``t``. The stacking (how many cutoffs, how far apart) is
    chosen first with XGBoost (``choose_stacking``), then the family, among ``families`` and the ``ensembles`` of them (members
    averaged on the given scale, see ``candidates.combine``). For spend, BG/NBD + Gamma-Gamma alone is not a rival of
    the learned candidates but the weight 1 of their champion's blend with it, chosen with the other weights. The
    champion is refit on
    ``t, t - step, ...`` with the chosen settings. Nothing dated after ``t + H`` is used.
    """
    ensembles = ensembles or {}
    for name, (members, _link) in ensembles.items():
        if unknown := [m for m in members if m not in families]:
            raise ValueError(f"{task}: ensemble {name!r} names {unknown}, which are not among the candidate families {list(families)}")
    log = log or (lambda _m: None)
    t, h = data.cutoff, data.horizon_days
    label_fn, objective, metric = task_spec(task, h)
    valid = C.add_bgnbd_features(data.frame([t]), h)
    if len(valid) < data.min_labelled_customers:
        raise InsufficientDataError(
            f"{task}: only {len(valid)} customers with complete labels at {t}; at least {data.min_labelled_customers} are "
            "needed (the `min_labelled_customers` config of the model assets)."
        )
    val_last = t - timedelta(days=h)
    if not data.cutoffs(val_last, 1, 30):
        raise InsufficientDataError(
            f"{task}: out-of-time validation at {t} needs training cutoffs on or before {val_last} with 30 days of history, "
            f"so the data must start by {val_last - timedelta(days=30)} (it starts {data.data_start}): "
            "at least two horizons plus 30 days of history are needed."
        )
    y_val = label_fn(valid)
    rows: list[dict[str, Any]] = []
    train_cache: dict[tuple, pd.DataFrame] = {}

    def train_frame(n, step, last):
        key = (n, step, last)
        if key not in train_cache:
            train_cache[key] = C.add_bgnbd_features(data.frame(data.cutoffs(last, n, step)), h)
        return train_cache[key]

    def evaluate(family, n, step):
        tr = train_frame(n, step, val_last)
        if family == "bgnbd":
            pred, rounds = _bgnbd_value(valid, task), 0
        else:
            fitted = _fit_family(family, objective, tr, valid, label_fn)
            pred, rounds = fitted.predict(valid), fitted.rounds
        score = metric(y_val, pred)
        rows.append({"family": family, "stacked_cutoffs": n, "stack_step_days": step, "train_rows": len(tr),
                     "rounds": rounds, "validation_score": score})
        log(f"{task}: {family} with {n} cutoffs every {step} days -> validation {score:.4f}")
        return score, pred, rounds

    results = {}
    for n, step in data.stack_options:
        results[("xgboost", n, step)] = evaluate("xgboost", n, step)
    best_opt = choose_stacking(data.stack_options, {o: results[("xgboost", *o)] for o in data.stack_options},
                               y_val, metric, rows, task, log)
    for family in families:
        if family != "xgboost":
            results[(family, *best_opt)] = evaluate(family, *best_opt)
    for name, (members, link) in ensembles.items():
        pred = C.combine([results[(m, *best_opt)][1] for m in members], link)
        score = metric(y_val, pred)
        rounds_by_member = {m: results[(m, *best_opt)][2] for m in members}
        rows.append({"family": name, "stacked_cutoffs": best_opt[0], "stack_step_days": best_opt[1],
                     "train_rows": len(train_frame(*best_opt, val_last)), "rounds": rounds_by_member, "validation_score": score})
        log(f"{task}: {name} -> validation {score:.4f}")
        results[(name, *best_opt)] = score, pred, rounds_by_member
    # spend: BG/NBD + Gamma-Gamma alone is the blend's weight 1, so the learned champion (XGBoost is always among
    # them) is chosen first and the weight after
    best_family = max((k for k in results if k[1:] == best_opt and not (task == "spend" and k[0] == "bgnbd")),
                      key=lambda k: results[k][0])[0]
    _, val_pred, rounds = results[(best_family, *best_opt)]
    blend_weight, blend_source = 0.0, None
    if task == "spend":
        # blend the champion with BG/NBD + Gamma-Gamma: weight on BG/NBD chosen on the same validation
        # (or fixed by the spend_blend_weight config, the other weights still scored for the record)
        bg = _bgnbd_value(valid, task)
        fixed = data.spend_blend_weight
        weights = BLEND_WEIGHTS if fixed is None or fixed in BLEND_WEIGHTS else (*BLEND_WEIGHTS, fixed)
        scores = {w: metric(y_val, (1 - w) * val_pred + w * bg) for w in weights}
        blend_weight = max(scores, key=scores.get) if fixed is None else fixed
        for w, sc in scores.items():
            rows.append({"family": f"{best_family} blended with bgnbd (weight {w})", "stacked_cutoffs": best_opt[0],
                         "stack_step_days": best_opt[1], "train_rows": None, "rounds": rounds, "validation_score": sc})
        val_pred = (1 - blend_weight) * val_pred + blend_weight * bg
        blend_source = "validation" if fixed is None else "config"
        how = "chosen on validation" if fixed is None else "fixed by the spend_blend_weight config"
        log(f"{task}: BG/NBD blend weight {blend_weight} ({how}) -> validation {scores[blend_weight]:.4f}")
        if blend_weight == 1.0:  # all BG/NBD: the learned model is not needed
            blend_source = (f"none: the champion is BG/NBD + Gamma-Gamma alone (weight 1.0 on it in the blend with "
                            f"{best_family}, {how})")
            best_family, val_pred, rounds, blend_weight = "bgnbd", bg, 0, 0.0
    final_cutoffs = data.cutoffs(t, *best_opt)
    final_frame = train_frame(best_opt[0], best_opt[1], t)

    def refit(family, family_rounds):  # the validated rounds (none for the logistic regression)
        return _fit_family(family, objective, final_frame, None, label_fn, rounds=max(family_rounds, 1) if family_rounds else None)

    if best_family == "bgnbd":
        final = None
    elif best_family in ensembles:
        members, link = ensembles[best_family]
        final = C.ensemble([refit(m, rounds[m]) for m in members], link, best_family)
    else:
        final = refit(best_family, rounds)
    log(f"{task}: champion {best_family}, {best_opt[0]} cutoffs every {best_opt[1]} days, trained on {len(final_frame):,} rows")
    return {"family": best_family, "stack": best_opt, "blend_bgnbd_weight": blend_weight, "blend_weight_source": blend_source,
            "final": final, "valid": valid, "val_pred": val_pred,
            "selection": rows, "training_cutoffs": final_cutoffs, "n_train_rows": len(final_frame), "rounds": rounds,
            "train_ranges": D.value_ranges(final_frame)}


def _record(task, sel, metrics, calibration, notes, promoted, profile_frame: pd.DataFrame) -> ModelRecord:
    """The stored record of a supervised model, with the feature profile of ``profile_frame`` (the customers at the
    partition's own cutoff): its input features, and BG/NBD's expected value where spend blends it in. The profile's
    ranges span every row the final model was fitted on (``sel["train_ranges"]``: all its stacked cutoffs)."""
    final = sel["final"]
    n, step = sel["stack"]
    if final is None:  # the BG/NBD value itself won
        fmt, art, lib, ver, feats = "bgnbd-features", "{}", "customer_assets.probabilistic", "1", [BGNBD_OUTPUT[task]]
    else:
        fmt, art, lib, ver, feats = final.artifact_format, final.artifact, final.library, final.library_version, final.features
    # spend's blend reads BG/NBD's expected value whatever the champion's own features
    blended = ([BGNBD_OUTPUT["spend"]] if calibration.get("blend_bgnbd_weight") and BGNBD_OUTPUT["spend"] not in feats
               else [])
    return ModelRecord(
        task, lib, ver, fmt, art, feats,
        {"family": sel["family"], "stacked_cutoffs": n, "stack_step_days": step, "rounds": sel["rounds"],
         "selection": sel["selection"], "promoted": promoted, "diagnostics": sel.get("diagnostics", {}),
         "importance": C.importance(fmt, art, feats)},
        metrics, sel["training_cutoffs"], sel["n_train_rows"], calibration, notes,
        D.feature_profile(profile_frame, feats + blended, sel.get("train_ranges")),
    )


# Days before the partition t of the extra out-of-time windows pooled into the churn calibration (t itself is
# always one). One 90-day window's base rate is a noisy guess of the next one's; three overlapping windows are
# less noisy. On CDNOW's rolling backtest (benchmarks/accuracy.py) this lowered the Brier at three scoring cutoffs
# and left it at 0.0878 at the fourth, and the worst expected calibration error went from 0.042 to 0.023.
CALIBRATION_OFFSETS_DAYS = (30, 60)


def out_of_time_champion(task: str, data: TrainingData, sel: dict[str, Any], at: date,
                         ensembles: dict[str, tuple[tuple[str, ...], str]]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The champion's spec (family or ensemble, stacking), fit on cutoffs whose labels end by ``at`` and scored at ``at``.

    Boosting rounds are early-stopped on ``at``, as in validation at t. Returns (the frame at ``at``, raw
    predictions), or None when there is no training cutoff with 30 days of history on or before ``at - H``.
    """
    h = data.horizon_days
    label_fn, objective, _ = task_spec(task, h)
    cutoffs = data.cutoffs(at - timedelta(days=h), *sel["stack"])
    if not cutoffs:
        return None
    frame = C.add_bgnbd_features(data.frame([at]), h)
    if sel["family"] == "bgnbd":  # nothing to fit: BG/NBD's output on the histories at ``at``
        return frame, _bgnbd_value(frame, task)
    train = C.add_bgnbd_features(data.frame(cutoffs), h)
    members, link = ensembles.get(sel["family"], ((sel["family"],), "logit"))
    preds = [_fit_family(m, objective, train, frame, label_fn).predict(frame) for m in members]
    return frame, (preds[0] if len(preds) == 1 else C.combine(preds, link))


def calibration_windows(data: TrainingData, sel: dict[str, Any], log=None) -> tuple[list[date], list[np.ndarray], list[np.ndarray]]:
    """The churn champion's out-of-time windows for its Platt calibration: (cutoffs, raw scores, labels).

    The validation window at t, then t - ``CALIBRATION_OFFSETS_DAYS`` each predicted by the champion's spec fit
    on cutoffs whose labels end by then; a window without enough history before it is left out.
    """
    log = log or (lambda _m: None)
    windows, raw, labels = [data.cutoff], [sel["val_pred"]], [sel["valid"]["label_purchase"].astype(float).to_numpy()]
    for back in CALIBRATION_OFFSETS_DAYS:
        at = data.cutoff - timedelta(days=back)
        out = out_of_time_champion("churn", data, sel, at, CHURN_ENSEMBLES)
        if out is None:
            log(f"churn: calibration window {at} left out: no training cutoff with 30 days of history by {at - timedelta(days=data.horizon_days)}")
            continue
        windows.append(at)
        raw.append(out[1])
        labels.append(out[0]["label_purchase"].astype(float).to_numpy())
    return windows, raw, labels


# The model of partition t scores the window (s, s + H], s = t + H. Its validation and calibration windows end by
# t + H, so on seasonal data they are another season than the one it scores. The same season a year earlier,
# b = s - 365 days, has labels that end by t + H (for H <= 365), so a model of partition t may learn from it: the
# champion's spec, fit on cutoffs whose labels end by b, predicts b, and the Platt fit (churn) or the level ratio
# Σ actual / Σ predicted (spend) there is served. On 100,000 seasonal synthetic customers
# (benchmarks/seasonal_champions.py) this beat the plain model at 6 of 6 scoring cutoffs, by a lot; on the same
# generator without a yearly cycle it changed the mean Brier by 0.0001 and the mean R² by 0.0006.
# Where the data go back far enough, the correction is checked in phase first: the same correction made a year
# earlier (from b - 365, applied to the window b) must beat the plain model at b with a paired bootstrap 95%
# interval of the gain above zero (customers resampled), or it is not applied. The check needs a training cutoff with
# 30 days of history by b - 365 - H, about 25 months of data before t. With less, the correction is not made unless
# ``same_season`` is "assume_seasonal" (then it is applied unchecked, and the record says so): on the synthetic data a
# year whose peak went the other way turned a +108% miss into +437% unchecked. A check at the validation window t
# instead (from t - 365) was tried first: it is another phase of the year than the scoring window, and it refused the
# correction at 4 of the 6 seasonal cutoffs where it would have helped.
SEASON_DAYS = 365
SEASON_MODES = {"checked": "apply where the check two years back can run and passes (the default)",
                "assume_seasonal": "also apply, unchecked, where there is too little history for the check",
                "off": "never apply"}


def season_windows(data: TrainingData) -> tuple[date, date]:
    """(b, c): the scoring window's season a year back (what is served) and two years back (the check)."""
    year = timedelta(days=SEASON_DAYS)
    b = data.cutoff + timedelta(days=data.horizon_days) - year
    return b, b - year


def level_ratio(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Σ actual / Σ predicted: the factor that makes the predictions' total right; None when nothing is predicted."""
    total = float(np.sum(predicted))
    return float(np.sum(actual)) / total if total > 0 else None


def _beyond_noise(metric, y: np.ndarray, corrected: np.ndarray, plain: np.ndarray) -> tuple[float, float, float]:
    """metric(corrected) - metric(plain) (higher is better) with its paired bootstrap 95% interval."""
    return M.paired_bootstrap(metric, y, corrected, plain, SPACING_BOOTSTRAP_SAMPLES, 0)


def _predictable(data: TrainingData, at: date) -> bool:
    """Whether the champion's spec can be fit out of time for the window ``at`` (a training cutoff by at - H)."""
    return bool(data.cutoffs(at - timedelta(days=data.horizon_days), 1, 30))


def _season_unavailable(data: TrainingData) -> str | None:
    """Why the same-season correction cannot be made at this partition, or None when it can."""
    b, _ = season_windows(data)
    if data.same_season == "off":
        return "switched off (same_season: off)"
    if b > data.cutoff:  # its labels would end after t + H
        return f"the horizon of {data.horizon_days} days is longer than a year: the scoring window's season a year back is not complete by t + H"
    if not _predictable(data, b):
        return (f"needs a training cutoff with 30 days of history by {b - timedelta(days=data.horizon_days)} (t - 365) to "
                f"predict the window {b}; the data start {data.data_start}")
    return None


def _uncheckable(data: TrainingData, c: date) -> str | None:
    """Why the check cannot run (None when it can); the correction then goes ahead only with ``assume_seasonal``."""
    if _predictable(data, c):
        return None
    return (f"the check needs a training cutoff with 30 days of history by {c - timedelta(days=data.horizon_days)} "
            f"(t - 730) to predict the window {c}; the data start {data.data_start}")


def _season_gate(data: TrainingData, c: date) -> tuple[str | None, str | None]:
    """(why the correction is not made, or None; why it goes ahead unchecked, or None)."""
    if why := _season_unavailable(data):
        return why, None
    no_check = _uncheckable(data, c)
    if no_check and data.same_season != "assume_seasonal":
        return f"{no_check} (same_season: assume_seasonal applies it unchecked)", None
    return None, no_check


def blend_with_bgnbd(own: np.ndarray, frame: pd.DataFrame, w: float) -> np.ndarray:
    """The spend champion's own predictions (clipped at 0) blended with BG/NBD + Gamma-Gamma's at weight ``w``
    (``frame`` needs ``bg_expected_value``; when BG/NBD alone is the champion, ``own`` is that and ``w`` is 0)."""
    return (1 - w) * np.clip(own, 0, None) + w * frame["bg_expected_value"].to_numpy()


def same_season_spend(data: TrainingData, sel: dict[str, Any], log=None) -> dict[str, Any]:
    """The spend level ratio of the scoring window's season a year back (see ``SEASON_DAYS``).

    The champion's spec, fit on cutoffs whose labels end by b = t + H - 365, predicts the window b (blended like the
    champion); ``ratio`` = Σ actual / Σ predicted there, and ``predict_spend`` multiplies by it. The check: the
    ratio of the window c = b - 365 must lower the |aggregate error| at b beyond noise without lowering R², or
    nothing is applied; where c cannot be predicted, only ``same_season="assume_seasonal"`` applies it. Returns the
    ``same_season`` entry of the calibration (``ratio`` 1.0 when not applied).
    """
    log = log or (lambda _m: None)
    b, c = season_windows(data)
    info: dict[str, Any] = {"serve_window": str(b), "check_window": str(c), "applied": False, "ratio": 1.0}
    skip, no_check = _season_gate(data, c)
    if skip:
        log(f"spend: same-season ratio not applied: {skip}")
        return {**info, "reason": f"not applied: {skip}"}

    def at(window: date) -> tuple[np.ndarray, np.ndarray]:  # (actual, the champion's out-of-time prediction)
        frame, own = out_of_time_champion("spend", data, sel, window, SPEND_ENSEMBLES)
        return frame["label_spend"].astype(float).to_numpy(), blend_with_bgnbd(own, frame, sel["blend_bgnbd_weight"])

    y_b, p_b = at(b)
    ratio_b = level_ratio(y_b, p_b)
    if ratio_b is None:
        return {**info, "reason": f"not applied: nothing predicted in the window {b}"}
    if no_check:
        log(f"spend: served predictions multiplied by {ratio_b:.3f}, the ratio of the window {b}, unchecked: {no_check}")
        return {**info, "applied": True, "ratio": ratio_b, "reason": f"applied unchecked (same_season: assume_seasonal): {no_check}"}
    ratio_c = level_ratio(*at(c))
    if ratio_c is None:
        return {**info, "reason": f"not applied: nothing predicted in the window {c}"}
    check = {"check_ratio": ratio_c, "check_aggregate_error": M.aggregate_error(y_b, p_b),
             "check_aggregate_error_corrected": M.aggregate_error(y_b, ratio_c * p_b),
             "check_r2": M.r2(y_b, p_b), "check_r2_corrected": M.r2(y_b, ratio_c * p_b)}
    _, low, high = _beyond_noise(lambda a, q: -abs(M.aggregate_error(a, q)), y_b, ratio_c * p_b, p_b)
    check["abs_aggregate_error_gain_interval_95"] = [low, high]
    helps = low > 0 and check["check_r2_corrected"] >= check["check_r2"]
    log(f"spend: the ratio {ratio_c:.3f} of the window {c} takes the aggregate error at {b} from "
        f"{check['check_aggregate_error']:+.1%} to {check['check_aggregate_error_corrected']:+.1%} (gain in |error| "
        f"[{low:+.1%}, {high:+.1%}]) and R² from {check['check_r2']:.4f} to {check['check_r2_corrected']:.4f}: "
        f"{'applied' if helps else 'not applied'}")
    if not helps:
        return {**info, **check, "reason": f"not applied: the ratio of the window {c} did not help at {b} beyond noise, or lowered R²"}
    log(f"spend: served predictions multiplied by {ratio_b:.3f}, the ratio of the window {b}")
    return {**info, **check, "applied": True, "ratio": ratio_b, "reason": "applied: the same correction a year earlier passed the check"}


def same_season_churn(data: TrainingData, sel: dict[str, Any], log=None) -> dict[str, Any]:
    """A Platt fit on the scoring window's season a year back (see ``SEASON_DAYS``).

    The champion's spec, fit on cutoffs whose labels end by b = t + H - 365, scores the window b, and the Platt fit
    there is served in place of the pooled recent windows' (``a``, ``b``). The check: the Platt fit on the window
    c = b - 365, applied at b, must lower the Brier there beyond noise against a Platt fit on the window b - H (what
    the recent windows are to the scoring window), or nothing is applied; where c cannot be scored, only
    ``same_season="assume_seasonal"`` applies it. Returns the ``same_season`` entry of the calibration.
    """
    log = log or (lambda _m: None)
    b, c = season_windows(data)
    info: dict[str, Any] = {"serve_window": str(b), "check_window": str(c), "applied": False}
    skip, no_check = _season_gate(data, c)
    if skip:
        log(f"churn: same-season calibration not applied: {skip}")
        return {**info, "reason": f"not applied: {skip}"}

    def at(window: date) -> tuple[np.ndarray, np.ndarray] | None:  # (labels, raw scores), None with a single class
        frame, raw = out_of_time_champion("churn", data, sel, window, CHURN_ENSEMBLES)
        y = frame["label_purchase"].astype(float).to_numpy()
        return (y, raw) if 0 < y.sum() < len(y) else None

    served = at(b)
    if served is None:
        return {**info, "reason": f"not applied: the window {b} has a single class"}
    y_b, raw_b = served
    a_b, b_b = fit_platt(raw_b, y_b)
    platt_b = {"a": a_b, "b": b_b, "fitted_on_rows": len(y_b)}
    if no_check:
        log(f"churn: served calibration is the Platt fit on the window {b}, unchecked: {no_check}")
        return {**info, "applied": True, **platt_b, "reason": f"applied unchecked (same_season: assume_seasonal): {no_check}"}
    earlier = at(c)
    if earlier is None:
        return {**info, "reason": f"not applied: the window {c} has a single class"}
    recent_window = b - timedelta(days=data.horizon_days)
    before = at(recent_window)
    if before is None:
        return {**info, "reason": f"not applied: the window {recent_window} has a single class"}
    corrected = apply_platt(raw_b, *fit_platt(earlier[1], earlier[0]))
    recent = apply_platt(raw_b, *fit_platt(before[1], before[0]))
    check = {"check_recent_window": str(recent_window), "check_brier_recent": M.brier(y_b, recent),
             "check_brier_corrected": M.brier(y_b, corrected)}
    _, low, high = _beyond_noise(lambda a, q: -M.brier(a, q), y_b, corrected, recent)
    check["brier_gain_interval_95"] = [low, high]
    helps = low > 0
    log(f"churn: at {b}, a Platt fit on the window {c} gives the Brier {check['check_brier_corrected']:.4f}, one on the window "
        f"{recent_window} {check['check_brier_recent']:.4f} (gain [{low:+.4f}, {high:+.4f}]): {'applied' if helps else 'not applied'}")
    if not helps:
        return {**info, **check, "reason": f"not applied: at {b}, a Platt fit on the window {c} did not beat one on the window "
                f"{recent_window} beyond noise"}
    log(f"churn: served calibration is the Platt fit on the window {b}")
    return {**info, **check, "applied": True, **platt_b, "reason": "applied: the same correction a year earlier passed the check"}


def train_churn(data: TrainingData, log=None) -> ModelRecord:
    """Purchase classifier chosen out of time, Platt-calibrated on its out-of-time predictions.

    The calibration pools the validation window at t with the windows at t - 30 and t - 60 days
    (``CALIBRATION_OFFSETS_DAYS``), each predicted by the champion's spec fit on cutoffs whose labels end by
    then. A window without enough history before it is left out; the record lists the windows used.
    Where the scoring window's season a year back can be scored, the Platt fit there is served instead
    unless its check fails (``same_season_churn``; method ``platt-same-season``).
    """
    log = log or (lambda _m: None)
    valid_labels = data.load(data.cutoff)["label_purchase"].astype(float)
    if valid_labels.nunique() < 2:
        raise InsufficientDataError(
            f"churn: the labels at {data.cutoff} have a single class (all {'buyers' if valid_labels.iloc[0] else 'non-buyers'}); "
            "a classifier needs both buyers and non-buyers in the training window."
        )
    sel = select_and_fit("churn", data, CHURN_FAMILIES, log, CHURN_ENSEMBLES)
    valid, raw = sel["valid"], sel["val_pred"]
    y = valid["label_purchase"].astype(float).to_numpy()
    windows, pooled_raw, pooled_y = calibration_windows(data, sel, log)
    a, b = fit_platt(np.concatenate(pooled_raw), np.concatenate(pooled_y))
    pooled_rows = sum(len(v) for v in pooled_y)
    log(f"churn: Platt calibration on {pooled_rows:,} out-of-time rows at {', '.join(map(str, windows))}")
    p = apply_platt(raw, a, b)
    baseline = M.roc_auc(y, -valid["recency_days"].to_numpy())
    metrics = {
        "validation_roc_auc": M.roc_auc(y, p), "validation_pr_auc": M.pr_auc(y, p), "validation_brier": M.brier(y, p),
        "validation_log_loss": M.log_loss(y, p), "validation_brier_uncalibrated": M.brier(y, raw),
        "baseline_neg_recency_roc_auc": baseline, "validation_base_rate": float(y.mean()),
    }
    promoted = metrics["validation_roc_auc"] > baseline
    notes = [] if promoted else [f"not promoted: validation ROC-AUC {metrics['validation_roc_auc']:.4f} <= -recency {baseline:.4f}"]
    sel["diagnostics"] = {"reliability": M.reliability_table(y, p), "gains": M.gains_curve(y, p),
                          "gains_baseline": M.gains_curve(y, -valid["recency_days"].to_numpy())}
    calibration = {"method": "platt", "a": a, "b": b, "fitted_on_cutoff": str(data.cutoff),
                   "fitted_on_cutoffs": [str(c) for c in windows], "fitted_on_rows": int(pooled_rows)}
    season = same_season_churn(data, sel, log)
    if season["applied"]:  # served: the Platt fit on the scoring window's season a year back; the pooled fit kept for the record
        calibration = {"method": "platt-same-season", "a": season["a"], "b": season["b"], "fitted_on_cutoff": str(data.cutoff),
                       "fitted_on_cutoffs": [season["serve_window"]], "fitted_on_rows": season["fitted_on_rows"],
                       "recent": {k: calibration[k] for k in ("a", "b", "fitted_on_cutoffs", "fitted_on_rows")}}
    calibration["same_season"] = season
    return _record("churn", sel, metrics, calibration, notes, promoted, data.load(data.cutoff))


def train_spend(data: TrainingData, log=None) -> ModelRecord:
    """Expected spend in the horizon, chosen out of time, optionally blended with BG/NBD + Gamma-Gamma.

    No rescaling to the validation total: the validation window's spend level differs
    from the next window's (seasonality), and rescaling made the aggregate error worse. The level
    of the scoring window's season a year back is used instead, unless its check fails
    (``same_season_spend``; stored as ``calibration["season_ratio"]``).
    """
    sel = select_and_fit("spend", data, SPEND_FAMILIES, log, SPEND_ENSEMBLES)
    valid, pred = sel["valid"], np.clip(sel["val_pred"], 0, None)
    y = valid["label_spend"].astype(float).to_numpy()
    baseline = M.r2(y, valid[f"spend_{_nearest_window(data.horizon_days)}d"].to_numpy())
    metrics = {
        "validation_r2": M.r2(y, pred), "validation_rmse": M.rmse(y, pred),
        "validation_aggregate_error": M.aggregate_error(y, pred), "validation_top10_share": M.top_share(y, pred),
        "baseline_last_h_spend_r2": baseline,
    }
    promoted = metrics["validation_r2"] > baseline
    notes = [] if promoted else [f"not promoted: validation R2 {metrics['validation_r2']:.4f} <= last-H-days spend {baseline:.4f}"]
    sel["diagnostics"] = {"gains": M.gains_curve(y, pred),
                          "gains_baseline": M.gains_curve(y, valid[f"spend_{_nearest_window(data.horizon_days)}d"].to_numpy())}
    season = same_season_spend(data, sel, log)
    calibration = {"blend_bgnbd_weight": sel["blend_bgnbd_weight"],
                   "blend_weight_source": sel["blend_weight_source"],
                   "fitted_on_cutoff": str(data.cutoff),
                   "season_ratio": season["ratio"], "same_season": season}
    return _record("spend", sel, metrics, calibration, notes, promoted, data.load(data.cutoff))


def train_next_purchase(data: TrainingData, log=None) -> ModelRecord:
    """Days to the next purchase: XGBoost accelerated failure time, right-censored at the horizon."""
    if not data.load(data.cutoff)["label_purchase"].astype(bool).any():
        raise InsufficientDataError(f"next_purchase: nobody bought in the label window at {data.cutoff}; nothing to learn from")
    sel = select_and_fit("next_purchase", data, ("xgboost",), log)
    valid, pred = sel["valid"], np.clip(sel["val_pred"], 1, 3650)
    days = valid["label_days_to_next_purchase"].astype(float).to_numpy()
    bought = ~np.isnan(days)
    metrics = {
        "validation_c_index": M.concordance_index(np.where(bought, days, data.horizon_days), bought, pred),
        "validation_mae_days_buyers": float(np.mean(np.abs(pred[bought] - days[bought]))) if bought.any() else float("nan"),
        # the naive ranking: the longer since the last purchase, the longer until the next one
        "baseline_recency_c_index": M.concordance_index(np.where(bought, days, data.horizon_days), bought,
                                                        valid["recency_days"].astype(float).to_numpy()),
    }
    # Recorded, not gated: there is no other predictor of days to fall back on, and on small data the
    # ranking by recency alone can win (the note says so, and the metric is in the registry).
    notes = [] if metrics["validation_c_index"] >= metrics["baseline_recency_c_index"] else [
        f"validation C-index {metrics['validation_c_index']:.4f} below recency's {metrics['baseline_recency_c_index']:.4f}; "
        "promoted anyway (no fallback predictor of days)"]
    return _record("next_purchase", sel, metrics, {"censored_at_days": data.horizon_days}, notes, True, data.load(data.cutoff))


def _nearest_window(days: int) -> int:
    from customer_assets.features.logic import WINDOWS

    return min(WINDOWS, key=lambda w: abs(w - days))


def _prepare(record: ModelRecord, frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    if set(C.BG_FEATURES) <= set(frame.columns):
        return frame
    if any(f in C.BG_FEATURES for f in record.features) or record.calibration.get("blend_bgnbd_weight"):
        return C.add_bgnbd_features(frame, horizon_days)
    return frame


def _raw_predict(record: ModelRecord, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    if not set(C.BG_FEATURES) <= set(frame.columns):
        frame = _prepare(record, frame, horizon_days)
    if record.artifact_format == "bgnbd-features":  # BG/NBD's own output, named by the record's one feature
        return frame[record.features[0]].to_numpy(dtype=float)
    predictor = C.load_predictor(record.artifact_format, record.artifact, record.features, record.params.get("rounds", 0))
    return np.asarray(predictor(frame), dtype=float)


def fit_platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling: (a, b) of P(y = 1) = sigmoid(a * logit(raw) + b), by unpenalised maximum likelihood."""
    cal = LogisticRegression(C=1e6).fit(logit(raw).reshape(-1, 1), np.asarray(y, dtype=float))
    return float(cal.coef_[0, 0]), float(cal.intercept_[0])


def apply_platt(raw: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(a * logit(raw) + b)))


def predict_purchase(record: ModelRecord, frame: pd.DataFrame, horizon_days: int = 90) -> np.ndarray:
    return apply_platt(_raw_predict(record, frame, horizon_days), record.calibration["a"], record.calibration["b"])


def predict_spend(record: ModelRecord, frame: pd.DataFrame, horizon_days: int = 90) -> np.ndarray:
    w = float(record.calibration.get("blend_bgnbd_weight", 0.0))
    frame = _prepare(record, frame, horizon_days)
    pred = np.clip(_raw_predict(record, frame, horizon_days), 0, None)
    if w:
        pred = (1 - w) * pred + w * frame["bg_expected_value"].to_numpy()
    return pred * float(record.calibration.get("season_ratio", 1.0))


def predict_next_purchase(record: ModelRecord, frame: pd.DataFrame, horizon_days: int = 90) -> np.ndarray:
    return np.clip(_raw_predict(record, frame, horizon_days), 1, 3650)


# ----------------------------------------------------------------------------- BG/NBD + Gamma-Gamma

def rfm_weeks(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T, m) in weeks from the feature table."""
    x = frame["frequency"].astype(float).to_numpy()
    t_x = frame["t_x_days"].astype(float).to_numpy() / WEEK
    T = frame["tenure_days"].astype(float).to_numpy() / WEEK
    m = frame["repeat_monetary_mean"].astype(float).to_numpy()
    return x, t_x, T, m


def _fit_bgnbd_gamma_gamma(frame: pd.DataFrame) -> tuple[P.BGNBDParams, P.GammaGammaParams, list[str]]:
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
    return bg, gg, notes


def net_spend_share(frame: pd.DataFrame) -> float:
    """The share of their spend on purchase days that customers kept, after the returns they made on other days.

    BG/NBD + Gamma-Gamma model purchase days: Gamma-Gamma's spend is the net amount of a purchase day (returns made
    that day included), and a day with only returns is no purchase. So they predict the spend of purchase days, and
    the returns made on other days (of goods bought earlier) are missing. Over the histories of ``frame`` this is
    Σ net spend / Σ spend on purchase days, where a customer's spend on purchase days is their first day's amount plus
    ``frequency`` × ``repeat_monetary_mean``. 1.0 exactly when no customer returned anything; clipped to [0, 1].
    """
    if not (frame["return_amount"].astype(float) < 0).any():
        return 1.0
    net = float(frame["monetary_total"].astype(float).sum())
    on_purchase_days = float((frame["first_purchase_amount"].astype(float)
                              + frame["frequency"].astype(float) * frame["repeat_monetary_mean"].astype(float)).sum())
    return float(np.clip(net / on_purchase_days, 0.0, 1.0)) if on_purchase_days > 0 else 1.0


def train_ltv(frame: pd.DataFrame, cutoff: date, horizon_days: int, ltv_horizon_days: int, log=None,
              serve_frame: pd.DataFrame | None = None, net_of_returns: bool = True) -> ModelRecord:
    """BG/NBD + Gamma-Gamma: validated on the histories at ``cutoff`` against its label window, served as refitted
    on ``serve_frame``.

    Parameters
    ----------
    frame : the features at ``cutoff`` (the partition t), with labels when complete. The fit on these histories
        is checked on the purchases of (t, t + H]: the ``in_window_*`` metrics.
    serve_frame : the histories at t + H, or None. A model of partition t may see data up to t + H, and scoring at
        s = t + H uses it, so the stored parameters are fitted on the histories at s itself, the newest it may see
        (on CDNOW this missed the LTV total by less at all 9 windows that start after the acquisition quarter:
        ``benchmarks/headroom.py --ltv-staleness``). None fits and serves the histories at t.
    net_of_returns : multiply by ``net_spend_share`` of the histories fitted on (stored as ``net_spend_share``), so
        that the LTV is net of returns, like the spend it is checked against. False: the published model as it is
        (the LTV backtest's ``bgnbd_gamma_gamma`` baseline). Data without returns get 1.0 either way.
    """
    check_training_data(frame, "ltv")
    bg, gg, notes = _fit_bgnbd_gamma_gamma(frame)
    share = net_spend_share(frame) if net_of_returns else 1.0
    metrics: dict[str, float] = {"bgnbd_log_likelihood": bg.log_likelihood, "gamma_gamma_log_likelihood": gg.log_likelihood}
    if "label_spend" in frame and frame["label_spend"].notna().all():
        x, t_x, T, m = rfm_weeks(frame)
        pred_h = share * P.bgnbd_expected_purchases(bg, horizon_days / WEEK, x, t_x, T) * P.gamma_gamma_expected_spend(gg, x, m)
        y = frame["label_spend"].astype(float).to_numpy()
        metrics.update({
            "in_window_r2": M.r2(y, pred_h),
            "in_window_aggregate_error": M.aggregate_error(y, pred_h),
            "in_window_top10_share": M.top_share(y, pred_h),
            "in_window_purchase_roc_auc": M.roc_auc(frame["label_purchase"].astype(float), P.bgnbd_probability_of_purchase(bg, horizon_days / WEEK, x, t_x, T)),
        })
    fitted_on, n_rows, fitted_frame = cutoff, len(frame), frame
    if serve_frame is not None:
        check_training_data(serve_frame, "ltv")
        fitted_on, n_rows, fitted_frame = cutoff + timedelta(days=horizon_days), len(serve_frame), serve_frame
        bg, gg, serve_notes = _fit_bgnbd_gamma_gamma(serve_frame)
        share = net_spend_share(serve_frame) if net_of_returns else 1.0
        notes += [f"served fit, on the histories at {fitted_on}: {n}" for n in serve_notes]
        metrics.update({"bgnbd_log_likelihood": bg.log_likelihood, "gamma_gamma_log_likelihood": gg.log_likelihood})
    if log:
        log(f"BG/NBD r={bg.r:.3f} alpha={bg.alpha:.3f} a={bg.a:.3f} b={bg.b:.3f}; Gamma-Gamma p={gg.p:.3f} q={gg.q:.3f} "
            f"v={gg.v:.3f} (fitted on the histories at {fitted_on}); net spend share {share:.4f}")
    params = {"family": "bgnbd+gamma-gamma", "bgnbd": bg.to_dict(), "gamma_gamma": gg.to_dict(), "time_unit_days": WEEK,
              "ltv_horizon_days": ltv_horizon_days, "validated_on_histories_at": str(cutoff),
              "fitted_on_histories_at": str(fitted_on), "net_spend_share": share}
    features = ["frequency", "t_x_days", "tenure_days", "repeat_monetary_mean"]
    return ModelRecord(
        "ltv", "customer_assets.probabilistic (scipy)", "1", "json-params", json.dumps(params),
        features, params, metrics, [fitted_on], n_rows, {}, notes, D.feature_profile(fitted_frame, features),
    )


def _ltv_params(record: ModelRecord) -> tuple[P.BGNBDParams, P.GammaGammaParams, float]:
    params = json.loads(record.artifact)
    # a record written before the share was stored served the published model as it is
    return P.BGNBDParams(**params["bgnbd"]), P.GammaGammaParams(**params["gamma_gamma"]), float(params.get("net_spend_share", 1.0))


def predict_ltv(record: ModelRecord, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Expected net spend over ``horizon_days``: E[purchases] x E[spend per purchase] x the net spend share."""
    bg, gg, share = _ltv_params(record)
    x, t_x, T, m = rfm_weeks(frame)
    return share * P.bgnbd_expected_purchases(bg, horizon_days / WEEK, x, t_x, T) * P.gamma_gamma_expected_spend(gg, x, m)


def top_drivers(churn: ModelRecord, spend: ModelRecord, frame: pd.DataFrame, horizon_days: int = 90, k: int = 3) -> list[str]:
    """The ``k`` features that moved each customer's churn risk and spend most, with direction.

    Uses the boosting libraries' own per-row contributions on the link scale (logit for the
    purchase model, log for Tweedie spend), so the two models' contributions are comparable.
    A contribution that raises P(purchase) lowers churn, and is reported as ``churn -``.
    """
    parts = []
    for record, sign, label in ((churn, -1.0, "churn"), (spend, 1.0, "spend")):
        prepared = _prepare(record, frame, horizon_days)
        contrib = C.contributions(record.artifact_format, record.artifact, record.features, record.params.get("rounds", 0), prepared)
        if contrib is not None:
            parts.append((label, record.features, sign * contrib))
    if not parts:
        return [""] * len(frame)
    labels = np.array([label for label, feats, _ in parts for _f in feats])
    feats = np.array([f for _label, fs, _ in parts for f in fs])
    values = np.hstack([c for _, _, c in parts])
    order = np.argsort(-np.abs(values), axis=1)[:, :k]
    rows = np.arange(len(values))[:, None]
    top = values[rows, order]
    # object arrays and Python's own formatting: the same text as numpy's char functions, 3x faster at 1M rows
    feats, labels = feats.astype(object), labels.astype(object)
    text = [feats[order[:, j]] + " (" + labels[order[:, j]] + np.where(top[:, j] >= 0, " +", " -").astype(object)
            + np.array([f"{v:.2f}" for v in np.abs(top[:, j]).tolist()], dtype=object) + ")"
            for j in range(order.shape[1])]
    joined = text[0]
    for part in text[1:]:
        joined = joined + "; " + part
    return joined.tolist()
