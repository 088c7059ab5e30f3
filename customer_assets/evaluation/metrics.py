"""Prediction-quality metrics as small pure functions (numpy in, float out)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


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


def concordance_index(time, event, pred, max_rows: int = 4000, seed: int = 0) -> float:
    """Harrell's C for predicted times: a pair is comparable when the shorter time was observed.

    Computed exactly over all pairs of at most ``max_rows`` rows (a fixed random sample
    beyond that, so the cost stays bounded).
    """
    time, event, pred = _arr(time), _arr(event).astype(bool), _arr(pred)
    if len(time) > max_rows:
        idx = np.random.default_rng(seed).choice(len(time), max_rows, replace=False)
        time, event, pred = time[idx], event[idx], pred[idx]
    ti, tj = time[:, None], time[None, :]
    comparable = (ti < tj) & event[:, None]
    if not comparable.any():
        return float("nan")
    pi, pj = pred[:, None], pred[None, :]
    concordant = (pi < pj) & comparable
    ties = (pi == pj) & comparable
    return float((concordant.sum() + 0.5 * ties.sum()) / comparable.sum())
