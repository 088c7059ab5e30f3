"""The feature SQL that benchmarks/headroom.py adds to its candidates, on the hand-built ledger of test_features; that
its in-period LTV bound is out of fold;
and how benchmarks/peers.py picks the library row it compares the champion with.

Cutoff c = 2020-03-31; the 30-day bins are (c - 30 (i + 1), c - 30 i], so bin 0 is (03-01, 03-31], bin 1
(01-31, 03-01], bin 2 (01-01, 01-31], bin 4 (2019-11-02, 2019-12-02]. Purchases only (returns are not counted).

Customer A: 01-05 10 + 5 (one purchase day) -> bin 2: 1 day, 15; 02-10 20 -> bin 1: 1 day, 20;
  03-20 30 -> bin 0: 1 day, 30; the 03-25 return and the purchases after c are not counted.
Customer B: 03-01 100 -> c - 30 is not in bin 0 -> bin 1: 1 day, 100.
Customer D: 2019-12-01 60 -> c - 121 -> bin 4: 1 day, 60.
"""


import duckdb
import pytest

from customer_assets_tests.conftest import load_benchmark
from customer_assets_tests.test_features import C, built  # noqa: F401  (the fixture)


def test_history_bins_by_hand(built):  # noqa: F811
    hd = load_benchmark("headroom")
    with duckdb.connect(built[0], read_only=True) as conn:
        bins = conn.execute(hd.BIN_SQL, [C]).df().set_index("customer_id")
    expected = {
        "A": {0: (1, 30.0), 1: (1, 20.0), 2: (1, 15.0)},
        "B": {1: (1, 100.0)},
        "D": {4: (1, 60.0)},
    }
    assert sorted(bins.index) == sorted(expected)
    for customer, filled in expected.items():
        for i in range(hd.HISTORY_BINS):
            days, spend = filled.get(i, (0, 0.0))
            assert bins.loc[customer, f"bin_days_{i}"] == days, (customer, i)
            assert bins.loc[customer, f"bin_spend_{i}"] == spend, (customer, i)
    assert list(bins.columns) == hd.BIN_FEATURES


def test_peers_compares_the_champion_with_the_best_library_row_only():
    peers = load_benchmark("peers")
    rows = {
        peers.CHAMPION: {"roc_auc": 0.80, "brier": 0.10, "aggregate_error": 0.06, "r2": 0.40},
        # the project's own BG/NBD is not a library row, however good
        "customer-assets BG/NBD + Gamma-Gamma": {"roc_auc": 0.99, "brier": 0.01, "aggregate_error": 0.0, "r2": 0.9},
        # no P(purchase): ranked by expected purchase days only, and that ROC-AUC counts
        "lifetimes Pareto/NBD + Gamma-Gamma": {"roc_auc_days": 0.82, "aggregate_error": -0.05, "r2": 0.45},
        "PyMC-Marketing BG/NBD + Gamma-Gamma (map)": {"roc_auc": 0.81, "roc_auc_days": 0.79, "brier": 0.12,
                                                      "aggregate_error": 0.07, "r2": 0.44},
    }
    # (value, row, the score it came from): here the expected purchase days, not a P(purchase)
    assert peers.best_library(rows, "roc_auc", 1) == (0.82, "lifetimes Pareto/NBD + Gamma-Gamma", "roc_auc_days")
    assert peers.best_library(rows, "brier", -1) == (0.12, "PyMC-Marketing BG/NBD + Gamma-Gamma (map)", "brier")
    # aggregate error: the one closest to zero, whatever its sign
    assert peers.best_library(rows, "aggregate_error", 0) == (-0.05, "lifetimes Pareto/NBD + Gamma-Gamma", "aggregate_error")
    assert peers.best_library(rows, "r2", 1) == (0.45, "lifetimes Pareto/NBD + Gamma-Gamma", "r2")
    assert peers.best_library({peers.CHAMPION: rows[peers.CHAMPION]}, "r2", 1) is None


def test_peers_names_a_library_that_is_missing_and_refuses_an_unknown_one(capsys):
    peers = load_benchmark("peers")
    assert peers.installed(["no-such-clv-library"]) == []
    assert "no-such-clv-library is not installed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        peers.main(["--libraries", "lifetimes,buytilyoudie", "--skip-ingest"])
    assert stop.value.code == 2
    assert "unknown ['buytilyoudie']" in capsys.readouterr().err


def test_ltv_in_period_bound_predicts_each_customer_without_its_own_label(monkeypatch):
    """The in-period LTV bound is out of fold: a customer's prediction comes from boosters that never saw its label.

    So changing one customer's label changes nothing in that customer's own prediction, while it does change the
    predictions of customers in other folds (whose boosters trained on it). Built on random features with a label
    that depends on them, so the boosters have something to learn.
    """
    import numpy as np
    import pandas as pd

    hd = load_benchmark("headroom")
    features = hd.F.FEATURE_COLUMNS
    monkeypatch.setattr(hd, "LTV_IN_PERIOD_MODELS", [("xgboost Tweedie 1.5", "xgboost", None, "plain")])
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.gamma(2.0, 10.0, (600, len(features))), columns=features)
    frame["label_spend"] = rng.poisson(frame["frequency"] / 5) * frame["monetary_mean"]
    published = frame["monetary_mean"].to_numpy()
    (name, before), = hd.ltv_in_period(frame, published, 365)
    assert name == "xgboost Tweedie 1.5, the pipeline's features"
    assert len(before) == len(frame) and (before >= 0).all()

    changed = frame.copy()
    changed.loc[7, "label_spend"] = 50_000.0
    (_, after), = hd.ltv_in_period(changed, published, 365)
    assert after[7] == before[7]
    assert (after != before).sum() > 0  # the other folds' boosters did see it


