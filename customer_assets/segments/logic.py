"""K-Means customer segments with deterministic persona names.

The clustering runs on log-transformed, standardised RFM-and-tenure features. The
scaler's parameters and the centroids are returned as plain arrays so they can be
stored in DuckDB and re-applied without refitting (and without pickle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

SEGMENT_FEATURES = ["recency_days", "purchase_days", "monetary_total"]
NEW_CUSTOMER_DAYS = 180
K_RANGE = (3, 8)
SILHOUETTE_SAMPLE = 4_000
# K-Means is fit on at most this many customers (a fixed random sample); everyone is then
# assigned to the nearest centroid. Keeps segmentation near-linear at millions of customers.
FIT_SAMPLE = 100_000
SEED = 0

PERSONAS = ("Champions", "Loyal", "Promising", "New", "At Risk", "Needs Attention", "Hibernating")


@dataclass(frozen=True)
class SegmentModel:
    k: int
    feature_names: list[str]
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    centroids: np.ndarray  # in scaled space, shape (k, n_features)
    personas: list[str]
    silhouette_by_k: dict[int, float]


def transform(frame: pd.DataFrame) -> np.ndarray:
    """log1p of recency, purchase days and non-negative monetary total."""
    x = frame[SEGMENT_FEATURES].astype(float).to_numpy(copy=True)
    x = np.clip(x, 0, None)
    return np.log1p(x)


def persona_for(centroid_z: np.ndarray, median_tenure_days: float) -> str:
    """Name a cluster from its centroid, in standard-deviation units of the cutoff's customers.

    The centroid coordinates are (recency, purchase days, monetary) on the
    log-standardised scale. The rule is fixed, so a name always means the same
    relative profile: *recent* = recency below average; *value* = mean of the
    frequency and monetary coordinates. *New* additionally needs the cluster's
    median tenure to be at most ``NEW_CUSTOMER_DAYS`` (tenure is not a clustering
    input: in single-cohort data it only splits customers by acquisition week).
    """
    rec, freq, mon = (float(v) for v in centroid_z)
    value = (freq + mon) / 2.0
    if rec <= 0:
        if value >= 0.75:
            return "Champions"
        if value >= 0.0:
            return "Loyal"
        if median_tenure_days <= NEW_CUSTOMER_DAYS:
            return "New"
        return "Promising"
    if value >= 0.5:
        return "At Risk"
    if value >= -0.25:
        return "Needs Attention"
    return "Hibernating"


def fit_segments(frame: pd.DataFrame, k: int | None = None, seed: int = SEED) -> tuple[SegmentModel, np.ndarray]:
    """Fit K-Means; choose k in 3..8 by silhouette unless ``k`` is given.

    Returns
    -------
    (SegmentModel, labels)
        The model and each row's cluster id.
    """
    n = len(frame)
    if n < 4:
        raise ValueError(f"Segmentation needs at least 4 customers; the cutoff has {n}")
    raw = transform(frame)
    mean = raw.mean(axis=0)
    scale = raw.std(axis=0)
    scale[scale == 0] = 1.0
    z = (raw - mean) / scale
    rng = np.random.default_rng(seed)
    sample = z if n <= SILHOUETTE_SAMPLE else z[rng.choice(n, SILHOUETTE_SAMPLE, replace=False)]
    candidates = [k] if k else list(range(K_RANGE[0], min(K_RANGE[1], n - 1) + 1))
    scores: dict[int, float] = {}
    best = None
    fit_rows = z if n <= FIT_SAMPLE else z[rng.choice(n, FIT_SAMPLE, replace=False)]
    for kk in candidates:
        km = KMeans(n_clusters=kk, n_init=4, random_state=seed).fit(fit_rows)
        if len(np.unique(km.labels_)) < 2:
            continue
        sample_labels = km.predict(sample)
        if len(np.unique(sample_labels)) < 2:
            continue
        s = float(silhouette_score(sample, sample_labels))
        scores[kk] = s
        if best is None or s > scores[best[0]]:
            best = (kk, km)
    if best is None:
        raise ValueError("K-Means could not separate the customers into at least 2 clusters (all identical?)")
    kk, km = best
    # Order clusters deterministically by descending value, so cluster ids are stable too.
    centroids = km.cluster_centers_
    order = np.argsort(-(centroids[:, 1] + centroids[:, 2]) + 1e-9 * centroids[:, 0])
    centroids = centroids[order]
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    labels = remap[km.predict(z)]
    tenure = frame["tenure_days"].astype(float).to_numpy()
    personas = [persona_for(c, float(np.median(tenure[labels == i])) if (labels == i).any() else 0.0)
                for i, c in enumerate(centroids)]
    model = SegmentModel(kk, list(SEGMENT_FEATURES), mean, scale, centroids, personas, scores)
    return model, labels


def assign(model: SegmentModel, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Assign rows to the nearest stored centroid using the stored scaler (no refit)."""
    z = (transform(frame) - model.scaler_mean) / model.scaler_scale
    d = ((z[:, None, :] - model.centroids[None, :, :]) ** 2).sum(axis=2)
    labels = d.argmin(axis=1)
    return labels, np.sqrt(d[np.arange(len(z)), labels])


def personas_of(frame: pd.DataFrame, k: int | None = None) -> pd.Series:
    """Each customer's persona, indexed by ``customer_id``, as ``segments/customer_segments`` names them: fitted on
    ``frame`` (``customer_id``, ``SEGMENT_FEATURES`` and ``tenure_days``) in the order of the customer ids, as the
    asset reads them, so that the same features give the same segments."""
    ordered = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
    model, labels = fit_segments(ordered, k=k)
    return pd.Series([model.personas[i] for i in labels], index=ordered["customer_id"].to_numpy(), name="segment")
