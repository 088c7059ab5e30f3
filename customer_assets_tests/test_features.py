"""Split sets and feature values on the hand-built ledger, with the expected numbers worked out by hand.

Cutoff c = 2020-03-31, H = 90 -> label window (2020-03-31, 2020-06-29]; the data ends 2020-07-15.

Customer A (clean rows): 01-05 10, 01-05 5, 02-10 20, 03-20 30 (id ' a '), 03-25 -5 (return),
04-15 40, 05-01 10.
  purchase days 01-05, 02-10, 03-20 (the return day is not a purchase day) -> purchase_days 3, frequency 2
  recency = 03-31 - 03-20 = 11; tenure = 03-31 - 01-05 = 86 (26 + 29 + 31, 2020 is a leap year)
  t_x = 03-20 - 01-05 = 75; mean gap = 75 / 2 = 37.5; last gap = 03-20 - 02-10 = 39
  monetary_total = 10 + 5 + 20 + 30 - 5 = 60; per purchase day = 20; repeat mean = (20 + 30) / 2 = 25
  first day 15; max day 30; lines 4; returns -5 over 1 line
  spend_30d: days > 03-01 -> 30 - 5 = 25, 1 purchase day; spend_90d: days > 01-01 -> 60, 3 purchase days
  momentum = (3 / 90) / (3 / 87) = 87 / 90
  labels: 40 + 10 = 50, bought, 2 purchase days, next purchase 04-15 - 03-31 = 15 days
Customer B: 03-01 100 -> recency 30, tenure 30, frequency 0; spend_30d 0 (03-01 is not after c - 30),
  spend_90d 100; labels 0 / false / NULL days.
Customer C: first purchase 04-02, after c -> not a customer at c.
Customer D: 2019-12-01 60, 2020-07-15 70 -> recency = tenure = 121; spend_90d 0, spend_180d 60;
  the 07-15 purchase is after the window -> labels 0 / false.
"""

from datetime import date

import duckdb
import pytest

from customer_assets.features import logic
from customer_assets_tests.conftest import INGEST, materialize, row_counts, source_config

C = "2020-03-31"


@pytest.fixture
def built(ledger_csv, warehouse):
    cfg = source_config(ledger_csv)
    assert materialize(warehouse, INGEST, run_config=cfg).success
    result = materialize(
        warehouse, "features/calibration_transactions features/holdout_transactions features/customer_features", partition_key=C
    )
    assert result.success
    return warehouse, result


def _features(warehouse, cutoff=C):
    conn = duckdb.connect(warehouse, read_only=True)
    frame = conn.execute("SELECT * FROM features.customer_features WHERE cutoff_date = ? ORDER BY customer_id", [cutoff]).df()
    conn.close()
    return frame.set_index("customer_id")


def test_split_sets_hold_history_and_window(built):
    warehouse, result = built
    conn = duckdb.connect(warehouse, read_only=True)
    w = conn.execute("SELECT * FROM features.cutoff_windows WHERE cutoff_date = ?", [C]).df().iloc[0]
    assert (w.history_rows, w.holdout_rows, w.customers) == (7, 3, 3)
    assert str(w.holdout_end.date()) == "2020-06-29" and bool(w.labels_complete)
    # views, not copies: one narrow row per partition
    kinds = dict(conn.execute("SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'features'").fetchall())
    assert kinds["calibration_transactions"] == "VIEW" and kinds["holdout_transactions"] == "VIEW"
    hist = conn.execute("SELECT customer_id, sum(amount) FROM features.calibration_transactions WHERE cutoff_date = ? GROUP BY 1 ORDER BY 1", [C]).fetchall()
    assert hist == [("A", 60.0), ("B", 100.0), ("D", 60.0)]
    hold = conn.execute("SELECT customer_id, txn_date::VARCHAR FROM features.holdout_transactions WHERE cutoff_date = ? ORDER BY 2", [C]).fetchall()
    assert hold == [("C", "2020-04-02"), ("A", "2020-04-15"), ("A", "2020-05-01")]
    assert row_counts(result)["features/customer_features"] == 3


def test_customer_a_features_by_hand(built):
    a = _features(built[0]).loc["A"]
    expected = {
        "recency_days": 11, "frequency": 2, "purchase_days": 3, "n_transactions": 4, "monetary_total": 60.0,
        "monetary_mean": 20.0, "repeat_monetary_mean": 25.0, "first_purchase_amount": 15.0, "max_day_spend": 30.0,
        "tenure_days": 86, "t_x_days": 75, "mean_gap_days": 37.5, "last_gap_days": 39.0,
        "spend_30d": 25.0, "purchases_30d": 1, "spend_90d": 60.0, "purchases_90d": 3, "spend_180d": 60.0, "spend_365d": 60.0,
        "return_amount": -5.0, "return_count": 1,
        "label_spend": 50.0, "label_purchase": True, "label_purchase_days": 2, "label_days_to_next_purchase": 15,
    }
    for col, value in expected.items():
        assert a[col] == pytest.approx(value), col
    assert a["momentum_ratio"] == pytest.approx(87 / 90)


