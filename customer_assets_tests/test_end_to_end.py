"""End-to-end materializations on a 2,000-customer slice of CDNOW in a temporary DuckDB file."""

import json
from datetime import date, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from customer_assets.cli import materialize_cutoff
from customer_assets.features import logic as F
from customer_assets.scores.logic import SCORED_COLUMNS
from customer_assets_tests.conftest import CDNOW_CSV_COLUMNS, materialize

SCORE_SEL = "features/calibration_transactions features/holdout_transactions features/customer_features segments/customer_segments scores/scored_customers"
TRAIN_SEL = "features/calibration_transactions features/holdout_transactions features/customer_features models/churn models/spend models/ltv models/next_purchase"


@pytest.fixture(scope="module")
def scored(cdnow_slice, tmp_path_factory):
    """Scores at 1998-06-30 (models of 1998-04-01) and at 1998-04-01 (models of 1998-01-01)."""
    warehouse = str(tmp_path_factory.mktemp("e2e") / "warehouse.duckdb")
    mp = pytest.MonkeyPatch()
    mp.setenv("CUSTOMER_ASSETS_SOURCE", str(cdnow_slice))
    mp.setenv("CUSTOMER_ASSETS_COLUMNS", CDNOW_CSV_COLUMNS)
    try:
        instance = dg.DagsterInstance.ephemeral()
        assert materialize_cutoff(None, warehouse, instance=instance) == "1998-06-30"
        assert materialize_cutoff("1998-04-01", warehouse, skip_ingest=True, instance=instance) == "1998-04-01"
    finally:
        mp.undo()
    return warehouse


def _q(warehouse, sql, params=None):
    with duckdb.connect(warehouse, read_only=True) as conn:
        return conn.execute(sql, params or []).df()


def test_scores_cover_every_customer_with_model_h_days_earlier(scored):
    s = _q(scored, "SELECT * FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'")
    customers = _q(scored, "SELECT count(DISTINCT customer_id) AS n FROM clean.transactions").n[0]
    assert customers == 2000 and len(s) == 2000
    assert list(s.columns) == SCORED_COLUMNS
    assert s.drop(columns="models_kept").isna().sum().sum() == 0
    assert set(s.model_cutoff_date.dt.date) == {date(1998, 4, 1)} and s.models_kept.isna().all()  # every model promoted
    assert set(s.horizon_days) == {90} and set(s.ltv_horizon_days) == {365}
    assert s.purchase_probability.between(0, 1).all()
    np.testing.assert_allclose(s.churn_probability + s.purchase_probability, 1.0)
    assert (s.predicted_spend >= 0).all() and (s.predicted_ltv >= 0).all() and (s.predicted_days_to_next_purchase >= 1).all()
    assert s.value_decile.value_counts().sort_index().tolist() == [200] * 10
    # higher deciles mean more predicted value
    assert s.groupby("value_decile").predicted_ltv.mean().is_monotonic_increasing


def test_cutoff_1998_04_01_uses_models_trained_at_1998_01_01(scored):
    s = _q(scored, "SELECT DISTINCT model_cutoff_date FROM scores.scored_customers WHERE cutoff_date = '1998-04-01'")
    assert s.model_cutoff_date.dt.date.tolist() == [date(1998, 1, 1)]
    for name in ("churn", "spend", "ltv", "next_purchase"):
        rows = _q(scored, f"SELECT cutoff_date, training_cutoffs FROM models.{name} ORDER BY cutoff_date")
        assert rows.cutoff_date.dt.date.tolist() == [date(1998, 1, 1), date(1998, 4, 1)], name
        for cutoff, trained in zip(rows.cutoff_date.dt.date, rows.training_cutoffs, strict=False):
            # a model of partition t only stacks cutoffs <= t, so it saw data up to t + H and no later; the LTV model,
            # which needs no labels, is fitted on the histories at t + H themselves
            last = cutoff + timedelta(days=90) if name == "ltv" else cutoff
            assert max(date.fromisoformat(c) for c in json.loads(trained)) == last, name


def test_models_are_stored_in_portable_formats(scored):
    rows = pd.concat([_q(scored, f"SELECT model_name, artifact_format, artifact, metrics, promoted FROM models.{n}")
                      for n in ("churn", "spend", "ltv", "next_purchase")])

    def check(fmt, artifact):
        assert fmt in ("xgboost-json", "lightgbm-text", "json-coefficients", "json-params", "bgnbd-features", "ensemble-json")
        assert not artifact.startswith("\x80")  # not a pickle stream
        if fmt == "lightgbm-text":
            assert artifact.startswith("tree\nversion=")  # LightGBM's own text model format
            return
        art = json.loads(artifact)  # JSON text: loading never executes code
        for m in art["members"] if fmt == "ensemble-json" else []:  # each member in its own portable format
            check(m["artifact_format"], m["artifact"])

    for r in rows.itertuples():
        check(r.artifact_format, r.artifact)
    churn_metrics = json.loads(rows[rows.model_name == "churn"].metrics.iloc[0])
    assert 0.5 < churn_metrics["validation_roc_auc"] <= 1.0


def test_stored_model_reproduces_the_scores(scored):
    from customer_assets.models import logic as L

    row = _q(scored, "SELECT * FROM models.churn WHERE cutoff_date = '1998-04-01'").iloc[0].to_dict()
    feats = _q(scored, "SELECT * FROM features.customer_features WHERE cutoff_date = '1998-06-30' ORDER BY customer_id")
    s = _q(scored, "SELECT purchase_probability FROM scores.scored_customers WHERE cutoff_date = '1998-06-30' ORDER BY customer_id")
    np.testing.assert_allclose(L.predict_purchase(L.ModelRecord.from_row(row), feats), s.purchase_probability, rtol=1e-6)


def test_a_customer_whose_repeat_days_netted_negative_gets_a_positive_ltv(scored):
    """A customer whose returns outweigh their repeat purchases (mean repeat spend -40 over 2 repeat days) gets the
    LTV of the same history with a mean of 0, above 0; before, Gamma-Gamma's formula made it negative (1M synthetic
    customers had 5 such, down to -69.34)."""
    from customer_assets.models import logic as L

    record = L.ModelRecord.from_row(_q(scored, "SELECT * FROM models.ltv WHERE cutoff_date = '1998-04-01'").iloc[0].to_dict())
    one = _q(scored, "SELECT * FROM features.customer_features WHERE cutoff_date = '1998-06-30' AND frequency = 2 "
                     "ORDER BY customer_id LIMIT 1")
    ltv = L.predict_ltv(record, pd.concat([one.assign(repeat_monetary_mean=-40.0), one.assign(repeat_monetary_mean=0.0),
                                           one.assign(repeat_monetary_mean=40.0)]), 365)
    assert ltv[0] == ltv[1] and 0 < ltv[1] < ltv[2]


def test_missing_model_partition_fails_naming_it(scored, monkeypatch):
    from customer_assets import sensors
    from customer_assets_tests.test_sensors import Webhook

    instance = dg.DagsterInstance.ephemeral()
    result = materialize(scored, SCORE_SEL, partition_key="1998-05-01", raise_on_error=False, instance=instance)
    assert not result.success
    msgs = " ".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)
    assert "No models/churn for partition 1998-01-31" in msgs
    assert _q(scored, "SELECT count(*) AS n FROM scores.scored_customers WHERE cutoff_date = '1998-05-01'").n[0] == 0
    # the alert names the partition, the step and the Failure's own message, without Dagster's wrapping
    hook = Webhook()
    try:
        monkeypatch.setenv(sensors.ENV_ALERT_WEBHOOK, hook.url)
        sensors.alert_on_failure(dg.build_run_status_sensor_context(
            sensor_name="alert_on_failure", dagster_event=result.get_run_failure_event(), dagster_instance=instance,
            dagster_run=result.dagster_run).for_run_failure())
    finally:
        hook.close()
    lines = hook.posts[0]["json"]["text"].splitlines()
    assert lines[0] == f"customer-assets: a run failed: job {result.dagster_run.job_name}, partition 1998-05-01"
    assert lines[2].startswith("• step scores__scored_customers failed: No models/churn for partition 1998-01-31")


def test_training_on_an_incomplete_window_fails_naming_it(scored):
    result = materialize(scored, TRAIN_SEL, partition_key="1998-05-01", raise_on_error=False)
    assert not result.success
    msgs = " ".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)
    assert "1998-05-01 + 90 days = 1998-07-30" in msgs and "1998-06-30" in msgs
    assert _q(scored, "SELECT count(*) AS n FROM models.churn WHERE cutoff_date = '1998-05-01'").n[0] == 0


@pytest.mark.parametrize("cutoff, says", [
    ("1998-07-01", "--cutoff 1998-07-01 is after the last date in the data (1998-06-30)"),
    ("1997-03-01", "uses the models of partition 1996-12-01 (90 days earlier), which is before the first partition, "
                   "1997-01-01 (CUSTOMER_ASSETS_START_DATE)"),
    ("1998-4-1", "--cutoff must be YYYY-MM-DD, got '1998-4-1'"),
])
def test_the_command_line_refuses_a_cutoff_it_cannot_score_and_says_why(scored, cutoff, says):
    before = _q(scored, "SELECT count(*) AS n FROM models.churn").n[0]
    with pytest.raises(SystemExit) as exc:
        materialize_cutoff(cutoff, scored, skip_ingest=True, instance=dg.DagsterInstance.ephemeral())
    assert says in str(exc.value)
    assert _q(scored, "SELECT count(*) AS n FROM models.churn").n[0] == before  # nothing was trained


@pytest.mark.parametrize("make_file", [False, True])
def test_skip_ingest_on_a_warehouse_without_transactions_says_to_load_first(tmp_path, make_file):
    db = tmp_path / "empty.duckdb"
    if make_file:
        duckdb.connect(str(db)).close()
    with pytest.raises(SystemExit) as exc:
        materialize_cutoff("1998-04-01", str(db), skip_ingest=True, instance=dg.DagsterInstance.ephemeral())
    assert f"no clean transactions in {db}" in str(exc.value) and "without --skip-ingest" in str(exc.value)


def test_scores_do_not_depend_on_transactions_after_the_cutoff(scored, cdnow_slice, tmp_path, monkeypatch):
    """Change every transaction after 1998-04-01: the 1998-04-01 scores stay identical."""
    frame = pd.read_csv(cdnow_slice, dtype=str)
    after = frame["date"] > "19980401"
    frame.loc[after, "dollar_value"] = (frame.loc[after, "dollar_value"].astype(float) * 3 + 1).round(2).astype(str)
    frame = pd.concat([frame, frame[after].assign(date="19980615")])  # and add purchases
    changed = tmp_path / "changed.csv"
    frame.to_csv(changed, index=False)
    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(changed))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", CDNOW_CSV_COLUMNS)
    other = str(tmp_path / "other.duckdb")
    materialize_cutoff("1998-04-01", other, instance=dg.DagsterInstance.ephemeral())
    sql = "SELECT * FROM scores.scored_customers WHERE cutoff_date = '1998-04-01' ORDER BY customer_id"
    pd.testing.assert_frame_equal(_q(scored, sql), _q(other, sql))


