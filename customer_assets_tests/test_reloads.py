"""Reloads of the source: a cut-short export is refused, changed days are listed, stale partitions are found.

The hand-built ledger (conftest.LEDGER) cleans to 11 rows, dated 2019-12-01 to 2020-07-15. Seven of them are dated on
or before 2020-03-31: A's 01-05 (two), 02-10, 03-20 and the 03-25 return, B's 03-01 and D's 2019-12-01.
"""

from datetime import date

import dagster as dg
import duckdb
import pytest

from customer_assets import settings
from customer_assets.features import logic as F
from customer_assets.ingest import logic
from customer_assets.schemas import HISTORY_CHANGES, PARTITION_INPUTS
from customer_assets.settings import ColumnMapping
from customer_assets_tests.conftest import INGEST, LEDGER, LEDGER_COLUMNS, materialize, source_config

C = "2020-03-31"
EARLY = "2019-12-10"  # history 2019-12-01 only; label window ends 2020-03-09
LATE_ROW = "B,2020-03-15,1,7,O99\n"
FEATURES = "features/calibration_transactions features/holdout_transactions features/customer_features"


def _reload(conn, path, load_id, **kwargs):
    logic.load_raw(conn, logic.SourceSpec(str(path), ColumnMapping.parse(LEDGER_COLUMNS), "csv"), load_id)
    return logic.clean_transactions(conn, **kwargs)


def _refused(conn, path, text: str, load_id: str) -> str:
    """The message with which a reload of ``path`` holding ``text`` is refused."""
    path.write_text(text)
    with pytest.raises(logic.HistoryLossError) as refused:
        _reload(conn, path, load_id)
    return str(refused.value)


def _clean(conn):
    return conn.execute("SELECT count(*), any_value(load_id) FROM clean.transactions").fetchone()


def test_a_reload_that_lost_history_is_refused_and_clean_is_kept(ledger_csv):
    conn = duckdb.connect()
    first = _reload(conn, ledger_csv, "first")
    assert first["history"] == "first load: nothing to compare with" and first["data_changed"]
    # the same file, cut short after A's first five lines: 5 of the 11 clean rows are left
    assert _refused(conn, ledger_csv, "".join(LEDGER.splitlines(keepends=True)[:6]), "second") == (
        f"Load second of {ledger_csv} has 6 fewer clean rows dated on or before 2020-07-15 than load first of the same "
        "file (11 -> 5, -54.5%), more than max_history_loss allows (5.0%). It lost 3 of the 4 customers of load first "
        "of the same file (-75.0%) too. Was the export cut short? clean.transactions is unchanged. If the history "
        "really shrank, set max_history_loss in the config of clean/transactions, or CUSTOMER_ASSETS_MAX_HISTORY_LOSS, "
        "to 0.75 or more.")  # only A is left of A, B, C and D: the share named accepts both losses
    assert _clean(conn) == (11, "first")
    assert conn.execute("SELECT count(*) FROM quality.history_changes").fetchone()[0] == 0
    with pytest.raises(logic.HistoryLossError, match=r"lost 3 of the 4 customers .*\(those days' rows: 11 -> 5\)\. Was the export filtered or cut short\? .* to 0\.75 or more"):
        logic.clean_transactions(conn, max_history_loss=0.55)  # enough for the rows, not for the customers
    # the share the message names is enough to accept it
    counts = logic.clean_transactions(conn, max_history_loss=0.75)
    assert _clean(conn) == (5, "second")
    assert (counts["history_rows_before"], counts["history_rows_after"]) == (11, 5)
    # the days lost, each with its rows and net amount before and after (A's 04-15 and 05-01, B, C and D's two)
    lost = conn.execute("SELECT txn_date::VARCHAR, rows_before, rows_after, amount_before, amount_after "
                        "FROM quality.history_changes ORDER BY txn_date").fetchall()
    assert lost == [("2019-12-01", 1, 0, 60.0, 0.0), ("2020-03-01", 1, 0, 100.0, 0.0), ("2020-04-02", 1, 0, 50.0, 0.0),
                    ("2020-04-15", 1, 0, 40.0, 0.0), ("2020-05-01", 1, 0, 10.0, 0.0), ("2020-07-15", 1, 0, 70.0, 0.0)]