def test_one_time_and_lapsed_customers_by_hand(built):
    f = _features(built[0])
    assert list(f.index) == ["A", "B", "D"]  # C's first purchase is after the cutoff
    b, d = f.loc["B"], f.loc["D"]
    assert (b.recency_days, b.tenure_days, b.frequency, b.t_x_days) == (30, 30, 0, 0)
    assert (b.spend_30d, b.spend_90d, b.label_spend, bool(b.label_purchase)) == (0.0, 100.0, 0.0, False)
    assert b.isna()["mean_gap_days"] and b.isna()["label_days_to_next_purchase"]
    assert (d.recency_days, d.tenure_days, d.spend_90d, d.spend_180d) == (121, 121, 0.0, 60.0)
    assert (d.label_spend, bool(d.label_purchase)) == (0.0, False)  # 07-15 is after the window


def test_labels_are_null_when_the_window_is_incomplete(built):
    warehouse, _ = built
    assert materialize(warehouse, "features/calibration_transactions features/holdout_transactions features/customer_features",
                       partition_key="2020-05-01").success
    f = _features(warehouse, "2020-05-01")
    assert not f["labels_complete"].any()
    assert f["label_spend"].isna().all() and f["label_purchase"].isna().all()


def test_require_complete_labels_names_the_window():
    with pytest.raises(logic.IncompleteLabelsError) as err:
        logic.require_complete_labels(date(2020, 5, 1), 90, date(2020, 7, 15), "models/churn for partition 2020-05-01")
    msg = str(err.value)
    assert "models/churn for partition 2020-05-01" in msg and "2020-07-30" in msg and "2020-04-16" in msg


def test_rematerializing_a_then_b_then_a_replaces_a_and_leaves_b(built, ledger_csv, tmp_path):
    warehouse, _ = built
    sel = "features/calibration_transactions features/holdout_transactions features/customer_features"
    b_key = "2020-04-30"
    assert materialize(warehouse, sel, partition_key=b_key).success
    b_before = _features(warehouse, b_key)
    # change the data: B buys again on 2020-03-15, then rebuild clean and only partition A
    changed = tmp_path / "changed.csv"
    changed.write_text(ledger_csv.read_text() + "B,2020-03-15,1,7,O99\n")
    assert materialize(warehouse, INGEST, run_config=source_config(changed)).success
    assert materialize(warehouse, sel, partition_key=C).success
    a_after = _features(warehouse, C)
    assert a_after.loc["B", "recency_days"] == 16 and a_after.loc["B", "monetary_total"] == 107.0
    assert len(a_after) == 3  # replaced, not appended
    b_after = _features(warehouse, b_key)
    assert b_after.equals(b_before)  # B untouched
    conn = duckdb.connect(warehouse, read_only=True)
    per_cutoff = dict(conn.execute("SELECT cutoff_date::VARCHAR, count(*) FROM features.customer_features GROUP BY 1").fetchall())
    assert per_cutoff == {C: 3, b_key: 4}


def test_feature_checks_pass_on_clean_and_fail_on_dirty_rows(built):
    import dagster as dg

    warehouse, result = built
    assert {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()} == {
        "one_row_per_customer": True, "features_valid": True}
    with duckdb.connect(warehouse) as conn:  # a duplicated customer and a recency beyond the history
        conn.execute("INSERT INTO features.customer_features SELECT * FROM features.customer_features WHERE customer_id = 'A'")
        conn.execute("UPDATE features.customer_features SET recency_days = 999 WHERE customer_id = 'B'")
    checks = dg.AssetSelection.checks_for_assets(dg.AssetKey(["features", "customer_features"]))
    result = materialize(warehouse, checks, raise_on_error=False)
    outcome = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert outcome == {"one_row_per_customer": False, "features_valid": False}


def test_reconciliation_check_fails_when_a_row_goes_missing(ledger_csv, warehouse):
    import dagster as dg

    assert materialize(warehouse, INGEST,
                       run_config=source_config(ledger_csv)).success
    with duckdb.connect(warehouse) as conn:
        conn.execute("DELETE FROM clean.transactions WHERE source_row = 1")
    checks = dg.AssetSelection.checks_for_assets(dg.AssetKey(["clean", "transactions"]))
    result = materialize(warehouse, checks, raise_on_error=False)
    evals = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert not evals["rows_reconcile"].passed
    assert evals["rows_reconcile"].metadata["lost_rows"].value == 1


