"""How far can the models go on this data? The searches behind issue 3's "out of reach" figures.

    python benchmarks/headroom.py --cutoff 1998-04-01
    python benchmarks/headroom.py --cutoff 1998-04-01 --rolling 1998-01-01,1998-02-01,1998-03-01

Every candidate is chosen the way the pipeline chooses its champion, without peeking: fit on
cutoffs whose label windows end by t = s - H, validated on t (boosting rounds by early stopping
there, Platt calibration and the BG/NBD blend weight fitted there), then refit on cutoffs up to t
with those settings and scored at s against the purchases of (s, s + H]. The tables print the
validation figure next to the test figure, so a reader can see whether validation would have
picked a better candidate.

Two rows per table are not models but bounds, and say so: the best test figure of any
candidate (picked with the test labels, so optimistic), and for Brier the champion
recalibrated on the test labels themselves.

The LTV table refits BG/NBD + Gamma-Gamma at --ltv-cutoff (default: last date - 365 days)
with two spend models and splits the aggregate error into purchases and spend per purchase. Its
in-period bound cross-fits boosters on four fifths of that window's own labels (five folds), alone
and blended with the published model. --ltv prints only these tables (about a minute).

--ltv-staleness prints only one table: the LTV that scoring at s serves (BG/NBD + Gamma-Gamma of the
models/ltv of s - H) against the same model refitted at s, on every window of 365, 270 and 180 days.

--boosted prints only two tables: whether validation would choose the spend model boosted from BG/NBD's own
prediction (alone or in an ensemble) over the pipeline's champion, and whether its test gain over the same model
started from a constant is more than noise (paired bootstrap).

--stacking prints only one table: every candidate stacking (how many training cutoffs, how far apart) of
churn, spend and next purchase, XGBoost validated at t and tested at s, with the pipeline's pick and the
bootstrap interval that decides whether a spacing other than 30 days is adopted.

--in-period prints a different bound instead: models trained on the pipeline's stacked cutoffs up
to t *plus* four fifths of the test window's own labels (customers split at random into five
folds), each fold predicted by the models that saw the other four. Nothing a deployed model can
know is kept from them, and they see the test period itself, so they are optimistic. They say how
far these features can go when the drift between training and test periods is taken away.

The warehouse is --db (default data/benchmarks/accuracy.duckdb, the accuracy benchmark's); it
is ingested first unless --skip-ingest. About 2 to 3 minutes per scoring cutoff on 2 cores for CDNOW (9 min 29 s for the four rolling ones on 2026-11-24, 4 min 23 s with --in-period).
"""

import argparse
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import xgboost as xgb
from scipy import special
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold

from customer_assets.cli import Runner
from customer_assets.evaluation import logic as E
from customer_assets.evaluation import metrics as M
from customer_assets.features import logic as F
from customer_assets.jobs import INGEST_SELECTION
from customer_assets.models import candidates as C
from customer_assets.models import logic as L
from customer_assets.models import probabilistic as P
from customer_assets.settings import DATA_DIR, HORIZON_DAYS, LTV_HORIZON_DAYS


@dataclass
class Candidate:
    name: str
    family: str  # xgboost | lightgbm | logistic
    n: int = 8
    step: int = 30
    overrides: dict = field(default_factory=dict)
    bg_features: bool = False
    target: str = "purchase"  # purchase | purchase_days (Poisson count) | days_to_next (survival, censored at H)
    ratios: bool = False  # add RATIO_FEATURES (computed here, not in the pipeline)
    seeds: int = 1  # > 1: that many XGBoost fits with different seeds, averaged (on the logit scale for purchase)
    half_life: float | None = None  # XGBoost sample weights 0.5 ** (days before the newest training cutoff / half_life)
    cap: float | None = None  # spend label capped at this quantile of each frame's positive labels
    extra: bool = False  # add EXTRA_FEATURES (CD counts and gap regularity; computed here, not in the pipeline)
    bins: bool = False  # add BIN_FEATURES (purchase days and spend in each 30-day bin; computed here, not in the pipeline)
    margin: bool = False  # XGBoost boosted from BG/NBD's own prediction (bgnbd_margin) instead of from a constant


# Ratios that trees cannot form from the pipeline's features on their own
RATIO_FEATURES = ["overdue_ratio", "purchase_rate", "share_in_last_365d", "t_x_share"]


def add_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(overdue_ratio=frame["recency_days"] / frame["mean_gap_days"],
                        purchase_rate=frame["purchase_days"] / (frame["tenure_days"] + 1),
                        share_in_last_365d=frame["purchases_365d"] / frame["purchase_days"],
                        t_x_share=frame["t_x_days"] / (frame["tenure_days"] + 1))


# CDNOW's fourth column (the number of CDs), which the pipeline's features do not use, and the regularity of
# each customer's gaps between purchase days (the idea behind Pareto/GGG-style models), at cutoff ?
EXTRA_SQL = """
WITH d AS (
    SELECT customer_id, txn_date, sum(amount) AS amt, sum(quantity) AS qty
    FROM clean.transactions WHERE txn_date <= CAST(? AS DATE) AND NOT is_return GROUP BY customer_id, txn_date),
g AS (
    SELECT *, txn_date - lag(txn_date) OVER (PARTITION BY customer_id ORDER BY txn_date) AS gap,
           min(txn_date) OVER (PARTITION BY customer_id) AS first_date,
           max(txn_date) OVER (PARTITION BY customer_id) AS last_date
    FROM d)
SELECT customer_id, sum(qty)::DOUBLE AS cds_total, avg(qty)::DOUBLE AS cds_per_purchase_day,
       max(qty)::DOUBLE AS max_day_cds, (sum(amt) / nullif(sum(qty), 0))::DOUBLE AS price_per_cd,
       stddev_samp(gap)::DOUBLE AS gap_std, min(gap)::DOUBLE AS min_gap, median(gap)::DOUBLE AS median_gap,
       (stddev_samp(gap) / nullif(avg(gap), 0))::DOUBLE AS gap_cv,
       count(*) FILTER (WHERE gap <= 30)::DOUBLE AS gaps_within_30d,
       avg(CASE WHEN gap IS NOT NULL THEN (gap > CAST(? AS DATE) - last_date)::DOUBLE END) AS own_gaps_longer_than_recency,
       count(*) FILTER (WHERE txn_date <= first_date + 90)::DOUBLE AS purchase_days_in_first_90d
FROM g GROUP BY customer_id
"""
EXTRA_FEATURES = ["cds_total", "cds_per_purchase_day", "max_day_cds", "price_per_cd", "gap_std", "min_gap", "median_gap",
                  "gap_cv", "gaps_within_30d", "own_gaps_longer_than_recency", "purchase_days_in_first_90d"]
EXTRA_NAME = "CD-count and gap-regularity features"