def test_warehouse_opens_in_the_duckdb_cli(scored):
    """The file is readable by the DuckDB 1.5 CLI that `pip install duckdb-cli` installs (dev extra)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    cli = shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")
    if cli is None:
        pytest.skip("duckdb CLI not installed (pip install duckdb-cli)")
    out = subprocess.run(
        [cli, "-readonly", "-csv", scored, "SELECT count(*) FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert out.stdout.strip().splitlines()[-1] == "2000"


def test_backtest_table_matches_the_scored_table(scored):
    """evaluation/backtest of partition 1998-01-01 holds the metrics that the 1998-04-01 scores give against the truth."""
    from customer_assets.evaluation import metrics as M

    # the backtest's default 200 resamples: its check below asks whether an interval excludes zero, and with 20 the
    # interval's ends are too noisy for that (on this slice the churn champion's Brier is 0.0024 above BG/NBD's, an
    # interval of [+0.00004, +0.0050] with 20 resamples and [-0.0004, +0.0050] with 200)
    result = materialize(scored, "evaluation/backtest", partition_key="1998-01-01",
                         run_config={"ops": {"evaluation__backtest": {"config": {"bootstrap_samples": 200}}}})
    assert result.success
    m = _q(scored, "SELECT * FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01'")
    assert set(m.eval_cutoff_date.dt.date) == {date(1998, 4, 1)}
    assert {"champion", "bgnbd", "seed_xgboost", "neg_recency", "frequency", "last_h_spend", "bgnbd_gamma_gamma"} <= set(m.system)
    truth = _q(scored, "SELECT s.purchase_probability, s.predicted_spend, f.label_purchase, f.label_spend "
                       "FROM scores.scored_customers s JOIN features.customer_features f USING (cutoff_date, customer_id) "
                       "WHERE cutoff_date = '1998-04-01'")
    v = m.set_index(["task", "system", "metric"])["value"]
    assert v[("purchase", "champion", "roc_auc")] == pytest.approx(M.roc_auc(truth.label_purchase, truth.purchase_probability))
    assert v[("purchase", "champion", "brier")] == pytest.approx(M.brier(truth.label_purchase, truth.purchase_probability))
    assert v[("spend", "champion", "r2")] == pytest.approx(M.r2(truth.label_spend, truth.predicted_spend))
    # baselines carry paired intervals around their point difference
    b = m[(m.system == "bgnbd") & (m.metric == "roc_auc")].iloc[0]
    assert b.diff_ci_low <= b.diff_champion_minus_system <= b.diff_ci_high
    # the one-time buyers at s on their own: counted, and their mean score is the scored table's
    one = _q(scored, "SELECT count(*) AS n, avg(s.purchase_probability) AS p FROM scores.scored_customers s "
                     "JOIN features.customer_features f USING (cutoff_date, customer_id) "
                     "WHERE cutoff_date = '1998-04-01' AND f.frequency = 0")
    rows = m[(m.task == "purchase_one_time_buyers") & (m.system == "champion")].set_index("metric")
    assert 0 < one.n[0] < 2000 and set(rows.n_customers) == {one.n[0]}
    assert rows.loc["mean_predicted", "value"] == pytest.approx(one.p[0])
    # the customers outside a training range at s, as the scored table names them, on their own: at 1998-04-01 every
    # customer is older than any at 1998-01-01 (one cohort), so there is no group inside
    outside = _q(scored, "SELECT count(*) AS n, avg(purchase_probability) AS p, sum(predicted_spend) AS spend "
                         "FROM scores.scored_customers WHERE cutoff_date = '1998-04-01' AND outside_training_range IS NOT NULL")
    assert outside.n[0] == 2000 and not m.task.str.contains("inside_training_range").any()
    rows = m[m.task.str.endswith("outside_training_range") & (m.system == "champion")].set_index(["task", "metric"])["value"]
    assert set(m[m.task.str.endswith("outside_training_range")].n_customers) == {2000}
    assert rows[("purchase_outside_training_range", "mean_predicted")] == pytest.approx(outside.p[0])
    assert rows[("spend_outside_training_range", "aggregate_error")] == pytest.approx(v[("spend", "champion", "aggregate_error")])
    # so does next purchase's recency baseline, on the concordance index
    r = m[(m.task == "next_purchase") & (m.system == "recency")].iloc[0]
    assert r.diff_champion_minus_system == pytest.approx(v[("next_purchase", "champion", "c_index")] - r.value)
    assert r.diff_ci_low < r.diff_champion_minus_system < r.diff_ci_high
    rel = _q(scored, "SELECT * FROM evaluation.reliability WHERE cutoff_date = '1998-01-01'")
    assert len(rel) == 10 and rel["count"].sum() == 2000
    # the spend forecast by decile: the scored table's 1998-04-01 spend forecast ranked into tenths, against the truth;
    # the deciles add up to the totals whose error the metrics give, and the top decile holds the top-10% share
    dec = _q(scored, "SELECT * FROM evaluation.spend_deciles WHERE cutoff_date = '1998-01-01' ORDER BY decile DESC")
    assert dec.decile.tolist() == list(range(10, 0, -1)) and set(dec.customers) == {200}
    assert set(dec.eval_cutoff_date.dt.date) == {date(1998, 4, 1)} and set(dec.system) == {"champion"}
    assert dec.predicted_spend.sum() == pytest.approx(truth.predicted_spend.sum())
    assert dec.actual_spend.sum() == pytest.approx(truth.label_spend.sum())
    assert (dec.predicted_spend.sum() - dec.actual_spend.sum()) / dec.actual_spend.sum() == pytest.approx(
        v[("spend", "champion", "aggregate_error")])
    assert dec.share_of_actual.iloc[0] == pytest.approx(v[("spend", "champion", "top10_share")])
    top = truth.nlargest(200, "predicted_spend")
    assert dec.predicted_spend.iloc[0] == pytest.approx(top.predicted_spend.sum())
    assert dec.observed_purchase_rate.iloc[0] == pytest.approx(top.label_purchase.mean())
    assert dec.mean_purchase_probability.iloc[0] == pytest.approx(top.purchase_probability.mean())
    assert dec.predicted_spend.is_monotonic_decreasing
    # by segment: the personas stored at 1998-04-01 (what the scored table served), each with the scored table's
    # customers, forecast and truth
    seg = _q(scored, "SELECT * FROM evaluation.segment_metrics WHERE cutoff_date = '1998-01-01'").set_index("segment")
    served = _q(scored, "SELECT s.segment, s.purchase_probability, s.predicted_spend, f.label_purchase, f.label_spend "
                        "FROM scores.scored_customers s JOIN features.customer_features f USING (cutoff_date, customer_id) "
                        "WHERE cutoff_date = '1998-04-01'")
    assert set(seg.segments_from) == {"stored"} and set(seg.index) == set(served.segment) and len(seg) >= 3
    assert seg.predicted_spend.is_monotonic_decreasing and seg.customers.sum() == 2000
    for name, group in served.groupby("segment"):
        row = seg.loc[name]
        assert row.customers == len(group) and row.predicted_spend == pytest.approx(group.predicted_spend.sum())
        assert row.actual_spend == pytest.approx(group.label_spend.sum())
        assert row.mean_purchase_probability == pytest.approx(group.purchase_probability.mean())
        assert row.observed_purchase_rate == pytest.approx(group.label_purchase.mean())
        if 0 < group.label_purchase.mean() < 1:
            assert row.roc_auc == pytest.approx(M.roc_auc(group.label_purchase, group.purchase_probability))
    assert (seg.predicted_spend.sum() - seg.actual_spend.sum()) / seg.actual_spend.sum() == pytest.approx(
        v[("spend", "champion", "aggregate_error")])
    check = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "champion_not_worse_than_baselines")
    assert check.passed, check.metadata["significantly_worse"].value
    assert check.metadata["comparisons"].value == m.diff_ci_low.notna().sum() > 0


def _readme_query(number: int) -> str:
    """Example query ``number`` of the README, as printed there."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index(f"-- {number}. ")
    return text[start:text.index(";\n", start) + 1]


def test_readme_query_recomputes_the_backtest_figures_from_the_scores_and_transactions(scored):
    """README query 8 (SQL only) gives the 1998-04-01 scores' ROC-AUC, Brier, R², aggregate error and top-10% share
    against what customers did in (1998-04-01, 1998-06-30]: the same figures as the metrics code on the feature labels."""
    from customer_assets.evaluation import metrics as M

    (row,) = _q(scored, _readme_query(8)).to_dict("records")
    truth = _q(scored, "SELECT s.purchase_probability AS p, s.predicted_spend AS pred, f.label_purchase, f.label_spend "
                       "FROM scores.scored_customers s JOIN features.customer_features f USING (cutoff_date, customer_id) "
                       "WHERE cutoff_date = '1998-04-01' ORDER BY customer_id")
    assert row["customers"] == len(truth) == 2000
    y, ys = truth.label_purchase.astype(float), truth.label_spend
    expected = {"roc_auc": M.roc_auc(y, truth.p), "brier": M.brier(y, truth.p), "spend_r2": M.r2(ys, truth.pred),
                "aggregate_error": M.aggregate_error(ys, truth.pred), "top10_share": M.top_share(ys, truth.pred)}
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, abs=5.01e-5), name  # the query rounds to 4 decimals


def test_backtest_check_warns_when_the_champion_is_worse_than_a_baseline(scored, tmp_path):
    """A churn model whose calibration slope is flipped ranks buyers last: the backtest still runs, the check fails
    with WARN and names the baselines it loses to."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    with duckdb.connect(copy) as conn:
        cal = json.loads(conn.execute("SELECT calibration FROM models.churn WHERE cutoff_date = '1998-01-01'").fetchone()[0])
        cal["a"] = -cal["a"]
        conn.execute("UPDATE models.churn SET calibration = ? WHERE cutoff_date = '1998-01-01'", [json.dumps(cal)])
    result = materialize(copy, "evaluation/backtest", partition_key="1998-01-01",
                         run_config={"ops": {"evaluation__backtest": {"config": {"bootstrap_samples": 20}}}})
    assert result.success
    check = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "champion_not_worse_than_baselines")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    worse = check.metadata["significantly_worse"].value
    # what the CLI prints under the step (the check's description)
    assert check.description.startswith("the champion is significantly worse than a baseline on ")
    assert "purchase roc_auc vs bgnbd" in check.description
    for baseline in ("bgnbd", "neg_recency", "seed_xgboost"):
        assert f"| purchase | {baseline} | roc_auc |" in worse, worse
    auc = _q(copy, "SELECT value FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01' AND task = 'purchase' "
                   "AND system = 'champion' AND metric = 'roc_auc'").value[0]
    assert auc < 0.5


def test_backtest_check_warns_when_the_total_missed_by_more_than_the_backtests_known_then(scored, tmp_path):
    """total_within_past_misses: the backtest of 1998-01-01 (scored at 1998-04-01) against the backtests known at
    1998-04-01. A made-up earlier one, scored at 1998-01-01 (its window ended 1998-04-01), missed by half as much: the
    check warns. One scored at 1998-02-01 (window open at 1998-04-01) whose miss would cover it is not used. With the
    earlier miss 1.5 times as large, it passes."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    sql = ("INSERT INTO evaluation.backtest_metrics (cutoff_date, eval_cutoff_date, task, system, metric, value) "
           "VALUES (?, ?, 'spend', 'champion', 'aggregate_error', ?)")
    run = {"ops": {"evaluation__backtest": {"config": {"bootstrap_samples": 20}}}}

    def check_with(earlier: float):
        with duckdb.connect(copy) as conn:
            conn.execute("DELETE FROM evaluation.backtest_metrics WHERE cutoff_date IN ('1997-10-03', '1997-11-03')")
            conn.execute(sql, [date(1997, 10, 3), date(1998, 1, 1), earlier])
            conn.execute(sql, [date(1997, 11, 3), date(1998, 2, 1), 50.0 if earlier > 0 else -0.99])
        result = materialize(copy, "evaluation/backtest", partition_key="1998-01-01", run_config=run)
        return next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "total_within_past_misses")

    materialize(copy, "evaluation/backtest", partition_key="1998-01-01", run_config=run)
    error = _q(copy, "SELECT value FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01' AND task = 'spend' "
                     "AND system = 'champion' AND metric = 'aggregate_error'").value[0]
    assert abs(error) > 0.001  # far enough from 0 for half of it to print differently at one decimal of a percent
    check = check_with(error / 2)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    low, high = sorted((0.0, error / 2))
    assert check.description == (f"the spend total scored at 1998-04-01 missed by {error:+.1%}, outside the {low:+.1%} "
                                  f"to {high:+.1%} of the one backtest known then")
    assert check.metadata["backtests_known"].value == 1
    assert check_with(error * 1.5).passed
    # with no earlier backtest known at 1998-04-01 there is nothing to compare with: it passes and says so
    with duckdb.connect(copy) as conn:
        conn.execute("DELETE FROM evaluation.backtest_metrics WHERE cutoff_date IN ('1997-10-03', '1997-11-03')")
    result = materialize(copy, "evaluation/backtest", partition_key="1998-01-01", run_config=run)
    check = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "total_within_past_misses")
    assert check.passed and check.description == "no earlier backtest had ended by 1998-04-01: nothing to compare the total with"