def test_a_booster_boosted_from_bgnbd_keeps_its_prediction_where_it_is_right_and_corrects_it_where_it_is_not():
    """headroom.py's ``margin`` candidates start boosting from BG/NBD's own prediction (XGBoost's base_margin).

    Where the label is BG/NBD + Gamma-Gamma's expected spend itself (floored at MARGIN_FLOOR, as the margin is),
    Tweedie's gradient is zero at the start, so no tree moves a prediction: every one equals the expected spend. Where
    the label is twice the expected spend for the customers with frequency 20 (the others have 1), the trees learn that factor for them
    and leave the others where they were. A booster that ignored the margin at prediction would start from its own
    constant instead and fail both.
    """
    import numpy as np
    import pandas as pd

    hd = load_benchmark("headroom")
    features = hd.F.FEATURE_COLUMNS
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.gamma(2.0, 10.0, (2000, len(features))), columns=features)
    frame["frequency"] = rng.choice([1.0, 20.0], len(frame))  # a clean split for the trees to find
    frame["bg_expected_value"] = rng.uniform(0.2, 200.0, len(frame))
    expected = np.maximum(frame["bg_expected_value"].to_numpy(), hd.MARGIN_FLOOR)
    spend_fn = hd.L.task_spec("spend", 90)[0]

    frame["label_spend"] = expected
    train, stop, test = frame.iloc[:1000], frame.iloc[1000:1500], frame.iloc[1500:]
    at_stop, at_test = hd.boosted_from_bgnbd("tweedie", features, spend_fn, train, stop, frame.iloc[:1500], test)
    assert np.allclose(at_stop, expected[1000:1500], rtol=1e-5)
    assert np.allclose(at_test, expected[1500:], rtol=1e-5)

    doubled = (frame["frequency"] > 10).to_numpy()
    frame["label_spend"] = np.where(doubled, 2 * expected, expected)
    train, stop, test = frame.iloc[:1000], frame.iloc[1000:1500], frame.iloc[1500:]
    _, at_test = hd.boosted_from_bgnbd("tweedie", features, spend_fn, train, stop, frame.iloc[:1500], test)
    factor = at_test / expected[1500:]
    # the other inputs are noise, and rows and columns are subsampled, so single trees wander a little
    assert np.allclose(factor[doubled[1500:]], 2.0, rtol=0.1) and abs(np.median(factor[doubled[1500:]]) - 2.0) < 0.02
    assert np.allclose(factor[~doubled[1500:]], 1.0, rtol=0.1) and abs(np.median(factor[~doubled[1500:]]) - 1.0) < 0.01


def test_boosted_table_blends_at_the_pipelines_weight_that_validation_prefers():
    """Validation: the model predicts 0 for everyone and BG/NBD is exactly right, so the largest of the pipeline's
    weights on BG/NBD wins: 1.0, BG/NBD alone. Without it, 0.75 wins, and at test the model's -5 is clipped to 0
    first: 0.25 * [0, 4, 8] + 0.75 * [4, 4, 4] = [3, 4, 5]."""
    import numpy as np

    hd = load_benchmark("headroom")
    yv, bv = np.array([10.0, 0.0, 20.0]), np.array([10.0, 0.0, 20.0])
    pair, bt = (np.zeros(3), np.array([-5.0, 4.0, 8.0])), np.full(3, 4.0)
    w, at_valid, at_test = hd.blended_on_validation(yv, pair, bv, bt)
    assert w == 1.0 and np.allclose(at_valid, bv) and np.allclose(at_test, bt)
    w, at_valid, at_test = hd.blended_on_validation(yv, pair, bv, bt, (0.0, 0.25, 0.5, 0.75))
    assert w == 0.75
    assert np.allclose(at_valid, [7.5, 0.0, 15.0])
    assert np.allclose(at_test, [3.0, 4.0, 5.0])