# The whole recent history at a finer grain than the pipeline's 30/90/180/365-day windows: purchase days and spend
# in each 30-day bin (c - 30 (i + 1), c - 30 i] for the last 15 bins (450 days), at cutoff $1
HISTORY_BINS = 15
BIN_SQL = f"""
WITH d AS (
    SELECT customer_id, txn_date, sum(amount) AS amt
    FROM clean.transactions WHERE txn_date <= CAST($1 AS DATE) AND NOT is_return GROUP BY customer_id, txn_date)
SELECT customer_id,
{", ".join(f"count(*) FILTER (WHERE txn_date > CAST($1 AS DATE) - {30 * (i + 1)} AND txn_date <= CAST($1 AS DATE) - {30 * i})::DOUBLE AS bin_days_{i}" for i in range(HISTORY_BINS))},
{", ".join(f"coalesce(sum(amt) FILTER (WHERE txn_date > CAST($1 AS DATE) - {30 * (i + 1)} AND txn_date <= CAST($1 AS DATE) - {30 * i}), 0)::DOUBLE AS bin_spend_{i}" for i in range(HISTORY_BINS))}
FROM d GROUP BY customer_id
"""
BIN_FEATURES = [f"bin_days_{i}" for i in range(HISTORY_BINS)] + [f"bin_spend_{i}" for i in range(HISTORY_BINS)]
BIN_NAME = "30-day history bins"


# Where a `margin` candidate's boosting starts: BG/NBD's own prediction on the booster's link scale (XGBoost's
# base_margin), so the trees learn a correction to a model that extrapolates by formula, past the training cutoffs'
# tenures where trees stay flat. The BG/NBD features are an input of the trees as well, but only as values to split on.
MARGIN_FLOOR = 1.0  # dollars: expected spend below it starts from log(1)


def bgnbd_margin(frame: pd.DataFrame, objective: str) -> np.ndarray:
    """BG/NBD's P(purchase in H) on the logit scale (``binary``), or log of its expected spend (``tweedie``)."""
    if objective == "binary":
        return special.logit(np.clip(frame["bg_p_purchase"].to_numpy(float), 1e-4, 1 - 1e-4))
    return np.log(np.clip(frame["bg_expected_value"].to_numpy(float), MARGIN_FLOOR, None))


def boosted_from_bgnbd(objective, feats, label_fn, train, stop, full, test, overrides=None) -> tuple[np.ndarray, np.ndarray]:
    """XGBoost started at ``bgnbd_margin``, early-stopped on ``stop`` after fitting ``train``, refit on ``full`` for
    those rounds: (its predictions at ``stop``, the refit's at ``test``), the margin added back at both."""
    params = C.with_overrides(C.xgb_params(objective), overrides)

    def matrix(frame):
        d = C.xgb_dmatrix(frame, feats, **label_fn(frame))
        d.set_base_margin(bgnbd_margin(frame, objective))
        return d

    stopped = xgb.train(params, matrix(train), C.MAX_XGB_ROUNDS, evals=[(matrix(stop), "valid")],
                        early_stopping_rounds=40, verbose_eval=False)
    rounds = int(stopped.best_iteration) + 1
    final = xgb.train(params, matrix(full), rounds)
    return stopped.predict(matrix(stop), iteration_range=(0, rounds)), final.predict(matrix(test))


MONOTONE = {"recency_days": -1, "frequency": 1, "purchases_90d": 1, "purchases_365d": 1}
LINEAR_TREES = {"linear_tree": True, "linear_lambda": 1.0}


PURCHASE = [
    *[Candidate(f"xgboost, {n} cutoffs every {s} d", "xgboost", n, s) for n, s in ((2, 30), (4, 30), (8, 30), (6, 45), (12, 20), (16, 15), (24, 10))],
    Candidate("xgboost + BG/NBD features", "xgboost", bg_features=True),
    Candidate("xgboost, depth 3", "xgboost", overrides={"max_depth": 3}),
    Candidate("xgboost, depth 6, min child weight 50", "xgboost", overrides={"max_depth": 6, "min_child_weight": 50}),
    Candidate("xgboost, learning rate 0.02", "xgboost", overrides={"eta": 0.02}),
    Candidate("xgboost, min child weight 100", "xgboost", overrides={"min_child_weight": 100}),
    Candidate("xgboost, half the columns per tree", "xgboost", overrides={"colsample_bytree": 0.5}),
    Candidate("lightgbm", "lightgbm"),
    Candidate("lightgbm + BG/NBD features", "lightgbm", bg_features=True),
    Candidate("logistic regression", "logistic"),
    Candidate("logistic regression + BG/NBD features", "logistic", bg_features=True),
    Candidate("xgboost Poisson on the number of purchase days, P = 1 - exp(-λ)", "xgboost", target="purchase_days",
              overrides={"objective": "count:poisson", "eval_metric": "poisson-nloglik"}),
    Candidate("xgboost survival (AFT) on days to next purchase, P = P(T <= H)", "xgboost", target="days_to_next"),
    Candidate("xgboost + ratio features", "xgboost", ratios=True),
    Candidate("xgboost, 5 seeds averaged, 70% of rows and columns per tree", "xgboost", seeds=5,
              overrides={"subsample": 0.7, "colsample_bytree": 0.7}),
    Candidate("xgboost, monotone in recency, frequency and purchase counts", "xgboost",
              overrides={"monotone_constraints": "(" + ",".join(str(MONOTONE.get(f, 0)) for f in F.FEATURE_COLUMNS) + ")"}),
    Candidate(f"xgboost + {EXTRA_NAME}", "xgboost", extra=True),
    Candidate(f"logistic regression + BG/NBD + {EXTRA_NAME}", "logistic", bg_features=True, extra=True),
    Candidate(f"xgboost + {BIN_NAME}", "xgboost", bins=True),
    Candidate(f"logistic regression + BG/NBD + {BIN_NAME}", "logistic", bg_features=True, bins=True),
    # linear models in the leaves: unlike constant leaves they extrapolate, e.g. past the training cutoffs' tenures
    Candidate("lightgbm + BG/NBD features, linear trees", "lightgbm", bg_features=True, overrides=LINEAR_TREES),
    Candidate("xgboost + BG/NBD features, boosted from BG/NBD's P(purchase)", "xgboost", bg_features=True, margin=True),
]
NOT_TWEEDIE = {"tweedie_variance_power": None, "eval_metric": "rmse"}
ENSEMBLES = [("xgboost, 8 cutoffs every 30 d", "lightgbm", "logistic regression"),
             # the pipeline's ensemble candidate (models.logic.CHURN_ENSEMBLES)
             ("xgboost, 8 cutoffs every 30 d", "logistic regression + BG/NBD features"),
             # the same pair, both with the features the pipeline does not have
             (f"xgboost + {EXTRA_NAME}", f"logistic regression + BG/NBD + {EXTRA_NAME}"),
             # the same pair, both with the finer history
             (f"xgboost + {BIN_NAME}", f"logistic regression + BG/NBD + {BIN_NAME}")]
