"""The per-cutoff customer report: a self-contained HTML page (inline SVG charts, no extra dependency)."""

import html
from datetime import date

import pandas as pd

from customer_assets.charts import bar_chart
from customer_assets.models import drift as D

REASONING = {
    "Champions": "Recent, frequent, high spenders. Discounts would give away margin they would spend anyway: reward them "
                 "(early access, VIP service) and cross-sell. Watch the ones whose churn risk rises: they are the costliest to lose.",
    "Loyal": "Regular buyers of middling value. Loyalty perks and personalised recommendations move them toward Champions.",
    "Promising": "Recent but light buyers. A second and third purchase is what turns them into regulars: nurture with "
                 "onboarding content and a modest incentive.",
    "New": "First purchase in the last months. The first 90 days decide whether they stay: welcome series, second-purchase offer.",
    "At Risk": "Used to buy often and spend well, but have gone quiet. Worth personal outreach and a real win-back offer: "
               "their past value pays for it.",
    "Needs Attention": "Average customers drifting away. Re-engage with recommendations based on what they bought before.",
    "Hibernating": "Long inactive, low value. Most will not come back: send low-cost automated reactivation, and suppress "
                   "those who never respond to save on contact costs.",
}


def _esc(v) -> str:
    return html.escape(str(v))


def _table(frame: pd.DataFrame, money: tuple = (), pct: tuple = (), digits: dict | None = None) -> str:
    digits = digits or {}
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for col, v in zip(frame.columns, rec, strict=True):
            if col in money:
                text = f"${v:,.0f}"
            elif col in pct:
                text = f"{v:.1%}"
            elif isinstance(v, float):
                text = f"{v:,.{digits.get(col, 2)}f}"
            elif isinstance(v, int):
                text = f"{v:,}"
            else:
                text = str(v)
            cells.append(f"<td>{_esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def build_report(cutoff: date, current: pd.DataFrame, previous: pd.DataFrame | None, previous_cutoff: date | None,
                 horizon_days: int, ltv_horizon_days: int, drift: pd.DataFrame | None = None) -> tuple[str, dict]:
    """The HTML report and its headline numbers, from the scored rows of ``cutoff`` (and of the previous cutoff).

    ``drift``: the rows of ``scores.feature_drift`` at ``cutoff`` past the check's limits, if any; the report then
    says, under the models it was scored with, how the customers differ from those the models learned from.
    """
    cur = current.copy()
    cur["value_at_risk"] = cur["predicted_ltv"] * cur["churn_probability"]
    n = len(cur)
    at_risk_mask = (cur["value_decile"] >= 8) & (cur["churn_probability"] >= 0.5)
    headline = {
        "customers": n,
        "expected_spend_next_h": float(cur["predicted_spend"].sum()),
        "expected_ltv": float(cur["predicted_ltv"].sum()),
        "mean_churn_probability": float(cur["churn_probability"].mean()),
        "revenue_at_risk": float(cur["value_at_risk"].sum()),
        "high_value_at_risk_customers": int(at_risk_mask.sum()),
        "high_value_at_risk_ltv": float(cur.loc[at_risk_mask, "predicted_ltv"].sum()),
    }
    sections = []

    # 1. what changed
    if previous is not None and len(previous):
        prev = previous.copy()
        prev["value_at_risk"] = prev["predicted_ltv"] * prev["churn_probability"]
        prev_head = {
            "customers": len(prev), "expected_spend_next_h": prev["predicted_spend"].sum(), "expected_ltv": prev["predicted_ltv"].sum(),
            "mean_churn_probability": prev["churn_probability"].mean(), "revenue_at_risk": prev["value_at_risk"].sum(),
            "high_value_at_risk_customers": int(((prev["value_decile"] >= 8) & (prev["churn_probability"] >= 0.5)).sum()),
        }
        rows = [(k.replace("_", " "), prev_head[k], headline[k], headline[k] - prev_head[k]) for k in prev_head]
        change = pd.DataFrame(rows, columns=["measure", str(previous_cutoff), str(cutoff), "change"])
        new_customers = len(set(cur["customer_id"]) - set(prev["customer_id"]))
        sections.append(f"<h2>What changed since {previous_cutoff}</h2><p>{new_customers:,} new customers.</p>"
                        + _table(change, digits={str(previous_cutoff): 3, str(cutoff): 3, "change": 3}))
    else:
        sections.append("<h2>What changed</h2><p>This is the first scored cutoff: nothing to compare with yet.</p>")

    # 2. segments and movement
    seg = (cur.groupby("segment").agg(customers=("customer_id", "size"), mean_churn=("churn_probability", "mean"),
                                      expected_spend=("predicted_spend", "sum"), expected_ltv=("predicted_ltv", "sum"))
           .reset_index().sort_values("expected_ltv", ascending=False))
    seg["share"] = seg["customers"] / n
    movement = ""
    if previous is not None and len(previous):
        both = cur[["customer_id", "segment"]].merge(previous[["customer_id", "segment"]], on="customer_id", suffixes=("", "_before"))
        matrix = pd.crosstab(both["segment_before"], both["segment"]).reset_index().rename(columns={"segment_before": "from \\ to"})
        movement = f"<h3>Movement between segments since {previous_cutoff} (customers)</h3>" + _table(matrix)
    sections.append(
        "<h2>Segments</h2>" + bar_chart(seg["segment"].tolist(), seg["customers"].astype(float).tolist(), "Customers per segment")
        + _table(seg[["segment", "customers", "share", "mean_churn", "expected_spend", "expected_ltv"]],
                 money=("expected_spend", "expected_ltv"), pct=("share",), digits={"mean_churn": 3})
        + movement
    )

    # 3. revenue at risk
    deciles = cur.groupby("value_decile").agg(expected_ltv=("predicted_ltv", "sum"), at_risk=("value_at_risk", "sum")).reset_index()
    sections.append(
        f"<h2>Revenue at risk</h2><p>Expected {ltv_horizon_days}-day value weighted by the chance of not buying in the next "
        f"{horizon_days} days: <b>${headline['revenue_at_risk']:,.0f}</b> of ${headline['expected_ltv']:,.0f}. "
        f"{headline['high_value_at_risk_customers']:,} customers in the top three value deciles have a churn risk of 50% or more; "
        f"together they are worth ${headline['high_value_at_risk_ltv']:,.0f}.</p>"
        + bar_chart([f"decile {d}" for d in deciles["value_decile"]], deciles["at_risk"].tolist(), "Value at risk by value decile", "${:,.0f}")
    )

    # 4. who to call first
    call = cur[cur["churn_probability"] >= 0.5].sort_values("value_at_risk", ascending=False).head(25)
    cols = ["customer_id", "segment", "churn_probability", "predicted_ltv", "value_at_risk", "recommended_action"]
    if "top_drivers" in call:
        cols.append("top_drivers")
    sections.append("<h2>Customers to call first</h2><p>The 25 customers with the most value at risk among those more likely "
                    "than not to lapse.</p>" + _table(call[cols], money=("predicted_ltv", "value_at_risk"), digits={"churn_probability": 3}))

    # 5. actions per segment
    acts = (cur.groupby(["segment", "recommended_action"]).size().rename("customers").reset_index()
            .sort_values(["segment", "customers"], ascending=[True, False]))
    items = []
    for segment, group in acts.groupby("segment"):
        lines = "".join(f"<li>{_esc(a)}: {c:,} customers</li>" for a, c in zip(group["recommended_action"], group["customers"], strict=True))
        items.append(f"<h3>{_esc(segment)}</h3><p>{_esc(REASONING.get(segment, ''))}</p><ul>{lines}</ul>")
    sections.append("<h2>Recommended actions per segment</h2>" + "".join(items))

    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
             "th{background:#f3f3f3}td:first-child{text-align:left}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Customer report {cutoff}</title><style>{style}</style></head>"
            f"<body><h1>Customer report, cutoff {cutoff}</h1>"
            f"<p>{n:,} customers. Expected spend in the next {horizon_days} days: <b>${headline['expected_spend_next_h']:,.0f}</b>. "
            f"Expected {ltv_horizon_days}-day value: <b>${headline['expected_ltv']:,.0f}</b>. Mean churn risk "
            f"{headline['mean_churn_probability']:.1%}.</p>" + _models_line(cur) + _drift_line(drift, cur) + "".join(sections) + "</body></html>")
    return page, headline


