"""The per-cutoff customer report: a self-contained HTML page (inline SVG charts, no extra dependency)."""

import html
import math
from datetime import date, timedelta

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


def _table(frame: pd.DataFrame, money: tuple = (), pct: tuple = (), digits: dict | None = None,
           signed: tuple = (), currency: str = "$") -> str:
    digits = digits or {}
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for col, v in zip(frame.columns, rec, strict=True):
            if isinstance(v, float) and math.isnan(v):
                text = "–"
            elif col in money:
                text = f"{currency}{v:,.0f}"
            elif col in signed:
                text = _signed(v)
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


# How far back the report's track record reaches (by the end of each backtest's window), and how far apart the rows
# of its table are: the nightly schedule adds one backtest a night, whose windows overlap all but a day.
TRACK_RECORD_DAYS = 365
TRACK_RECORD_SPACING_DAYS = 30
TRACK_RECORD_ROWS = 12
BACKTEST_METRICS = {("purchase", "roc_auc"): "roc_auc", ("purchase", "brier"): "brier", ("spend", "r2"): "r2",
                    ("spend", "aggregate_error"): "aggregate_error", ("spend", "top10_share"): "top10_share"}
LTV_METRICS = ("r2", "aggregate_error", "top10_share")


def track_record(backtests: pd.DataFrame | None, ltv: pd.DataFrame | None, cutoff: date, horizon_days: int,
                 lookback_days: int = TRACK_RECORD_DAYS, deciles: pd.DataFrame | None = None,
                 segments: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The champion's backtests that a reader at ``cutoff`` can know: those whose window had ended by ``cutoff``.

    Parameters
    ----------
    backtests : rows of ``evaluation.backtest_metrics`` (``eval_cutoff_date``, ``task``, ``system``, ``metric``,
        ``value``), or None when the table does not exist yet.
    ltv : rows of ``evaluation.ltv_metrics`` (``cutoff_date``, ``window_end``, ``system``, ``metric``, ``value``), or
        None.
    cutoff : the report's cutoff. A backtest of the scores made at s counts when s + ``horizon_days`` <= ``cutoff``;
        an LTV check when its ``window_end`` <= ``cutoff``. So a report rewritten later says what was known at its
        cutoff, not what was learnt after.
    horizon_days : H, the window of the 90-day forecasts.
    lookback_days : only the backtests whose windows ended in the ``lookback_days`` up to ``cutoff``.
    deciles : rows of ``evaluation.spend_deciles`` (the champion's), or None.
    segments : rows of ``evaluation.segment_metrics`` (the champion's), or None.

    Returns
    -------
    dict with ``spend``: one row per backtest, newest first (``scored_at``, ``window_end``, ``roc_auc``, ``brier``,
    ``r2``, ``aggregate_error``, ``top10_share``), and ``ltv``: one row per LTV check, newest first (``served_at``,
    ``window_end``, ``r2``, ``aggregate_error``, ``top10_share``). Either may be empty. Also ``known``: the spend
    total's error of every backtest known at ``cutoff``, older than ``lookback_days`` too (``eval_cutoff_date``,
    ``value``, oldest first), from which ``coverage`` checks the rows of ``spend`` as a report at each of them saw it.
    And ``deciles``: the spend deciles of the newest backtest in ``spend`` (``eval_cutoff_date``, ``decile``, …, from
    decile 10 down), and ``segments``: its rows by segment (largest forecast first); each empty without one.
    """
    start = cutoff - timedelta(days=lookback_days)
    spend = pd.DataFrame(columns=["scored_at", "window_end", *BACKTEST_METRICS.values()])
    known = pd.DataFrame(columns=["eval_cutoff_date", "value"])
    if backtests is not None and len(backtests):
        rows = backtests[backtests["system"] == "champion"].copy()
        rows["key"] = list(zip(rows["task"], rows["metric"], strict=True))
        rows = rows[rows["key"].isin(BACKTEST_METRICS.keys())]
        rows["scored_at"] = pd.to_datetime(rows["eval_cutoff_date"]).dt.date
        rows["window_end"] = rows["scored_at"] + timedelta(days=horizon_days)
        rows = rows[rows["window_end"] <= cutoff]
        errors = rows[rows["key"] == ("spend", "aggregate_error")]
        known = (pd.DataFrame({"eval_cutoff_date": errors["scored_at"], "value": errors["value"].astype(float)})
                 .sort_values("eval_cutoff_date", ignore_index=True))
        rows = rows[rows["window_end"] > start]
        if len(rows):
            rows["column"] = rows["key"].map(BACKTEST_METRICS)
            spend = (rows.pivot_table(index=["scored_at", "window_end"], columns="column", values="value", aggfunc="first")
                     .reindex(columns=list(BACKTEST_METRICS.values())).reset_index()
                     .sort_values("scored_at", ascending=False, ignore_index=True))
            spend.columns.name = None
    checks = pd.DataFrame(columns=["served_at", "window_end", *LTV_METRICS])
    if ltv is not None and len(ltv):
        rows = ltv[(ltv["system"] == "champion") & ltv["metric"].isin(LTV_METRICS)].copy()
        rows["served_at"] = pd.to_datetime(rows["cutoff_date"]).dt.date
        rows["window_end"] = pd.to_datetime(rows["window_end"]).dt.date
        rows = rows[(rows["window_end"] <= cutoff) & (rows["window_end"] > start)]
        if len(rows):
            checks = (rows.pivot_table(index=["served_at", "window_end"], columns="metric", values="value", aggfunc="first")
                      .reindex(columns=list(LTV_METRICS)).reset_index()
                      .sort_values("served_at", ascending=False, ignore_index=True))
            checks.columns.name = None
    def of_newest(frame: pd.DataFrame | None, order: str) -> pd.DataFrame:  # the newest backtest's rows
        if frame is None or not len(frame) or not len(spend):
            return pd.DataFrame()
        scored = pd.to_datetime(frame["eval_cutoff_date"]).dt.date
        return (frame[(scored == spend["scored_at"].iloc[0]) & (frame["system"] == "champion")]
                .sort_values(order, ascending=False, ignore_index=True))

    return {"spend": spend, "ltv": checks, "known": known, "deciles": of_newest(deciles, "decile"),
            "segments": of_newest(segments, "predicted_spend")}


def past_miss_range(errors) -> tuple[float, float] | None:
    """The smallest and the largest of the finite past aggregate errors ``errors``, with 0 included: (min(errors, 0),
    max(errors, 0)). None when there is no finite error."""
    errs = [float(e) for e in errors if e is not None and math.isfinite(float(e))]
    if not errs:
        return None
    return min(min(errs), 0.0), max(max(errs), 0.0)


def forecast_range(total: float, errors) -> tuple[float, float | None] | None:
    """The totals between ``total`` itself and what it would have turned out to be, had it been off as the past
    forecasts were.

    A past aggregate error e = (predicted - actual) / actual means the actual total was predicted / (1 + e). So the
    range is ``total`` / (1 + max(the largest e, 0)) to ``total`` / (1 + min(the smallest e, 0)) (``past_miss_range``):
    it always holds ``total`` itself, since the past misses say how far the actual may lie from it, not that it must.
    The upper end is None when a past forecast was 100% or more below its actual (1 + e <= 0: no multiple of it
    recovers the actual). Returns None when there is no finite past error.
    """
    misses = past_miss_range(errors)
    if misses is None:
        return None
    smallest, largest = misses
    return total / (1 + largest), (total / (1 + smallest) if smallest > -1 else None)


def range_at(errors: pd.DataFrame, cutoff: date, horizon_days: int,
             lookback_days: int = TRACK_RECORD_DAYS) -> tuple[int, float, float] | None:
    """The range of past misses known at ``cutoff``: how many backtests, and (``past_miss_range``) the smallest and
    largest of their errors with 0 included.

    ``errors`` holds the champion's spend aggregate errors, one row per scoring cutoff s (``eval_cutoff_date``,
    ``value``); those known at ``cutoff`` are kept as ``track_record`` keeps them. None when none is known.
    """
    rows = errors.assign(task="spend", system="champion", metric="aggregate_error")
    past = track_record(rows, None, cutoff, horizon_days, lookback_days)["spend"]["aggregate_error"]
    misses = past_miss_range(past)
    return None if misses is None else (int(past.notna().sum()), *misses)


def coverage(errors: pd.DataFrame, horizon_days: int, lookback_days: int = TRACK_RECORD_DAYS) -> pd.DataFrame:
    """How the report's range would have done at each scoring cutoff of ``errors``.

    ``errors`` holds the champion's spend aggregate errors, one row per scoring cutoff s (``eval_cutoff_date``,
    ``value``). For each s, the range is taken from the errors known at s (``range_at``) and checked against the
    error at s.

    Returns one row per s that had at least one earlier backtest known: ``cutoff``, ``known`` (how many), ``low``,
    ``high`` (the range of errors) and ``error`` (at s), and ``held`` (low <= error <= high). The actual total lies
    in the range of totals (``forecast_range``) exactly when ``held``.
    """
    out = []
    for c, error in zip(pd.to_datetime(errors["eval_cutoff_date"]).dt.date, errors["value"], strict=True):
        known = range_at(errors, c, horizon_days, lookback_days)
        if known is None or not math.isfinite(error):
            continue
        n, low, high = known
        out.append({"cutoff": c, "known": n, "low": low, "high": high, "error": error, "held": bool(low <= error <= high)})
    return pd.DataFrame(out, columns=["cutoff", "known", "low", "high", "error", "held"])


def spaced(frame: pd.DataFrame, column: str, days: int = TRACK_RECORD_SPACING_DAYS,
           limit: int = TRACK_RECORD_ROWS) -> pd.DataFrame:
    """The newest row of ``frame`` (sorted newest first by ``column``), then each next one at least ``days`` older
    than the last kept, up to ``limit`` rows."""
    keep, last = [], None
    for i, when in enumerate(frame[column]):
        if last is None or (last - when).days >= days:
            keep.append(i)
            last = when
        if len(keep) == limit:
            break
    return frame.iloc[keep]


def _signed(x: float) -> str:
    return f"{x:+.1%}"


def _span(low: float, high: float | None, currency: str = "$") -> str:
    """$low to $high, or "$low or more" without an upper end (``currency`` for $)."""
    return (f"{currency}{low:,.0f} to {currency}{high:,.0f}" if high is not None
            else f"{currency}{low:,.0f} or more")


def _track_record_section(record: dict[str, pd.DataFrame], cutoff: date, headline: dict, horizon_days: int,
                          ltv_horizon_days: int, currency: str = "$") -> str:
    """The report's "How right the forecasts have been": past backtests, and the range they give the totals above.
    Adds to ``headline`` what it shows (the number of backtests, the range of their misses and of the totals)."""
    spend, ltv = record["spend"], record["ltv"]
    out = [f"<h2 id='track-record'>How right the forecasts have been</h2><p>Every figure above is a forecast. Below are the backtests "
           f"that had ended by {cutoff} (in the {TRACK_RECORD_DAYS} days up to it): the scores made at an earlier cutoff "
           "against what the customers then bought.</p>"]
    if spend.empty and ltv.empty:
        return out[0] + (f"<p>No backtest had ended by {cutoff}, so there is no track record yet. The scores made at a "
                         f"cutoff s are checked once the {horizon_days} days after s have passed (the schedule "
                         "<code>nightly_backtest</code>, or <code>customer-assets materialize --backtests</code>).</p>")
    for frame, total_key, label in ((spend, "expected_spend_next_h", "spend"), (ltv, "expected_ltv", "ltv")):
        if frame.empty:
            continue
        errors = frame["aggregate_error"].astype(float)
        errors = errors[errors.map(math.isfinite)]
        band = forecast_range(headline[total_key], errors)
        n = len(frame)
        if band is None:
            continue
        low, high = band
        headline[f"{label}_backtests"] = n
        headline[f"{label}_past_error_min"] = float(errors.min())
        headline[f"{label}_past_error_max"] = float(errors.max())
        headline[f"{label}_total_if_off_as_before_low"] = float(low)
        if high is not None:
            headline[f"{label}_total_if_off_as_before_high"] = float(high)
        first = frame.iloc[0]["scored_at" if label == "spend" else "served_at"]
        if label == "spend":
            what = (f"The one backtest (the scores made at {first})" if n == 1
                    else f"The {n} backtests (the scores made from {frame.iloc[-1]['scored_at']} to {first})")
        else:
            what = (f"The one LTV check (the value served at {first})" if n == 1
                    else f"The {n} LTV checks (the values served from {frame.iloc[-1]['served_at']} to {first})")
        missed = (f"missed its total by {_signed(errors.iloc[0])}" if len(errors) == 1
                  else f"missed their totals by {_signed(errors.min())} to {_signed(errors.max())}")
        forecast = (f"the expected spend in the next {horizon_days} days" if label == "spend"
                    else f"the expected {ltv_horizon_days}-day value")
        held = ""
        if label == "spend":  # an LTV check in the table cannot know another: their windows all end within a year
            # each backtest in the table against the range a report at its scoring cutoff showed: the backtests of
            # the year before it that had ended by then, older ones than the table's year included
            checked = coverage(record["known"], horizon_days)
            checked = checked[checked["cutoff"].isin(set(frame["scored_at"]))]
            if len(checked):
                k = int(checked["held"].sum())
                headline["spend_range_checked"], headline["spend_range_held"] = len(checked), k
                held = (f" Checked on these {n} backtests, each against the range a report showed when its scores "
                        f"were made (the backtests of the {TRACK_RECORD_DAYS} days before that had ended by then), "
                        f"a range made this way held the actual total {k} of {len(checked)} times.")
        out.append(f"<p>{what} {missed}. If {forecast} ({currency}{headline[total_key]:,.0f}) is off by no more than {'it was' if n == 1 else 'they were'}, "
                   f"the actual total will be <b>{_span(low, high, currency)}</b>. "
                   + ("That is one past miss, not a confidence interval: a new period can miss by more, or the other way."
                      if n == 1 else "That is the range of past misses, not a confidence interval: their windows "
                      "overlap, and a new period can miss by more.") + held + "</p>")
    if not spend.empty:
        out.append(f"<h3>Purchase and spend in {horizon_days} days</h3><p>ROC-AUC: how well the purchase probability "
                   "ranks buyers above non-buyers (0.5 is chance). Total off by: (predicted − actual) / actual. Top 10% "
                   "share: the share of the actual spend made by the 10% of customers forecast to spend most.</p>"
                   + _history_table(spend, "scored_at", "backtest",
                                    {"scored_at": "scored at", "roc_auc": "ROC-AUC (purchase)", "brier": "Brier",
                                     "r2": "spend R²"}, {"ROC-AUC (purchase)": 3, "Brier": 4, "spend R²": 3}))
    tenths = record["deciles"]
    if len(tenths):
        top_error = float(tenths.iloc[0]["aggregate_error"])
        if math.isfinite(top_error):  # NaN when the top tenth spent nothing
            headline["spend_top_decile_error"] = top_error
        table = pd.DataFrame({
            "tenth": ["10 (forecast to spend most)" if d == 10 else str(d) for d in tenths["decile"]],
            "customers": [f"{int(n):,}" for n in tenths["customers"]], "forecast": tenths["predicted_spend"].astype(float),
            "actual": tenths["actual_spend"].astype(float), "off by": tenths["aggregate_error"].astype(float),
            "share of the actual spend": tenths["share_of_actual"].astype(float),
            "mean purchase probability": tenths["mean_purchase_probability"].astype(float),
            "bought": tenths["observed_purchase_rate"].astype(float)})
        out.append(f"<h3>The newest backtest, tenth by tenth</h3><p>The scores made at {spend.iloc[0]['scored_at']}: the "
                   "customers ranked by their forecast spend, in ten groups of about the same size, each against what "
                   f"it spent in the {horizon_days} days after. It shows whose forecasts the total's miss comes from; "
                   + (f"the top tenth was off by {_signed(top_error)}.</p>" if math.isfinite(top_error)
                      else "the top tenth spent nothing.</p>")
                   + _table(table, money=("forecast", "actual"),
                            pct=("share of the actual spend", "mean purchase probability", "bought"), signed=("off by",),
                            currency=currency))
    by_segment = record.get("segments", pd.DataFrame())
    if len(by_segment):
        table = pd.DataFrame({
            "segment": by_segment["segment"], "customers": [f"{int(n):,}" for n in by_segment["customers"]],
            "mean purchase probability": by_segment["mean_purchase_probability"].astype(float),
            "bought": by_segment["observed_purchase_rate"].astype(float),
            "ROC-AUC within": by_segment["roc_auc"].astype(float),
            "forecast": by_segment["predicted_spend"].astype(float), "actual": by_segment["actual_spend"].astype(float),
            "off by": by_segment["aggregate_error"].astype(float)})
        fitted = (by_segment["segments_from"] == "fitted").any()
        out.append(f"<h3>The newest backtest, by segment</h3><p>The same scores, by the customers' segment at "
                   f"{spend.iloc[0]['scored_at']}"
                   + (" (no segments were stored then: fitted for this check as the pipeline fits them)" if fitted else "")
                   + ": how right the purchase probabilities and the spend forecast were for each.</p>"
                   + _table(table, money=("forecast", "actual"), pct=("mean purchase probability", "bought"),
                            digits={"ROC-AUC within": 3}, signed=("off by",), currency=currency))
    if not ltv.empty:
        out.append(f"<h3>Value over {ltv_horizon_days} days</h3>"
                   + _history_table(ltv, "served_at", "check", {"served_at": "served at", "r2": "LTV R²"}, {"LTV R²": 3}))
    return "".join(out)


def _history_table(frame: pd.DataFrame, when: str, what: str, names: dict, digits: dict) -> str:
    """A track-record table: one row every ``TRACK_RECORD_SPACING_DAYS`` or more (``spaced``), newest first, saying
    so when rows were left out; the window's end, the total's signed error and the top-10% share in every table."""
    shown = spaced(frame, when)
    note = (f"<p>The table shows one {what} every {TRACK_RECORD_SPACING_DAYS} days or more; the range above is of all "
            f"{len(frame)}.</p>" if len(shown) < len(frame) else "")
    table = shown.rename(columns={**names, "window_end": "window ended", "aggregate_error": "total off by",
                                  "top10_share": "top 10% share"})
    for col in (names[when], "window ended"):
        table[col] = table[col].astype(str)
    return note + _table(table, pct=("top 10% share",), signed=("total off by",), digits=digits)


def build_report(cutoff: date, current: pd.DataFrame, previous: pd.DataFrame | None, previous_cutoff: date | None,
                 horizon_days: int, ltv_horizon_days: int, drift: pd.DataFrame | None = None,
                 record: dict[str, pd.DataFrame] | None = None, currency: str = "$") -> tuple[str, dict]:
    """The HTML report and its headline numbers, from the scored rows of ``cutoff`` (and of the previous cutoff).

    ``drift``: the rows of ``scores.feature_drift`` at ``cutoff`` past the check's limits, if any; the report then
    says, under the models it was scored with, how the customers differ from those the models learned from.
    ``record``: the backtests known at ``cutoff`` (``track_record``); the report then says how far off the forecasts
    have been, and what range of totals that gives the forecasts above. ``currency``: what money amounts start with
    (``settings.currency``).
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
                 money=("expected_spend", "expected_ltv"), pct=("share",), digits={"mean_churn": 3}, currency=currency)
        + movement
    )

    # 3. revenue at risk
    deciles = cur.groupby("value_decile").agg(expected_ltv=("predicted_ltv", "sum"), at_risk=("value_at_risk", "sum")).reset_index()
    sections.append(
        f"<h2>Revenue at risk</h2><p>Expected {ltv_horizon_days}-day value weighted by the chance of not buying in the next "
        f"{horizon_days} days: <b>{currency}{headline['revenue_at_risk']:,.0f}</b> of {currency}{headline['expected_ltv']:,.0f}. "
        f"{headline['high_value_at_risk_customers']:,} customers in the top three value deciles have a churn risk of 50% or more; "
        f"together they are worth {currency}{headline['high_value_at_risk_ltv']:,.0f}.</p>"
        + bar_chart([f"decile {d}" for d in deciles["value_decile"]], deciles["at_risk"].tolist(), "Value at risk by value decile", currency + "{:,.0f}")
    )

    # 4. who to call first
    call = cur[cur["churn_probability"] >= 0.5].sort_values("value_at_risk", ascending=False).head(25)
    cols = ["customer_id", "segment", "churn_probability", "predicted_ltv", "value_at_risk", "recommended_action"]
    if "top_drivers" in call:
        cols.append("top_drivers")
    sections.append("<h2>Customers to call first</h2><p>The 25 customers with the most value at risk among those more likely "
                    "than not to lapse.</p>" + _table(call[cols], money=("predicted_ltv", "value_at_risk"), digits={"churn_probability": 3},
                                             currency=currency))

    # 5. actions per segment
    acts = (cur.groupby(["segment", "recommended_action"]).size().rename("customers").reset_index()
            .sort_values(["segment", "customers"], ascending=[True, False]))
    items = []
    for segment, group in acts.groupby("segment"):
        lines = "".join(f"<li>{_esc(a)}: {c:,} customers</li>" for a, c in zip(group["recommended_action"], group["customers"], strict=True))
        items.append(f"<h3>{_esc(segment)}</h3><p>{_esc(REASONING.get(segment, ''))}</p><ul>{lines}</ul>")
    sections.append("<h2>Recommended actions per segment</h2>" + "".join(items))

    # 6. track record
    if record is not None:
        sections.append(_track_record_section(record, cutoff, headline, horizon_days, ltv_horizon_days, currency))

    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
             "th{background:#f3f3f3}td:first-child{text-align:left}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Customer report {cutoff}</title><style>{style}</style></head>"
            f"<body><h1>Customer report, cutoff {cutoff}</h1>"
            f"<p>{n:,} customers. Expected spend in the next {horizon_days} days: <b>{currency}{headline['expected_spend_next_h']:,.0f}</b>. "
            f"Expected {ltv_horizon_days}-day value: <b>{currency}{headline['expected_ltv']:,.0f}</b>. Mean churn risk "
            f"{headline['mean_churn_probability']:.1%}.</p>" + _range_line(headline, horizon_days, currency) + _models_line(cur) + _drift_line(drift, cur) + "".join(sections) + "</body></html>")
    return page, headline


def _range_line(headline: dict, horizon_days: int, currency: str = "$") -> str:
    """Under the totals: where the spend forecast's actual would lie if it is off as the past ones were
    (``track_record``)."""
    low = headline.get("spend_total_if_off_as_before_low")
    if low is None:
        return ""
    lo, hi = headline["spend_past_error_min"], headline["spend_past_error_max"]
    past = f"the last backtest ({_signed(lo)})" if headline["spend_backtests"] == 1 else (
        f"the backtests of the last year ({_signed(lo)} to {_signed(hi)})")
    return (f"<p>If the {horizon_days}-day spend is off by no more than {past}, it will be "
            f"{_span(low, headline.get('spend_total_if_off_as_before_high'), currency)} "
            "(<a href='#track-record'>how right the forecasts have been</a>).</p>")


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
