"""The customer report's track record: which backtests a report at a cutoff may show, and the range of totals they
give its forecasts. Hand-built backtest rows, values worked out by hand."""

from datetime import date

import pandas as pd
import pytest

from customer_assets.reports import logic as R


def _backtest(scored_at: str, roc_auc: float, brier: float, r2: float, error: float, top10: float,
              system: str = "champion") -> list[dict]:
    values = {("purchase", "roc_auc"): roc_auc, ("purchase", "brier"): brier, ("spend", "r2"): r2,
              ("spend", "aggregate_error"): error, ("spend", "top10_share"): top10,
              ("spend", "rmse"): 99.0}  # a metric the track record does not show
    return [{"eval_cutoff_date": pd.Timestamp(scored_at), "task": task, "system": system, "metric": metric, "value": v}
            for (task, metric), v in values.items()]


BACKTESTS = pd.DataFrame([
    *_backtest("2024-01-01", 0.80, 0.100, 0.40, +0.10, 0.50),
    *_backtest("2024-02-01", 0.82, 0.090, 0.45, -0.20, 0.55),
    # its window (2024-03-15, 2024-06-13] had not ended by the cutoff 2024-06-01: not known there
    *_backtest("2024-03-15", 0.99, 0.010, 0.99, +0.50, 0.90),
    # its window ended 2023-04-01, more than 365 days before the cutoff
    *_backtest("2023-01-01", 0.70, 0.200, 0.10, +0.90, 0.30),
    # a baseline's row
    *_backtest("2024-01-01", 0.60, 0.300, 0.05, +0.70, 0.20, system="bgnbd_gamma_gamma"),
])
LTV = pd.DataFrame([
    {"cutoff_date": pd.Timestamp("2023-01-01"), "window_end": pd.Timestamp("2024-01-01"), "system": "champion",
     "metric": m, "value": v} for m, v in (("r2", 0.4), ("aggregate_error", -0.2), ("top10_share", 0.45), ("mae", 7.0))
] + [
    # its window ends after the cutoff
    {"cutoff_date": pd.Timestamp("2023-07-01"), "window_end": pd.Timestamp("2024-07-01"), "system": "champion",
     "metric": "aggregate_error", "value": +0.4},
])
CUTOFF = date(2024, 6, 1)


def test_the_track_record_holds_only_the_champions_backtests_whose_windows_had_ended_by_the_cutoff():
    record = R.track_record(BACKTESTS, LTV, CUTOFF, 90)
    spend = record["spend"]
    assert spend["scored_at"].tolist() == [date(2024, 2, 1), date(2024, 1, 1)]  # newest first
    assert spend["window_end"].tolist() == [date(2024, 5, 1), date(2024, 3, 31)]
    assert spend[["roc_auc", "brier", "r2", "aggregate_error", "top10_share"]].values.tolist() == [
        [0.82, 0.09, 0.45, -0.20, 0.55], [0.80, 0.10, 0.40, 0.10, 0.50]]
    ltv = record["ltv"]
    assert ltv.to_dict("records") == [{"served_at": date(2023, 1, 1), "window_end": date(2024, 1, 1), "r2": 0.4,
                                       "aggregate_error": -0.2, "top10_share": 0.45}]
    # a day before the second window ends, it is not known yet; the day it ends, it is
    assert R.track_record(BACKTESTS, LTV, date(2024, 4, 30), 90)["spend"]["scored_at"].tolist() == [date(2024, 1, 1)]
    assert R.track_record(BACKTESTS, LTV, date(2024, 5, 1), 90)["spend"]["scored_at"].tolist() == [
        date(2024, 2, 1), date(2024, 1, 1)]
    # with a longer horizon, neither 2024 window had ended by 2024-04-20 (2024-01-01 + 120 d = 2024-04-30), and the
    # one of 2023 ended on 2023-05-01, inside the 365 days up to 2024-04-20
    assert R.track_record(BACKTESTS, None, date(2024, 4, 20), 120)["spend"]["scored_at"].tolist() == [date(2023, 1, 1)]
    assert R.track_record(BACKTESTS, None, date(2024, 4, 20), 120, lookback_days=300)["spend"].empty
    # no evaluation tables yet
    none = R.track_record(None, None, CUTOFF, 90)
    assert none["spend"].empty and none["ltv"].empty


