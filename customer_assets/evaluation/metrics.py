"""Prediction-quality metrics as small pure functions (numpy in, float out)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from customer_assets.scores.logic import value_deciles


def _arr(a) -> np.ndarray:
    return np.asarray(a, dtype=float)


def roc_auc(y, score) -> float:
    y = _arr(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, _arr(score)))


def pr_auc(y, score) -> float:
    y = _arr(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(average_precision_score(y, _arr(score)))


def brier(y, p) -> float:
    return float(np.mean((_arr(p) - _arr(y)) ** 2))


def log_loss(y, p, eps: float = 1e-15) -> float:
    p = np.clip(_arr(p), eps, 1 - eps)
    y = _arr(y)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def r2(y, pred) -> float:
    y, pred = _arr(y), _arr(pred)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float(1 - np.sum((y - pred) ** 2) / ss_tot) if ss_tot > 0 else float("nan")


def rmse(y, pred) -> float:
    return float(np.sqrt(np.mean((_arr(y) - _arr(pred)) ** 2)))


def aggregate_error(y, pred) -> float:
    """(sum predicted - sum actual) / sum actual."""
    total = float(np.sum(_arr(y)))
    return float((np.sum(_arr(pred)) - total) / total) if total != 0 else float("nan")


def top_share(y, pred, fraction: float = 0.10) -> float:
    """Share of actual total captured by the top ``fraction`` of rows ranked by ``pred``."""
    y, pred = _arr(y), _arr(pred)
    n = max(1, int(round(len(y) * fraction)))
    order = np.argsort(-pred, kind="mergesort")[:n]
    total = float(np.sum(y))
    return float(np.sum(y[order]) / total) if total != 0 else float("nan")


def concordance_index(time, event, pred) -> float:
    """Harrell's C for predicted times: a pair is comparable when the shorter time was observed.

    A comparable pair is concordant when the shorter time has the smaller prediction; tied predictions count
    one half. Exact over all pairs, in O(U n log n) for U distinct observed times (at most H + 1 here, since
    times are whole days censored at the horizon), so every customer counts, not a sample.
    """
    time, event, pred = _arr(time), _arr(event).astype(bool), _arr(pred)
    order = np.argsort(-time, kind="stable")  # longest first
    time_desc, pred_desc = time[order], pred[order]
    later = np.empty(0)  # predictions of the rows with a longer time than the current one, sorted
    added = 0
    comparable = concordant = ties = 0.0
    for tau in np.unique(time[event])[::-1]:
        upto = int(np.searchsorted(-time_desc, -tau, side="left"))  # rows with time > tau
        if upto > added:
            new = np.sort(pred_desc[added:upto])
            later = np.insert(later, np.searchsorted(later, new), new)
            added = upto
        p = pred[event & (time == tau)]
        below, above = np.searchsorted(later, p, side="left"), np.searchsorted(later, p, side="right")
        comparable += len(later) * len(p)
        concordant += float(np.sum(len(later) - above))
        ties += float(np.sum(above - below))
    if comparable == 0:
        return float("nan")
    return float((concordant + 0.5 * ties) / comparable)


def normalized_gini(y, pred) -> float:
    """Gini of the actual values ordered by prediction, divided by the Gini of the perfect order."""
    y, pred = _arr(y), _arr(pred)

    def gini(order_by):
        order = np.argsort(-order_by, kind="mergesort")
        cum = np.cumsum(y[order]) / np.sum(y)
        n = len(y)
        return float(np.sum(cum - (np.arange(1, n + 1) / n)) / n)

    total = gini(y)
    return float(gini(pred) / total) if np.sum(y) != 0 and total != 0 else float("nan")


def mae(y, pred) -> float:
    return float(np.mean(np.abs(_arr(y) - _arr(pred))))


def reliability_table(y, p, bins: int = 10) -> list[dict]:
    """Equal-width probability bins: count, mean predicted probability and observed rate per bin."""
    y, p = _arr(y), np.clip(_arr(p), 0, 1)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        rows.append({
            "bin": b + 1, "lower": b / bins, "upper": (b + 1) / bins, "count": int(m.sum()),
            "mean_predicted": float(p[m].mean()) if m.any() else float("nan"),
            "observed_rate": float(y[m].mean()) if m.any() else float("nan"),
        })
    return rows


def decile_table(y_spend, pred_spend, y_purchase, p_purchase) -> list[dict]:
    """The spend forecast by decile of the forecast: customers, predicted and actual totals, the decile's aggregate
    error and share of all actual spend, and its mean purchase probability against the share that bought.

    Decile 10 holds the customers forecast to spend most, 1 the least, ranked by ``scores.logic.value_deciles``
    (ties by position). The predicted totals add up to the forecast's total, and the actual ones to what was spent,
    so where the aggregate error comes from shows decile by decile; the top decile's share of the actual spend is
    about the top-10% share (which takes round(n / 10) customers). A decile's error is NaN when it spent nothing.
    """
    y, pred = _arr(y_spend), _arr(pred_spend)
    bought, p = _arr(y_purchase), _arr(p_purchase)
    decile = value_deciles(pred)
    return [{"decile": d, **_group_summary(decile == d, y, pred, bought, p)} for d in range(10, 0, -1)]


def _group_summary(m: np.ndarray, y: np.ndarray, pred: np.ndarray, bought: np.ndarray, p: np.ndarray) -> dict:
    """The customers of the mask ``m`` against all: their count, predicted and actual spend, the group's aggregate
    error (NaN when it spent nothing) and share of all the actual spend, and their mean purchase probability against
    the share that bought (NaN for an empty group)."""
    predicted, actual, total = float(np.sum(pred[m])), float(np.sum(y[m])), float(np.sum(y))
    return {
        "customers": int(m.sum()), "predicted_spend": predicted, "actual_spend": actual,
        "aggregate_error": (predicted - actual) / actual if actual != 0 else float("nan"),
        "share_of_actual": actual / total if total != 0 else float("nan"),
        "mean_purchase_probability": float(p[m].mean()) if m.any() else float("nan"),
        "observed_purchase_rate": float(bought[m].mean()) if m.any() else float("nan"),
    }


def segment_table(segments, y_spend, pred_spend, y_purchase, p_purchase) -> list[dict]:
    """The forecasts by segment: customers, the mean purchase probability against the share that bought, ROC-AUC
    within the segment (NaN when all or none bought), and predicted against actual spend with the segment's aggregate
    error and share of all actual spend. Rows ordered by predicted spend, largest first; the segments' totals add up
    to the forecast's and the truth's."""
    seg = np.asarray(segments, dtype=object)
    y, pred = _arr(y_spend), _arr(pred_spend)
    bought, p = _arr(y_purchase), _arr(p_purchase)
    rows = []
    for name in sorted(set(seg.tolist())):
        m = seg == name
        rows.append({"segment": str(name), **_group_summary(m, y, pred, bought, p),
                     "roc_auc": float("nan") if bought[m].min() == bought[m].max() else roc_auc(bought[m], p[m])})
    return sorted(rows, key=lambda r: (-r["predicted_spend"], r["segment"]))


def expected_calibration_error(y, p, bins: int = 10) -> float:
    """Count-weighted mean |observed rate - mean predicted| over the equal-width bins."""
    rows = reliability_table(y, p, bins)
    n = sum(r["count"] for r in rows)
    return float(sum(r["count"] * abs(r["observed_rate"] - r["mean_predicted"]) for r in rows if r["count"]) / n)


# Above this many rows each bootstrap resample draws this many (an m-out-of-n bootstrap, rescaled below), so the
# intervals of a million-customer backtest cost what those of 50,000 customers do.
BOOTSTRAP_MAX_ROWS = 50_000


def paired_bootstrap(metric, y, pred_a, pred_b, n_boot: int = 200, seed: int = 0,
                     max_rows: int = BOOTSTRAP_MAX_ROWS) -> tuple[float, float, float]:
    """metric(a) - metric(b), with a 95% interval from resampling rows (customers) with replacement.

    With more than ``max_rows`` rows, each resample draws ``m = max_rows`` rows instead of all ``n``, and the
    resampled differences' deviations from the point estimate are scaled by sqrt(m / n) (the m-out-of-n bootstrap
    of a statistic whose error shrinks as 1 / sqrt(n): AUC, Brier, R², shares, the concordance index).
    """
    y, pred_a, pred_b = _arr(y), _arr(pred_a), _arr(pred_b)
    point = metric(y, pred_a) - metric(y, pred_b)
    rng = np.random.default_rng(seed)
    n = len(y)
    m = min(n, max_rows)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, n, m)
        diffs.append(metric(y[i], pred_a[i]) - metric(y[i], pred_b[i]))
    diffs = np.asarray(diffs)
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) == 0:
        return point, float("nan"), float("nan")
    low, high = np.percentile(diffs, [2.5, 97.5])
    scale = np.sqrt(m / n)
    return float(point), float(point + (low - point) * scale), float(point + (high - point) * scale)


def gains_curve(y, score, points: int = 20) -> tuple[list[float], list[float]]:
    """Cumulative gains: share of the total of ``y`` captured by the top x share of rows ranked by ``score``."""
    y, score = np.clip(_arr(y), 0, None), _arr(score)
    order = np.argsort(-score, kind="mergesort")
    cum = np.concatenate([[0.0], np.cumsum(y[order])])
    total = cum[-1] if cum[-1] > 0 else 1.0
    xs = [i / points for i in range(points + 1)]
    ys = [float(cum[int(round(x * len(y)))] / total) for x in xs]
    return xs, ys