def _models_line(scored: pd.DataFrame) -> str:
    """Which models scored: those of the partition cutoff - H, and any kept from earlier (``models_kept``)."""
    if "model_cutoff_date" not in scored or scored.empty:
        return ""
    partition = pd.Timestamp(scored["model_cutoff_date"].iloc[0]).date()
    kept = scored["models_kept"].dropna().unique().tolist() if "models_kept" in scored else []
    if not kept:
        return f"<p>Scored with the models trained at {partition}.</p>"
    return (f"<p><b>Scored with the models trained at {partition}, except: {_esc('; '.join(kept))}.</b> The models of "
            f"{partition} named here did not beat their naive baseline on validation, so the last ones that did were "
            "kept.</p>")


def _drift_line(drift: pd.DataFrame | None, scored: pd.DataFrame) -> str:
    """A caution when the customers scored differ from those the models learned from (``features_like_training``),
    with how many customers lie outside a training range (``outside_training_range``)."""
    if drift is None or drift.empty:
        return ""
    outside = ""
    if "outside_training_range" in scored and len(scored):
        k = int(scored["outside_training_range"].notna().sum())
        outside = (f" For {k:,} of the {len(scored):,} customers ({k / len(scored):.1%}) at least one input lies outside "
                   "the range the models learned from; the column <code>outside_training_range</code> names it.")
    return ("<p><b>Caution: these customers differ from the customers the models learned from.</b> "
            + _esc("; ".join(D.summary(drift))) + "." + outside + " A model is least reliable for customers unlike any "
            "it saw, so weigh these scores with that in mind (the data team's check <code>features_like_training</code> "
            "has every feature).</p>")