@pytest.mark.parametrize("errors, expected", [
    # over by 10% at most: the actual would be 1000 / 1.1; under by 20% at most: 1000 / 0.8; the forecast is inside
    ([0.10, -0.20], (1000 / 1.1, 1250.0)),
    ([0.10], (1000 / 1.1, 1000.0)),
    ([-0.20, -0.10], (1000.0, 1250.0)),
    ([0.25, float("nan")], (800.0, 1000.0)),
    # a past forecast of 0 against a positive actual (-100%): no upper end
    ([-1.0, 0.10], (1000 / 1.1, None)),
    ([float("nan")], None),
    ([], None),
])
def test_forecast_range(errors, expected):
    got = R.forecast_range(1000.0, errors)
    if expected is None:
        assert got is None
    else:
        assert got[0] == pytest.approx(expected[0])
        assert got[1] == (None if expected[1] is None else pytest.approx(expected[1]))


def test_spaced_keeps_the_newest_then_one_at_least_the_spacing_older():
    days = pd.DataFrame({"d": [date(2024, 6, 30), date(2024, 6, 29), date(2024, 6, 15), date(2024, 5, 31),
                               date(2024, 5, 2), date(2024, 5, 1), date(2024, 4, 1)]})
    assert R.spaced(days, "d", 30)["d"].tolist() == [date(2024, 6, 30), date(2024, 5, 31), date(2024, 5, 1),
                                                     date(2024, 4, 1)]
    assert R.spaced(days, "d", 30, limit=2)["d"].tolist() == [date(2024, 6, 30), date(2024, 5, 31)]
    assert len(R.spaced(days, "d", 1)) == 7


def _scored(spend: list[float], ltv: list[float]) -> pd.DataFrame:
    n = len(spend)
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "segment": ["Loyal"] * n, "predicted_spend": spend,
                         "predicted_ltv": ltv, "churn_probability": [0.5] * n, "value_decile": list(range(1, n + 1)),
                         "recommended_action": ["email"] * n})


def test_the_report_says_how_far_off_the_forecasts_have_been_and_what_that_makes_of_its_totals():
    current = _scored([600.0, 400.0], [300.0, 200.0])  # 1,000 expected in 90 days, 500 over 365
    page, headline = R.build_report(CUTOFF, current, None, None, 90, 365, record=R.track_record(BACKTESTS, LTV, CUTOFF, 90))
    assert ("The 2 backtests (the scores made from 2024-01-01 to 2024-02-01) missed their totals by -20.0% to +10.0%. "
            "If the expected spend in the next 90 days ($1,000) is off by no more than they were, the actual total will "
            "be <b>$909 to $1,250</b>.") in page
    assert ("The one LTV check (the value served at 2023-01-01) missed its total by -20.0%. If the expected 365-day value "
            "($500) is off by no more than it was, the actual total will be <b>$500 to $625</b>.") in page
    # under the totals at the top
    assert ("If the 90-day spend is off by no more than the backtests of the last year (-20.0% to +10.0%), it will be "
            "$909 to $1,250") in page
    # the table: one row per backtest, signed errors
    assert "<td>2024-02-01</td><td>2024-05-01</td><td>0.820</td><td>0.0900</td><td>0.450</td><td>-20.0%</td><td>55.0%</td>" in page
    # the backtest not yet known at the cutoff is nowhere
    assert "2024-03-15" not in page and "+50.0%" not in page
    # neither backtest in the table had ended when the other's scores were made, but the one scored at 2023-01-01
    # (+90%, too old for the table) had, for both: the range 0 to +90% holds +10% and misses -20%
    assert "held the actual total 1 of 2 times." in page
    assert (headline["spend_range_checked"], headline["spend_range_held"]) == (2, 1)
    assert headline["spend_backtests"] == 2 and headline["ltv_backtests"] == 1
    assert headline["spend_total_if_off_as_before_low"] == pytest.approx(1000 / 1.1)
    assert headline["spend_total_if_off_as_before_high"] == pytest.approx(1250.0)
    assert headline["ltv_total_if_off_as_before_high"] == pytest.approx(625.0)