def test_late_rows_and_corrections_are_listed_by_day_and_new_days_are_not(ledger_csv, tmp_path):
    conn = duckdb.connect()
    _reload(conn, ledger_csv, "first")
    # B's 03-01 purchase corrected from 2 x 50 to 2 x 40, a late row for B on 03-15, and a new day after the data
    ledger_csv.write_text(LEDGER.replace("B,2020-03-01,2,50,O8", "B,2020-03-01,2,40,O8") + LATE_ROW
                          + "E,2020-07-20,1,5,O100\n")
    counts = _reload(conn, ledger_csv, "second")
    assert counts["data_changed"]
    assert counts["history"] == ("same source: 2 day(s) on or before 2020-07-15 changed since load first, the first "
                                 "2020-03-01; rows on or before 2020-07-15: 11 -> 12 (+9.1%); customers in them: 4, "
                                 "the same")  # E's purchase is after 2020-07-15
    changes = conn.execute("SELECT load_id, previous_load_id, txn_date::VARCHAR, rows_before, rows_after, amount_before, "
                           "amount_after FROM quality.history_changes ORDER BY txn_date").fetchall()
    assert changes == [("second", "first", "2020-03-01", 1, 1, 100.0, 80.0),
                       ("second", "first", "2020-03-15", 0, 1, 0.0, 7.0)]
    # the same rows again, even in another order and with other row numbers: nothing changed
    lines = ledger_csv.read_text().splitlines(keepends=True)
    ledger_csv.write_text(lines[0] + "".join(reversed(lines[1:])))
    same = _reload(conn, ledger_csv, "third")
    assert (same["history_changed_days"], same["data_changed"]) == (0, False)
    # a day added after the last one is new data, not a change of the history
    ledger_csv.write_text(ledger_csv.read_text() + "E,2020-07-21,1,5,O101\n")
    more = _reload(conn, ledger_csv, "more")
    assert (more["history_changed_days"], more["data_changed"]) == (0, True)
    # another file is a new history: compared, never refused, however much it lost
    other = tmp_path / "other.csv"
    other.write_text("".join(LEDGER.splitlines(keepends=True)[:3]))
    counts = _reload(conn, other, "fourth")
    assert counts["history"].startswith(f"new source (was {ledger_csv}): ") and counts["data_changed"]
    assert (counts["history_rows_before"], counts["history_rows_after"]) == (14, 2)


def test_the_loss_limit_is_set_by_config_or_environment_and_a_bad_one_names_both(ledger_csv, warehouse, monkeypatch):
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    ledger_csv.write_text("".join(LEDGER.splitlines(keepends=True)[:11]))  # the first ten lines: 10 clean rows of 11
    refused = materialize(warehouse, INGEST, run_config=source_config(ledger_csv), raise_on_error=False)
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert "has 1 fewer clean rows dated on or before 2020-07-15" in failure.step_failure_data.error.message
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 11
    monkeypatch.setenv(settings.ENV_MAX_HISTORY_LOSS, "0.2")
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 10
    config = source_config(ledger_csv)
    config["ops"]["clean_transactions"] = {"config": {"max_history_loss": 1.5}}  # the config wins, and is checked
    refused = materialize(warehouse, INGEST, run_config=config, raise_on_error=False)
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert ("max_history_loss 1.5 is not a share from 0 to 1 (set by the `max_history_loss` config of clean/transactions "
            "or CUSTOMER_ASSETS_MAX_HISTORY_LOSS)") in failure.step_failure_data.error.message
    monkeypatch.setenv(settings.ENV_MAX_HISTORY_LOSS, "a lot")
    with pytest.raises(settings.SettingError, match="CUSTOMER_ASSETS_MAX_HISTORY_LOSS='a lot' is not a number"):
        settings.max_history_loss()


def _columns_as_documented(warehouse, tables):
    with duckdb.connect(warehouse, read_only=True) as conn:
        for table, documented in tables:
            assert [r[:2] for r in conn.execute(f"DESCRIBE {table}").fetchall()] == [c[:2] for c in documented], table


def _check(result, name="stored_partitions_current"):
    return next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == name)