SPEND = [
    *[Candidate(f"xgboost Tweedie 1.5, {n} cutoffs every {s} d", "xgboost", n, s, bg_features=True) for n, s in ((2, 30), (4, 30), (8, 30), (16, 15))],
    Candidate("xgboost Tweedie 1.2, 4 cutoffs", "xgboost", 4, overrides={"tweedie_variance_power": 1.2}, bg_features=True),
    Candidate("xgboost Tweedie 1.8, 4 cutoffs", "xgboost", 4, overrides={"tweedie_variance_power": 1.8}, bg_features=True),
    Candidate("xgboost squared error, 8 cutoffs", "xgboost", 8, overrides={"objective": "reg:squarederror", **NOT_TWEEDIE}, bg_features=True),
    Candidate("xgboost pseudo-Huber, 4 cutoffs", "xgboost", 4, overrides={"objective": "reg:pseudohubererror", "huber_slope": 50.0, **NOT_TWEEDIE}, bg_features=True),
    Candidate("xgboost Tweedie, depth 3, 4 cutoffs", "xgboost", 4, overrides={"max_depth": 3}, bg_features=True),
    Candidate("xgboost Tweedie, depth 6, min child weight 50, 4 cutoffs", "xgboost", 4, overrides={"max_depth": 6, "min_child_weight": 50}, bg_features=True),
    Candidate("lightgbm Tweedie 1.5, 4 cutoffs", "lightgbm", 4, bg_features=True),
    Candidate("lightgbm Tweedie 1.5, 8 cutoffs, linear trees", "lightgbm", bg_features=True, overrides=LINEAR_TREES),
    Candidate("xgboost Tweedie 1.5, 8 cutoffs, + ratio features", "xgboost", bg_features=True, ratios=True),
    Candidate("xgboost Tweedie 1.5, 8 cutoffs, weights halving every 90 d", "xgboost", bg_features=True, half_life=90),
    Candidate("xgboost Tweedie 1.5, 8 cutoffs, weights halving every 180 d", "xgboost", bg_features=True, half_life=180),
    Candidate("xgboost Tweedie 1.5, 8 cutoffs, label capped at its 99.9th percentile", "xgboost", bg_features=True, cap=0.999),
    Candidate("xgboost Tweedie 1.5, 8 cutoffs, label capped at its 99.5th percentile", "xgboost", bg_features=True, cap=0.995),
    Candidate("xgboost Tweedie 1.5, 8 cutoffs, 5 seeds averaged, 70% of rows and columns", "xgboost", bg_features=True,
              seeds=5, overrides={"subsample": 0.7, "colsample_bytree": 0.7}),
    Candidate(f"xgboost Tweedie 1.5, 8 cutoffs, + {EXTRA_NAME}", "xgboost", bg_features=True, extra=True),
    Candidate(f"xgboost Tweedie 1.5, 8 cutoffs, + {BIN_NAME}", "xgboost", bg_features=True, bins=True),
    Candidate("xgboost Tweedie 1.5, 8 cutoffs, boosted from BG/NBD + Gamma-Gamma's expected spend", "xgboost",
              bg_features=True, margin=True),
    # two-part (hurdle) models: P(purchase) of the pipeline's ensemble x E[spend | purchase] fitted on buyers only
    Candidate("two-part: P(purchase) x xgboost gamma on buyers' spend, 8 cutoffs", "xgboost", bg_features=True,
              target="two_part", overrides={"objective": "reg:gamma", **NOT_TWEEDIE, "eval_metric": "gamma-nloglik"}),
    Candidate("two-part: P(purchase) x xgboost squared error on buyers' spend, 8 cutoffs", "xgboost", bg_features=True,
              target="two_part", overrides={"objective": "reg:squarederror", **NOT_TWEEDIE}),
]


class Frames:
    """Feature frames (with labels and per-cutoff BG/NBD outputs) of any cutoff, computed once."""

    def __init__(self, conn, horizon_days: int):
        self.conn, self.h = conn, horizon_days
        self.start, self.end = F.data_bounds(conn)
        self.cache: dict[date, pd.DataFrame] = {}
        self.purchase: dict[date, tuple[np.ndarray, np.ndarray]] = {}  # the pipeline's calibrated P(purchase) by t

    def one(self, c: date) -> pd.DataFrame:
        if c not in self.cache:
            frame = add_ratios(C.add_bgnbd_features(F.compute_features(self.conn, c, self.h, self.end), self.h))
            extra = self.conn.execute(EXTRA_SQL, [c, c]).df()
            bins = self.conn.execute(BIN_SQL, [c]).df()
            self.cache[c] = (frame.merge(extra, on="customer_id", how="left", validate="one_to_one")
                             .merge(bins, on="customer_id", how="left", validate="one_to_one"))
        return self.cache[c]

    def stacked(self, last: date, n: int, step: int) -> pd.DataFrame:
        data = L.TrainingData(last, self.h, self.start, self.one)
        return data.frame(data.cutoffs(last, n, step))


def with_options(cand: Candidate, label_fn):
    """``label_fn`` with the candidate's label cap and sample weights (XGBoost reads the ``weight`` key)."""
    def fn(frame):
        out = dict(label_fn(frame))
        if cand.cap is not None:
            y = out["label"]
            out["label"] = np.minimum(y, np.quantile(y[y > 0], cand.cap))
        if cand.half_life is not None:
            cut = pd.to_datetime(frame["cutoff_date"])
            out["weight"] = 0.5 ** ((cut.max() - cut).dt.days.to_numpy() / cand.half_life)
        return out
    return fn


def stopped_then_refit(family, objective, feats, label_fn, train, stop, full, overrides=None) -> tuple[C.Fitted, C.Fitted]:
    """A booster early-stopped on ``stop`` after fitting ``train``, and the same refit on ``full`` for those rounds."""
    fit = C.fit_xgb if family == "xgboost" else C.fit_lgb
    chosen = fit(objective, train, feats, label_fn, stop, None, family, overrides)
    return chosen, fit(objective, full, feats, label_fn, None, max(chosen.rounds, 1), family, overrides)


def fit_predict(cand: Candidate, objective: str, frames: Frames, t: date, valid, test, label_fn):
    """(validation predictions at t, test predictions at s) of a candidate, chosen and refit like the pipeline."""
    feats = (F.FEATURE_COLUMNS + (C.BG_FEATURES if cand.bg_features else []) + (RATIO_FEATURES if cand.ratios else [])
             + (EXTRA_FEATURES if cand.extra else []) + (BIN_FEATURES if cand.bins else []))
    tr_val = frames.stacked(t - timedelta(days=frames.h), cand.n, cand.step)
    tr_final = frames.stacked(t, cand.n, cand.step)
    stop = valid
    if cand.target == "two_part":  # the conditional spend model is fitted and early-stopped on buyers only
        tr_val, tr_final, stop = (f[f["label_spend"] > 0] for f in (tr_val, tr_final, valid))
    if cand.family == "logistic":
        return (C.fit_logistic(tr_val, feats, label_fn).predict(valid),
                C.fit_logistic(tr_final, feats, label_fn).predict(test))
    label_fn = with_options(cand, label_fn)
    if cand.margin:
        return boosted_from_bgnbd(objective, feats, label_fn, tr_val, stop, tr_final, test, cand.overrides)
    out = []
    for seed in range(cand.seeds):
        overrides = {**cand.overrides, "seed": seed} if cand.seeds > 1 else cand.overrides
        chosen, final = stopped_then_refit(cand.family, objective, feats, label_fn, tr_val, stop, tr_final, overrides)
        out.append((chosen.predict(valid), final.predict(test)))
    if len(out) == 1:
        return out[0]
    # seeds averaged: on the logit scale for probabilities, as they are (counts, spend) otherwise
    link = "logit" if objective == "binary" and cand.target == "purchase" else "identity"
    return tuple(C.combine([o[i] for o in out], link) for i in (0, 1))