def test_the_report_labels_money_with_the_shops_currency(monkeypatch):
    """CUSTOMER_ASSETS_CURRENCY labels every amount of the report, including its chart and the track record's ranges;
    unset, "$". A label that could break the HTML is refused naming the variable."""
    import re

    from customer_assets import settings

    current = _scored([600.0, 400.0], [300.0, 200.0])
    record = R.track_record(BACKTESTS, LTV, CUTOFF, 90)
    monkeypatch.setenv(settings.ENV_CURRENCY, "€")
    page, _ = R.build_report(CUTOFF, current, None, None, 90, 365, record=record, currency=settings.currency())
    assert "Expected spend in the next 90 days: <b>€1,000</b>. Expected 365-day value: <b>€500</b>." in page
    assert "the actual total will be <b>€909 to €1,250</b>" in page
    assert re.search(r"\$\d", page) is None  # no amount left in dollars
    dollars, _ = R.build_report(CUTOFF, current, None, None, 90, 365, record=record)
    assert dollars == page.replace("€", "$")  # the same report otherwise
    monkeypatch.setenv(settings.ENV_CURRENCY, "Rp ")
    assert "<b>Rp 1,000</b>" in R.build_report(CUTOFF, current, None, None, 90, 365, currency=settings.currency())[0]
    monkeypatch.setenv(settings.ENV_CURRENCY, " ")
    assert settings.currency() == "$"
    for bad in ("<b>", "dollars!!", "{}"):
        monkeypatch.setenv(settings.ENV_CURRENCY, bad)
        with pytest.raises(ValueError, match=f"CUSTOMER_ASSETS_CURRENCY={re.escape(repr(bad))} is not a currency label"):
            settings.currency()


def test_a_report_before_any_backtest_says_there_is_no_track_record_yet():
    page, headline = R.build_report(date(2023, 3, 1), _scored([10.0], [20.0]), None, None, 90, 365,
                                    record=R.track_record(BACKTESTS, LTV, date(2023, 3, 1), 90))
    assert "No backtest had ended by 2023-03-01, so there is no track record yet." in page
    assert "spend_backtests" not in headline and "how right the forecasts have been</a>" not in page


def test_coverage_checks_each_cutoff_against_the_backtests_known_there():
    """Scores made at 01-01, 02-01, 03-02, 04-01 and 05-01 (errors +10%, +5%, -3%, +10%, +20%). With H = 90 days the
    report at c knows the backtests scored at c - 90 days or earlier: 01-01 to 03-02 know none (the first window
    ends 03-31); 04-01 knows 01-01: range 0 to +10%, which holds +10%; 05-01 knows 01-01 and 02-01 (whose window
    ends that day): 0 to +10%, which does not hold +20%."""
    errors = pd.DataFrame({"eval_cutoff_date": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-02", "2024-04-01",
                                                               "2024-05-01"]),
                           "value": [0.10, 0.05, -0.03, 0.10, 0.20]})
    got = R.coverage(errors, horizon_days=90)
    assert [str(c) for c in got["cutoff"]] == ["2024-04-01", "2024-05-01"]
    assert got["known"].tolist() == [1, 2] and got["held"].tolist() == [True, False]
    assert got[["low", "high"]].values.tolist() == [[0.0, 0.10], [0.0, 0.10]]
    # with a 30-day horizon, each cutoff knows every backtest scored 30 days or more before it
    got = R.coverage(errors, horizon_days=30)
    assert got["known"].tolist() == [1, 2, 3, 4]
    assert got["held"].tolist() == [True, False, True, False]
    assert got[["low", "high"]].values.tolist() == [[0.0, 0.10], [0.0, 0.10], [-0.03, 0.10], [-0.03, 0.10]]


def test_the_report_says_how_often_a_range_made_this_way_held_among_its_backtests():
    """Backtests scored at 01-01 (+10%), 04-01 (+5%) and 07-01 (+20%), report at 10-01, H = 90: all three are known.
    Among them, 04-01 knew 01-01 (range 0 to +10%, holds +5%) and 07-01 knew 01-01 and 04-01 (0 to +10%, misses
    +20%); 01-01 knew none. So 1 of 2."""
    rows = pd.DataFrame([*_backtest("2024-01-01", 0.8, 0.1, 0.4, 0.10, 0.5), *_backtest("2024-04-01", 0.8, 0.1, 0.4, 0.05, 0.5),
                         *_backtest("2024-07-01", 0.8, 0.1, 0.4, 0.20, 0.5)])
    page, headline = R.build_report(date(2024, 10, 1), _scored([600.0, 400.0], [300.0, 200.0]), None, None, 90, 365,
                                    record=R.track_record(rows, None, date(2024, 10, 1), 90))
    assert ("Checked on these 3 backtests, each against the range a report showed when its scores were made (the "
            "backtests of the 365 days before that had ended by then), a range made this way held the actual total 1 of "
            "2 times.") in page
    assert (headline["spend_range_checked"], headline["spend_range_held"]) == (2, 1)
    # the range itself: 1,000 / 1.2 to 1,000
    assert "the actual total will be <b>$833 to $1,000</b>" in page