def test_peers_summary_counts_a_win_as_significant_only_when_its_interval_is_on_the_champions_side(capsys):
    """Ten customers, five buyers. The champion ranks them perfectly and predicts the total spend exactly; the library
    ranks them backwards on P(purchase) (ROC-AUC 0) and doubles every spend (aggregate error +100%), but its expected
    purchase days rank them perfectly too (a tie: ROC-AUC 1 against 1, difference 0, not significant)."""
    import numpy as np

    peers = load_benchmark("peers")
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    spend = np.array([50, 40, 30, 20, 10, 0, 0, 0, 0, 0], dtype=float)
    good = np.linspace(0.9, 0.1, 10)  # higher for every buyer than for any non-buyer
    lib = "lifetimes BG/NBD + Gamma-Gamma"
    M = peers.M
    rows = {
        peers.CHAMPION: {"roc_auc": 1.0, "aggregate_error": 0.0, peers.PREDICTIONS: (None, good, spend)},
        lib: {"roc_auc": 0.0, "roc_auc_days": 1.0, "aggregate_error": 1.0,
              peers.PREDICTIONS: (good * 3, 1 - good, spend * 2)},
        peers.LABELS: {"purchase": y, "spend": spend},
    }
    assert M.roc_auc(y, 1 - good) == 0.0 and M.aggregate_error(spend, spend * 2) == 1.0
    peers.summary({"2020-01-01": rows})
    lines = {line.split(" | ")[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    # ROC-AUC: the library's better score (the days) is the one compared; a tie is a win for neither
    assert "1.0000 vs 1.0000 (lifetimes BG/NBD) [+0.0000: +0.0000, +0.0000]" in lines["| ROC-AUC"]
    assert lines["| ROC-AUC"].endswith("| 0/1 | 0/1 |")
    # aggregate error: |0%| - |100%| = -100 points on every resample, so significant
    assert "+0.0% vs +100.0% (lifetimes BG/NBD) [-100.0%: -100.0%, -100.0%]" in lines["| aggregate error"]
    assert lines["| aggregate error"].endswith("| 1/1 | 1/1 |")
    # no figure on either side: shown as a dash, counted nowhere
    assert lines["| spend R²"].endswith("| – | 0/0 | 0/0 |")


def test_feature_drift_benchmark_finds_no_drift_between_two_samples_of_one_population_and_finds_a_shift(capsys):
    fd = load_benchmark("feature_drift")
    assert fd.main(["--rows", "4000", "--profile-rows", "2000", "--shift", "0"]) == 0
    out = capsys.readouterr().out
    assert "comparisons: 116" in out  # 29 features x 4 models
    assert "comparisons past the limits: 0" in out
    fd.main(["--rows", "4000", "--profile-rows", "2000", "--shift", "1"])
    assert "comparisons past the limits: 116" in capsys.readouterr().out


def test_feature_drift_benchmark_prints_what_chance_gives_at_each_pair_of_sizes(capsys):
    fd = load_benchmark("feature_drift")
    assert fd.main(["--chance", "--draws", "100"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [tuple(r.split(" | ")[:2]) for r in rows] == [(f"| {a:,}", f"{b:,}") for a, b in fd.CHANCE_SIZES]
    # 1,000 against 1,000 from one population: no draw above 0.25, and the limits are the rules of thumb themselves
    assert rows[-1].rstrip(" |").split(" | ")[4:11] == ["0.0%", "0.250", "0.00%", "0.00%", "0.100", "0.00%", "0.00%"]
    # 50 against 50: the simulated PSI limit and the beta-binomial range limit (11 of 50)
    first = rows[0].rstrip(" |").split(" | ")
    assert float(first[5]) > 2 and first[8] == "0.220"



def test_currency_benchmark_scales_only_money_columns():
    import pandas as pd

    currency = load_benchmark("currency")
    frame = pd.DataFrame({"customer_id": ["A"], "monetary_total": [10.0], "spend_90d": [2.0], "label_spend": [3.0],
                          "first_purchase_amount": [4.0], "bg_expected_value": [5.0], "purchase_days": [6],
                          "recency_days": [7], "bg_p_purchase": [0.5]})
    out = currency.in_currency(frame, 100.0)
    assert out.iloc[0].to_dict() == {"customer_id": "A", "monetary_total": 1000.0, "spend_90d": 200.0,
                                     "label_spend": 300.0, "first_purchase_amount": 400.0, "bg_expected_value": 500.0,
                                     "purchase_days": 6, "recency_days": 7, "bg_p_purchase": 0.5}


def test_stability_benchmark_names_the_best_other_candidate_at_the_champions_stacking():
    stability = load_benchmark("stability")
    row = lambda family, n, score: {"family": family, "stacked_cutoffs": n, "stack_step_days": 30,  # noqa: E731
                                    "validation_score": score}
    selection = [row("xgboost", 4, 0.40), row("xgboost", 8, 0.52), row("lightgbm", 8, 0.47), row("bgnbd", 8, 0.50),
                 row("xgboost blended with bgnbd (weight 0.5)", 8, 0.60),  # a blend of the champion: not a rival
                 row("xgboost, 8 cutoffs every 15 days against 8 every 30", 8, 0.70),  # a spacing test: not a rival
                 row("ensemble(xgboost, lightgbm)", 8, None)]
    assert stability.runner_up(selection, "xgboost", (8, 30)) == ("bgnbd", 0.50)
    assert stability.runner_up(selection, "bgnbd", (8, 30)) == ("xgboost", 0.52)
    assert stability.runner_up([row("bgnbd", 8, 0.5)], "bgnbd", (8, 30)) is None