def two_part(cand: Candidate, frames: Frames, t: date, valid, test, label_fn):
    """P(purchase) of the pipeline's ensemble, Platt-calibrated on validation, x E[spend | purchase] from buyers."""
    if t not in frames.purchase:  # fitted once per t, shared by the two-part candidates
        churn_fn = L.task_spec("churn", frames.h)[0]
        members = [fit_predict(Candidate("", "xgboost"), "binary", frames, t, valid, test, churn_fn),
                   fit_predict(Candidate("", "logistic", bg_features=True), "binary", frames, t, valid, test, churn_fn)]
        pv, pt = (C.combine([m[i] for m in members], "logit") for i in (0, 1))
        a, b = L.fit_platt(pv, valid["label_purchase"].astype(float).to_numpy())
        frames.purchase[t] = L.apply_platt(pv, a, b), L.apply_platt(pt, a, b)
    pv, pt = frames.purchase[t]
    mv, mt = fit_predict(cand, "tweedie", frames, t, valid, test, label_fn)
    return pv * mv, pt * mt


def purchase_days_label(frame: pd.DataFrame) -> dict:
    return {"label": frame["label_purchase_days"].astype(float).to_numpy()}


def purchase_scores(cand: Candidate, frames: Frames, t: date, valid, test, label_fn):
    """P(purchase in H) at t and s, from a model of the purchase label or of a richer target."""
    if cand.target == "purchase_days":  # Poisson mean number of purchase days -> P(at least one)
        return tuple(1 - np.exp(-lam) for lam in fit_predict(cand, "binary", frames, t, valid, test, purchase_days_label))
    if cand.target == "days_to_next":  # AFT, normal log-time errors of scale 1: P(T <= H) = Phi((ln H - ln T_hat) / 1)
        days = fit_predict(cand, "aft", frames, t, valid, test, L.task_spec("next_purchase", frames.h)[0])
        return tuple(special.ndtr(np.log(frames.h) - np.log(d)) for d in days)
    return fit_predict(cand, "binary", frames, t, valid, test, label_fn)


def purchase_table(frames: Frames, t: date, s: date) -> dict[str, float]:
    valid, test = frames.one(t), frames.one(s)
    yv, yt = (f["label_purchase"].astype(float).to_numpy() for f in (valid, test))
    label_fn = L.task_spec("churn", frames.h)[0]
    rows, raw = [], {}
    print(f"\n## Purchase in {frames.h} days: validation at {t}, test at {s} ({len(test):,} customers)\n")
    print("| candidate | validation ROC-AUC | test ROC-AUC | test PR-AUC | test Brier |")
    print("| --- | --- | --- | --- | --- |")

    def show(name, pv, pt):
        a, b = L.fit_platt(pv, yv)
        p = L.apply_platt(pt, a, b)
        rows.append((name, M.roc_auc(yv, pv), M.roc_auc(yt, p), M.pr_auc(yt, p), M.brier(yt, p), pt))
        print(f"| {name} | {rows[-1][1]:.4f} | {rows[-1][2]:.4f} | {rows[-1][3]:.4f} | {rows[-1][4]:.4f} |", flush=True)

    for cand in PURCHASE:
        raw[cand.name] = purchase_scores(cand, frames, t, valid, test, label_fn)
        show(cand.name, *raw[cand.name])
    for members in ENSEMBLES:
        show("mean logit of " + ", ".join(members), *(C.combine([raw[n][i] for n in members], "logit") for i in (0, 1)))
    champ = max(rows, key=lambda r: r[1])
    a, b = L.fit_platt(champ[5], yt)
    print(f"| *bound: best test figure of any row (picked on test)* | – | {max(r[2] for r in rows):.4f} | "
          f"{max(r[3] for r in rows):.4f} | {min(r[4] for r in rows):.4f} |")
    print(f"| *bound: validation's pick ({champ[0]}) recalibrated on the test labels* | – | {champ[2]:.4f} | {champ[3]:.4f} | "
          f"{M.brier(yt, L.apply_platt(champ[5], a, b)):.4f} |")
    return {"pick_auc": champ[2], "pick_pr": champ[3], "pick_brier": champ[4], "best_auc": max(r[2] for r in rows),
            "best_pr": max(r[3] for r in rows), "best_brier": min(r[4] for r in rows)}


