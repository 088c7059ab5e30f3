"""The feature profile kept with each model and the comparison behind the check features_like_training, on columns
small enough to work out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from customer_assets.models import drift as D


def test_profile_of_ten_distinct_values_has_their_deciles_and_a_tenth_in_each_bin():
    profile = D.feature_profile(pd.DataFrame({"x": range(1, 11), "other": 0}), ["x", "not_there"])
    assert list(profile) == ["x"]  # a feature the frame lacks is left out
    # the q-th decile of 1..10 (a value that occurs) is 10q: bins (-inf, 1], (1, 2], ..., (8, 9], (9, inf), missing
    assert profile["x"] == {"n": 10, "edges": [1, 2, 3, 4, 5, 6, 7, 8, 9], "shares": [0.1] * 10 + [0.0],
                            "min": 1.0, "max": 10.0}


def test_profile_of_tied_and_missing_values():
    # six zeros, then 1, 2, 3, 4, and two missing: the deciles of the ten values are 0 (six times), 1, 2 and 3
    x = [0] * 6 + [1, 2, 3, 4] + [None, None]
    profile = D.feature_profile(pd.DataFrame({"x": x}), ["x"])["x"]
    assert profile["edges"] == [0, 1, 2, 3]
    assert profile["shares"] == pytest.approx([6 / 12, 1 / 12, 1 / 12, 1 / 12, 1 / 12, 2 / 12])
    assert (profile["n"], profile["min"], profile["max"]) == (12, 0.0, 4.0)
    assert D.feature_profile(pd.DataFrame({"x": [None, None]}), ["x"])["x"] == {
        "n": 2, "edges": [], "shares": [0.0, 1.0], "min": None, "max": None}


def test_the_range_spans_every_row_the_model_was_fitted_on_and_the_bins_stay_those_at_t():
    # fitted on two stacked cutoffs: x at t is 1..10, at the earlier cutoff 0 and 15 occur too (a 30-day window's spend)
    at_t = pd.DataFrame({"x": range(1, 11), "flag": True})
    fitted_on = pd.concat([at_t, pd.DataFrame({"x": [0.0, 15.0, None], "flag": False})], ignore_index=True)
    ranges = D.value_ranges(fitted_on)
    assert ranges == {"x": (0.0, 15.0, 12)}  # booleans are not ranged; the missing value is not counted
    profile = D.feature_profile(at_t, ["x"], ranges)
    assert profile["x"] == {"n": 10, "edges": [1, 2, 3, 4, 5, 6, 7, 8, 9], "shares": [0.1] * 10 + [0.0],
                       "min": 0.0, "max": 15.0, "range_n": 12}
    # 11..14 were seen by the model at the earlier cutoff: inside the range; the PSI is that of the bins at t
    now = pd.DataFrame({"x": [11, 12, 13, 14, 16]})
    row = D.compare(profile, now).iloc[0]
    assert (row["share_below_min"], row["share_above_max"]) == (0.0, 0.2)  # 16 only
    assert row["psi"] == pytest.approx(9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + 0.9 * math.log(10))
    assert D.outside_features([profile], now).tolist() == [pd.NA] * 4 + ["x"]
    # against the customers at t alone, every one of them would be named
    assert D.outside_features([D.feature_profile(at_t, ["x"])], now).tolist() == ["x"] * 5
    # a feature the fitted rows lack keeps the range at t; counted over the values at t
    assert D.feature_profile(at_t, ["x"], {})["x"]["range_n"] == 10


def test_the_same_customers_have_a_psi_of_0_and_pass():
    frame = pd.DataFrame({"x": range(1, 11), "y": [0] * 6 + [1, 2, 3, 4]})
    table = D.compare(D.feature_profile(frame, ["x", "y"]), frame)
    assert table["psi"].tolist() == [0.0, 0.0]
    assert (table[["share_below_min", "share_above_max"]] == 0).all().all()
    assert D.drifted(table).empty


def test_psi_and_the_range_worked_out_by_hand():
    profile = D.feature_profile(pd.DataFrame({"x": range(1, 11)}), ["x"])
    # 2..11: the bin (-inf, 1] empties (0.1 -> floored at 1e-4) and (9, inf) holds 10 and 11 (0.1 -> 0.2)
    shifted = D.compare(profile, pd.DataFrame({"x": range(2, 12)})).iloc[0]
    assert shifted["psi"] == pytest.approx((1e-4 - 0.1) * math.log(1e-4 / 0.1) + (0.2 - 0.1) * math.log(2))
    assert shifted["psi"] == pytest.approx(0.7593994, abs=1e-7)
    assert (shifted["share_below_min"], shifted["share_above_max"]) == (0.0, 0.1)  # 11 is above 10
    # everyone above the largest value: all of them in the top bin, the other nine bins floored
    older = D.compare(profile, pd.DataFrame({"x": [11] * 5})).iloc[0]
    assert older["psi"] == pytest.approx(0.9 * math.log(10) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1))
    assert older["psi"] == pytest.approx(8.2830893, abs=1e-7)
    assert older["share_above_max"] == 1.0
    # a value now missing for a fifth of the customers counts in the missing bin: 0 -> 0.2
    gaps = D.compare(profile, pd.DataFrame({"x": [1, 2, 3, 4, 5, 6, 7, 8, None, None]})).iloc[0]
    expected = 2 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    assert gaps["psi"] == pytest.approx(expected)
    assert (gaps["missing_share_then"], gaps["missing_share_now"]) == (0.0, 0.2)


def test_drifted_keeps_the_rows_past_either_limit_largest_psi_first():
    table = pd.DataFrame({
        "model": ["churn", "churn", "spend", "spend", "spend"],
        "model_partition": "2020-01-01",
        "feature": ["a", "b", "c", "d", "e"],
        "psi": [0.30, 0.10, 0.20, 0.26, 0.50],
        "psi_limit": [0.25, 0.25, 0.25, 0.25, 0.60],  # e: few customers, so chance alone gives up to 0.60
        "share_below_min": [0.0, 0.07, 0.0, 0.0, 0.0],
        "share_above_max": [0.0, 0.04, 0.05, 0.0, 0.0],  # b: 11% outside the range; c: 5%
        "outside_limit": 0.10,
        "missing_share_then": 0.0, "missing_share_now": 0.0,
    })
    assert D.drifted(table)["feature"].tolist() == ["a", "d", "b"]
    assert D.drifted(table.assign(psi_limit=0.5, outside_limit=0.2)).empty


def test_the_outside_limit_is_what_chance_gives_a_range_of_so_many_values():
    # the population's mass outside the range of n values is Beta(2, n - 1): P(mass > x) =
    # (1 - x)^(n - 1) * (1 + (n - 1) x). At n = 50 and x = 0.1702: 0.8298^49 * (1 + 49 * 0.1702) = 0.001
    assert D.outside_limit(50) == pytest.approx(0.1702, abs=1e-4)
    assert (1 - 0.1702) ** 49 * (1 + 49 * 0.1702) == pytest.approx(0.001, abs=2e-5)
    assert D.outside_limit(20_000) == 0.10  # 0.05%: the 10% rule is larger
    assert D.outside_limit(1) == 1.0
    # of 50 values scored, the count outside is beta-binomial: wider than the Beta. Its 99.9th percentile is 11 of 50
    # (more than 11 outside: 0.09%; more than 10: 0.19%; checked by brute force below)
    assert D.outside_limit(50, n_now=50) == 11 / 50
    assert D.outside_limit(50, n_now=50, n_rows=55) == 11 / 55  # the share is of every scored row, missing included
    assert D.outside_limit(50, n_now=100_000) == pytest.approx(D.outside_limit(50), abs=1e-3)  # many scored: the Beta


def test_the_limits_are_right_for_two_samples_of_50():
    """100,000 pairs of 50 uniform values profiled and 50 scored, by brute force: the deciles of the first (its 5th,
    10th, ..., 45th values) and the PSI of the second in those bins; the share of the second outside the first's range.
    The simulated PSI limit is within 5% of their 99.9th percentile, and each limit is passed about one time in 1,000,
    where the chi-square limit (1.115) and the Beta limit (0.1702) are passed far more often."""
    rng = np.random.default_rng(3)
    then = np.sort(rng.random((100_000, 50)), axis=1)
    now = rng.random((100_000, 50))
    bins = (now[:, :, None] > then[:, 4:45:5][:, None, :]).sum(axis=2)
    shares = np.maximum(np.stack([(bins == k).mean(axis=1) for k in range(10)], axis=1), 1e-4)
    psi = ((shares - 0.1) * np.log(shares / 0.1)).sum(axis=1)
    tenths = [0.1] * 10 + [0.0]
    limit = D.psi_limit(tenths, tenths, 50, 50)
    assert limit == pytest.approx(np.quantile(psi, 0.999), rel=0.05)
    assert np.mean(psi > limit) < 0.002 and np.mean(psi > 27.877 / 25) > 0.05
    outside = ((now < then[:, :1]) | (now > then[:, -1:])).mean(axis=1)
    assert np.mean(outside > D.outside_limit(50, n_now=50)) < 0.002 and np.mean(outside > D.outside_limit(50)) > 0.005


def test_the_psi_limit_is_what_chance_gives_samples_of_these_sizes_and_at_least_the_rule_of_thumb():
    tenths = [0.1] * 10 + [0.0]  # ten bins with customers, none missing: 9 degrees of freedom
    # many customers: the chi-square table's 99.9th percentile with 9 degrees of freedom is 27.877, n_eff = 1,000
    # (2,000 on each side), so 0.028, below the rule of thumb unless a lower limit is set
    assert D.psi_limit(tenths, tenths, 2000, 2000) == 0.25
    assert D.psi_limit(tenths, tenths, 2000, 2000, psi_warn=0.01) == pytest.approx(27.877 / 1000, rel=1e-4)
    # a bin empty on both sides does not count: 5 bins, 4 degrees of freedom, 99.9th percentile 18.467
    fifths = [0.2] * 5 + [0.0] * 6
    assert D.psi_limit(fifths, fifths, 5000, 5000, psi_warn=0.001) == pytest.approx(18.467 / 2500, rel=1e-4)
    assert D.psi_limit([1.0, 0.0], [1.0, 0.0], 20, 20) == 0.25  # one bin: nothing to compare
    # fewer: simulated, above the chi-square's (which is too low there), the same every time for the same sizes
    assert D.psi_limit(tenths, tenths, 50, 5000) > 0.25
    assert D.psi_limit(tenths, tenths, 50, 50) > 27.877 / 25
    assert D.simulated_psi_quantile(tenths, 50, 50) == D.simulated_psi_quantile(tenths, 50, 50)


def test_samples_of_one_population_pass_with_few_customers_where_the_plain_rule_of_thumb_warns():
    rng = np.random.default_rng(7)
    plain = flagged = 0
    for _ in range(300):
        profile = D.feature_profile(pd.DataFrame({"x": rng.lognormal(0, 1, 50)}), ["x"])
        table = D.compare(profile, pd.DataFrame({"x": rng.lognormal(0, 1, 5000)}))
        plain += int(table["psi"].iloc[0] > D.PSI_WARN)
        flagged += len(D.drifted(table))
    # 50 customers profiled, 5,000 scored: chance alone takes the PSI above 0.25 often, above the limit never here
    assert plain > 30 and flagged == 0
    # while a real shift of the same sizes is flagged: every scored customer above the profiled range
    profile = D.feature_profile(pd.DataFrame({"x": rng.lognormal(0, 1, 50)}), ["x"])
    assert len(D.drifted(D.compare(profile, pd.DataFrame({"x": 100 + rng.lognormal(0, 1, 5000)})))) == 1


def test_compare_models_lists_the_models_without_a_profile_and_the_summary_names_each_feature_once():
    then = pd.DataFrame({"tenure": range(1, 11), "spend": [10.0] * 10})
    now = pd.DataFrame({"tenure": [11] * 5 + [12] * 5, "spend": [10.0] * 10})
    profile = D.feature_profile(then, ["tenure", "spend"])
    table, unprofiled = D.compare_models({"churn": (profile, "2020-01-01"), "next_purchase": (profile, "2020-01-01"),
                                          "spend": ({}, "2019-12-01")}, now)
    assert unprofiled == ["spend"]
    assert table[["model", "feature"]].values.tolist() == [["churn", "tenure"], ["churn", "spend"],
                                                           ["next_purchase", "tenure"], ["next_purchase", "spend"]]
    past = D.drifted(table)
    assert past["feature"].tolist() == ["tenure", "tenure"]
    assert D.summary(past) == ["tenure (churn, next_purchase): PSI 8.28, 100.0% above the training range (cutoffs to 2020-01-01)"]
    # no profile at all: an empty table with the columns, nothing past the limits
    empty, unprofiled = D.compare_models({"churn": ({}, "2020-01-01")}, now)
    assert empty.empty and list(empty.columns)[:3] == ["model", "model_partition", "feature"] and unprofiled == ["churn"]
    assert D.drifted(empty).empty


def test_summary_names_the_three_largest_and_counts_the_rest():
    past = pd.DataFrame({"model": "churn", "model_partition": "2020-01-01", "feature": list("abcde"),
                         "psi": [0.3, 0.9, 0.5, 0.4, 0.6], "share_below_min": [0.0, 0.002, 0.0, 0.0, 0.0009],
                         "share_above_max": [0.0, 0.25, 0.0, 0.0, 0.0]})
    # shares outside the range are named from 0.1% (e's 0.09% is only in the metadata's table)
    assert D.summary(past) == ["b (churn): PSI 0.90, 25.0% above and 0.2% below the training range (cutoffs to "
                               "2020-01-01)", "e (churn): PSI 0.60", "c (churn): PSI 0.50", "and 2 more"]


def test_bin_shares_put_each_value_in_the_bin_whose_upper_edge_holds_it():
    shares = D.bin_shares(np.array([0.5, 1.0, 1.5, 2.0, 2.5, np.nan, np.inf, -np.inf]), [1.0, 2.0])
    # (-inf, 1]: 0.5, 1.0; (1, 2]: 1.5, 2.0; (2, inf): 2.5; not finite: nan, inf, -inf
    assert shares.tolist() == [2 / 8, 2 / 8, 1 / 8, 3 / 8]
    assert D.bin_shares(np.array([]), [1.0]).tolist() == [0.0, 0.0, 0.0]


def test_drift_limits_come_from_the_environment_and_a_bad_value_says_what_to_set(monkeypatch):
    from customer_assets.settings import drift_limits

    monkeypatch.delenv("CUSTOMER_ASSETS_DRIFT_PSI", raising=False)
    monkeypatch.delenv("CUSTOMER_ASSETS_DRIFT_OUTSIDE", raising=False)
    assert drift_limits() == (0.25, 0.10)
    monkeypatch.setenv("CUSTOMER_ASSETS_DRIFT_PSI", "0.5")
    monkeypatch.setenv("CUSTOMER_ASSETS_DRIFT_OUTSIDE", "1")
    assert drift_limits() == (0.5, 1.0)
    for env, raw, says in (("CUSTOMER_ASSETS_DRIFT_PSI", "high", "is not a number: set a PSI above 0"),
                           ("CUSTOMER_ASSETS_DRIFT_PSI", "0", "is out of range: set a PSI above 0"),
                           ("CUSTOMER_ASSETS_DRIFT_OUTSIDE", "1.5", "is out of range: set a share above 0 and at most 1")):
        monkeypatch.setenv(env, raw)
        with pytest.raises(ValueError, match=f"{env}='{raw}' {says}"):
            drift_limits()
        monkeypatch.setenv(env, "0.5")


def test_the_limits_given_are_the_ones_compared_with():
    # 0..9999 profiled, 1000..10999 scored: the first decile bin empties and the top one doubles, as for 1..10
    # against 2..11 above (PSI 0.7594), and 10% are above the largest value. With 10,000 on each side chance's limits
    # are far lower (27.877 / 5000 = 0.0056 for the PSI; about 0.1% for the range), so the limits given decide
    profile = D.feature_profile(pd.DataFrame({"x": np.arange(10_000)}), ["x"])
    now = pd.DataFrame({"x": np.arange(1_000, 11_000)})
    row = D.compare(profile, now).iloc[0]
    assert (row["psi"], row["share_above_max"]) == (pytest.approx(0.7593994, abs=1e-6), 0.1)

    def flagged(psi_warn, out_of_range_warn):
        table, _ = D.compare_models({"churn": (profile, "2020-01-01")}, now, psi_warn, out_of_range_warn)
        assert (table["psi_limit"].iloc[0], table["outside_limit"].iloc[0]) == (psi_warn, out_of_range_warn)
        return not D.drifted(table).empty

    assert flagged(0.7, 0.2) and not flagged(0.8, 0.2) and flagged(0.8, 0.05)


def test_outside_features_names_per_customer_the_inputs_outside_the_narrowest_range():
    a = D.feature_profile(pd.DataFrame({"x": [1, 2, 3, 4], "y": [10, 20, 30, 40]}), ["x", "y"])
    b = D.feature_profile(pd.DataFrame({"x": [0, 5]}), ["x"])  # a wider range of x: a's [1, 4] is the one that counts
    frame = pd.DataFrame({"x": [2, 0, 5, None, 6], "y": [50, 20, 5, 20, 30], "z": 1})
    # 50 > 40; 0 < 1; 5 > 4 and 5 < 10; no x and y inside; 6 > 4
    assert D.outside_features([a, b], frame).tolist() == ["y", "x", "x, y", pd.NA, "x"]
    assert D.outside_features([{}], frame).isna().all()  # no profile: nothing to say


def test_outside_features_gives_the_same_names_with_more_features_than_one_integer_holds():
    # 70 features (patterns past 62 features take the slower path): row i is above the range of feature i and of
    # feature 0; row 70 is inside every range
    n = 70
    profile = D.feature_profile(pd.DataFrame({f"f{j}": [0.0, 1.0] for j in range(n)}), [f"f{j}" for j in range(n)])
    values = np.full((n + 1, n), 0.5)
    for i in range(n):
        values[i, i] = values[i, 0] = 2.0
    frame = pd.DataFrame(values, columns=[f"f{j}" for j in range(n)])
    names = D.outside_features([profile], frame).tolist()
    assert names == ["f0"] + [f"f0, f{i}" for i in range(1, n)] + [pd.NA]
    # the same rows against the first 40 features only (the fast path) name the same features there
    small = D.outside_features([{k: profile[k] for k in list(profile)[:40]}], frame[[f"f{j}" for j in range(40)]])
    assert small.tolist() == ["f0"] + [f"f0, f{i}" for i in range(1, 40)] + ["f0"] * (n - 40) + [pd.NA]