def test_the_reports_check_of_its_range_uses_backtests_older_than_its_table():
    """Report at 2024-10-01, H = 90. The table holds the backtests whose windows ended in the 365 days up to it: those
    scored at 01-01 (+10%), 04-01 (-20%) and 07-01 (+5%). The one scored at 2023-06-01 (-30%; window ended 2023-08-30)
    is too old for the table, but it was known, and within the year, when each of the three was scored, so the range
    a report showed then included it:
    01-01 knew 2023-06-01: -30% to 0, which misses +10%;
    04-01 knew it and 01-01: -30% to +10%, which holds -20% (without it, 0 to +10% would not);
    07-01 knew all three: -30% to +10%, which holds +5%.
    So 2 of 3 (without the old backtest it would be 1 of 2)."""
    rows = pd.DataFrame([*_backtest("2023-06-01", 0.8, 0.1, 0.4, -0.30, 0.5), *_backtest("2024-01-01", 0.8, 0.1, 0.4, 0.10, 0.5),
                         *_backtest("2024-04-01", 0.8, 0.1, 0.4, -0.20, 0.5), *_backtest("2024-07-01", 0.8, 0.1, 0.4, 0.05, 0.5)])
    record = R.track_record(rows, None, date(2024, 10, 1), 90)
    assert record["spend"]["scored_at"].tolist() == [date(2024, 7, 1), date(2024, 4, 1), date(2024, 1, 1)]
    assert record["known"]["eval_cutoff_date"].tolist() == [date(2023, 6, 1), date(2024, 1, 1), date(2024, 4, 1),
                                                            date(2024, 7, 1)]
    page, headline = R.build_report(date(2024, 10, 1), _scored([600.0, 400.0], [300.0, 200.0]), None, None, 90, 365,
                                    record=record)
    assert (headline["spend_range_checked"], headline["spend_range_held"]) == (3, 2)
    assert "held the actual total 2 of 3 times." in page
    # the range of this report's totals comes from its table alone: -20% to +10%
    assert "the actual total will be <b>$909 to $1,250</b>" in page
    assert headline["spend_past_error_min"] == pytest.approx(-0.20)


def _deciles(scored_at: str, top_forecast: float, top_actual: float) -> list[dict]:
    """Ten deciles of 100 customers: the top one forecast ``top_forecast`` against ``top_actual``, the others 10 vs 10."""
    return [{"cutoff_date": pd.Timestamp(scored_at) - pd.Timedelta(days=90), "eval_cutoff_date": pd.Timestamp(scored_at),
             "system": "champion", "decile": d, "customers": 100,
             "predicted_spend": top_forecast if d == 10 else 10.0, "actual_spend": top_actual if d == 10 else 10.0,
             "aggregate_error": ((top_forecast - top_actual) / top_actual) if d == 10 else 0.0,
             "share_of_actual": (top_actual if d == 10 else 10.0) / (top_actual + 90.0),
             "mean_purchase_probability": 0.5, "observed_purchase_rate": 0.4} for d in range(1, 11)]