def test_partitions_computed_before_a_late_row_are_found_refused_and_recomputed(ledger_csv, warehouse):
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    for cutoff in (EARLY, C):
        assert materialize(warehouse, FEATURES, partition_key=cutoff).success
    _columns_as_documented(warehouse, [("quality.history_changes", HISTORY_CHANGES), ("features.partition_inputs", PARTITION_INPUTS)])
    ledger_csv.write_text(LEDGER + LATE_ROW)
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv))
    _columns_as_documented(warehouse, [("quality.history_changes", HISTORY_CHANGES)])  # as a reload writes it
    check = _check(result)
    # 03-15 is in the history of C; the label window of EARLY ends 03-09, so EARLY still matches
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["stale_cutoffs"].value == [C]
    assert (check.metadata["history_changed_days"].value, check.metadata["first_changed_date"].value) == (1, "2020-03-15")
    with duckdb.connect(warehouse) as conn:
        load = conn.execute("SELECT load_id FROM features.partition_inputs WHERE cutoff_date = ?", [C]).fetchone()[0]
        assert F.inputs_changed(conn, date(2020, 3, 31), 90, labels=True) == (
            f"the transactions dated on or before 2020-03-31 changed since it was computed from load {load} "
            "(7 rows then, 8 now)")
        warnings = []
        assert F.stored_labelled_rows(conn, date(2020, 3, 31), 90, "models/churn", warnings.append) == 0
        assert warnings[0].startswith("features/customer_features 2020-03-31 is out of date: the transactions dated")
        assert "models/churn recomputes it from clean.transactions" in warnings[0]
        assert F.stored_labelled_rows(conn, date(2019, 12, 10), 90, "models/churn", warnings.append) == 1
    # segments (and scores, through the same helper) refuse the stale partition and say what to do
    refused = materialize(warehouse, "segments/customer_segments", partition_key=C, raise_on_error=False)
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert ("features/customer_features 2020-03-31 is out of date: the transactions dated on or before 2020-03-31 "
            "changed") in failure.step_failure_data.error.message
    assert "Materialize features/customer_features 2020-03-31 again" in failure.step_failure_data.error.message
    # materialized again, it matches: the readers use it and the check passes
    assert materialize(warehouse, FEATURES, partition_key=C).success
    with duckdb.connect(warehouse) as conn:
        assert F.stored_labelled_rows(conn, date(2020, 3, 31), 90, "models/churn") == 3
        assert conn.execute("SELECT history_rows, window_rows FROM features.partition_inputs WHERE cutoff_date = ?",
                            [C]).fetchone() == (8, 3)
    result = materialize(warehouse, dg.AssetSelection.checks_for_assets(dg.AssetKey(["clean", "transactions"])))
    assert _check(result).passed and _check(result).metadata["stale_partitions"].value == 0


def test_a_change_in_the_label_window_matters_only_to_label_readers(ledger_csv, warehouse):
    ledger = LEDGER + "E,2020-02-20,1,30,O50\n"  # a fourth customer at C, enough to segment
    ledger_csv.write_text(ledger)
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    assert materialize(warehouse, FEATURES, partition_key=C).success
    ledger_csv.write_text(ledger.replace("A,2020-05-01,1,10,O7", "A,2020-05-01,1,12,O7"))  # in C's label window
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv))
    assert _check(result).metadata["stale_cutoffs"].value == [C]
    with duckdb.connect(warehouse) as conn:
        assert F.inputs_changed(conn, date(2020, 3, 31), 90, labels=False) is None
        assert F.inputs_changed(conn, date(2020, 3, 31), 90, labels=True).startswith(
            "the transactions of its label window (2020-03-31 + 90 days) changed")
    assert materialize(warehouse, "segments/customer_segments", partition_key=C).success  # segments use no labels


def test_a_partition_with_no_record_of_its_inputs_is_recomputed_by_label_readers(ledger_csv, warehouse):
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    assert materialize(warehouse, FEATURES, partition_key=C).success
    with duckdb.connect(warehouse) as conn:  # as an earlier version left it
        conn.execute("DROP TABLE features.partition_inputs")
        warnings = []
        assert F.stored_labelled_rows(conn, date(2020, 3, 31), 90, "evaluation/backtest", warnings.append) == 0
        assert "nothing records which transactions it was computed from" in warnings[0]
    result = materialize(warehouse, dg.AssetSelection.checks_for_assets(dg.AssetKey(["clean", "transactions"])))
    assert _check(result).passed and _check(result).metadata["unrecorded_partitions"].value == 1


def runner_load(runner) -> str:
    """The newest load (the refused one: its load is recorded, its cleaning is not)."""
    with duckdb.connect(runner.database, read_only=True) as conn:
        return conn.execute("SELECT load_id FROM raw.loads ORDER BY loaded_at DESC LIMIT 1").fetchone()[0]