def test_backtest_refuses_an_incomplete_window(scored):
    result = materialize(scored, "evaluation/backtest", partition_key="1998-04-01", raise_on_error=False)
    assert not result.success
    msgs = " ".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)
    assert "1998-06-30 + 90 days = 1998-09-28" in msgs


def test_ltv_backtest_needs_the_full_ltv_window(scored):
    result = materialize(scored, "evaluation/ltv_backtest", partition_key="1998-01-01", raise_on_error=False)
    assert not result.success
    msgs = " ".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)
    assert "needs spend up to 1999-01-01 (365 days)" in msgs and "1997-06-30" in msgs


def test_rerunning_a_partition_gives_identical_rows(scored):
    sql = "SELECT * FROM scores.scored_customers WHERE cutoff_date = '1998-06-30' ORDER BY customer_id"
    before = _q(scored, sql)
    assert materialize(scored, SCORE_SEL, partition_key="1998-06-30").success
    pd.testing.assert_frame_equal(before, _q(scored, sql))


def test_model_gates_pass_on_cdnow(scored):
    result = materialize(scored, "models/churn models/spend", partition_key="1998-04-01")
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"churn_beats_naive_baseline": True, "spend_beats_naive_baseline": True}
    # the churn calibration's pooled out-of-time windows are in the run's metadata and in the stored model
    meta = result.asset_materializations_for_node("models__churn")[0].metadata
    calibration = meta["calibration"].value
    assert calibration["fitted_on_cutoffs"] == ["1998-04-01", "1998-03-02", "1998-01-31"]
    stored = _q(scored, "SELECT calibration FROM models.churn WHERE cutoff_date = '1998-04-01'").calibration.iloc[0]
    assert json.loads(stored) == calibration
    customers = _q(scored, "SELECT count(DISTINCT customer_id) FILTER (WHERE txn_date <= DATE '1998-04-01') "
                           "+ count(DISTINCT customer_id) FILTER (WHERE txn_date <= DATE '1998-03-02') "
                           "+ count(DISTINCT customer_id) FILTER (WHERE txn_date <= DATE '1998-01-31') AS n "
                           "FROM clean.transactions WHERE NOT is_return").n.iloc[0]
    assert calibration["fitted_on_rows"] == customers
    # CDNOW's 18 months are too short to check the same-season correction two years back, so neither model applies it
    spend = json.loads(_q(scored, "SELECT calibration FROM models.spend WHERE cutoff_date = '1998-04-01'").calibration.iloc[0])
    for season in (calibration["same_season"], spend["same_season"]):
        assert not season["applied"] and (season["serve_window"], season["check_window"]) == ("1997-06-30", "1996-06-30")
        assert season["reason"].startswith("not applied: the check needs a training cutoff with 30 days of history by 1996-04-01")
    assert calibration["method"] == "platt" and spend["season_ratio"] == 1.0


def test_validation_chooses_the_stacking_depth_and_spacing_and_records_it(scored):
    """Churn, spend and next purchase compare depths and spacings; the champion is refit with the stacking the rule
    picks: a default 30-day option (the deepest for churn and next purchase, the best-scoring for spend), unless
    another option beats it with a bootstrap interval above zero."""
    options = {(2, 30), (4, 30), (8, 30), (4, 60), (8, 15)}
    compared = []
    for name in ("churn", "spend", "next_purchase"):
        for cutoff in ("1998-01-01", "1998-04-01"):
            row = _q(scored, f"SELECT params, training_cutoffs FROM models.{name} WHERE cutoff_date = ?", [cutoff]).iloc[0]
            params = json.loads(row.params)
            xgb = {(r["stacked_cutoffs"], r["stack_step_days"]): r["validation_score"]
                   for r in params["selection"] if r["family"] == "xgboost"}
            assert set(xgb) == options, (name, cutoff)
            best = (8, 30) if name != "spend" else max((o for o in xgb if o[1] == 30), key=xgb.get)
            intervals = {(r["stacked_cutoffs"], r["stack_step_days"]): r["interval_95"]
                         for r in params["selection"] if "interval_95" in r}
            # every other option that scored higher than the default was tested against it, and only those
            assert set(intervals) == {o for o in xgb if o != best and xgb[o] > xgb[best]}, (name, cutoff)
            assert all(r["family"].endswith(f"against {best[0]} every {best[1]}") for r in params["selection"] if "interval_95" in r)
            compared += [(name, cutoff, o, low > 0) for o, (low, _high) in intervals.items()]
            n, step = max([best, *(o for o, (low, _high) in intervals.items() if low > 0)], key=xgb.get)
            assert (params["stacked_cutoffs"], params["stack_step_days"]) == (n, step), (name, cutoff)
            t = date.fromisoformat(cutoff)
            # refit on t, t - step, ... (cutoffs with fewer than 30 days of history are left out)
            expected = [d for j in range(n) if (d := t - timedelta(days=j * step)) >= date(1997, 1, 31)]
            assert [date.fromisoformat(c) for c in json.loads(row.training_cutoffs)] == expected, (name, cutoff)
    # the rule was put to work: some option outscored the default and was tested
    assert compared, "no option outscored the default anywhere, so the interval rule went untested"


def test_top_drivers_name_three_features(scored):
    s = _q(scored, "SELECT top_drivers FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'")
    from customer_assets.features.logic import FEATURE_COLUMNS
    from customer_assets.models.candidates import BG_FEATURES

    known = set(FEATURE_COLUMNS) | set(BG_FEATURES)
    for text in s.top_drivers.head(50):
        items = text.split("; ")
        assert len(items) == 3
        for item in items:
            feature, rest = item.split(" (", 1)
            assert feature in known and rest.split()[0] in ("churn", "spend")


def test_report_has_every_section_with_real_numbers(scored):
    from pathlib import Path

    assert materialize(scored, "reports/customer_report", partition_key="1998-06-30").success  # now 1998-04-01 exists too
    report = Path(scored).parent / "reports" / "customer_report_1998-06-30.html"
    text = report.read_text()
    for section in ("What changed since 1998-04-01", "Segments", "Movement between segments", "Revenue at risk",
                    "Customers to call first", "Recommended actions per segment"):
        assert section in text, section
    total = _q(scored, "SELECT sum(predicted_spend) AS s FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'").s[0]
    assert f"${total:,.0f}" in text
    assert "<p>Scored with the models trained at 1998-04-01.</p>" in text
    # a model kept from an earlier partition is named at the top of the report
    from customer_assets.reports.logic import build_report

    rows = _q(scored, "SELECT * FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'")
    page, _ = build_report(date(1998, 6, 30), rows.assign(models_kept="churn 1998-03-01"), None, None, 90, 365)
    assert "<b>Scored with the models trained at 1998-04-01, except: churn 1998-03-01.</b>" in page