def test_key_check_fails_on_a_repeated_or_doubly_classified_row(ledger_csv, warehouse):
    import dagster as dg

    assert materialize(warehouse, INGEST,
                       run_config=source_config(ledger_csv)).success
    checks = dg.AssetSelection.checks_for_assets(dg.AssetKey(["clean", "transactions"]))
    with duckdb.connect(warehouse) as conn:  # the same source row twice in clean
        conn.execute("INSERT INTO clean.transactions SELECT * FROM clean.transactions WHERE source_row = 1")
    evals = {e.asset_check_key.name: e for e in materialize(warehouse, checks, raise_on_error=False).get_asset_check_evaluations()}
    assert not evals["clean_keys_unique"].passed and evals["clean_keys_unique"].metadata["repeated_keys"].value == 1
    with duckdb.connect(warehouse) as conn:  # a rejected row also counted as clean
        conn.execute("DELETE FROM clean.transactions WHERE source_row = 1")
        conn.execute("INSERT INTO clean.transactions BY NAME SELECT * EXCLUDE (source_row), 1 AS source_row "
                     "FROM clean.transactions WHERE source_row = 2")
        conn.execute("UPDATE clean.transactions SET source_row = (SELECT min(source_row) FROM quality.rejected_transactions) "
                     "WHERE source_row = 1")
    evals = {e.asset_check_key.name: e for e in materialize(warehouse, checks, raise_on_error=False).get_asset_check_evaluations()}
    assert not evals["clean_keys_unique"].passed
    assert evals["clean_keys_unique"].metadata["rows_both_clean_and_rejected"].value == 1
    assert evals["clean_keys_unique"].metadata["repeated_keys"].value == 0


def test_a_failed_feature_gate_stops_the_downstream_segments(ledger_csv, warehouse, monkeypatch):
    """A (simulated) feature bug puts a recency beyond the history: the blocking check fails and segments never run."""
    import dagster as dg

    from customer_assets.features import logic as F

    assert materialize(warehouse, INGEST,
                       run_config=source_config(ledger_csv)).success
    monkeypatch.setattr(F, "FEATURE_SQL", "SELECT * REPLACE (CASE WHEN customer_id = 'B' THEN 9999 ELSE recency_days END "
                        f"AS recency_days) FROM ({F.FEATURE_SQL})")
    result = materialize(warehouse, "features/calibration_transactions features/holdout_transactions "
                         "features/customer_features segments/customer_segments", partition_key=C, raise_on_error=False)
    checks = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert not checks["features_valid"].passed
    assert checks["features_valid"].metadata["recency_out_of_range"].value == 1
    assert checks["features_valid"].severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "features/customer_features" in materialized and "segments/customer_segments" not in materialized
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert not any("segments" in s for s in started), started
    assert failed == {"features__customer_features_features_valid"}
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert not conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'segments'").fetchone()[0]
    # control: without the bug the same run reaches the segments step
    monkeypatch.undo()
    result = materialize(warehouse, "features/calibration_transactions features/holdout_transactions "
                         "features/customer_features segments/customer_segments", partition_key=C, raise_on_error=False)
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert any("segments" in s for s in started), started