def test_the_cli_refuses_a_cut_short_export_with_the_reason(ledger_csv, tmp_path, monkeypatch):
    """The nightly ingest and `customer-assets materialize` run the same selection: a cut-short file stops it there."""
    from customer_assets.cli import Runner
    from customer_assets.jobs import INGEST_SELECTION

    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(ledger_csv))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", LEDGER_COLUMNS)
    runner = Runner(str(tmp_path / "w.duckdb"), instance=dg.DagsterInstance.ephemeral())
    runner.run(INGEST_SELECTION, label="ingest")
    ledger_csv.write_text("".join(LEDGER.splitlines(keepends=True)[:6]))
    with pytest.raises(SystemExit) as exc:
        runner.run(INGEST_SELECTION, label="ingest")
    text = str(exc.value)
    assert text.startswith(f"customer-assets: ingest failed: Load {runner_load(runner)} of {ledger_csv} has 6 fewer "
                           "clean rows dated on or before 2020-07-15")
    assert "Error occurred while executing" not in text
    assert runner.last_date() == "2020-07-15"  # the previous clean table


def test_stalled_since_finds_the_newest_run_of_loads_with_the_same_last_date():
    from customer_assets.ingest.checks import stalled_since

    loads = [(500.0, "2020-07-15"), (400.0, "2020-07-15"), (300.0, "2020-07-10"), (200.0, "2020-07-15")]  # newest first
    assert stalled_since(loads) == ("2020-07-15", 400.0, 2)
    assert stalled_since(loads[2:]) == ("2020-07-10", 300.0, 1)
    assert stalled_since([]) == (None, None, 0)


def test_a_source_whose_last_date_stays_put_for_days_warns(ledger_csv, warehouse, monkeypatch):
    from customer_assets.ingest import checks

    instance = dg.DagsterInstance.ephemeral()
    start = checks.now()

    def ingest(days_later):
        monkeypatch.setattr(checks, "now", lambda: start + days_later * 86400)
        result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv), instance=instance)
        return _check(result, "source_advancing")

    first = ingest(0)
    assert first.passed and first.metadata["loads_with_this_last_date"].value == 1
    assert ingest(2).passed  # the same last date two days on: within the default 3 days
    stalled = ingest(4)
    assert not stalled.passed and stalled.severity == dg.AssetCheckSeverity.WARN
    assert stalled.metadata["loads_with_this_last_date"].value == 3 and stalled.metadata["last_date"].value == "2020-07-15"
    assert stalled.description.startswith("The data's last date, 2020-07-15, is the same in the 3 load(s) since ")
    assert stalled.description.endswith(" days): is the export still being updated?")
    assert 3.9 < stalled.metadata["days_without_new_data"].value < 4.1
    monkeypatch.setenv(settings.ENV_MAX_STALL_DAYS, "0")  # switched off
    assert ingest(5).passed
    monkeypatch.delenv(settings.ENV_MAX_STALL_DAYS)
    ledger_csv.write_text(LEDGER + "E,2020-07-20,1,5,O100\n")  # a new day: the count starts again from this load
    moved = ingest(0)  # (the loads' own times are real, so the clock goes back to them)
    assert moved.passed and (moved.metadata["last_date"].value, moved.metadata["loads_with_this_last_date"].value) == ("2020-07-20", 1)


def test_a_refused_reload_says_how_many_of_its_rows_were_rejected_and_why(ledger_csv):
    conn = duckdb.connect()
    _reload(conn, ledger_csv, "first")
    lines = LEDGER.splitlines(keepends=True)
    # A's five clean rows, plus the ledger's row without a customer id and B's negative price: 7 raw rows, 5 clean
    message = _refused(conn, ledger_csv, "".join(lines[:6] + [lines[12], lines[15]]), "second")
    assert ("(11 -> 5, -54.5%), more than max_history_loss allows (5.0%). It lost 3 of the 4 customers of load first "
            "of the same file (-75.0%) too. This load rejected 2 of its 7 raw rows "
            "(negative_price 1, null_customer_id 1). Was the export cut short?") in message
    assert _clean(conn) == (11, "first")