def test_the_report_asset_labels_money_with_the_currency_set_and_refuses_a_bad_label(scored, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "w.duckdb"
    shutil.copy(scored, copy)
    monkeypatch.setenv("CUSTOMER_ASSETS_CURRENCY", "£")
    assert materialize(str(copy), "reports/customer_report", partition_key="1998-06-30").success
    report = tmp_path / "reports" / "customer_report_1998-06-30.html"
    total = _q(scored, "SELECT sum(predicted_spend) AS s FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'").s[0]
    assert f"<b>£{total:,.0f}</b>" in report.read_text()
    monkeypatch.setenv("CUSTOMER_ASSETS_CURRENCY", "<i>")
    result = materialize(str(copy), "reports/customer_report", partition_key="1998-06-30", raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "CUSTOMER_ASSETS_CURRENCY='<i>' is not a currency label" in failure.step_failure_data.error.message
    assert f"<b>£{total:,.0f}</b>" in report.read_text()  # the report written before stays


def test_a_model_trained_alone_equals_the_one_trained_with_shared_frames(scored):
    """The fixture trained the four models of 1998-01-01 in one run, sharing feature frames; alone gives the same model."""
    sql = "SELECT artifact, metrics, params FROM models.{} WHERE cutoff_date = '1998-01-01'"
    for name in ("spend", "churn"):
        shared = _q(scored, sql.format(name))
        assert materialize(scored, f"models/{name}", partition_key="1998-01-01").success
        alone = _q(scored, sql.format(name))
        assert len(alone) == 1
        pd.testing.assert_frame_equal(shared, alone)


def test_a_model_whose_features_partition_was_deleted_by_the_retention_is_the_same(scored, tmp_path):
    """Training recomputes a deleted features partition with the same SQL, so the model does not change."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    with duckdb.connect(copy) as conn:
        conn.execute("DELETE FROM features.customer_features WHERE cutoff_date = '1998-01-01'")
    sql = "SELECT artifact, metrics, params FROM models.churn WHERE cutoff_date = '1998-01-01'"
    before = _q(copy, sql)
    assert materialize(copy, "models/churn", partition_key="1998-01-01").success
    assert _q(copy, "SELECT count(*) AS n FROM features.customer_features WHERE cutoff_date = '1998-01-01'").n[0] == 0
    pd.testing.assert_frame_equal(before, _q(copy, sql))


LABELS_NULL = ("UPDATE features.customer_features SET labels_complete = false, label_spend = NULL, label_purchase = NULL, "
               "label_purchase_days = NULL, label_days_to_next_purchase = NULL WHERE cutoff_date = ?")


def _copy_with_labels_not_yet_complete(scored, tmp_path, cutoff: str) -> str:
    """A copy of the warehouse whose features partition at ``cutoff`` looks as the rescore job wrote it on the day
    after the cutoff: same history columns, labels NULL, labels_complete false."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    with duckdb.connect(copy) as conn:
        conn.execute(LABELS_NULL, [cutoff])
    return copy


def test_training_recomputes_features_written_before_the_labels_were_complete(scored, tmp_path):
    """Stored features with NULL labels are not trained on: the model is the one trained on complete labels."""
    copy = _copy_with_labels_not_yet_complete(scored, tmp_path, "1998-01-01")
    sql = "SELECT artifact, metrics, params FROM models.churn WHERE cutoff_date = '1998-01-01'"
    before = _q(copy, sql)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(copy, "models/churn", partition_key="1998-01-01", instance=instance)
    assert result.success
    pd.testing.assert_frame_equal(before, _q(copy, sql))
    logs = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("1998-01-01 was written before its label window ended" in m for m in logs)


def test_backtest_recomputes_features_written_before_the_labels_were_complete(scored, tmp_path):
    """The backtest of 1998-01-01 scores at 1998-04-01; NULL stored labels there would make every metric NaN."""
    from customer_assets.evaluation import metrics as M

    copy = _copy_with_labels_not_yet_complete(scored, tmp_path, "1998-04-01")
    result = materialize(copy, "evaluation/backtest", partition_key="1998-01-01",
                         run_config={"ops": {"evaluation__backtest": {"config": {"bootstrap_samples": 20}}}})
    assert result.success
    v = _q(copy, "SELECT * FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01'").set_index(
        ["task", "system", "metric"])["value"]
    truth = _q(scored, "SELECT s.purchase_probability, s.predicted_spend, f.label_purchase, f.label_spend "
                       "FROM scores.scored_customers s JOIN features.customer_features f USING (cutoff_date, customer_id) "
                       "WHERE cutoff_date = '1998-04-01'")
    assert v[("purchase", "champion", "roc_auc")] == pytest.approx(M.roc_auc(truth.label_purchase, truth.purchase_probability))
    assert v[("spend", "champion", "r2")] == pytest.approx(M.r2(truth.label_spend, truth.predicted_spend))


def test_ltv_backtest_checks_the_ltv_served_at_c_and_does_not_need_the_stored_features(scored, tmp_path):
    """The LTV check at 1997-06-30 evaluates what scoring at 1997-06-30 serves (the models/ltv of 1997-04-01, fitted
    on and applied to the histories at 1997-06-30) against the actual spend, also with the features partition deleted (retention)."""
    import shutil

    from customer_assets.evaluation import metrics as M
    from customer_assets.features.logic import compute_features
    from customer_assets.models import logic as L

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    assert materialize(copy, "features/calibration_transactions features/holdout_transactions features/customer_features "
                             "models/ltv", partition_key="1997-04-01").success
    result = materialize(copy, "features/calibration_transactions features/holdout_transactions features/customer_features "
                               "evaluation/ltv_backtest", partition_key="1997-06-30")
    meta = result.asset_materializations_for_node("evaluation__ltv_backtest")[0].metadata
    assert meta["model_partition"].value == "1997-04-01"
    sql = "SELECT system, metric, value FROM evaluation.ltv_metrics WHERE cutoff_date = '1997-06-30' ORDER BY system, metric"
    kept = _q(copy, sql)
    v = kept.set_index(["system", "metric"])["value"]
    with duckdb.connect(copy, read_only=True) as conn:
        record = L.ModelRecord.from_row(conn.execute("SELECT * FROM models.ltv WHERE cutoff_date = '1997-04-01'").df().iloc[0].to_dict())
        feats = compute_features(conn, date(1997, 6, 30), 90, date(1998, 6, 30))
        actual = conn.execute("SELECT customer_id, sum(amount) AS a FROM clean.transactions "
                              "WHERE txn_date > '1997-06-30' AND txn_date <= '1998-06-30' GROUP BY 1").df()
    y = feats.merge(actual, on="customer_id", how="left")["a"].fillna(0).to_numpy()
    served = L.predict_ltv(record, feats, 365)
    assert v[("champion", "r2")] == pytest.approx(M.r2(y, served))
    assert v[("champion", "aggregate_error")] == pytest.approx((served.sum() - y.sum()) / y.sum())
    assert v[("last_365d_spend", "aggregate_error")] == pytest.approx((feats.spend_365d.sum() - y.sum()) / y.sum())
    # the served model was refitted on the histories at 1997-06-30, so BG/NBD + Gamma-Gamma fitted there gives the
    # same figures
    assert json.loads(record.artifact)["fitted_on_histories_at"] == "1997-06-30"
    for metric in ("r2", "aggregate_error", "top10_share"):
        assert v[("bgnbd_gamma_gamma", metric)] == pytest.approx(v[("champion", metric)], rel=1e-6)
    with duckdb.connect(copy) as conn:
        conn.execute("DELETE FROM features.customer_features WHERE cutoff_date = '1997-06-30'")
    assert materialize(copy, "evaluation/ltv_backtest", partition_key="1997-06-30").success
    pd.testing.assert_frame_equal(kept, _q(copy, sql))


@pytest.mark.parametrize("export", ["one file", "one file per export"])
def test_the_nightly_schedules_in_order_on_a_growing_file(export, cdnow_slice, tmp_path, monkeypatch):
    """Two nights of the schedules, run as they would be (their RunRequests, in cron order), on a file that grows,
    or on a glob pattern whose folder gains the second night's file (the same rows either way).

    Night of 1998-04-04 (the export lags: data to 1998-04-01): retrain 1998-01-01, rescore 1998-04-01 (its features
    stored with NULL labels, the window being open). Night of 1998-07-01 (data to 1998-06-30): retrain 1998-04-01,
    rescore 1998-06-30, then the backtest of the models of 1998-01-01 against what the 1998-04-01 customers bought; the
    LTV backtest of 1997-06-30 fails naming the model it lacks, as no night trained one. On a later night whose export
    has not changed, only that failed backtest is asked for again.
    """
    from datetime import UTC, datetime

    from customer_assets.definitions import build_definitions
    from customer_assets.evaluation import metrics as M
    from customer_assets.schedules import SCHEDULES

    frame = pd.read_csv(cdnow_slice, dtype=str)
    early = tmp_path / "early.csv"
    frame[frame["date"] <= "19980401"].to_csv(early, index=False)
    sources = [early, cdnow_slice]
    if export == "one file per export":
        exports = tmp_path / "exports"
        exports.mkdir()
        pattern = exports / "orders_*.csv"
        sources = [pattern, pattern]
        frame[frame["date"] <= "19980401"].to_csv(exports / "orders_1.csv", index=False)
    warehouse = str(tmp_path / "w.duckdb")
    defs = build_definitions(warehouse)
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", CDNOW_CSV_COLUMNS)
    outcomes, run_keys = {}, {}

    def requests(schedule, night, instance):
        when = night.replace(hour=int(schedule.cron_schedule.split()[1]), minute=int(schedule.cron_schedule.split()[0]))
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                       repository_def=defs.get_repository_def()) as ctx:  # closes its copy of the instance
            return schedule.evaluate_tick(ctx).run_requests

    with dg.instance_for_test() as instance:  # persistent: the schedules read the data's last date from its event log
        for source, night in zip(sources, (datetime(1998, 4, 4, tzinfo=UTC), datetime(1998, 7, 1, tzinfo=UTC)), strict=True):
            if export == "one file per export" and night.month == 7:  # the second export arrives
                frame[frame["date"] > "19980401"].to_csv(exports / "orders_2.csv", index=False)
            monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(source))
            for schedule in SCHEDULES:
                for req in requests(schedule, night, instance):
                    job = defs.resolve_job_def(schedule.job_name)
                    result = job.execute_in_process(partition_key=req.partition_key, asset_selection=req.asset_selection,
                                                    instance=instance, raise_on_error=False)
                    what = "/".join(k.to_user_string() for k in req.asset_selection) if req.asset_selection else schedule.job_name
                    outcomes[(str(night.date()), what, req.partition_key)] = result
                    run_keys[req.run_key] = str(night.date())
        later = datetime(1998, 7, 9, tzinfo=UTC)
        (ingest,) = requests(SCHEDULES[0], later, instance)
        assert defs.resolve_job_def(SCHEDULES[0].job_name).execute_in_process(instance=instance).success
        assert instance.get_latest_materialization_event(dg.AssetKey(["clean", "transactions"])).asset_materialization.metadata[
            "data_changed"].value is False
        later = [r.run_key for s in SCHEDULES[1:] for r in requests(s, later, instance)]
    assert later == ["ltv-backtest-1997-06-30", "publish-1998-06-30"] and run_keys[later[0]] == "1998-07-01"
    ran = {k: r.success for k, r in outcomes.items()}
    assert ran == {
        ("1998-04-04", "ingest_transactions", None): True,
        ("1998-04-04", "train_models", "1998-01-01"): True,
        ("1998-04-04", "rescore_customers", "1998-04-01"): True,
        # 1998-04-01 - 180 d and - 365 d: partitions no night trained models for
        ("1998-04-04", "evaluation/backtest", "1997-10-03"): False,
        ("1998-04-04", "evaluation/ltv_backtest", "1997-04-01"): False,
        ("1998-04-04", "serving/snapshot/reports/customer_report", "1998-04-01"): True,  # after the backtests, whatever they did
        ("1998-07-01", "ingest_transactions", None): True,
        ("1998-07-01", "train_models", "1998-04-01"): True,
        ("1998-07-01", "rescore_customers", "1998-06-30"): True,
        ("1998-07-01", "evaluation/backtest", "1998-01-01"): True,
        ("1998-07-01", "evaluation/ltv_backtest", "1997-06-30"): False,
        ("1998-07-01", "serving/snapshot/reports/customer_report", "1998-06-30"): True,
    }
    # so the serving copy analysts open holds the backtest of that night, not only the warehouse
    served = duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'serving' / 'evaluation.backtest_metrics.parquet'}' "
                        "WHERE cutoff_date = '1998-01-01'").fetchone()[0]
    assert served == len(_q(warehouse, "SELECT * FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01'")) > 0
    # and the report of 1998-06-30, rewritten after them, says how far that backtest's total was off
    error = _q(warehouse, "SELECT value FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01' AND task = 'spend' "
                          "AND system = 'champion' AND metric = 'aggregate_error'").value[0]
    page = (tmp_path / "reports" / "customer_report_1998-06-30.html").read_text()
    assert f"The one backtest (the scores made at 1998-04-01) missed its total by {error:+.1%}." in page
    # the backtests that fail do so because no night trained the models they check, and say so
    for key, expected in (((("1998-04-04", "evaluation/backtest", "1997-10-03")), "No models/churn for partition 1997-10-03"),
                          # the LTV served at c comes from the models/ltv of c - 90 d
                          ((("1998-04-04", "evaluation/ltv_backtest", "1997-04-01")), "No models/ltv for partition 1997-01-01"),
                          ((("1998-07-01", "evaluation/ltv_backtest", "1997-06-30")), "No models/ltv for partition 1997-04-01")):
        msgs = " ".join(e.event_specific_data.error.message for e in outcomes[key].all_events if e.is_step_failure)
        assert expected in msgs, msgs
    # the backtest's figures are those of the 1998-04-01 scores (made on the first night) against the truth
    v = _q(warehouse, "SELECT * FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01'").set_index(
        ["task", "system", "metric"])["value"]
    truth = _q(warehouse, "SELECT s.purchase_probability, s.predicted_spend, f.label_purchase, f.label_spend "
                          "FROM scores.scored_customers s JOIN features.customer_features f USING (cutoff_date, customer_id) "
                          "WHERE cutoff_date = '1998-04-01'")
    assert len(truth) == 2000 and truth.label_purchase.notna().all()
    assert v[("purchase", "champion", "roc_auc")] == pytest.approx(M.roc_auc(truth.label_purchase, truth.purchase_probability))
    assert v[("spend", "champion", "r2")] == pytest.approx(M.r2(truth.label_spend, truth.predicted_spend))


def test_backtest_evaluates_the_model_that_scored_when_the_partition_was_not_promoted(scored, tmp_path):
    """models/churn of 1998-01-01 not promoted: the 1998-04-01 scores come from the last good model (1997-12-01), and
    the backtest of 1998-01-01 evaluates that one, so the evaluation table still reproduces the scored table."""
    import shutil

    from customer_assets.evaluation import metrics as M

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    assert materialize(copy, "models/churn", partition_key="1997-12-01").success
    with duckdb.connect(copy) as conn:
        conn.execute("""UPDATE models.churn SET promoted = false, params = json_merge_patch(params, '{"promoted": false}'),
                        notes = '["not promoted: made so by the test"]' WHERE cutoff_date = '1998-01-01'""")
    assert materialize(copy, SCORE_SEL, partition_key="1998-04-01").success
    kept = _q(copy, "SELECT DISTINCT model_cutoff_date, models_kept FROM scores.scored_customers WHERE cutoff_date = '1998-04-01'")
    assert kept.to_dict("records") == [{"model_cutoff_date": pd.Timestamp("1998-01-01"), "models_kept": "churn 1997-12-01"}]
    result = materialize(copy, "evaluation/backtest", partition_key="1998-01-01",
                         run_config={"ops": {"evaluation__backtest": {"config": {"bootstrap_samples": 20}}}})
    meta = result.asset_materializations_for_node("evaluation__backtest")[0].metadata
    assert meta["models_evaluated"].value["churn"] == "1997-12-01" and meta["models_evaluated"].value["spend"] == "1998-01-01"
    sql = ("SELECT s.purchase_probability, f.label_purchase FROM scores.scored_customers s "
           "JOIN features.customer_features f USING (cutoff_date, customer_id) WHERE cutoff_date = '1998-04-01'")
    served, original = _q(copy, sql), _q(scored, sql)
    auc = _q(copy, "SELECT value FROM evaluation.backtest_metrics WHERE cutoff_date = '1998-01-01' AND task = 'purchase' "
                   "AND system = 'champion' AND metric = 'roc_auc'").value[0]
    assert auc == pytest.approx(M.roc_auc(served.label_purchase, served.purchase_probability))
    # and it is not the figure of the model that was not promoted
    assert abs(auc - M.roc_auc(original.label_purchase, original.purchase_probability)) > 1e-4


