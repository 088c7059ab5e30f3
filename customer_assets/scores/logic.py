"""Turning model outputs into the scored-customer table."""

from __future__ import annotations

import numpy as np
import pandas as pd

HIGH_CHURN = 0.70
MEDIUM_CHURN = 0.40

SCORED_COLUMNS = [
    "cutoff_date",
    "customer_id",
    "segment",
    "purchase_probability",
    "churn_probability",
    "predicted_spend",
    "predicted_ltv",
    "predicted_days_to_next_purchase",
    "value_decile",
    "recommended_action",
    "horizon_days",
    "ltv_horizon_days",
    "model_cutoff_date",
    "top_drivers",
    "models_kept",
    "outside_training_range",
]


def value_deciles(values: np.ndarray) -> np.ndarray:
    """Deciles 1..10 by value, 10 = the most valuable tenth; ties broken by position (stable)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return np.array([], dtype=int)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(n, dtype=int)
    ranks[order] = np.arange(n)
    return (ranks * 10 // n + 1).astype(int)


def recommended_action(segment: str, churn_probability: float, value_decile: int) -> str:
    """A next-best action from the persona, the churn risk and the value decile.

    High-value customers who are slipping get people's time; low-value dormant ones get
    cheap automated touches; healthy ones get rewarded rather than discounted.
    """
    high_value = value_decile >= 8
    if churn_probability >= HIGH_CHURN:
        if high_value:
            return "Win back now: personal outreach"
        if segment in ("Hibernating",):
            return "Low-cost reactivation email, or suppress"
        return "Reactivation offer"
    if churn_probability >= MEDIUM_CHURN:
        if high_value:
            return "Retain: priority check-in and loyalty perk"
        if segment in ("New", "Promising"):
            return "Nurture: second-purchase incentive"
        return "Re-engage: personalised recommendations"
    if segment in ("Champions", "Loyal") or high_value:
        return "Reward and upsell: VIP programme, no discount"
    if segment in ("New", "Promising"):
        return "Nurture: onboarding and cross-sell"
    return "Keep warm: regular newsletter"


def recommended_actions(frame: pd.DataFrame) -> np.ndarray:
    """``recommended_action`` for every row at once (the same rules, in the same order, as arrays)."""
    seg = frame["segment"].to_numpy()
    churn = frame["churn_probability"].to_numpy(dtype=float)
    high_value = frame["value_decile"].to_numpy() >= 8
    new = np.isin(seg, ["New", "Promising"])
    conditions = [
        (churn >= HIGH_CHURN) & high_value,
        (churn >= HIGH_CHURN) & (seg == "Hibernating"),
        churn >= HIGH_CHURN,
        (churn >= MEDIUM_CHURN) & high_value,
        (churn >= MEDIUM_CHURN) & new,
        churn >= MEDIUM_CHURN,
        np.isin(seg, ["Champions", "Loyal"]) | high_value,
        new,
    ]
    choices = [
        "Win back now: personal outreach",
        "Low-cost reactivation email, or suppress",
        "Reactivation offer",
        "Retain: priority check-in and loyalty perk",
        "Nurture: second-purchase incentive",
        "Re-engage: personalised recommendations",
        "Reward and upsell: VIP programme, no discount",
        "Nurture: onboarding and cross-sell",
    ]
    return np.select(conditions, np.array(choices, dtype=object), default="Keep warm: regular newsletter").astype(object)


def segment_profile(scored: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """One row per segment: size, share, mean recency, frequency and monetary, predicted value, churn risk.

    Parameters
    ----------
    scored : DataFrame
        Rows of ``scores.scored_customers`` for one cutoff (``customer_id``, ``segment``,
        ``churn_probability``, ``predicted_spend``, ``predicted_ltv``).
    features : DataFrame
        Rows of ``features.customer_features`` for the same cutoff (``customer_id``, ``recency_days``,
        ``purchase_days``, ``monetary_total``).

    Returns
    -------
    DataFrame
        Sorted by total predicted value, most valuable segment first.
    """
    frame = scored.merge(features[["customer_id", "recency_days", "purchase_days", "monetary_total"]],
                         on="customer_id", how="left", validate="one_to_one")
    prof = frame.groupby("segment").agg(
        customers=("customer_id", "size"),
        mean_recency_days=("recency_days", "mean"),
        mean_purchase_days=("purchase_days", "mean"),
        mean_monetary_total=("monetary_total", "mean"),
        mean_predicted_ltv=("predicted_ltv", "mean"),
        mean_churn_probability=("churn_probability", "mean"),
        expected_spend=("predicted_spend", "sum"),
        expected_ltv=("predicted_ltv", "sum"),
    ).reset_index()
    prof.insert(2, "share", prof["customers"] / max(len(frame), 1))
    return prof.sort_values("expected_ltv", ascending=False, kind="mergesort").reset_index(drop=True)
