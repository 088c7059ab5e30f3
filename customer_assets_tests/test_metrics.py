"""Each metric on tiny cases worked out by hand."""

import math

import numpy as np
import pytest

from customer_assets.evaluation import metrics as M


def test_roc_auc_by_hand():
    # positives scored 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) -> 3/4
    assert M.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.6, 0.2]) == pytest.approx(0.75)
    assert np.isnan(M.roc_auc([1, 1], [0.2, 0.3]))


def test_pr_auc_by_hand():
    # ranking 0.8(+), 0.6(-), 0.4(+), 0.2(-): precision at each positive = 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert M.pr_auc([1, 0, 1, 0], [0.8, 0.6, 0.4, 0.2]) == pytest.approx((1 + 2 / 3) / 2)


def test_brier_and_log_loss_by_hand():
    assert M.brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    assert M.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_spend_metrics_by_hand():
    y, p = [0.0, 10.0, 30.0, 0.0], [5.0, 10.0, 20.0, 5.0]
    # mean 10; SS_tot = 100 + 0 + 400 + 100 = 600; SS_res = 25 + 0 + 100 + 25 = 150
    assert M.r2(y, p) == pytest.approx(1 - 150 / 600)
    assert M.rmse(y, p) == pytest.approx(np.sqrt(150 / 4))
    assert M.aggregate_error(y, p) == pytest.approx((40 - 40) / 40)
    assert M.aggregate_error([10.0, 10.0], [15.0, 15.0]) == pytest.approx(0.5)
    assert M.mae(y, p) == pytest.approx(5.0)


def test_top_share_by_hand():
    y = [100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 25.0]
    # top 10% = 1 customer; ranked first by prediction is the last one (actual 25) -> 25 / 125
    pred = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert M.top_share(y, pred) == pytest.approx(0.2)
    assert M.top_share(y, list(reversed(pred))) == pytest.approx(0.8)


def test_normalized_gini_is_one_for_perfect_order_and_negative_for_reversed():
    y = np.array([0.0, 1.0, 2.0, 7.0])
    assert M.normalized_gini(y, y) == pytest.approx(1.0)
    assert M.normalized_gini(y, -y) < 0


def test_reliability_table_and_ece_by_hand():
    y = [0, 0, 1, 1]
    p = [0.05, 0.15, 0.85, 0.95]
    rows = M.reliability_table(y, p, bins=2)
    assert [(r["count"], r["mean_predicted"], r["observed_rate"]) for r in rows] == [(2, pytest.approx(0.1), 0.0), (2, pytest.approx(0.9), 1.0)]
    assert M.expected_calibration_error(y, p, bins=2) == pytest.approx(0.1)