def spend_table(frames: Frames, t: date, s: date) -> dict[str, float]:
    valid, test = frames.one(t), frames.one(s)
    label_fn = L.task_spec("spend", frames.h)[0]
    yv, yt = label_fn(valid)["label"], label_fn(test)["label"]
    bv, bt = valid["bg_expected_value"].to_numpy(), test["bg_expected_value"].to_numpy()
    print(f"\n## Spend in {frames.h} days: validation at {t}, test at {s}; BG/NBD blend weight chosen on validation\n")
    print("The level-set column multiplies the test predictions by Σ actual / Σ predicted of the validation window.\n")
    print("| candidate | BG/NBD weight | validation R² | test R² | test aggregate error | the same, level set on validation "
          "| test top-10% share |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    best = []
    for cand in SPEND:
        if cand.target == "two_part":
            pv, pt = two_part(cand, frames, t, valid, test, label_fn)
        else:
            pv, pt = fit_predict(cand, "tweedie", frames, t, valid, test, label_fn)
        w, at_valid, p = blended_on_validation(yv, (pv, pt), bv, bt)
        level = yv.sum() / at_valid.sum()
        best.append((M.r2(yt, p), abs(M.aggregate_error(yt, p)), M.top_share(yt, p), M.r2(yv, at_valid),
                     M.aggregate_error(yt, p)))
        print(f"| {cand.name} | {w} | {M.r2(yv, at_valid):.4f} | {best[-1][0]:.4f} | "
              f"{M.aggregate_error(yt, p):+.1%} | {M.aggregate_error(yt, level * p):+.1%} | {best[-1][2]:.1%} |", flush=True)
    print(f"| BG/NBD + Gamma-Gamma alone | 1 | {M.r2(yv, bv):.4f} | {M.r2(yt, bt):.4f} | {M.aggregate_error(yt, bt):+.1%} | "
          f"{M.aggregate_error(yt, bt * yv.sum() / bv.sum()):+.1%} | {M.top_share(yt, bt):.1%} |")
    print(f"| *bound: best test figure of any row (picked on test)* | – | – | {max(b[0] for b in best):.4f} | "
          f"±{min(b[1] for b in best):.1%} | – | {max(b[2] for b in best):.1%} |")
    pick = max(best, key=lambda b: b[3])
    return {"pick_r2": pick[0], "pick_aggregate_error": pick[4], "pick_top10": pick[2], "best_r2": max(b[0] for b in best),
            "best_abs_aggregate_error": min(b[1] for b in best), "best_top10": max(b[2] for b in best)}


IN_PERIOD_FOLDS = 5


def _boosted(objective, feats, label_fn, fit_on, stop, full, held) -> np.ndarray:
    """XGBoost early-stopped (fit on ``fit_on``, stopped on ``stop``), refit on ``full``, predicting ``held``."""
    return stopped_then_refit("xgboost", objective, feats, label_fn, fit_on, stop, full)[1].predict(held)


def in_period_table(frames: Frames, t: date, s: date) -> dict[str, float]:
    """Bound, not a model: the stacked cutoffs up to t plus 4/5 of the test labels at s; out-of-fold test figures.

    Boosting rounds are early-stopped on a quarter of the in-period training fold. Purchase scores are
    recalibrated (Platt) on the test labels; the spend rows are the BG/NBD blends of every weight.
    """
    test = frames.one(s).reset_index(drop=True)
    stack = frames.stacked(t, 8, 30)
    churn_fn, spend_fn = L.task_spec("churn", frames.h)[0], L.task_spec("spend", frames.h)[0]
    y, ys = churn_fn(test)["label"], spend_fn(test)["label"]
    plain, with_bg = F.FEATURE_COLUMNS, F.FEATURE_COLUMNS + C.BG_FEATURES
    every = with_bg + EXTRA_FEATURES
    every_name = f"xgboost + BG/NBD + {EXTRA_NAME}"
    oof = {k: np.zeros(len(test)) for k in ("xgboost", "xgboost + BG/NBD features", every_name,
                                            "logistic regression + BG/NBD features", "spend", "spend from BG/NBD")}
    for fold, (tr, te) in enumerate(KFold(IN_PERIOD_FOLDS, shuffle=True, random_state=0).split(test), start=1):
        own, held = test.iloc[tr], test.iloc[te]
        stop = own.sample(frac=0.25, random_state=fold)
        fit_on, full = pd.concat([stack, own.drop(stop.index)], ignore_index=True), pd.concat([stack, own], ignore_index=True)
        sets = (fit_on, stop, full, held)
        oof["xgboost"][te] = _boosted("binary", plain, churn_fn, *sets)
        oof["xgboost + BG/NBD features"][te] = _boosted("binary", with_bg, churn_fn, *sets)
        oof[every_name][te] = _boosted("binary", every, churn_fn, *sets)
        oof["logistic regression + BG/NBD features"][te] = C.fit_logistic(full, with_bg, churn_fn).predict(held)
        oof["spend"][te] = np.clip(_boosted("tweedie", with_bg, spend_fn, *sets), 0, None)
        oof["spend from BG/NBD"][te] = np.clip(boosted_from_bgnbd("tweedie", with_bg, spend_fn, *sets)[1], 0, None)
    spend = {"xgboost Tweedie 1.5 + BG/NBD features": oof.pop("spend"),
             "xgboost Tweedie 1.5 + BG/NBD features, boosted from BG/NBD + Gamma-Gamma's expected spend": oof.pop("spend from BG/NBD")}
    oof["mean logit of xgboost and logistic regression + BG/NBD features (the pipeline's ensemble)"] = C.combine(
        [oof["xgboost"], oof["logistic regression + BG/NBD features"]], "logit")
    print(f"\n## In-period bound at {s}: stacked cutoffs up to {t} plus 4/5 of the test labels, out-of-fold "
          f"({len(test):,} customers)\n")
    print("| purchase model | test ROC-AUC | test PR-AUC | test Brier, recalibrated on the test labels |")
    print("| --- | --- | --- | --- |")
    rows = []
    for name, p in oof.items():
        a, b = L.fit_platt(p, y)
        rows.append((M.roc_auc(y, p), M.pr_auc(y, p), M.brier(y, L.apply_platt(p, a, b))))
        print(f"| {name} | {rows[-1][0]:.4f} | {rows[-1][1]:.4f} | {rows[-1][2]:.4f} |", flush=True)
    bg = test["bg_expected_value"].to_numpy()
    blends = []
    for name, own in spend.items():
        print(f"\n| spend model: {name}, blended with BG/NBD + Gamma-Gamma | test R² | test aggregate error | "
              "test top-10% share |")
        print("| --- | --- | --- | --- |")
        for w in L.BLEND_WEIGHTS:
            p = (1 - w) * own + w * bg
            blends.append((M.r2(ys, p), M.aggregate_error(ys, p), M.top_share(ys, p)))
            print(f"| BG/NBD weight {w} | {blends[-1][0]:.4f} | {blends[-1][1]:+.1%} | {blends[-1][2]:.1%} |")
    return {"auc": max(r[0] for r in rows), "pr": max(r[1] for r in rows), "brier": min(r[2] for r in rows),
            "r2": max(b[0] for b in blends), "agg": min(abs(b[1]) for b in blends), "top10": max(b[2] for b in blends)}


LTV_IN_PERIOD_MODELS = [  # (family, objective overrides, feature set) of the in-period LTV bound
    ("xgboost Tweedie 1.5", "xgboost", None, "plain"),
    ("xgboost Tweedie 1.5", "xgboost", None, "bg"),
    ("xgboost Tweedie 1.5", "xgboost", None, "every"),
    ("lightgbm Tweedie 1.5", "lightgbm", None, "plain"),
    ("lightgbm Tweedie 1.5", "lightgbm", None, "bg"),
    ("lightgbm Tweedie 1.5", "lightgbm", None, "every"),
    ("xgboost squared error", "xgboost", {"objective": "reg:squarederror", **NOT_TWEEDIE}, "bg"),
    ("xgboost squared error", "xgboost", {"objective": "reg:squarederror", **NOT_TWEEDIE}, "every"),
    # boosted from the published model's expected spend (bgnbd_margin of the window's own BG/NBD + Gamma-Gamma)
    ("xgboost Tweedie 1.5 boosted from BG/NBD + Gamma-Gamma", "xgboost from bgnbd", None, "plain"),
    ("xgboost Tweedie 1.5 boosted from BG/NBD + Gamma-Gamma", "xgboost from bgnbd", None, "bg"),
]
LTV_FEATURE_SETS = {"plain": ("the pipeline's features", F.FEATURE_COLUMNS),
                    "bg": ("+ BG/NBD features", F.FEATURE_COLUMNS + C.BG_FEATURES),
                    "every": (f"+ BG/NBD, {EXTRA_NAME} and {BIN_NAME}",
                              F.FEATURE_COLUMNS + C.BG_FEATURES + EXTRA_FEATURES + BIN_FEATURES)}


def ltv_in_period(test: pd.DataFrame, published: np.ndarray, horizon: int) -> list[tuple[str, np.ndarray]]:
    """Bound, not a model: out-of-fold LTV predictions of boosters fitted on 4/5 of the LTV window's own labels.

    No deployed model can have them: the 365-day window has no earlier cutoff with complete labels. The boosting
    rounds are early-stopped on a quarter of the training fold. Returns (name, out-of-fold prediction) per booster.
    """
    spend_fn = L.task_spec("spend", horizon)[0]
    out = []
    for name, family, overrides, feature_set in LTV_IN_PERIOD_MODELS:
        label, feats = LTV_FEATURE_SETS[feature_set]
        oof = np.zeros(len(test))
        for fold, (tr, te) in enumerate(KFold(IN_PERIOD_FOLDS, shuffle=True, random_state=0).split(test), start=1):
            own = test.iloc[tr]
            stop = own.sample(frac=0.25, random_state=fold)
            if family == "xgboost from bgnbd":
                _, pred = boosted_from_bgnbd("tweedie", feats, spend_fn, own.drop(stop.index), stop, own, test.iloc[te], overrides)
            else:
                _, final = stopped_then_refit(family, "tweedie", feats, spend_fn, own.drop(stop.index), stop, own, overrides)
                pred = final.predict(test.iloc[te])
            oof[te] = np.clip(pred, 0, None)
        out.append((f"{name}, {label}", oof))
    return out


def ltv_table(conn, cutoff: date, horizon: int) -> None:
    f = Frames(conn, horizon).one(cutoff).reset_index(drop=True)
    y = f["label_spend"].astype(float).to_numpy()
    x, t_x, T, m = L.rfm_weeks(f)
    bg = P.fit_bgnbd(x, t_x, T)
    purchases = P.bgnbd_expected_purchases(bg, horizon / L.WEEK, x, t_x, T)
    actual_days = float(f["label_purchase_days"].sum())
    print(f"\n## LTV: {horizon} days from {cutoff} ({len(f):,} customers); BG/NBD expects {purchases.sum():,.0f} purchase days, "
          f"{actual_days:,.0f} happened ({purchases.sum() / actual_days - 1:+.1%})\n")
    print("| spend model | R² | aggregate error | top-10% share | spend per purchase day, expected vs actual |")
    print("| --- | --- | --- | --- | --- |")
    variants = {"Gamma-Gamma on repeat purchases (published model)": (x, m),
                "Gamma-Gamma on every purchase day, first included": (x + 1, f["monetary_mean"].astype(float).to_numpy())}
    preds = {}
    for name, (xs, ms) in variants.items():
        preds[name] = p = purchases * P.gamma_gamma_expected_spend(P.fit_gamma_gamma(xs, ms), xs, ms)
        print(f"| {name} | {M.r2(y, p):.4f} | {M.aggregate_error(y, p):+.1%} | {M.top_share(y, p):.1%} | "
              f"${p.sum() / purchases.sum():.2f} vs ${y.sum() / actual_days:.2f} |")
    published = next(iter(preds.values()))
    # not a model: the best linear combination of every feature and the published model's value, fitted on the truth
    X = np.column_stack([f[F.FEATURE_COLUMNS].astype(float).fillna(0).to_numpy(), published])
    p = LinearRegression().fit(X, y).predict(X)
    print(f"| *bound: least squares on every feature and the published model's value, fitted on the test labels* | "
          f"{M.r2(y, p):.4f} | {M.aggregate_error(y, p):+.1%} | {M.top_share(y, p):.1%} | – |")
    print(f"\n## LTV in-period bound: boosters fitted on 4/5 of the {horizon}-day labels at {cutoff}, out-of-fold\n")
    print("Each booster alone, and blended with the published model at the weight (0.25, 0.5 or 0.75 on it) with the "
          "best R², picked on the test labels.\n")
    print("| booster (a bound, not a model: it sees the LTV window's own labels) | R² alone / blended | "
          "aggregate error alone / blended | top-10% share alone / blended | weight |")
    print("| --- | --- | --- | --- | --- |")
    every = [published]
    for name, alone in ltv_in_period(f, published, horizon):
        w, blended = max(((w, (1 - w) * alone + w * published) for w in (0.25, 0.5, 0.75)), key=lambda b: M.r2(y, b[1]))
        every += [alone, blended]
        print(f"| {name} | {M.r2(y, alone):.4f} / {M.r2(y, blended):.4f} | {M.aggregate_error(y, alone):+.1%} / "
              f"{M.aggregate_error(y, blended):+.1%} | {M.top_share(y, alone):.1%} / {M.top_share(y, blended):.1%} | {w} |",
              flush=True)
    print(f"| *bound: the best of any row above, each figure picked separately* | {max(M.r2(y, p) for p in every):.4f} | "
          f"±{min(abs(M.aggregate_error(y, p)) for p in every):.1%} | {max(M.top_share(y, p) for p in every):.1%} | – |")


LTV_STALENESS_HORIZONS = (365, 270, 180)


def ltv_staleness_table(conn, horizon_days: int) -> None:
    """BG/NBD + Gamma-Gamma fitted at s - H (what scoring at s serves) against the same model refitted at s.

    Every scoring cutoff s, 30 days apart from 90 days after the data start, whose window of L days
    is complete, for L in ``LTV_STALENESS_HORIZONS``: the longest windows (365 days) exist only for the
    first cutoffs, so the shorter ones show whether the difference holds once the customers are older.
    """
    start, end = F.data_bounds(conn)
    cache: dict[tuple[date, int], pd.DataFrame] = {}
    fits: dict[date, L.ModelRecord | None] = {}

    def features(c: date, h: int) -> pd.DataFrame:
        if (c, h) not in cache:
            cache[(c, h)] = F.compute_features(conn, c, h, end)
        return cache[(c, h)]

    def fit(c: date):
        """The pipeline's models/ltv fitted on the histories at ``c``, or None with too few repeat buyers."""
        if c not in fits:
            try:
                fits[c] = L.train_ltv(features(c, horizon_days), c, horizon_days, LTV_HORIZON_DAYS)
            except ValueError:
                fits[c] = None
        return fits[c]

    print(f"\n## LTV: fitted {horizon_days} days before the scoring cutoff s (served until 2026-11-23) or at s itself "
          "(served since), every window that fits in the data\n")
    print("BG/NBD + Gamma-Gamma applied to the histories at s, against the spend of (s, s + L]. "
          "A dash: too few repeat buyers at s - H for Gamma-Gamma.\n")
    print("| L (days) | s | R² fitted at s - H / at s | aggregate error fitted at s - H / at s | "
          "top-10% share fitted at s - H / at s |")
    print("| --- | --- | --- | --- | --- |")
    for h in LTV_STALENESS_HORIZONS:
        s = start + timedelta(days=horizon_days)
        while s + timedelta(days=h) <= end:
            f = features(s, h)
            y = f["label_spend"].astype(float).to_numpy()
            preds = [None if (record := fit(c)) is None else L.predict_ltv(record, f, h)
                     for c in (s - timedelta(days=horizon_days), s)]
            cells = [" / ".join("–" if p is None else format(fn(y, p), spec) for p in preds)
                     for fn, spec in ((M.r2, ".4f"), (M.aggregate_error, "+.1%"), (M.top_share, ".1%"))]
            print(f"| {h} | {s} | {' | '.join(cells)} |")
            s += timedelta(days=30)


def calibration_table(frames: Frames, scoring: list[date]) -> None:
    """The pipeline's churn champion at each scoring cutoff s, uncalibrated and Platt-calibrated two ways.

    The champion is chosen and fitted as ``models/churn`` does (``select_and_fit`` at t = s - H). Its raw
    scores at s are then left as they are, calibrated on the window at t alone, or calibrated on the windows
    t, t - 30 and t - 60 days pooled (``CALIBRATION_OFFSETS_DAYS``, what the pipeline serves). The seed-style
    XGBoost of the backtest is the reference the backtest's check compares Brier with.
    """
    print("\n## Churn calibration: none, Platt at t alone, Platt pooled over t, t - 30 and t - 60 days (the pipeline)\n")
    print("Test Brier at s (expected calibration error in brackets); the mean prediction against the base rate of the "
          "test window.\n")
    print("| scoring cutoff s | champion | uncalibrated | Platt at t | Platt pooled (served) | seed-style XGBoost | "
          "mean P uncalibrated / pooled / actual |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in scoring:
        t = s - timedelta(days=frames.h)
        data = L.TrainingData(t, frames.h, frames.start, frames.one, L.STACK_OPTIONS)
        sel = L.select_and_fit("churn", data, L.CHURN_FAMILIES, None, L.CHURN_ENSEMBLES)
        _, raws, labels = L.calibration_windows(data, sel)
        test, valid = frames.one(s), frames.one(t)
        y, raw = test["label_purchase"].astype(float).to_numpy(), sel["final"].predict(test)
        platt = [L.fit_platt(np.concatenate(raws[:k]), np.concatenate(labels[:k])) for k in (1, len(raws))]
        seed = E.seed_style_model(valid, valid["label_purchase"].astype(float).to_numpy(), "binary:logistic")
        preds = [raw, *(L.apply_platt(raw, a, b) for a, b in platt), E._seed_predict(seed, test)]
        cells = [f"{M.brier(y, p):.5f} ({M.expected_calibration_error(y, p):.3f})" for p in preds]
        print(f"| {s} | {sel['family']}, {sel['stack'][0]} x {sel['stack'][1]} d | {' | '.join(cells)} | "
              f"{raw.mean():.3f} / {preds[2].mean():.3f} / {y.mean():.3f} |", flush=True)


def blend_table(frames: Frames, scoring: list[date]) -> None:
    """The pipeline's spend champion at each scoring cutoff s, blended with BG/NBD + Gamma-Gamma at every weight.

    The champion is chosen and fitted as ``models/spend`` does (``select_and_fit`` at t = s - H), and so is its
    BG/NBD weight (on the validation window at t). The other columns are what each fixed weight would have scored.
    """
    print("\n## Spend: the champion blended with BG/NBD + Gamma-Gamma, at the weight validation chose and at each fixed "
          "weight\n")
    print("Validation R² at t (the champion's boosting rounds are early-stopped on that same window) / test R² at s.\n")
    print("| scoring cutoff s | champion | weight chosen | " + " | ".join(f"weight {w}" for w in L.BLEND_WEIGHTS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in L.BLEND_WEIGHTS) + " |")
    for s in scoring:
        t = s - timedelta(days=frames.h)
        data = L.TrainingData(t, frames.h, frames.start, frames.one)
        sel = L.select_and_fit("spend", data, L.SPEND_FAMILIES, None, L.SPEND_ENSEMBLES)
        valid, test = sel["valid"], frames.one(s)
        if sel["final"] is None:  # the weight 1.0 won: BG/NBD + Gamma-Gamma alone, no learned model to score
            print(f"| {s} | bgnbd | 1 | " + " | ".join("–" for _ in L.BLEND_WEIGHTS) + " |")
            continue
        own = L.out_of_time_champion("spend", data, sel, t, L.SPEND_ENSEMBLES)[1]  # the unblended validation predictions
        cells = []
        for w in L.BLEND_WEIGHTS:
            scores = [M.r2(f["label_spend"].astype(float).to_numpy(), (1 - w) * np.clip(p, 0, None) + w * f["bg_expected_value"].to_numpy())
                      for f, p in ((valid, own), (test, sel["final"].predict(test)))]
            cells.append(" / ".join(f"{v:.4f}" for v in scores))
        print(f"| {s} | {sel['family']}, {sel['stack'][0]} x {sel['stack'][1]} d | {sel['blend_bgnbd_weight']} | "
              + " | ".join(cells) + " |", flush=True)


def blended_on_validation(yv, pair, bv, bt, weights=L.BLEND_WEIGHTS) -> tuple[float, np.ndarray, np.ndarray]:
    """(the BG/NBD weight of ``weights`` with the best validation R², the blended validation and test predictions) of
    (pv, pt), each clipped at 0 first. The default weights are the pipeline's."""
    pv, pt = (np.clip(p, 0, None) for p in pair)
    w = max(weights, key=lambda w: M.r2(yv, (1 - w) * pv + w * bv))
    return w, (1 - w) * pv + w * bv, (1 - w) * pt + w * bt


def boosted_table(frames: Frames, scoring: list[date]) -> None:
    """Would the pipeline choose the spend model boosted from BG/NBD's own prediction, and is its test gain noise?

    At each scoring cutoff s the pipeline's spend champion is chosen and fitted as ``models/spend`` does
    (``select_and_fit`` at t = s - H). At the champion's stacking, the boosted model and its log-scale ensemble with
    XGBoost on the pipeline's features (as the pipeline's spend ensembles are averaged) are fitted like any candidate,
    each blended with BG/NBD + Gamma-Gamma at the weight validation prefers. The second table compares the boosted
    row of the spend tables with the row started from a constant (8 cutoffs 30 days apart, both with the BG/NBD
    features): their test R² difference with a paired bootstrap 95% interval (1,000 resamples of the customers).
    """
    fn = L.task_spec("spend", frames.h)[0]
    picks, gains = [], []
    for s in scoring:
        t = s - timedelta(days=frames.h)
        valid, test = frames.one(t), frames.one(s)
        yv, yt = fn(valid)["label"], fn(test)["label"]
        bv, bt = valid["bg_expected_value"].to_numpy(), test["bg_expected_value"].to_numpy()
        data = L.TrainingData(t, frames.h, frames.start, frames.one)
        sel = L.select_and_fit("spend", data, L.SPEND_FAMILIES, None, L.SPEND_ENSEMBLES)
        own = sel["final"].predict(test) if sel["final"] is not None else bt
        champion = (M.r2(yv, sel["val_pred"]), L.blend_with_bgnbd(own, test, sel["blend_bgnbd_weight"]))
        n, step = sel["stack"]
        # (cutoffs, days apart, BG/NBD features, boosted) of the four fits below; a set, so that the champion's stacking
        # being the spend tables' 8 x 30 d fits the boosted model once
        specs = {(n, step, True, True), (n, step, False, False), (8, 30, True, False), (8, 30, True, True)}
        fits = {k: fit_predict(Candidate("", "xgboost", k[0], k[1], bg_features=k[2], margin=k[3]), "tweedie", frames, t,
                               valid, test, fn) for k in specs}
        boosted, plain = fits[(n, step, True, True)], fits[(n, step, False, False)]
        ensemble = tuple(C.combine([np.clip(plain[i], 0, None), np.clip(boosted[i], 0, None)], "log") for i in (0, 1))
        rows = [champion] + [(M.r2(yv, b[1]), b[2]) for b in (blended_on_validation(yv, p, bv, bt) for p in (boosted, ensemble))]
        picks.append((s, f"{sel['family']}, {n} x {step} d", rows, yt))
        from_constant, from_bgnbd = (blended_on_validation(yv, fits[(8, 30, True, m)], bv, bt)[2] for m in (False, True))
        gains.append((s, yt, from_constant, from_bgnbd))
    print("\n## Spend boosted from BG/NBD's own prediction: would validation choose it?\n")
    print("At the stacking of the pipeline's champion. Validation R² at t / test R² at s; aggregate error and top-10% "
          "share at s. The ensemble averages the boosted model and XGBoost on the pipeline's features on the log scale.\n")
    print("| scoring cutoff s | champion | champion | boosted | ensemble | aggregate error: champion / boosted / "
          "ensemble | top-10% share: champion / boosted / ensemble |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s, name, rows, yt in picks:
        print(f"| {s} | {name} | " + " | ".join(f"{v:.4f} / {M.r2(yt, p):.4f}" for v, p in rows) + " | "
              + " / ".join(f"{M.aggregate_error(yt, p):+.1%}" for _, p in rows) + " | "
              + " / ".join(f"{M.top_share(yt, p):.1%}" for _, p in rows) + " |")
    print("\n## Spend boosted from BG/NBD's own prediction: is the test gain more than noise?\n")
    print("| scoring cutoff s | test R², from a constant / from BG/NBD | difference, paired bootstrap 95% interval |")
    print("| --- | --- | --- |")
    for s, yt, a, b in gains:
        d, low, high = M.paired_bootstrap(M.r2, yt, b, a, n_boot=1000)
        print(f"| {s} | {M.r2(yt, a):.4f} / {M.r2(yt, b):.4f} | {d:+.4f} [{low:+.4f}, {high:+.4f}] |")


STACKING_TASKS = ("churn", "spend", "next_purchase")


def stacking_table(frames: Frames, scoring: list[date]) -> None:
    """Every candidate stacking of the first selection stage (XGBoost), validated at t and tested at s.

    As ``select_and_fit`` does: fitted on cutoffs whose labels end by t - H, early-stopped and scored on t,
    then refitted on cutoffs up to t for those rounds and scored at s. The pick is ``choose_stacking``'s: a
    default 30-day option (the deepest for churn and next purchase, the best-scoring for spend), unless another
    option beats it with a paired bootstrap 95% interval above zero.
    """
    print("\n## Stacking: how many training cutoffs, how far apart; validation at t / test at s, XGBoost\n")
    print("Validation metric: ROC-AUC (churn), R² (spend), concordance index (next purchase). An option that "
          "outscores the default (the deepest 30-day option for churn and next purchase, the best-scoring one for "
          "spend) shows the difference and its paired bootstrap 95% interval in brackets. "
          "**Bold**: the pipeline's pick.\n")
    print("| scoring cutoff s | task | " + " | ".join(f"{n} x {step} d" for n, step in L.STACK_OPTIONS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in L.STACK_OPTIONS) + " |")
    for s in scoring:
        t = s - timedelta(days=frames.h)
        data = L.TrainingData(t, frames.h, frames.start, frames.one, L.STACK_OPTIONS)
        valid, test = data.frame([t]), frames.one(s)
        for task in STACKING_TASKS:
            label_fn, objective, metric = L.task_spec(task, frames.h)
            y_val, y_test = label_fn(valid), label_fn(test)
            results, tests = {}, {}
            for n, step in L.STACK_OPTIONS:
                tr_val = C.add_bgnbd_features(data.frame(data.cutoffs(t - timedelta(days=frames.h), n, step)), frames.h)
                tr_final = C.add_bgnbd_features(data.frame(data.cutoffs(t, n, step)), frames.h)
                chosen, final = stopped_then_refit("xgboost", objective, F.FEATURE_COLUMNS, label_fn, tr_val, valid, tr_final)
                pred = chosen.predict(valid)
                results[(n, step)] = (metric(y_val, pred), pred, chosen.rounds)
                tests[(n, step)] = metric(y_test, final.predict(test))
            rows = []
            pick = L.choose_stacking(L.STACK_OPTIONS, results, y_val, metric, rows, task, lambda _m: None)
            tested = {(r["stacked_cutoffs"], r["stack_step_days"]): (r["validation_score"], r["interval_95"]) for r in rows}
            out = []
            for opt in L.STACK_OPTIONS:
                cell = f"{results[opt][0]:.4f} / {tests[opt]:.4f}"
                if opt in tested:
                    d, (low, high) = tested[opt]
                    cell += f" [{d:+.4f}: {low:+.4f}, {high:+.4f}]"
                out.append(f"**{cell}**" if opt == pick else cell)
            print(f"| {s} | {task} | " + " | ".join(out) + " |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cutoff", default="1998-04-01", help="scoring cutoff s (candidates validated at s - H)")
    ap.add_argument("--rolling", default="", help="more comma-separated scoring cutoffs; a summary table follows")
    ap.add_argument("--ltv-cutoff", default="", help="LTV cutoff (default: last date - LTV horizon)")
    ap.add_argument("--db", default=str(DATA_DIR / "benchmarks" / "accuracy.duckdb"))
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--ltv", action="store_true",
                    help="print only the LTV tables: the published model's variants and the in-period bound")
    ap.add_argument("--ltv-staleness", action="store_true",
                    help="print only the LTV table of BG/NBD + Gamma-Gamma fitted at s - H against refitted at s")
    ap.add_argument("--calibration", action="store_true",
                    help="print only the churn champion's test Brier uncalibrated, Platt at t, Platt pooled (served)")
    ap.add_argument("--blend", action="store_true",
                    help="print only the spend champion's test R² at the BG/NBD weight validation chose and at each fixed weight")
    ap.add_argument("--stacking", action="store_true",
                    help="print only every candidate stacking's validation and test figures, for churn, spend and next purchase")
    ap.add_argument("--boosted", action="store_true",
                    help="print only whether validation would choose the spend model boosted from BG/NBD, and its test gain")
    ap.add_argument("--in-period", action="store_true",
                    help="print only the in-period bound (models that also see 4/5 of the test labels)")
    args = ap.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_ingest:
        Runner(args.db).run(INGEST_SELECTION, label="ingest")
    scoring = sorted({date.fromisoformat(c) for c in [args.cutoff, *args.rolling.split(",")] if c})
    summary = {}
    with duckdb.connect(args.db, read_only=True) as conn:
        if args.ltv_staleness:
            ltv_staleness_table(conn, HORIZON_DAYS)
            return 0
        frames = Frames(conn, HORIZON_DAYS)
        ltv_cutoff = date.fromisoformat(args.ltv_cutoff) if args.ltv_cutoff else frames.end - timedelta(days=LTV_HORIZON_DAYS)
        if args.ltv:
            ltv_table(conn, ltv_cutoff, LTV_HORIZON_DAYS)
            return 0
        if args.calibration:
            calibration_table(frames, scoring)
            return 0
        if args.blend:
            blend_table(frames, scoring)
            return 0
        if args.stacking:
            stacking_table(frames, scoring)
            return 0
        if args.boosted:
            boosted_table(frames, scoring)
            return 0
        if args.in_period:
            bounds = {s: in_period_table(frames, s - timedelta(days=HORIZON_DAYS), s) for s in scoring}
            print("\n## Every scoring cutoff: the best in-period figure of any row above\n")
            print("| scoring cutoff | ROC-AUC | PR-AUC | Brier | spend R² | \\|aggregate error\\| | top-10% share |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for s, v in bounds.items():
                print(f"| {s} | {v['auc']:.4f} | {v['pr']:.4f} | {v['brier']:.4f} | {v['r2']:.4f} | {v['agg']:.1%} | {v['top10']:.1%} |")
            return 0
        for s in scoring:
            t = s - timedelta(days=HORIZON_DAYS)
            summary[s] = {**purchase_table(frames, t, s), **spend_table(frames, t, s)}
        ltv_table(conn, ltv_cutoff, LTV_HORIZON_DAYS)
    if len(scoring) > 1:
        print("\n## Every scoring cutoff: validation's pick, and the best test figure of any candidate (picked on test)\n")
        print("| scoring cutoff | ROC-AUC pick / best | PR-AUC pick / best | Brier pick / best | spend R² pick / best "
              "| aggregate error pick / best | top-10% pick / best |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for s, v in summary.items():
            print(f"| {s} | {v['pick_auc']:.4f} / {v['best_auc']:.4f} | {v['pick_pr']:.4f} / {v['best_pr']:.4f} | "
                  f"{v['pick_brier']:.4f} / {v['best_brier']:.4f} | {v['pick_r2']:.4f} / {v['best_r2']:.4f} | "
                  f"{v['pick_aggregate_error']:+.1%} / ±{v['best_abs_aggregate_error']:.1%} | {v['pick_top10']:.1%} / {v['best_top10']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