def test_materialize_with_backtests_adds_the_newest_backtests(scored, tmp_path):
    """``customer-assets materialize --backtests`` (what ``make run`` calls) after scoring: the backtest of the models of
    1998-06-30 - 180 d = 1998-01-01, which exist already and are not retrained, and the LTV check of 1998-06-30 - 365 d
    = 1997-06-30, whose LTV model (partition 1997-04-01) it fits first."""
    import shutil

    from customer_assets.cli import Runner, materialize_backtests

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    trained = "SELECT cutoff_date, trained_at FROM models.churn ORDER BY cutoff_date"
    before = _q(copy, trained)
    runner = Runner(copy, dg.DagsterInstance.ephemeral())
    assert materialize_backtests(runner, date(1998, 6, 30), publish=date(1998, 6, 30)) == []
    assert runner.progress.done == runner.progress.total == 4  # backtest, LTV model, LTV check, serving copy and report
    # the report of the scored cutoff, written again after them, holds both in its track record, with the totals'
    # errors of the evaluation tables and the range they give the forecast totals
    page = (tmp_path / "reports" / "customer_report_1998-06-30.html").read_text()
    spend_error = _q(copy, "SELECT value FROM evaluation.backtest_metrics WHERE task = 'spend' AND system = 'champion' "
                           "AND metric = 'aggregate_error'").value[0]
    ltv_error = _q(copy, "SELECT value FROM evaluation.ltv_metrics WHERE system = 'champion' AND metric = 'aggregate_error'").value[0]
    totals = _q(copy, "SELECT sum(predicted_spend) AS spend, sum(predicted_ltv) AS ltv FROM scores.scored_customers "
                      "WHERE cutoff_date = '1998-06-30'").iloc[0]
    assert f"The one backtest (the scores made at 1998-04-01) missed its total by {spend_error:+.1%}." in page
    assert f"The one LTV check (the value served at 1997-06-30) missed its total by {ltv_error:+.1%}." in page
    # and that backtest tenth by tenth of the forecast (evaluation.spend_deciles)
    top = _q(copy, "SELECT aggregate_error FROM evaluation.spend_deciles WHERE decile = 10").aggregate_error[0]
    assert "The scores made at 1998-04-01: the customers ranked by their forecast spend" in page
    assert f"the top tenth was off by {top:+.1%}." in page and page.count("<td>10 (forecast to spend most)</td>") == 1
    # and by segment (evaluation.segment_metrics; the segments stored at 1998-04-01)
    champions = _q(copy, "SELECT customers, predicted_spend FROM evaluation.segment_metrics WHERE segment = 'Champions'")
    assert "The same scores, by the customers' segment at 1998-04-01: how right" in page
    assert f"<td>Champions</td><td>{champions.customers[0]:,}</td>" in page
    assert f"<td>${champions.predicted_spend[0]:,.0f}</td>" in page
    for total, error in ((totals.spend, spend_error), (totals.ltv, ltv_error)):
        low, high = sorted((total, total / (1 + error)))
        assert f"the actual total will be <b>${low:,.0f} to ${high:,.0f}</b>" in page
    # README query 11 gives the range the report shows under its totals
    (row,) = _q(str(tmp_path / "serving" / "serving.duckdb"), _readme_query(11)).to_dict("records")
    low, high = sorted((totals.spend, totals.spend / (1 + spend_error)))
    assert row == {"expected_revenue_90d": round(totals.spend), "backtests": 1, "smallest_miss": round(spend_error, 3),
                   "largest_miss": round(spend_error, 3), "if_off_as_before_low": round(low),
                   "if_off_as_before_high": round(high)}
    assert f"it will be ${row['if_off_as_before_low']:,.0f} to ${row['if_off_as_before_high']:,.0f}" in page
    # the serving copy (what `make sql` opens) holds both backtests, not only the warehouse
    serving = tmp_path / "serving"
    for table in ("evaluation.backtest_metrics", "evaluation.spend_deciles", "evaluation.segment_metrics",
                  "evaluation.ltv_metrics"):
        rows = duckdb.sql(f"SELECT count(*) FROM '{serving / (table + '.parquet')}'").fetchone()[0]
        assert rows == len(_q(copy, f"SELECT * FROM {table}")) > 0, table
    # so README queries 1-7 and 9-13 give in `make sql` (the serving copy) what they give on the warehouse
    for number in (*range(1, 8), 9, 10, 11, 12, 13):
        sql = _readme_query(number)
        pd.testing.assert_frame_equal(_q(str(serving / "serving.duckdb"), sql), _q(copy, sql), obj=f"README query {number}")
    # 12: the newest backtest (scores of 1998-04-01) by tenth of the forecast; they add up to its spend total's error
    deciles = _q(str(serving / "serving.duckdb"), _readme_query(12))
    assert deciles.decile.tolist() == list(range(10, 0, -1)) and deciles.customers.sum() == 2000
    assert (deciles.predicted.sum() - deciles.actual.sum()) / deciles.actual.sum() == pytest.approx(spend_error, abs=1e-3)
    # 9: every customer of the slice once, and all of them outside on tenure (one cohort); 10: what the check warned of
    extrapolating = _q(str(serving / "serving.duckdb"), _readme_query(9))
    assert extrapolating.customers.sum() == 2000 and extrapolating.outside_on.str.contains("tenure_days").all()
    warned = _q(str(serving / "serving.duckdb"), _readme_query(10))
    assert len(warned) == _q(copy, "SELECT count(*) AS n FROM scores.feature_drift WHERE past_limits").n[0] > 0
    pd.testing.assert_frame_equal(before, _q(copy, trained))
    _columns_as_documented(copy, [t for t in DOCUMENTED_TABLES if t[0].startswith("evaluation.")])
    assert list(_q(copy, "SELECT DISTINCT cutoff_date FROM evaluation.backtest_metrics").cutoff_date.dt.date) == [date(1998, 1, 1)]
    ltv = _q(copy, "SELECT DISTINCT cutoff_date, window_end, n_customers FROM evaluation.ltv_metrics")
    assert ltv.to_dict("records") == [{"cutoff_date": pd.Timestamp("1997-06-30"), "window_end": pd.Timestamp("1998-06-30"),
                                       "n_customers": 2000}]
    assert list(_q(copy, "SELECT cutoff_date FROM models.ltv ORDER BY 1").cutoff_date.dt.date) == [
        date(1997, 4, 1), date(1998, 1, 1), date(1998, 4, 1)]
    # a warehouse whose data are too short for either window: nothing runs, and the reasons are returned
    short = materialize_backtests(Runner(str(tmp_path / "empty.duckdb"), dg.DagsterInstance.ephemeral()), date(1997, 5, 1))
    assert short == ["evaluation/backtest: the data span less than 2 x 90 days after 1997-01-01",
                     "evaluation/ltv_backtest: the data span less than 365 + 90 days after 1997-01-01"]


def test_ltv_backtest_keeps_the_served_check_when_the_refit_fails(scored, tmp_path, monkeypatch):
    """The refitted BG/NBD + Gamma-Gamma is only a comparison: when it cannot be fitted, the check of the served LTV
    is still written, without the bgnbd_gamma_gamma rows, and the run says why."""
    import shutil

    from customer_assets.evaluation import assets as evaluation_assets
    from customer_assets.models import logic as L

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    assert materialize(copy, "features/calibration_transactions features/holdout_transactions features/customer_features "
                             "models/ltv", partition_key="1997-04-01").success

    def no_fit(*args, **kwargs):
        raise L.InsufficientDataError("ltv: Gamma-Gamma q = 0.900 <= 1 gives an infinite mean spend")

    monkeypatch.setattr(evaluation_assets.L, "train_ltv", no_fit)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(copy, "evaluation/ltv_backtest", partition_key="1997-06-30", instance=instance).success
    systems = set(_q(copy, "SELECT DISTINCT system FROM evaluation.ltv_metrics WHERE cutoff_date = '1997-06-30'").system)
    assert systems == {"champion", "last_365d_spend"}
    logs = [r.user_message for r in instance.all_logs(instance.get_runs()[0].run_id)]
    assert any("could not be refitted on the histories at 1997-06-30" in m and "q = 0.900" in m for m in logs)