def test_decile_table_by_hand():
    """Ten customers, one per decile (ranked by forecast). The forecasts 1..10 (the fifth tied with the fourth: ties
    keep their order); actual spends 0, 0, 2, 4, 5, 6, 7, 8, 9, 9 (sum 50), the last three also bought per label."""
    pred = [1, 2, 3, 4, 4, 6, 7, 8, 9, 10]
    y = [0, 0, 2, 4, 5, 6, 7, 8, 9, 9]
    bought = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    p = [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    rows = M.decile_table(y, pred, bought, p)
    assert [r["decile"] for r in rows] == list(range(10, 0, -1))
    top, fifth, bottom = rows[0], rows[5], rows[9]
    assert (top["customers"], top["predicted_spend"], top["actual_spend"]) == (1, 10.0, 9.0)
    assert top["aggregate_error"] == pytest.approx(1 / 9) and top["share_of_actual"] == pytest.approx(9 / 50)
    assert (top["mean_purchase_probability"], top["observed_purchase_rate"]) == (0.9, 1.0)
    # decile 5 is the second of the tied forecasts of 4, which spent 5
    assert (fifth["decile"], fifth["predicted_spend"], fifth["actual_spend"]) == (5, 4.0, 5.0)
    # the least forecast spent nothing: no error
    assert bottom["actual_spend"] == 0.0 and math.isnan(bottom["aggregate_error"])
    assert sum(r["predicted_spend"] for r in rows) == 54.0 and sum(r["share_of_actual"] for r in rows) == pytest.approx(1.0)
    # 25 customers: deciles of 2 or 3 (rank * 10 // 25 + 1), as value_deciles makes them
    rows = M.decile_table(list(range(25)), list(range(25)), [1] * 25, [0.5] * 25)
    assert [r["customers"] for r in rows] == [2, 3] * 5  # from decile 10 down: 1 has ranks 0-2, 2 has 3-4, ...


def test_concordance_index_by_hand():
    # times 1 (event), 2 (event), 3 (censored); predictions 1, 3, 2
    # comparable pairs: (1,2), (1,3), (2,3) -> concordant: 1<3 yes, 1<2 yes, 3<2 no -> 2/3
    assert M.concordance_index([1, 2, 3], [1, 1, 0], [1, 3, 2]) == pytest.approx(2 / 3)


def test_concordance_index_counts_tied_predictions_half_and_ignores_pairs_it_cannot_order():
    # times 2 (event), 2 (event), 5 (censored), 1 (censored); predictions 4, 4, 4, 9
    # comparable: only (row 0, row 2) and (row 1, row 2); the tied times 2 and 2 are not, and nothing is
    # comparable with row 3 (censored before every event) -> two tied predictions -> 0.5
    assert M.concordance_index([2, 2, 5, 1], [1, 1, 0, 0], [4, 4, 4, 9]) == pytest.approx(0.5)
    # no observed event before another time: undefined
    assert np.isnan(M.concordance_index([3, 1], [0, 0], [1, 2]))


def test_concordance_index_equals_the_count_over_every_pair():
    """The exact algorithm against the definition, on 200 random cases with tied times and tied predictions."""
    rng = np.random.default_rng(7)
    for case in range(200):
        n = int(rng.integers(2, 150))
        t = rng.integers(1, 12, n).astype(float) if case % 2 else rng.random(n)
        e = rng.random(n) < 0.4
        p = rng.integers(0, 4, n).astype(float) if case % 3 == 0 else rng.random(n)
        comparable = (t[:, None] < t[None, :]) & e[:, None]
        if not comparable.any():
            continue
        pairs = (((p[:, None] < p[None, :]) & comparable).sum() + 0.5 * ((p[:, None] == p[None, :]) & comparable).sum())
        assert M.concordance_index(t, e, p) == pytest.approx(pairs / comparable.sum(), abs=1e-12)


def test_paired_bootstrap_contains_the_point_and_is_zero_for_identical_systems():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    good = y + rng.normal(0, 0.5, 300)
    bad = rng.random(300)
    d, lo, hi = M.paired_bootstrap(M.roc_auc, y, good, bad, n_boot=100)
    assert lo <= d <= hi and lo > 0
    assert M.paired_bootstrap(M.roc_auc, y, good, good, n_boot=20) == (0.0, 0.0, 0.0)


def test_significantly_worse_picks_intervals_wholly_on_the_losing_side():
    import pandas as pd

    from customer_assets.evaluation.logic import significantly_worse

    nan = float("nan")
    rows = pd.DataFrame(
        [  # task, system, metric, value, diff (champion - system), ci low, ci high
            ("purchase", "champion", "roc_auc", 0.80, nan, nan, nan),  # the champion's own row: no interval
            ("purchase", "bgnbd", "roc_auc", 0.81, -0.010, -0.020, -0.005),  # worse: whole interval below 0
            ("purchase", "neg_recency", "roc_auc", 0.81, -0.010, -0.020, 0.001),  # spans 0: not shown to be worse
            ("purchase", "bgnbd", "brier", 0.090, 0.002, 0.001, 0.003),  # lower is better: whole interval above 0
            ("purchase", "seed_xgboost", "brier", 0.094, -0.002, -0.003, -0.001),  # better
            ("spend", "bgnbd_gamma_gamma", "aggregate_error", 0.15, -0.15, -0.20, -0.10),  # signed: never "worse"
            ("spend", "last_h_spend", "top10_share", 0.60, -0.03, -0.05, -0.01),  # worse
            ("spend", "last_h_spend", "r2", 0.40, 0.05, 0.01, 0.09),  # better
            ("next_purchase", "recency", "c_index", 0.79, -0.01, -0.02, -0.004),  # worse
        ],
        columns=["task", "system", "metric", "value", "diff_champion_minus_system", "diff_ci_low", "diff_ci_high"],
    )
    worse = significantly_worse(rows)
    assert set(zip(worse.task, worse.system, worse.metric, strict=True)) == {
        ("purchase", "bgnbd", "roc_auc"), ("purchase", "bgnbd", "brier"), ("spend", "last_h_spend", "top10_share"),
        ("next_purchase", "recency", "c_index")}
    # without the four losing comparisons nothing is left to flag
    assert significantly_worse(rows[(rows.system != "bgnbd") & ~rows.metric.isin(["top10_share", "c_index"])]).empty


def test_backtest_rows_describe_one_time_buyers_on_their_own():
    import pandas as pd

    from customer_assets.evaluation.logic import metric_rows

    pred = pd.DataFrame({
        "one_time_buyer": [True, True, False, True],
        "label_purchase": [1.0, 0.0, 1.0, 0.0], "label_spend": [10.0, 0.0, 30.0, 0.0], "label_days": [5.0, np.nan, 9.0, np.nan],
        "purchase:champion": [0.3, 0.1, 0.9, 0.2], "purchase:bgnbd": [0.5, 0.5, 0.5, 0.5], "purchase:seed_xgboost": [0.2, 0.4, 0.6, 0.1],
    })
    rows = pd.DataFrame(metric_rows(pred, 90, n_boot=5))
    one = rows[rows.task == "purchase_one_time_buyers"].set_index(["system", "metric"])
    assert set(one.index.get_level_values(0)) == {"champion", "bgnbd", "seed_xgboost"}
    assert set(one.n_customers) == {3}
    # the three one-time buyers: labels 1, 0, 0; the champion's scores 0.3, 0.1, 0.2
    assert one.loc[("champion", "mean_predicted"), "value"] == pytest.approx(0.2)
    assert one.loc[("champion", "observed_rate"), "value"] == pytest.approx(1 / 3)
    assert one.loc[("champion", "brier"), "value"] == pytest.approx((0.7 ** 2 + 0.1 ** 2 + 0.2 ** 2) / 3)
    assert one.loc[("champion", "roc_auc"), "value"] == 1.0  # the buyer has the highest score
    assert one.loc[("seed_xgboost", "roc_auc"), "value"] == 0.5  # the buyer (0.2) ranks between 0.4 and 0.1
    assert one.loc[("bgnbd", "brier"), "value"] == pytest.approx(0.25)
    # they carry no interval, so the backtest's check never flags them
    assert one.diff_ci_low.isna().all()


def test_backtest_rows_describe_the_customers_inside_and_outside_the_training_ranges_apart():
    import pandas as pd

    from customer_assets.evaluation.logic import metric_rows

    nan = np.nan
    pred = pd.DataFrame({
        "one_time_buyer": False, "outside_training_range": [False, False, True, True, True],
        "label_purchase": [1.0, 0.0, 1.0, 0.0, 0.0], "label_spend": [20.0, 0.0, 40.0, 0.0, 0.0],
        "label_days": [5.0, nan, 9.0, nan, nan],
        "purchase:champion": [0.6, 0.2, 0.5, 0.5, 0.2], "purchase:bgnbd": [0.5, 0.1, 0.4, 0.3, 0.1],
        "spend:champion": [10.0, 2.0, 60.0, 5.0, 5.0], "spend:bgnbd_gamma_gamma": [15.0, 1.0, 30.0, 4.0, 2.0],
    })
    rows = pd.DataFrame(metric_rows(pred, 90, n_boot=5)).set_index(["task", "system", "metric"])
    inside, outside = rows.xs("purchase_inside_training_range"), rows.xs("purchase_outside_training_range")
    assert set(inside.n_customers) == {2} and set(outside.n_customers) == {3}
    # outside: labels 1, 0, 0; the champion's 0.5, 0.5, 0.2; BG/NBD's 0.4, 0.3, 0.1
    assert outside.loc[("champion", "mean_predicted"), "value"] == pytest.approx(0.4)
    assert outside.loc[("champion", "observed_rate"), "value"] == pytest.approx(1 / 3)
    assert outside.loc[("champion", "brier"), "value"] == pytest.approx((0.25 + 0.25 + 0.04) / 3)
    assert outside.loc[("champion", "roc_auc"), "value"] == 0.75  # the buyer ties one non-buyer and beats the other
    assert outside.loc[("bgnbd", "roc_auc"), "value"] == 1.0
    assert inside.loc[("bgnbd", "brier"), "value"] == pytest.approx((0.25 + 0.01) / 2)
    # spend outside: actual 40, 0, 0 (total 40); the champion 70 in all (+75%), BG/NBD 36 (-10%)
    spend_out = rows.xs("spend_outside_training_range")
    assert spend_out.loc[("champion", "aggregate_error"), "value"] == pytest.approx(0.75)
    assert spend_out.loc[("bgnbd_gamma_gamma", "aggregate_error"), "value"] == pytest.approx(-0.1)
    assert spend_out.loc[("champion", "mean_actual"), "value"] == pytest.approx(40 / 3)
    # R² of the champion inside: actual 20, 0 (mean 10, total sum of squares 200), predicted 10, 2: 1 - (100 + 4) / 200
    assert rows.xs("spend_inside_training_range").loc[("champion", "r2"), "value"] == pytest.approx(0.48)
    # no interval, so the backtest's check never flags them; a group without customers has no rows
    assert rows.loc[rows.index.get_level_values(0).str.endswith("_training_range"), "diff_ci_low"].isna().all()
    everyone_inside = pd.DataFrame(metric_rows(pred.assign(outside_training_range=False), 90, n_boot=5))
    assert set(everyone_inside.task) >= {"purchase_inside_training_range"}
    assert not everyone_inside.task.str.contains("outside").any()
    assert not pd.DataFrame(metric_rows(pred.drop(columns="outside_training_range"), 90, n_boot=5)).task.str.contains(
        "training_range").any()


def test_bootstrap_of_many_rows_resamples_fewer_and_rescales_to_the_full_interval():
    """Above max_rows each resample draws max_rows rows; the sqrt(m / n) rescaling gives the full bootstrap's interval
    (without it, this one would be sqrt(10) = 3.2 times wider)."""
    rng = np.random.default_rng(5)
    n = 100_000
    y = (rng.random(n) < 0.15).astype(float)
    a, b = np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1), np.clip(y * 0.28 + rng.random(n) * 0.7, 0, 1)
    for metric in (M.brier, M.r2):
        d, lo, hi = M.paired_bootstrap(metric, y, a, b, 200, max_rows=n)
        d_m, lo_m, hi_m = M.paired_bootstrap(metric, y, a, b, 200, max_rows=n // 10)
        assert d_m == d and lo_m < d < hi_m
        assert (hi_m - lo_m) == pytest.approx(hi - lo, rel=0.25), metric.__name__



def test_segment_table_by_hand():
    """Two segments. A: 3 customers, bought 1 0 1 with p .9 .2 .6 (AUC 1), forecast 30 10 20 against 40 0 10
    (60 against 50: +20%). B: 2 customers, neither bought (AUC undefined), forecast 5 5 against 0 0 (error undefined).
    All actual spend is A's."""
    rows = M.segment_table(["A", "B", "A", "A", "B"], [40, 0, 0, 10, 0], [30, 5, 10, 20, 5], [1, 0, 0, 1, 0],
                           [0.9, 0.3, 0.2, 0.6, 0.1])
    assert [r["segment"] for r in rows] == ["A", "B"]  # by forecast, largest first
    a, b = rows
    assert (a["customers"], a["predicted_spend"], a["actual_spend"]) == (3, 60.0, 50.0)
    assert a["aggregate_error"] == pytest.approx(0.2) and a["share_of_actual"] == 1.0 and a["roc_auc"] == 1.0
    assert a["mean_purchase_probability"] == pytest.approx((0.9 + 0.2 + 0.6) / 3)
    assert a["observed_purchase_rate"] == pytest.approx(2 / 3)
    assert (b["customers"], b["predicted_spend"], b["actual_spend"], b["share_of_actual"]) == (2, 10.0, 0.0, 0.0)
    assert np.isnan(b["aggregate_error"]) and np.isnan(b["roc_auc"]) and b["observed_purchase_rate"] == 0.0