def test_features_are_bit_identical_across_runs_on_multi_threaded_data(tmp_path):
    """Money is summed exactly (DECIMAL), so DuckDB's parallel aggregation gives the same bits on every run."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = 600_000  # several row groups, so both threads take part
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), config={"threads": 2})
    conn.execute("CREATE SCHEMA clean")
    conn.execute("CREATE TABLE clean.transactions AS SELECT * FROM (SELECT 'C' || (i % 3000)::VARCHAR AS customer_id, "
                 "DATE '2020-01-01' + (i % 700)::INTEGER AS txn_date, amount, amount < 0 AS is_return "
                 "FROM (SELECT unnest(range(?)) AS i, unnest(?::DOUBLE[]) AS amount))",
                 [n, (rng.lognormal(3, 1.2, n) * rng.choice([1, 1, 1, 1, -1], n)).round(2).tolist()])
    runs = [logic.compute_features(conn, date(2021, 6, 1), 90, date(2021, 11, 30)) for _ in range(4)]
    money = ["monetary_total", "monetary_mean", "spend_365d", "return_amount", "label_spend"]
    assert len(runs[0]) == 3000 and runs[0]["monetary_total"].abs().sum() > 0
    for other in runs[1:]:
        for col in money:
            assert np.array_equal(runs[0][col].to_numpy(), other[col].to_numpy()), col
    # and the sums are the exact sums of the cent amounts
    exact = conn.execute("SELECT sum(amount::DECIMAL(38, 2))::DOUBLE FROM clean.transactions WHERE txn_date <= '2021-06-01' "
                         "AND customer_id = 'C17'").fetchone()[0]
    assert runs[0].set_index("customer_id").loc["C17", "monetary_total"] == exact


def _features_config(keep):
    return {"ops": {"features__customer_features": {"config": {"keep_cutoffs": keep}}}}


def test_retention_keeps_the_newest_cutoffs_and_lists_what_it_keeps(ledger_csv, warehouse):
    """keep_cutoffs = 1: the newest cutoff and the one just written stay; the others go, and the metadata says which."""
    sel = "features/calibration_transactions features/holdout_transactions features/customer_features"

    def run(cutoff):
        result = materialize(warehouse, sel, partition_key=cutoff, run_config=_features_config(1))
        assert result.success
        return result

    assert materialize(warehouse, INGEST,
                       run_config=source_config(ledger_csv)).success
    run(C)
    first = _features(warehouse, C)
    run("2020-04-30")  # newer: C is beyond the retention
    assert set(_stored_cutoffs(warehouse)) == {"2020-04-30"}
    result = run("2020-02-29")  # older than the newest, but just written: it stays for this run's downstream steps
    assert set(_stored_cutoffs(warehouse)) == {"2020-02-29", "2020-04-30"}
    md = result.asset_materializations_for_node("features__customer_features")[0].metadata
    assert md["keep_cutoffs"].value == 1 and md["pruned_cutoffs"].value == []
    result = run(C)  # recomputed after being deleted: the same rows
    assert set(_stored_cutoffs(warehouse)) == {C, "2020-04-30"}
    assert _features(warehouse, C).equals(first)
    md = result.asset_materializations_for_node("features__customer_features")[0].metadata
    assert md["pruned_cutoffs"].value == ["2020-02-29"] and md["stored_cutoffs"].value == [C, "2020-04-30"]


def _stored_cutoffs(warehouse):
    with duckdb.connect(warehouse, read_only=True) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT cutoff_date::VARCHAR FROM features.customer_features").fetchall()]


def test_retention_settings_are_validated(monkeypatch):
    from customer_assets.settings import ENV_KEEP_CUTOFFS, keep_cutoffs

    monkeypatch.delenv(ENV_KEEP_CUTOFFS, raising=False)
    assert keep_cutoffs() == 0
    monkeypatch.setenv(ENV_KEEP_CUTOFFS, "3")
    assert keep_cutoffs() == 3 and keep_cutoffs(0) == 0  # Dagster config wins over the environment
    monkeypatch.setenv(ENV_KEEP_CUTOFFS, "three")
    with pytest.raises(ValueError, match="CUSTOMER_ASSETS_KEEP_CUTOFFS must be a whole number"):
        keep_cutoffs()
    with pytest.raises(ValueError, match="0 \\(keep all\\) or a positive number, got -2"):
        keep_cutoffs(-2)


def test_prune_partitions_by_hand():
    from customer_assets.storage import prune_partitions

    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA s; CREATE TABLE s.t AS SELECT (DATE '2020-01-01' + INTERVAL (i) MONTH)::DATE AS cutoff_date, i "
                 "FROM range(5) r(i)")  # 2020-01 .. 2020-05
    assert prune_partitions(conn, "s", "t", 0, date(2020, 1, 1)) == []  # 0 keeps all
    dropped = prune_partitions(conn, "s", "t", 2, date(2020, 2, 1))
    assert dropped == [date(2020, 1, 1), date(2020, 3, 1)]
    assert [r[0] for r in conn.execute("SELECT i FROM s.t ORDER BY i").fetchall()] == [1, 3, 4]


def test_customer_count_matches_the_feature_rows_and_leaves_out_returns_only_customers():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA clean")
    conn.execute("""CREATE TABLE clean.transactions AS SELECT * FROM (VALUES
        ('A', DATE '2020-01-05', 10.0, false), ('A', DATE '2020-02-01', -5.0, true),
        ('R', DATE '2020-01-10', -7.0, true),            -- returns only: not a customer
        ('L', DATE '2020-04-01', 20.0, false))           -- first purchase after the cutoff
        t(customer_id, txn_date, amount, is_return)""")
    cutoff = date(2020, 3, 31)
    rows = logic.compute_features(conn, cutoff, 90, date(2020, 7, 15))
    assert rows["customer_id"].tolist() == ["A"]
    assert logic.customer_count(conn, cutoff) == 1 == len(rows)