def test_model_config_sets_the_stacking_candidates_and_refuses_bad_ones(scored, tmp_path, monkeypatch):
    """`stack_options` in the run config replaces the candidates of churn, spend and next_purchase; a malformed one
    fails naming it. `same_season` comes from CUSTOMER_ASSETS_SAME_SEASON unless the config sets it, and spend's
    `spend_blend_weight` from CUSTOMER_ASSETS_SPEND_BLEND_WEIGHT; a bad one fails naming both places."""
    import shutil

    from customer_assets import settings

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)

    def churn_config(options, **more):
        return {"ops": {"models__churn": {"config": {"stack_options": options, **more}}}}

    monkeypatch.setenv(settings.ENV_SAME_SEASON, "off")
    assert materialize(copy, "models/churn", partition_key="1998-04-01", run_config=churn_config(["2x30", "3x45"])).success
    calibration = json.loads(_q(copy, "SELECT calibration FROM models.churn WHERE cutoff_date = '1998-04-01'").calibration.iloc[0])
    assert calibration["same_season"]["reason"] == "not applied: switched off (same_season: off)"
    params = json.loads(_q(copy, "SELECT params FROM models.churn WHERE cutoff_date = '1998-04-01'").params.iloc[0])
    assert {(r["stacked_cutoffs"], r["stack_step_days"]) for r in params["selection"] if r["family"] == "xgboost"} == {(2, 30), (3, 45)}
    monkeypatch.delenv(settings.ENV_SAME_SEASON)
    assert settings.same_season() == "checked" and settings.same_season("off") == "off"
    monkeypatch.setenv(settings.ENV_SAME_SEASON, "assume_seasonal")
    assert settings.same_season() == "assume_seasonal" and settings.same_season("checked") == "checked"  # config wins
    result = materialize(copy, "models/churn", partition_key="1998-04-01", run_config=churn_config(["2x30"], same_season="yes"),
                         raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "same_season 'yes' is not one of: checked (" in message and "(set by the `same_season` config or CUSTOMER_ASSETS_SAME_SEASON)" in message
    for bad, message in ((["4-30"], "stack option '4-30' is not <cutoffs>x<days>, e.g. 4x30"),
                         (["0x30"], "stack option '0x30' needs at least 1 cutoff and 1 day"),
                         ([], "stack_options is empty")):
        result = materialize(copy, "models/churn", partition_key="1998-04-01", run_config=churn_config(bad), raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert message in failure.step_failure_data.error.message, bad
    # spend's blend weight: only spend has it, and only from 0 to 1
    result = materialize(copy, "models/spend", partition_key="1998-04-01", raise_on_error=False,
                         run_config={"ops": {"models__spend": {"config": {"spend_blend_weight": 1.5}}}})
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "spend_blend_weight 1.5 is not between 0 and 1" in failure.step_failure_data.error.message
    assert "(set by the `spend_blend_weight` config or CUSTOMER_ASSETS_SPEND_BLEND_WEIGHT)" in failure.step_failure_data.error.message
    monkeypatch.setenv(settings.ENV_SPEND_BLEND_WEIGHT, "half")
    result = materialize(copy, "models/spend", partition_key="1998-04-01", raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "CUSTOMER_ASSETS_SPEND_BLEND_WEIGHT='half' is not a number" in failure.step_failure_data.error.message
    monkeypatch.setenv(settings.ENV_SPEND_BLEND_WEIGHT, "0.5")
    assert settings.spend_blend_weight() == 0.5 and settings.spend_blend_weight(0.25) == 0.25  # config wins
    # the weight reaches the model: its learned champion blended 50/50 with BG/NBD + Gamma-Gamma
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(copy, "models/spend", partition_key="1998-04-01", instance=instance).success
    spend = _q(copy, "SELECT params, calibration FROM models.spend WHERE cutoff_date = '1998-04-01'")
    assert json.loads(spend.params.iloc[0])["family"] != "bgnbd"
    calibration = json.loads(spend.calibration.iloc[0])
    assert (calibration["blend_bgnbd_weight"], calibration["blend_weight_source"]) == (0.5, "config")
    logs = [r.user_message for r in instance.all_logs(instance.get_runs()[0].run_id)]
    assert any("BG/NBD blend weight 0.5 (fixed by the spend_blend_weight config)" in m for m in logs)
    monkeypatch.delenv(settings.ENV_SPEND_BLEND_WEIGHT)
    assert settings.spend_blend_weight() is None
    with pytest.raises(dg.DagsterInvalidConfigError, match="spend_blend_weight"):
        materialize(copy, "models/churn", partition_key="1998-04-01",
                    run_config={"ops": {"models__churn": {"config": {"spend_blend_weight": 0.5}}}})
    assert materialize(copy, "models/next_purchase", partition_key="1998-04-01",
                       run_config={"ops": {"models__next_purchase": {"config": {"stack_options": ["2x30", "3x45"]}}}}).success
    nxt = json.loads(_q(copy, "SELECT params FROM models.next_purchase WHERE cutoff_date = '1998-04-01'").params.iloc[0])
    assert {(r["stacked_cutoffs"], r["stack_step_days"]) for r in nxt["selection"] if r["family"] == "xgboost"} == {(2, 30), (3, 45)}
    # the stored churn model is still the one trained with the good options
    assert json.loads(_q(copy, "SELECT params FROM models.churn WHERE cutoff_date = '1998-04-01'").params.iloc[0]) == params


def test_the_nightly_runs_set_the_stacking_and_the_row_cap_through_the_environment(scored, tmp_path, monkeypatch):
    """The schedules' runs carry no config: CUSTOMER_ASSETS_STACK_OPTIONS and CUSTOMER_ASSETS_MAX_ROWS_PER_CUTOFF are
    how they set the candidate stackings and the customers per cutoff. Config still wins, and a bad value fails
    before anything is trained, naming the variable; the stored model stays."""
    import shutil

    from customer_assets import settings

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)

    def stacking(name):
        params = json.loads(_q(copy, f"SELECT params FROM models.{name} WHERE cutoff_date = '1998-04-01'").params.iloc[0])
        return {(r["stacked_cutoffs"], r["stack_step_days"]): r["train_rows"] for r in params["selection"]
                if r["family"] == "xgboost"}

    before = stacking("churn")  # the defaults: every customer of the slice at every cutoff
    assert set(before) == {(2, 30), (4, 30), (8, 30), (4, 60), (8, 15)}
    monkeypatch.setenv(settings.ENV_STACK_OPTIONS, " 2x30, 3x45")
    monkeypatch.setenv(settings.ENV_MAX_ROWS_PER_CUTOFF, "500")  # a quarter of the slice's 2,000 customers
    assert materialize(copy, "models/churn", partition_key="1998-04-01").success
    after = stacking("churn")
    assert set(after) == {(2, 30), (3, 45)}
    # the same two cutoffs, a fixed hash sample of a quarter of their customers (binomial spread about 1%)
    assert 0.22 < after[(2, 30)] / before[(2, 30)] < 0.28
    # config wins over both variables
    assert materialize(copy, "models/churn", partition_key="1998-04-01",
                       run_config={"ops": {"models__churn": {"config": {"stack_options": ["4x30"],
                                                                        "max_rows_per_cutoff": 50_000}}}}).success
    assert stacking("churn") == {(4, 30): before[(4, 30)]}
    stored = _q(copy, "SELECT params, trained_at FROM models.spend WHERE cutoff_date = '1998-04-01'")
    for name, value, message in (
            (settings.ENV_STACK_OPTIONS, "2x30,4-30", "stack option '4-30' is not <cutoffs>x<days>, e.g. 4x30 "
             "(set by the `stack_options` config or CUSTOMER_ASSETS_STACK_OPTIONS)"),
            (settings.ENV_MAX_ROWS_PER_CUTOFF, "lots", "CUSTOMER_ASSETS_MAX_ROWS_PER_CUTOFF='lots' is not a whole number"),
            (settings.ENV_MAX_ROWS_PER_CUTOFF, "0", "max_rows_per_cutoff 0 is not a number of customers, 1 or more "
             "(set by the `max_rows_per_cutoff` config or CUSTOMER_ASSETS_MAX_ROWS_PER_CUTOFF)")):
        monkeypatch.setenv(name, value)
        result = materialize(copy, "models/spend", partition_key="1998-04-01", raise_on_error=False)
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert message in failure.step_failure_data.error.message, value
        monkeypatch.delenv(name)
    assert _q(copy, "SELECT params, trained_at FROM models.spend WHERE cutoff_date = '1998-04-01'").equals(stored)


SCORE_CHECKS = dg.AssetSelection.checks(*[dg.AssetCheckKey(dg.AssetKey(["scores", "scored_customers"]), name)
                                            for name in ("every_customer_scored_once", "scores_valid")])


def test_score_checks_pass_on_the_scores_and_count_each_kind_of_bad_row(scored, tmp_path):
    """Run alone, the two checks cover every stored cutoff (1998-04-01 and 1998-06-30, 2,000 customers each); each
    corruption below is counted once, under its own name."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    evals = {e.asset_check_key.name: e for e in materialize(copy, SCORE_CHECKS).get_asset_check_evaluations()}
    assert {k: e.passed for k, e in evals.items()} == {"every_customer_scored_once": True, "scores_valid": True}
    assert evals["scores_valid"].metadata["rows_checked"].value == 4000
    first, second, third = _q(copy, "SELECT customer_id FROM scores.scored_customers WHERE cutoff_date = '1998-06-30' "
                                    "ORDER BY customer_id LIMIT 3").customer_id
    with duckdb.connect(copy) as conn:
        where = "WHERE cutoff_date = '1998-06-30' AND customer_id = ?"
        conn.execute(f"INSERT INTO scores.scored_customers SELECT * FROM scores.scored_customers {where}", [first])  # twice
        conn.execute("DELETE FROM scores.scored_customers WHERE cutoff_date = '1998-04-01' AND customer_id = ?", [second])
        conn.execute("INSERT INTO scores.scored_customers SELECT * REPLACE ('nobody' AS customer_id) "
                     f"FROM scores.scored_customers {where}", [third])  # a customer the features do not have
        conn.execute(f"UPDATE scores.scored_customers SET purchase_probability = 'NaN' {where}", [second])  # 2 rules
        conn.execute(f"UPDATE scores.scored_customers SET predicted_spend = -1 {where}", [third])
        conn.execute("UPDATE scores.scored_customers SET value_decile = 11, segment = NULL "
                     "WHERE cutoff_date = '1998-04-01' AND customer_id = ?", [third])
        conn.execute("UPDATE scores.scored_customers SET model_cutoff_date = '1998-04-02' "
                     "WHERE cutoff_date = '1998-04-01' AND customer_id = ?", [first])
    evals = {e.asset_check_key.name: e for e in materialize(copy, SCORE_CHECKS, raise_on_error=False).get_asset_check_evaluations()}
    once, valid = evals["every_customer_scored_once"], evals["scores_valid"]
    assert not once.passed and once.severity == dg.AssetCheckSeverity.ERROR
    assert {k: once.metadata[k].value for k in ("duplicated_customers", "customers_not_scored",
                                                "scored_customers_not_in_features")} == {
        "duplicated_customers": 1, "customers_not_scored": 1, "scored_customers_not_in_features": 1}
    assert not valid.passed and valid.severity == dg.AssetCheckSeverity.ERROR
    # 'nobody' was copied from third's row before its spend was set to -1: one negative value
    assert {k: v.value for k, v in valid.metadata.items()} == {
        "probability_out_of_range": 1, "probabilities_not_complementary": 1, "negative_or_non_finite_value": 1,
        "days_to_next_purchase_invalid": 0, "value_decile_out_of_range": 1, "model_cutoff_not_h_days_before": 1,
        "rows_with_nulls": 1, "rows_checked": 4000 + 1 - 1 + 1}
    assert valid.description == ("Rows breaking each rule: probability_out_of_range 1; probabilities_not_complementary 1; "
                                 "negative_or_non_finite_value 1; value_decile_out_of_range 1; "
                                 "model_cutoff_not_h_days_before 1; rows_with_nulls 1")
    assert once.description == "duplicated_customers 1; customers_not_scored 1; scored_customers_not_in_features 1"
    # what serving/snapshot refuses, per cutoff: 1998-06-30 the duplicated customer, the NaN and the -1 spend;
    # 1998-04-01 the decile 11 with its NULL segment (one row) and the wrong model cutoff (the missing and the unknown
    # customer are coverage, which only the check can judge)
    from customer_assets.scores.checks import invalid_cutoffs

    with duckdb.connect(copy, read_only=True) as conn:
        assert invalid_cutoffs(conn) == {"1998-04-01": 2, "1998-06-30": 3}


def test_bad_scores_are_not_published(scored, tmp_path, monkeypatch):
    """A (simulated) scoring bug writes a negative spend: scores_valid fails in the run, so serving/snapshot and the
    report do not run, and the serving copy keeps the scores that passed. In a partitioned run the checks look at that
    partition only: 1998-04-01's scores are not rescanned."""
    import shutil

    from customer_assets.scores import assets as score_assets

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    publish = "scores/scored_customers serving/snapshot reports/customer_report"
    assert materialize(copy, publish, partition_key="1998-06-30").success
    parquet = tmp_path / "serving" / "scores.scored_customers.parquet"
    published = duckdb.sql(f"SELECT sum(predicted_spend) FROM '{parquet}'").fetchone()[0]
    assert published > 0

    real = score_assets.score_frame

    def buggy(*args, **kwargs):
        out = real(*args, **kwargs)
        out.loc[out.index[:3], "predicted_spend"] = -1.0
        return out

    monkeypatch.setattr(score_assets, "score_frame", buggy)
    result = materialize(copy, publish, partition_key="1998-06-30", raise_on_error=False)
    evals = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert evals["every_customer_scored_once"].passed
    assert not evals["scores_valid"].passed and evals["scores_valid"].metadata["negative_or_non_finite_value"].value == 3
    assert evals["scores_valid"].metadata["rows_checked"].value == 2000
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {"scores/scored_customers"}
    assert duckdb.sql(f"SELECT sum(predicted_spend) FROM '{parquet}'").fetchone()[0] == published
    # the command line says what the check found, not only that a check failed
    from customer_assets.cli import Runner

    with pytest.raises(SystemExit) as exit_:
        Runner(copy, dg.DagsterInstance.ephemeral()).run(publish, "1998-06-30", "scored")
    assert str(exit_.value) == ("customer-assets: scored failed: scores/scored_customers check scores_valid: Rows breaking each "
                                "rule: negative_or_non_finite_value 3 (a blocking check: nothing downstream of it ran)")
    assert duckdb.sql(f"SELECT sum(predicted_spend) FROM '{parquet}'").fetchone()[0] == published
    # serving/snapshot run on its own, without the checks, checks the same rules and refuses too
    alone = materialize(copy, "serving/snapshot", partition_key="1998-06-30", raise_on_error=False)
    assert not alone.success
    message = " ".join(e.event_specific_data.error.message for e in alone.all_events if e.is_step_failure)
    assert "Not published: scores.scored_customers has rows that break the checks scores_valid or " \
           "every_customer_scored_once at 1998-06-30 (3 rows)." in message
    assert duckdb.sql(f"SELECT sum(predicted_spend) FROM '{parquet}'").fetchone()[0] == published
    # control: without the bug the same run publishes again
    monkeypatch.setattr(score_assets, "score_frame", real)
    result = materialize(copy, publish, partition_key="1998-06-30")
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == set(publish.split())



def test_scores_stable_compares_a_night_with_the_one_before_and_warns_on_a_large_move(scored, tmp_path):
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    stable = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey(["scores", "scored_customers"]), "scores_stable"))

    def check():
        (e,) = materialize(copy, stable).get_asset_check_evaluations()
        return e, {k: v.value for k, v in e.metadata.items()}

    first, meta = check()  # 1998-06-30: the cutoff before it, 1998-04-01, is 90 days older
    assert first.passed and meta == {"cutoff": "1998-06-30", "compared_with": "nothing: no scored cutoff in the 7 days before"}
    with duckdb.connect(copy) as conn:  # the next night, scored alike
        conn.execute("INSERT INTO scores.scored_customers SELECT * REPLACE (DATE '1998-07-01' AS cutoff_date) "
                     "FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'")
    same, meta = check()
    assert same.passed and meta == {"cutoff": "1998-07-01", "compared_with": "1998-06-30", "customers_in_both": 2000,
                                    "mean_purchase_probability_change": 0, "expected_spend_change": 0,
                                    "expected_ltv_change": 0, "purchase_probability_correlation": 1,
                                    "ltv_correlation": 1}
    with duckdb.connect(copy) as conn:  # a night whose purchase probabilities halved and whose LTVs were shuffled
        conn.execute("UPDATE scores.scored_customers SET purchase_probability = purchase_probability / 2, "
                     "churn_probability = 1 - purchase_probability / 2 WHERE cutoff_date = '1998-07-01'")
        conn.execute("""UPDATE scores.scored_customers s SET predicted_ltv = r.ltv FROM (
                          SELECT customer_id, lead(predicted_ltv, 1000) OVER (ORDER BY customer_id) AS ltv FROM scores.scored_customers
                          WHERE cutoff_date = '1998-07-01' QUALIFY ltv IS NOT NULL) r
                        WHERE s.cutoff_date = '1998-07-01' AND s.customer_id = r.customer_id""")
        # the first 1,000 customers (by id) took the LTVs of the last 1,000, and the last 1,000 kept their own
        corr = conn.execute("SELECT corr(a.predicted_ltv, b.predicted_ltv), sum(a.predicted_ltv) / sum(b.predicted_ltv) - 1 "
                            "FROM scores.scored_customers a JOIN scores.scored_customers b USING (customer_id) "
                            "WHERE a.cutoff_date = '1998-07-01' AND b.cutoff_date = '1998-06-30'").fetchone()
    moved, meta = check()
    assert not moved.passed and moved.severity == dg.AssetCheckSeverity.WARN
    assert meta["mean_purchase_probability_change"] == -0.5 and meta["expected_spend_change"] == 0
    assert meta["purchase_probability_correlation"] == 1  # halving every probability keeps their order and correlation
    assert meta["ltv_correlation"] == round(corr[0], 4) < 0.9 and meta["expected_ltv_change"] == round(corr[1], 4)
    assert moved.description.startswith("The scores at 1998-07-01 moved far from those at 1998-06-30: "
                                        "mean_purchase_probability_change -50.0%, ")