def test_the_report_shows_the_newest_known_backtest_tenth_by_tenth():
    """Deciles of the backtests scored at 2024-01-01 (top tenth 110 vs 100: +10%), 2024-02-01 (120 vs 100: +20%) and
    2024-03-15 (not known at the cutoff 2024-06-01). The report shows 2024-02-01's, the newest known."""
    deciles = pd.DataFrame([*_deciles("2024-01-01", 110.0, 100.0), *_deciles("2024-02-01", 120.0, 100.0),
                            *_deciles("2024-03-15", 500.0, 100.0)])
    record = R.track_record(BACKTESTS, LTV, CUTOFF, 90, deciles=deciles)
    assert record["deciles"]["decile"].tolist() == list(range(10, 0, -1))
    assert set(pd.to_datetime(record["deciles"]["eval_cutoff_date"]).dt.date) == {date(2024, 2, 1)}
    page, headline = R.build_report(CUTOFF, _scored([600.0, 400.0], [300.0, 200.0]), None, None, 90, 365, record=record)
    assert "The scores made at 2024-02-01: the customers ranked by their forecast spend" in page
    assert "the top tenth was off by +20.0%." in page
    # the top tenth's row: forecast, actual, off by, its share of the actual spend (100 / 190), mean P, bought
    assert ("<td>10 (forecast to spend most)</td><td>100</td><td>$120</td><td>$100</td><td>+20.0%</td><td>52.6%</td>"
            "<td>50.0%</td><td>40.0%</td>") in page
    assert headline["spend_top_decile_error"] == pytest.approx(0.20)
    assert "+400.0%" not in page  # the unknown backtest's
    # without the table (a warehouse backtested before it existed), no such section
    page, headline = R.build_report(CUTOFF, _scored([600.0, 400.0], [300.0, 200.0]), None, None, 90, 365,
                                    record=R.track_record(BACKTESTS, LTV, CUTOFF, 90))
    assert "tenth by tenth" not in page and "spend_top_decile_error" not in headline


def _segments(scored_at: str, fitted: bool) -> list[dict]:
    """Two segments of a backtest: Champions (AUC 0.7, forecast 150 against 100: +50%) and Dormant (nobody bought)."""
    base = {"cutoff_date": pd.Timestamp(scored_at) - pd.Timedelta(days=90), "eval_cutoff_date": pd.Timestamp(scored_at),
            "system": "champion", "segments_from": "fitted" if fitted else "stored"}
    return [{**base, "segment": "Champions", "customers": 1200, "mean_purchase_probability": 0.5,
             "observed_purchase_rate": 0.45, "roc_auc": 0.7, "predicted_spend": 150.0, "actual_spend": 100.0,
             "aggregate_error": 0.5, "share_of_actual": 1.0},
            {**base, "segment": "Dormant", "customers": 800, "mean_purchase_probability": 0.02,
             "observed_purchase_rate": 0.0, "roc_auc": float("nan"), "predicted_spend": 10.0, "actual_spend": 0.0,
             "aggregate_error": float("nan"), "share_of_actual": 0.0}]


def test_the_report_shows_the_newest_known_backtest_by_segment():
    """Segments of the backtests scored at 2024-02-01 (the newest known at the cutoff) and 2024-03-15 (not known)."""
    segments = pd.DataFrame([*_segments("2024-02-01", fitted=True), *_segments("2024-03-15", fitted=False)])
    segments.loc[segments["eval_cutoff_date"] == pd.Timestamp("2024-03-15"), "segment"] = "Unknown yet"
    record = R.track_record(BACKTESTS, LTV, CUTOFF, 90, segments=segments)
    assert record["segments"]["segment"].tolist() == ["Champions", "Dormant"]  # the largest forecast first
    page, _ = R.build_report(CUTOFF, _scored([600.0, 400.0], [300.0, 200.0]), None, None, 90, 365, record=record)
    assert ("The same scores, by the customers' segment at 2024-02-01 (no segments were stored then: fitted for this "
            "check as the pipeline fits them)") in page
    assert ("<td>Champions</td><td>1,200</td><td>50.0%</td><td>45.0%</td><td>0.700</td><td>$150</td><td>$100</td>"
            "<td>+50.0%</td>") in page
    # nobody bought: no ROC-AUC and no error, said as such
    assert "<td>Dormant</td><td>800</td><td>2.0%</td><td>0.0%</td><td>–</td><td>$10</td><td>$0</td><td>–</td>" in page
    assert "Unknown yet" not in page
    # stored segments: no note; without the table, no section
    record = R.track_record(BACKTESTS, LTV, CUTOFF, 90, segments=pd.DataFrame(_segments("2024-02-01", fitted=False)))
    page, _ = R.build_report(CUTOFF, _scored([600.0, 400.0], [300.0, 200.0]), None, None, 90, 365, record=record)
    assert "by the customers' segment at 2024-02-01: how right" in page
    page, _ = R.build_report(CUTOFF, _scored([600.0, 400.0], [300.0, 200.0]), None, None, 90, 365,
                             record=R.track_record(BACKTESTS, LTV, CUTOFF, 90))
    assert "by segment" not in page