def test_a_partition_whose_labels_were_computed_for_another_horizon_is_recomputed_by_label_readers(ledger_csv, warehouse):
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    assert materialize(warehouse, FEATURES, partition_key=C).success
    with duckdb.connect(warehouse) as conn:
        assert conn.execute("SELECT horizon_days FROM features.partition_inputs WHERE cutoff_date = ?", [C]).fetchone() == (90,)
        assert F.stored_labelled_rows(conn, date(2020, 3, 31), 90, "models/churn") == 3
        # as if written when CUSTOMER_ASSETS_HORIZON_DAYS was 60 (the variable is read when the definitions load)
        conn.execute("UPDATE features.partition_inputs SET horizon_days = 60 WHERE cutoff_date = ?", [C])
        assert F.inputs_changed(conn, date(2020, 3, 31), 90, labels=False) is None  # segments and scores read no labels
        warnings = []
        assert F.stored_labelled_rows(conn, date(2020, 3, 31), 90, "models/churn", warnings.append) == 0
        assert warnings == ["features/customer_features 2020-03-31 is out of date: its labels were computed for a 60-day "
                            "window, and the horizon is now 90 days (CUSTOMER_ASSETS_HORIZON_DAYS). models/churn "
                            "recomputes it from clean.transactions. Materialize that partition again to refresh it."]


def _padded(text: str, pad: bool) -> str:
    """The ledger with customers A to D as numeric ids: 00101 to 00104, or 101 to 104 as a spreadsheet saves them."""
    ids = {"A": "00101", "B": "00102", "C": "00103", "D": "00104"}
    out = []
    for line in text.splitlines(keepends=True):
        first, sep, rest = line.partition(",")
        key = first.strip().upper()
        if key in ids:
            first = first.replace(first.strip(), ids[key] if pad else ids[key].lstrip("0"))
        out.append(first + sep + rest)
    return "".join(out)


def test_a_reload_whose_customer_ids_were_rewritten_is_refused_so_an_erased_customer_stays_erased(ledger_csv):
    """A spreadsheet that opened and saved the export dropped the ids' leading zeros: every row is still there, and
    every customer is new. Before, the reload was accepted (only a warning that the history changed), and the rows of
    an erased customer came back under the new id."""
    from customer_assets.erasure import erase_customers

    conn = duckdb.connect()
    ledger_csv.write_text(_padded(LEDGER, pad=True))
    _reload(conn, ledger_csv, "first")
    erase_customers(conn, ["00104"], 90)  # D: 2019-12-01 and 2020-07-15; the history now ends on A's 2020-05-01
    assert _clean(conn) == (9, "first")
    assert _refused(conn, ledger_csv, _padded(LEDGER, pad=False), "second") == (
        f"Load second of {ledger_csv} lost 3 of the 3 customers of load first of the same file (-100.0%), more than "
        "max_history_loss allows (5.0%): none of their rows dated on or before 2020-05-01 is in it (those days' rows: "
        "9 -> 10). 4 customer ids appeared that had none. 3 of the missing ids are new ids once their leading zeros "
        "are dropped: a spreadsheet that opened and saved the export turns 00042 into 42. Were the customer ids "
        "rewritten? Then every customer would start a new history, and an erased customer's rows would come back "
        "under the new id. Export the ids as before. clean.transactions is unchanged. If the customers really "
        "changed, set max_history_loss in the config of clean/transactions, or CUSTOMER_ASSETS_MAX_HISTORY_LOSS, to "
        "1.00 or more.")
    assert _clean(conn) == (9, "first")
    assert conn.execute("SELECT count(*) FROM clean.transactions WHERE customer_id IN ('104', '00104')").fetchone()[0] == 0
    # the ids exported as before: accepted, and the erased customer's rows are set aside again
    ledger_csv.write_text(_padded(LEDGER, pad=True))
    counts = _reload(conn, ledger_csv, "third")
    assert (_clean(conn), counts["history_customers_missing"], counts["rejected_erased_customer"]) == ((9, "third"), 0, 2)
    # a merge of customers in the shop's system: C's purchase now under B, one of three customers gone (33.3%)
    ledger_csv.write_text(_padded(LEDGER.replace("C,2020-04-02", "B,2020-04-02"), pad=True))
    with pytest.raises(logic.HistoryLossError, match=r"lost 1 of the 3 customers .*\(-33\.3%\).* rows: 9 -> 9\)\. Their "
                       r"rows are there under other customers' ids: were customers merged\? .* to 0\.34 or more"):
        _reload(conn, ledger_csv, "fourth")
    with pytest.raises(logic.HistoryLossError):
        logic.clean_transactions(conn, max_history_loss=0.33)  # 1/3 is more than 0.33: the share is named rounded up
    counts = logic.clean_transactions(conn, max_history_loss=0.34)
    assert (_clean(conn), counts["history_customers_missing"]) == ((9, "fourth"), 1)