def _drift_check(result):
    (check,) = [e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "features_like_training"]
    return check


def test_features_like_training_warns_on_cdnow_where_every_customer_is_older_than_any_the_models_saw(scored, tmp_path,
                                                                                                     monkeypatch):
    """CDNOW is one cohort: every first purchase is in 1997-01-01 ... 1997-03-25. So at s = t + 90 days the youngest
    customer (tenure >= s - 1997-03-25) is older than the oldest at t (tenure <= t - 1997-01-01): all of them are above
    the largest tenure the models of t learned from. The LTV model, fitted on the histories at s, sees no shift."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    tenure = "SELECT min(tenure_days) AS lo, max(tenure_days) AS hi, count(*) AS n FROM features.customer_features WHERE cutoff_date = ?"
    at_t, at_s = (_q(copy, tenure, [c]).iloc[0] for c in ("1998-04-01", "1998-06-30"))
    assert at_s.lo > at_t.hi
    # the stored profile: deciles and shares of the customers at t, the range of every row the model was fitted on
    # (the features at each of its stacked training cutoffs, recomputed here by the same SQL)
    stored_model = _q(copy, "SELECT feature_profile, training_cutoffs FROM models.next_purchase WHERE cutoff_date = '1998-04-01'")
    profiles = json.loads(stored_model.feature_profile.iloc[0])
    profile = profiles["tenure_days"]
    cutoffs = [date.fromisoformat(c) for c in json.loads(stored_model.training_cutoffs.iloc[0])]
    assert len(cutoffs) > 1 and max(cutoffs) == date(1998, 4, 1)
    with duckdb.connect(copy, read_only=True) as conn:
        end = F.data_bounds(conn)[1]
        fitted_on = pd.concat([F.compute_features(conn, c, 90, end) for c in cutoffs], ignore_index=True)
    assert (profile["n"], profile["max"], profile["range_n"]) == (at_t.n, at_t.hi, len(fitted_on))
    # the oldest customers are the oldest at t, but the youngest were at an earlier cutoff: a wider range than at t
    assert profile["min"] == fitted_on.tenure_days.min() < at_t.lo
    # a windowed feature: the most spent in the last 30 days at any of the cutoffs, not only at t
    spend_30d_at_t = _q(copy, "SELECT max(spend_30d) AS hi FROM features.customer_features WHERE cutoff_date = '1998-04-01'").hi[0]
    assert profiles["spend_30d"]["max"] == fitted_on.spend_30d.max() > spend_30d_at_t
    assert sum(profile["shares"]) == pytest.approx(1.0) and profile["shares"][-1] == 0
    # all the customers at s in the top bin (above the largest decile at t), every other bin empty and floored at 1e-4
    shares = np.maximum(profile["shares"], 1e-4)
    now = np.full(len(shares), 1e-4)
    now[-2] = 1.0
    psi = float(np.sum((now - shares) * np.log(now / shares)))
    assert psi > 5

    result = materialize(copy, "scores/scored_customers", partition_key="1998-06-30")
    check = _drift_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    table = check.metadata["feature_drift"].value
    # 2,000 customers on each side: chance alone stays far below 0.25, which is the limit
    # and the share outside the range, 10%: about 1,900 customers profiled make chance's 0.5% the smaller limit
    assert f"| next_purchase | 1998-04-01 | tenure_days | {psi:,.4g} | 0.25 | 0 | 1 | 0.1 | 0 | 0 |" in table
    assert check.description.startswith("The customers at 1998-06-30 differ from those the models learned from: ")
    assert f"next_purchase, spend): PSI {psi:.2f}, 100.0% above the training range (cutoffs to 1998-04-01)" in check.description
    meta = result.asset_materializations_for_node("scores__scored_customers")[0].metadata
    assert meta["feature_drift_max_psi"].value == check.metadata["max_psi"].value >= psi
    # the same comparisons, queryable: scores.feature_drift at the cutoff
    stored = _q(copy, "SELECT * FROM scores.feature_drift WHERE cutoff_date = '1998-06-30'")
    assert len(stored) == check.metadata["model_features_compared"].value
    assert stored.past_limits.sum() == check.metadata["features_past_limits"].value > 0
    tenure_np = stored[(stored.model == "next_purchase") & (stored.feature == "tenure_days")].iloc[0]
    assert tenure_np.psi == pytest.approx(psi) and tenure_np.share_above_max == 1.0 and tenure_np.past_limits
    assert tenure_np.model_partition.date() == date(1998, 4, 1)
    assert not stored[stored.model == "ltv"].past_limits.any()
    tenure_ltv = stored[(stored.model == "ltv") & (stored.feature == "tenure_days")].iloc[0]
    assert (tenure_ltv.psi, tenure_ltv.share_below_min, tenure_ltv.share_above_max) == (0, 0, 0)
    # the serving copy that analysts open (make sql) holds them too
    materialize(copy, "serving/snapshot", partition_key="1998-06-30")
    served = _q(str(tmp_path / "serving" / "serving.duckdb"),
                "SELECT * FROM scores.feature_drift WHERE cutoff_date = '1998-06-30' ORDER BY model, feature")
    pd.testing.assert_frame_equal(served, stored.sort_values(["model", "feature"], ignore_index=True))
    # and the marketers' report says so under the models it was scored with
    materialize(copy, "reports/customer_report", partition_key="1998-06-30")
    page = (tmp_path / "reports" / "customer_report_1998-06-30.html").read_text()
    assert "Caution: these customers differ from the customers the models learned from." in page
    # with how many of them extrapolate: every one, on tenure
    assert "For 2,000 of the 2,000 customers (100.0%) at least one input lies outside the range the models" in page
    assert f"next_purchase, spend): PSI {psi:.2f}, 100.0% above the training range (cutoffs to 1998-04-01)" in page
    # per customer: every one is outside the tenure range; those whose recency is above the largest at t are named too
    scores = _q(copy, "SELECT customer_id, outside_training_range FROM scores.scored_customers WHERE cutoff_date = '1998-06-30'")
    assert scores.outside_training_range.str.contains("tenure_days").all()
    recency = _q(copy, "SELECT recency_days FROM features.customer_features WHERE cutoff_date = '1998-06-30'").recency_days
    older = int((recency > fitted_on.recency_days.max()).sum())
    assert scores.outside_training_range.str.contains("recency_days").sum() == older > 0
    # benchmarks/feature_drift.py --ranges counts the same, and at t alone the range of spend_30d would be narrower
    from customer_assets_tests.conftest import load_benchmark

    effect = load_benchmark("feature_drift").range_effect(copy, "1998-06-30").set_index("feature")
    assert effect.loc["recency_days", "fitted"] == older and effect.loc["tenure_days", "fitted"] == 2000
    spend_30d = _q(copy, "SELECT spend_30d FROM features.customer_features WHERE cutoff_date = '1998-06-30'").spend_30d
    # one customer spent more in the last 30 days than any customer at t, but not more than one at an earlier cutoff
    assert effect.loc["spend_30d"].to_dict() == {"at_t": 1, "fitted": 0, "n": 2000, "model_partition": "1998-04-01"}
    assert (spend_30d > spend_30d_at_t).sum() == 1 and (spend_30d > fitted_on.spend_30d.max()).sum() == 0
    assert not scores.outside_training_range.str.contains("spend_30d").any()
    # the scores are what they were: the check reads them, it does not change them
    assert_frame = "SELECT * FROM scores.scored_customers WHERE cutoff_date = '1998-06-30' ORDER BY customer_id"
    pd.testing.assert_frame_equal(_q(copy, assert_frame), _q(scored, assert_frame))

    # a warehouse of an earlier version: models.spend has no feature_profile column. Scoring still works, the check
    # leaves spend out and names it; retraining the partition stores a profile again
    with duckdb.connect(copy) as conn:
        conn.execute("ALTER TABLE models.spend DROP COLUMN feature_profile")
    check = _drift_check(materialize(copy, "scores/scored_customers", partition_key="1998-06-30"))
    assert check.metadata["models_without_profile"].value.startswith("spend 1998-04-01 (trained before feature profiles")
    assert "| spend |" not in check.metadata["feature_drift"].value
    materialize(copy, "models/spend", partition_key="1998-04-01")
    check = _drift_check(materialize(copy, "scores/scored_customers", partition_key="1998-06-30"))
    assert "models_without_profile" not in check.metadata and "| spend | 1998-04-01 |" in check.metadata["feature_drift"].value

    # a user who knows the data are one cohort can raise the limits: no PSI here reaches 100 (the largest is
    # max_psi), and 100% outside is not more than 1
    assert check.metadata["max_psi"].value < 100
    monkeypatch.setenv("CUSTOMER_ASSETS_DRIFT_PSI", "100")
    monkeypatch.setenv("CUSTOMER_ASSETS_DRIFT_OUTSIDE", "1")
    check = _drift_check(materialize(copy, "scores/scored_customers", partition_key="1998-06-30"))
    assert check.passed and check.metadata["features_past_limits"].value == 0
    assert check.metadata["limits"].value.startswith("PSI above 100 (")
    # a limit that is not a number fails the scoring before anything is written, saying what to set
    with duckdb.connect(copy) as conn:
        conn.execute("DELETE FROM scores.feature_drift")
    monkeypatch.setenv("CUSTOMER_ASSETS_DRIFT_PSI", "high")
    failed = materialize(copy, "scores/scored_customers", partition_key="1998-06-30", raise_on_error=False)
    assert not failed.success
    message = " ".join(e.event_specific_data.error.message for e in failed.all_events if e.is_step_failure)
    assert "CUSTOMER_ASSETS_DRIFT_PSI='high' is not a number: set a PSI above 0, e.g. 0.25, or unset it for 0.25" in message
    assert _q(copy, "SELECT count(*) AS n FROM scores.feature_drift").n.iloc[0] == 0
    pd.testing.assert_frame_equal(_q(copy, assert_frame), _q(scored, assert_frame))


# each table of the README's "Tables and columns", in its order, with the columns the code documents for it
DOCUMENTED_TABLES = [
    ("raw.transactions", "RAW_TRANSACTIONS"), ("raw.loads", "RAW_LOADS"), ("clean.transactions", "CLEAN_TRANSACTIONS"),
    ("quality.rejected_transactions", "REJECTED_TRANSACTIONS"), ("quality.history_changes", "HISTORY_CHANGES"),
    ("quality.erased_customers", "ERASED_CUSTOMERS"),
    ("features.cutoff_windows", "CUTOFF_WINDOWS"), ("features.calibration_transactions", "CALIBRATION_TRANSACTIONS"),
    ("features.holdout_transactions", "HOLDOUT_TRANSACTIONS"), ("features.customer_features", "CUSTOMER_FEATURES"),
    ("features.partition_inputs", "PARTITION_INPUTS"), ("segments.customer_segments", "CUSTOMER_SEGMENTS"),
    ("segments.segment_centroids", "SEGMENT_CENTROIDS"), ("models.churn", "MODEL_REGISTRY"),
    ("scores.scored_customers", "SCORED_CUSTOMERS"), ("scores.feature_drift", "FEATURE_DRIFT"), ("evaluation.backtest_metrics", "BACKTEST_METRICS"),
    ("evaluation.reliability", "RELIABILITY"), ("evaluation.spend_deciles", "SPEND_DECILES"),
    ("evaluation.segment_metrics", "SEGMENT_METRICS"), ("evaluation.ltv_metrics", "LTV_METRICS"),
]


def _columns_as_documented(warehouse, tables):
    from customer_assets import schemas

    with duckdb.connect(warehouse, read_only=True) as conn:
        for table, name in tables:
            documented = getattr(schemas, name)
            assert [tuple(r[:2]) for r in conn.execute(f"DESCRIBE {table}").fetchall()] == [c[:2] for c in documented], table


def test_every_table_has_the_documented_columns_and_the_readme_shows_them(scored):
    """The warehouse's columns (names and types) are the ones ``schemas`` documents (the UI's column schema), and the
    README's column table of each shows the same rows. The evaluation tables are checked where the backtests run
    (``test_materialize_with_backtests_adds_the_newest_backtests``), and quality.erased_customers where customers
    are erased (``test_forget_erases_customers_from_the_scores_the_serving_copy_and_the_reports``)."""
    import re
    from pathlib import Path

    from customer_assets import schemas

    elsewhere = ("evaluation.backtest_metrics", "evaluation.reliability", "evaluation.spend_deciles",
                 "evaluation.segment_metrics", "evaluation.ltv_metrics",
                 "quality.erased_customers")
    _columns_as_documented(scored, [t for t in DOCUMENTED_TABLES if t[0] not in elsewhere])
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    sections = re.split(r"^#### ", text.split("## Tables and columns", 1)[1].split("\n## ", 1)[0], flags=re.M)[1:]
    assert [s.split("`")[1].split(" ")[0].split(",")[0] for s in sections] == [t for t, _ in DOCUMENTED_TABLES]
    for section, (table, name) in zip(sections, DOCUMENTED_TABLES, strict=True):
        rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (.*) \|$", section, flags=re.M)
        assert [(a, b.strip(), c.replace("\\|", "|")) for a, b, c in rows] == list(getattr(schemas, name)), table


def test_forget_erases_customers_from_the_scores_the_serving_copy_and_the_reports(scored, tmp_path, monkeypatch, capsys):
    """``customer-assets forget`` on a copy of the e2e warehouse: one customer named by the 1998-06-30 report's
    list of customers to call, and one that is not. Their rows go from every table, the serving copy is published
    again and the report that named the first is rewritten without them; the score checks still pass."""
    import shutil

    from customer_assets.cli import Runner, forget, locate, main

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("CUSTOMER_ASSETS_SERVING_DIR", raising=False)
    monkeypatch.delenv("CUSTOMER_ASSETS_REPORTS_DIR", raising=False)
    runner = Runner(copy, dg.DagsterInstance.ephemeral())
    runner.run("serving/snapshot", partition_key="1998-06-30")
    runner.run("reports/customer_report", partition_key="1998-06-30")
    report = tmp_path / "reports" / "customer_report_1998-06-30.html"
    called = report.read_text().split("Customers to call first", 1)[1].split("<td>", 2)[1].split("</td>", 1)[0]
    other = _q(copy, "SELECT min(customer_id) AS c FROM scores.scored_customers WHERE customer_id <> ?", [called]).c[0]
    assert f">{other}<" not in report.read_text()
    before = _q(copy, "SELECT customer_id, count(*) AS n FROM scores.scored_customers WHERE customer_id IN (?, ?) "
                      "GROUP BY 1", [called, other]).set_index("customer_id").n
    assert before.to_dict() == {called: 2, other: 2}  # scored at 1998-04-01 and 1998-06-30
    # where the called customer is: every table that holds customers, the serving copy and the report
    located = locate([called], copy, dg.DagsterInstance.ephemeral())
    assert {"clean.transactions", "features.customer_features", "segments.customer_segments", "scores.scored_customers",
            "raw.transactions", "serving copy: scores.scored_customers.parquet",
            "serving copy: segments.customer_segments.parquet", "reports"} <= set(located)
    assert located["scores.scored_customers"] == 2 and located["reports"] == 1
    assert located["raw.transactions"] == located["clean.transactions"] + located.get("quality.rejected_transactions", 0)
    # a dry run counts the same and changes nothing: not the tables, not the report
    scores_before = _q(copy, "SELECT count(*) AS n FROM scores.scored_customers").n[0]
    dry = forget([called], copy, dg.DagsterInstance.ephemeral(), dry_run=True)
    assert _q(copy, "SELECT count(*) AS n FROM scores.scored_customers").n[0] == scores_before == 4000
    assert f">{called}<" in report.read_text()
    counts = forget([called], copy, dg.DagsterInstance.ephemeral())
    assert dry == counts
    assert counts["scores.scored_customers"] == 2 and counts["segments.customer_segments"] >= 2 and counts["reports"] == 1
    assert f">{called}<" not in report.read_text() and "Customers to call first" in report.read_text()
    assert main(["forget", "--customer", other.lower(), "--db", copy, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("Dry run, nothing changed. Erasing 1 customer(s) would change rows: "
                                              "quality.erased_customers 1, clean.transactions ")
    assert main(["forget", "--customer", other.lower(), "--db", copy]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Erased 1 customer(s). Rows changed: quality.erased_customers 1, clean.transactions ")
    assert printed.splitlines()[0].endswith("scores.scored_customers 2; reports rewritten: 0.")
    for table in ("clean.transactions", "features.customer_features", "segments.customer_segments", "scores.scored_customers"):
        assert len(_q(copy, f"SELECT 1 FROM {table} WHERE customer_id IN (?, ?)", [called, other])) == 0, table
    serving = tmp_path / "serving" / "scores.scored_customers.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{serving}' WHERE customer_id IN ('{called}', '{other}')").fetchone()[0] == 0
    assert duckdb.sql(f"SELECT count(*) FROM '{serving}'").fetchone()[0] == 3996
    # afterwards only the export (its rows as the raw view reads them) and the suppression list hold them
    assert locate([called], copy, dg.DagsterInstance.ephemeral()) == {
        "raw.transactions": located["raw.transactions"], "quality.erased_customers": 1, "customers": 1, "runs": {}}
    _columns_as_documented(copy, [("quality.erased_customers", "ERASED_CUSTOMERS")])
    # the scores and the features lost the same customers, at every stored cutoff
    evals = {e.asset_check_key.name: e for e in materialize(copy, SCORE_CHECKS).get_asset_check_evaluations()}
    assert {k: e.passed for k, e in evals.items()} == {"every_customer_scored_once": True, "scores_valid": True}
    assert evals["scores_valid"].metadata["rows_checked"].value == 3996


def test_the_command_line_ends_with_the_warehouse_a_query_and_the_report(scored, tmp_path, capsys, monkeypatch):
    """`customer-assets materialize` (what `make run` calls) tells the user where everything is: the warehouse, a query
    to paste, and the report it wrote."""
    import shutil

    from customer_assets.cli import main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # a throwaway instance, not the one `make test` may point at

    copy = tmp_path / "w.duckdb"
    shutil.copy(scored, copy)
    assert main(["materialize", "--skip-ingest", "--cutoff", "1998-06-30", "--db", str(copy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"Warehouse: {copy}" in out
    query = out[out.index("Try this query in `make sql` (DuckDB CLI, read-only) or any DuckDB client:") + 1]
    assert len(_q(str(copy), query)) > 0  # the query printed runs, and finds the segments
    report = tmp_path / "reports" / "customer_report_1998-06-30.html"
    assert report.exists()
    assert out[-1] == ("The report for marketers (segments, customers to call first, how right the forecasts have been): "
                       f"{report}")


def test_scoring_refuses_a_model_trained_for_another_horizon(scored, tmp_path):
    """A model trained when CUSTOMER_ASSETS_HORIZON_DAYS was 60 must not be served as a 90-day forecast (the
    variable is read when the definitions load, so the stored horizon is changed instead). Nothing is written."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    assert _q(copy, "SELECT DISTINCT horizon_days, ltv_horizon_days FROM models.churn").values.tolist() == [[90, 365]]
    before = _q(copy, "SELECT * FROM scores.scored_customers WHERE cutoff_date = '1998-06-30' ORDER BY customer_id")
    with duckdb.connect(copy) as conn:
        conn.execute("UPDATE models.spend SET horizon_days = 60 WHERE cutoff_date = '1998-04-01'")
    result = materialize(copy, SCORE_SEL, partition_key="1998-06-30", raise_on_error=False)
    assert not result.success
    msgs = " ".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)
    assert ("models/spend of partition 1998-04-01 was trained for a 60-day horizon, but CUSTOMER_ASSETS_HORIZON_DAYS is "
            "now 90: its forecasts are for a window of another length. Materialize models/spend for partition "
            "1998-04-01 again (the train_models job), or set CUSTOMER_ASSETS_HORIZON_DAYS back to 60.") in msgs
    pd.testing.assert_frame_equal(before, _q(copy, "SELECT * FROM scores.scored_customers WHERE cutoff_date = '1998-06-30' "
                                                  "ORDER BY customer_id"))
    # the LTV model is held to the LTV horizon; a row of an earlier version (NULL) is served as before
    with duckdb.connect(copy) as conn:
        conn.execute("UPDATE models.spend SET horizon_days = NULL WHERE cutoff_date = '1998-04-01'")
        conn.execute("UPDATE models.ltv SET ltv_horizon_days = 730 WHERE cutoff_date = '1998-04-01'")
    result = materialize(copy, SCORE_SEL, partition_key="1998-06-30", raise_on_error=False)
    msgs = " ".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)
    assert "models/ltv of partition 1998-04-01 was trained for a 730-day horizon, but CUSTOMER_ASSETS_LTV_HORIZON_DAYS" in msgs
    with duckdb.connect(copy) as conn:
        conn.execute("UPDATE models.ltv SET ltv_horizon_days = NULL WHERE cutoff_date = '1998-04-01'")
    assert materialize(copy, SCORE_SEL, partition_key="1998-06-30").success


def test_backtest_fits_the_segments_at_s_when_none_are_stored_and_gets_the_stored_ones(scored, tmp_path):
    """make run scores the last date only, so no segments are stored at the backtest's s: the backtest fits them on
    the features at s as segments/customer_segments would, and they are the ones that asset stores."""
    import shutil

    copy = str(tmp_path / "w.duckdb")
    shutil.copy(scored, copy)
    config = {"ops": {"evaluation__backtest": {"config": {"bootstrap_samples": 10}}}}
    assert materialize(copy, "evaluation/backtest", partition_key="1998-01-01", run_config=config).success
    stored = _q(copy, "SELECT * EXCLUDE (segments_from) FROM evaluation.segment_metrics ORDER BY segment")
    with duckdb.connect(copy) as conn:
        conn.execute("DELETE FROM segments.customer_segments WHERE cutoff_date = '1998-04-01'")
    assert materialize(copy, "evaluation/backtest", partition_key="1998-01-01", run_config=config).success
    fitted = _q(copy, "SELECT * FROM evaluation.segment_metrics ORDER BY segment")
    assert set(fitted.segments_from) == {"fitted"}
    pd.testing.assert_frame_equal(fitted.drop(columns="segments_from"), stored)
