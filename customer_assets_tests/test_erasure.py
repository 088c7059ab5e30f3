"""Erasing customers (a request to be forgotten) on the hand-built ledger (conftest.LEDGER), worked by hand.

Customer A (written " a " on line 4) has 9 of the 15 rows: the clean rows 1-7 and the rejected rows 13 (a bad date)
and 14 (a duplicate of 3). The cutoff C = 2020-03-31 has 7 clean rows in its history (A's 01-05 twice, 02-10, 03-20
and the 03-25 return; B's 03-01; D's 2019-12-01) and 3 in its label window (A's 04-15 and 05-01; C's 04-02), and its
features hold A, B and D. Erasing A leaves 2 and 1 of those rows, and B and D.
"""

import hashlib
import os
import re
from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest

from customer_assets.definitions import ASSETS, CHECKS
from customer_assets.erasure import delete_runs, erase_customers, normalise, runs_showing
from customer_assets.features import logic as F
from customer_assets_tests.conftest import INGEST, materialize, row_counts, source_config

C = "2020-03-31"
EARLY = "2019-12-10"
FEATURES = "features/calibration_transactions features/holdout_transactions features/customer_features"
A_ROWS = [1, 2, 3, 4, 5, 6, 7, 13, 14]
VALUES = "customer_id, txn_date, amount, quantity, unit_price, order_id, product_id"


def _selection(keys: str) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*[dg.AssetKey(k.split("/")) for k in keys.split()])


def _tables(warehouse):
    """Every table's row count."""
    with duckdb.connect(warehouse, read_only=True) as conn:
        return {f"{s}.{t}": conn.execute(f"SELECT count(*) FROM {s}.{t}").fetchone()[0] for s, t in conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL").fetchall()}


def _erased(conn):
    return conn.execute(f"SELECT source_row, source_file, file_row, {VALUES} FROM quality.rejected_transactions "
                        "WHERE reject_reason = 'erased_customer' ORDER BY source_row").fetchall()


def _out_of_source(result):
    return next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "erased_customers_out_of_source")


def test_an_erased_customer_leaves_every_table_and_every_later_load(ledger_csv, warehouse):
    first = materialize(warehouse, INGEST, run_config=source_config(ledger_csv))
    assert _out_of_source(first).passed and _out_of_source(first).description == (
        "The source export holds no row of an erased customer")
    for cutoff in (EARLY, C):
        assert materialize(warehouse, FEATURES, partition_key=cutoff).success
    with duckdb.connect(warehouse) as conn:
        counts = erase_customers(conn, [" a "], 90)
        assert counts == {"quality.erased_customers": 1, "clean.transactions": 7, "quality.rejected_transactions": 2,
                          "features.customer_features": 1}
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE customer_id = 'A') FROM clean.transactions").fetchone() == (4, 0)
        assert [r[0] for r in conn.execute("SELECT customer_id FROM features.customer_features WHERE cutoff_date = ? "
                                           "ORDER BY 1", [C]).fetchall()] == ["B", "D"]
        # the rows keep their place (raw = clean + rejected) and the way back to the export, and nothing else
        assert _erased(conn) == [(r, str(ledger_csv), r) + (None,) * 7 for r in A_ROWS]
        assert dict(conn.execute("SELECT reject_reason, count(*) FROM quality.rejected_transactions GROUP BY 1").fetchall()) == {
            "erased_customer": 9, "null_customer_id": 1, "negative_price": 1}
        # the record of what the partitions were computed from lost A's share, so none looks out of date
        assert conn.execute("SELECT history_rows, window_rows FROM features.partition_inputs WHERE cutoff_date = ?",
                            [C]).fetchone() == (2, 1)
        assert F.inputs_changed(conn, date.fromisoformat(C), 90, labels=True) is None
        assert len(F.stale_partitions(conn, 90)[0]) == 0
        # only a hash of the id is kept
        assert conn.execute("SELECT customer_key FROM quality.erased_customers").fetchall() == [
            (hashlib.sha256(b"A").hexdigest(),)]
        # asking again changes nothing
        assert erase_customers(conn, ["A"], 90) == {"quality.erased_customers": 0, "clean.transactions": 0,
                                                    "quality.rejected_transactions": 0, "features.customer_features": 0}
    checks = materialize(warehouse, dg.AssetSelection.checks_for_assets(dg.AssetKey(["clean", "transactions"])))
    assert {e.asset_check_key.name: e.passed for e in checks.get_asset_check_evaluations()}["stored_partitions_current"]
    # the nightly reload reads A's rows from the export again: they are set aside with every value dropped
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv))
    assert row_counts(result) == {"raw/transactions": 15, "clean/transactions": 4, "quality/rejected_transactions": 11,
                                  "quality/history_changes": 0}
    evaluations = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["rows_reconcile"].passed
    # an erasure is not a problem in the data: the rejected share leaves its rows out, and counts them apart
    share = evaluations["rejected_share_small"]
    assert share.description == "13.3% of 15 raw rows rejected, most as negative_price (1)"
    assert share.metadata["reasons"].value == {"negative_price": 1, "null_customer_id": 1}
    assert share.metadata["erased_customer_rows"].value == 9
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert _erased(conn) == [(r, str(ledger_csv), r) + (None,) * 7 for r in A_ROWS]
        assert conn.execute("SELECT count(*) FROM clean.transactions WHERE customer_id = 'A'").fetchone()[0] == 0
    # the export still holds A's 9 rows: the check says where, with no id
    still = _out_of_source(result)
    assert not still.passed and still.description.startswith("9 row(s) of erased customers are still in the source "
                                                              "export, in 1 file(s): delete them there")
    assert still.metadata["erased_customer_rows"].value == 9
    assert still.metadata["files"].value.splitlines()[2] == f"| {ledger_csv} | 9 | 1 | 14 |"
    # the retailer deletes them from the export: the next load of it passes the check (it is not a cut-short export:
    # no clean row is lost), and B, C and D are as they were
    lines = ledger_csv.read_text().splitlines()
    ledger_csv.write_text("\n".join(line for i, line in enumerate(lines) if i not in A_ROWS) + "\n")
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv))
    assert _out_of_source(result).passed
    assert row_counts(result) == {"raw/transactions": 6, "clean/transactions": 4, "quality/rejected_transactions": 2,
                                  "quality/history_changes": 0}


def test_a_stored_copy_keeps_no_value_of_an_erased_customer(ledger_csv, warehouse):
    cfg = source_config(ledger_csv)
    cfg["ops"]["raw__transactions"]["config"]["stored_copy"] = True
    assert materialize(warehouse, INGEST, run_config=cfg).success
    with duckdb.connect(warehouse) as conn:
        assert erase_customers(conn, ["D"], 90)["raw.transactions"] == 2
        assert conn.execute("SELECT source_row, customer_id, date, quantity, unit_price, order_id FROM raw.transactions "
                            "WHERE source_row IN (10, 11) ORDER BY 1").fetchall() == [(10,) + (None,) * 5, (11,) + (None,) * 5]
        assert conn.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 15


def test_ids_are_normalised_as_the_cleaning_does():
    # DuckDB's upper makes "ß" the capital "ẞ" (Python's makes it "SS"): the id must be the one clean.transactions holds
    assert normalise([" straße ", "STRASSE", "Straße"]) == ["STRAẞE", "STRASSE"]


def test_a_rejected_table_of_an_older_version_gains_the_file_columns(ledger_csv, warehouse):
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    with duckdb.connect(warehouse) as conn:
        for column in ("source_file", "file_row"):  # as versions before them wrote it
            conn.execute(f"ALTER TABLE quality.rejected_transactions DROP COLUMN {column}")
        assert erase_customers(conn, ["B"], 90)["clean.transactions"] == 1
        # B's clean row 8 names its file; B's rejected row 15, written before the columns, cannot
        assert conn.execute("SELECT source_row, source_file, file_row FROM quality.rejected_transactions "
                            "WHERE reject_reason = 'erased_customer' ORDER BY 1").fetchall() == [
            (8, str(ledger_csv), 8), (15, None, None)]


# Where the first ingest run of the ledger shows each customer. raw/transactions and clean/transactions preview their
# first 5 rows: A's lines 1-5 (line 4 written " a "). quality/rejected_transactions previews its rows 12-15: the blank
# id, A's bad date and duplicate, B's negative price. rejected_share_small shows 3 examples of its top reason; the four
# reasons have 1 row each, so the first by name, duplicate: A's line 14. C (line 9) and D (10, 11) show nowhere.
A_SHOWN = ["clean/transactions: preview", "clean/transactions:rejected_share_small: examples_duplicate",
           "quality/rejected_transactions: preview", "raw/transactions: preview"]


def _preview_rows(instance, run_id):
    """The source_row column of the raw/transactions preview of a run."""
    entry = next(e for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
                 if e.asset_materialization.asset_key == dg.AssetKey(["raw", "transactions"]))
    lines = entry.asset_materialization.metadata["preview"].value.splitlines()[2:]
    return [int(line.split("|")[2]) for line in lines]


def test_the_runs_whose_previews_show_a_customer_are_found_and_deleted(ledger_csv, warehouse, tmp_path):
    from customer_assets.cli import _runs_line, forget

    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = materialize(warehouse, INGEST, run_config=source_config(ledger_csv), instance=instance).run_id
        assert runs_showing(instance, ["a"]) == {first: A_SHOWN}
        assert runs_showing(instance, ["b"]) == {first: ["quality/rejected_transactions: preview"]}
        assert runs_showing(instance, ["C", "D"]) == {}
        assert (tmp_path / "home" / "storage" / first).is_dir()  # the step output captured for the run
        # a dry run finds them and deletes nothing
        assert forget(["a"], warehouse, instance, dry_run=True)["runs"] == {first: A_SHOWN}
        assert instance.get_run_by_id(first) is not None
        counts = forget([" a "], warehouse, instance, delete_runs=True)
        assert counts["runs"] == {first: A_SHOWN} and counts["clean.transactions"] == 7
        assert instance.get_run_by_id(first) is None and list(instance.all_logs(first)) == []
        assert not (tmp_path / "home" / "storage" / first).exists()
        # the nightly reload reads the export, which still holds A's rows: the new preview leaves them out
        second = materialize(warehouse, INGEST, run_config=source_config(ledger_csv), instance=instance).run_id
        assert _preview_rows(instance, second) == [8, 9, 10, 11, 12]
        assert runs_showing(instance, ["a"]) == {}
        assert list(runs_showing(instance, ["B"])) == [second]  # B's rows still show: the search still reads the run
        # a run still in progress is left alone (deleting its records would break it), and said so
        running = dg.DagsterRun(job_name="__ASSET_JOB", run_id="0" * 36, status=dg.DagsterRunStatus.STARTED)
        instance.add_run(running)
        assert delete_runs(instance, [running.run_id, second]) == ([second], [running.run_id])
        assert instance.get_run_by_id(running.run_id).status == dg.DagsterRunStatus.STARTED
        assert instance.get_run_by_id(second) is None
    assert _runs_line({"runs": {}, "runs_left": {running.run_id: ["raw/transactions: preview"]}}, True, False, True) == (
        f"1 run(s) that show them are still in progress and were left: {running.run_id} (raw/transactions: preview). "
        "Run the command again with --delete-runs when they have finished.")


def test_the_command_names_the_runs_that_show_the_customers(ledger_csv, warehouse, tmp_path, monkeypatch, capsys):
    from customer_assets.cli import main

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("CUSTOMER_ASSETS_SERVING_DIR", raising=False)
    monkeypatch.delenv("CUSTOMER_ASSETS_REPORTS_DIR", raising=False)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run_id = materialize(warehouse, INGEST, run_config=source_config(ledger_csv), instance=instance).run_id
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    places = ", ".join(A_SHOWN)
    assert main(["forget", "--customer", "A", "--db", warehouse, "--dry-run", "--compact"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == (
        f"1 Dagster run(s) show them in their metadata: {run_id} ({places}). --delete-runs would delete them.")
    assert printed[2] == (f"--compact would then rewrite the warehouse file ({os.path.getsize(warehouse) / 1e6:,.1f} MB "
                          "now), and needs room for a second copy of it.")
    assert main(["forget", "--customer", "A", "--db", warehouse]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == (
        f"1 Dagster run(s) show them in their metadata: {run_id} ({places}). Run again with --delete-runs to delete "
        "them (or delete them in the UI).")
    assert printed[2].startswith("The old values of the erased rows stay in the warehouse file's free space")
    assert main(["forget", "--customer", "A", "--db", warehouse, "--delete-runs"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"Deleted 1 Dagster run(s) whose metadata showed them, with their event and captured logs: {run_id} ({places}).")
    assert main(["forget", "--customer", "A", "--db", warehouse]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "No Dagster run shows them in its metadata."
    monkeypatch.delenv("DAGSTER_HOME")
    assert main(["forget", "--customer", "A", "--db", warehouse, "--compact"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("The Dagster run history was not searched: DAGSTER_HOME is not set")
    assert re.fullmatch(r"Rewrote the warehouse file \(\d+\.\d MB before, \d+\.\d MB after\): the old values of the "
                        r"erased rows are not in it\.", printed[2])
    assert not os.path.exists(warehouse + ".rewrite")
    with duckdb.connect(warehouse, read_only=True) as conn:  # the rewritten file, as it was
        assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 4


SECRET_LEDGER = """cust,when,qty,price,order
secret-aaaa-1111,2020-01-05,1,10,O1
SECRET-AAAA-1111,2020-02-10,2,10,O2
SECRET-AAAA-1111,2020-04-15,1,10,O3
SECRET-BBBB-2222,2020-01-20,1,50,O4
SECRET-BBBB-2222,2020-03-01,1,50,O5
SECRET-BBBB-2222,2020-05-01,1,50,O6
"""


def test_compacting_rewrites_the_file_without_the_old_values_of_the_erased_rows(tmp_path):
    """DuckDB leaves what a DELETE removed in the file's free blocks. Stored uncompressed (so that an id is its own
    bytes in the file), A's id is still in the file after the erasure and a checkpoint; after the rewrite it is not,
    while B's is, and every table has the rows it had."""
    from customer_assets.resources import Warehouse
    from customer_assets.storage import copy_to_fresh_file

    source, warehouse = tmp_path / "secret.csv", str(tmp_path / "w.duckdb")
    source.write_text(SECRET_LEDGER)
    uncompressed = {"force_compression": "uncompressed"}
    resources = {"duckdb": Warehouse(database=warehouse, connection_config=uncompressed)}
    for selection, partition in ((INGEST, None), (FEATURES, C)):
        assert dg.materialize([*ASSETS, *CHECKS], selection=_selection(selection), partition_key=partition,
                              resources=resources, run_config=source_config(source) if partition is None else None,
                              instance=dg.DagsterInstance.ephemeral()).success

    def in_file(text):
        with open(warehouse, "rb") as f:
            return f.read().count(text.encode())

    assert in_file("SECRET-AAAA-1111") > 0 and in_file("SECRET-BBBB-2222") > 0
    with duckdb.connect(warehouse, config=uncompressed) as conn:
        assert erase_customers(conn, ["secret-aaaa-1111"], 90)["clean.transactions"] == 3
        conn.execute("CHECKPOINT")
    assert in_file("SECRET-AAAA-1111") > 0  # deleted, and still readable in the file
    erased = _tables(warehouse)
    assert erased["clean.transactions"] == 3 and erased["features.customer_features"] == 1
    with duckdb.connect(warehouse, config=uncompressed) as conn:
        fresh = copy_to_fresh_file(conn, warehouse)
    os.replace(fresh, warehouse)
    assert in_file("SECRET-AAAA-1111") == 0 and in_file("SECRET-BBBB-2222") > 0
    assert _tables(warehouse) == erased
    # the rewritten warehouse serves the next load: A's rows are set aside again, B's cleaned
    result = materialize(warehouse, INGEST, run_config=source_config(source))
    assert row_counts(result)["clean/transactions"] == 3 and row_counts(result)["quality/rejected_transactions"] == 3


def test_the_schedules_count_a_deleted_runs_partition_as_missing(ledger_csv, warehouse, tmp_path):
    """What the README says of --delete-runs: the schedules read Dagster's history, so a partition whose run was
    deleted is materialized again, and without the newest ingest they read the one before it, or skip."""
    from customer_assets.schedules import data_last_date, up_to_date

    features = [dg.AssetKey(["features", "customer_features"])]
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = materialize(warehouse, INGEST, run_config=source_config(ledger_csv), instance=instance).run_id
        scored = materialize(warehouse, FEATURES, partition_key=C, instance=instance).run_id
        assert up_to_date(instance, features, C) and data_last_date(instance) == date(2020, 7, 15)
        delete_runs(instance, [scored])
        assert not up_to_date(instance, features, C)
        # a second ingest of an export cut at 2020-05-01 (the ledger's rows up to its line 9), then its run deleted
        short = tmp_path / "short.csv"
        short.write_text("\n".join(ledger_csv.read_text().splitlines()[:10]) + "\n")
        cfg = source_config(short)
        cfg["ops"]["clean_transactions"] = {"config": {"max_history_loss": 1.0}}
        second = materialize(warehouse, INGEST, run_config=cfg, instance=instance).run_id
        assert data_last_date(instance) == date(2020, 5, 1)
        delete_runs(instance, [second])
        assert data_last_date(instance) == date(2020, 7, 15)
        delete_runs(instance, [first])
        assert data_last_date(instance) is None


def test_a_preview_cell_is_read_as_the_table_shows_it():
    """markdown_preview escapes a | inside a value; the cells are split on the other ones and unescaped (the
    padding stays: ids are compared trimmed)."""
    from customer_assets.erasure import _cells
    from customer_assets.storage import markdown_preview

    text = markdown_preview(pd.DataFrame({"customer_id": ["A|B", " c "], "n": [1, 2]}))
    assert _cells(dg.MetadataValue.md(text)) == [" customer_id ", " n ", "---", "---", " A|B ", " 1 ", "  c  ", " 2 "]
    assert _cells(dg.MetadataValue.text("A|B")) == ["A|B"] and _cells(dg.MetadataValue.json({"id": "A"})) == []


def test_locate_shows_where_a_customer_is_before_and_after_the_erasure(ledger_csv, warehouse, tmp_path, monkeypatch,
                                                                       capsys):
    """A of the ledger: 7 clean rows, 2 rejected (lines 13 and 14), 9 in the export, 1 features row at C; the ingest
    run previews A (A_SHOWN), and so does the features run (A is the first of A, B, D). After the erasure only the
    export (raw.transactions, a view over it) and the suppression list hold A."""
    from customer_assets.cli import locate, main

    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        ingest = materialize(warehouse, INGEST, run_config=source_config(ledger_csv), instance=instance).run_id
        features = materialize(warehouse, FEATURES, partition_key=C, instance=instance).run_id
        assert locate([" a "], warehouse, instance) == {
            "clean.transactions": 7, "features.customer_features": 1, "quality.rejected_transactions": 2,
            "raw.transactions": 9, "customers": 1,
            "runs": {features: ["features/customer_features: preview"], ingest: A_SHOWN}}
        assert locate(["C"], warehouse, instance) == {"clean.transactions": 1, "raw.transactions": 1, "customers": 1,
                                                      "runs": {}}  # C buys only after the cutoff
        before = _tables(warehouse)
        assert locate(["A"], warehouse, instance)["customers"] == 1 and _tables(warehouse) == before  # reads only
        with duckdb.connect(warehouse) as conn:
            erase_customers(conn, ["A"], 90)
        delete_runs(instance, [ingest, features])
        assert locate(["A"], warehouse, instance) == {"raw.transactions": 9, "quality.erased_customers": 1,
                                                      "customers": 1, "runs": {}}
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["locate", "--customer", "a", "--customer", "B", "--db", warehouse]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2 customer(s), 1 of them erased.",
        "  clean.transactions: 1 row(s)",
        "  features.customer_features: 1 row(s)",
        "  quality.rejected_transactions: 1 row(s)",
        "  raw.transactions: 11 row(s)  (a view over the source export; delete the erased customers' rows there)",
        "  No Dagster run shows them in its metadata."]


@pytest.mark.parametrize("ids", [[], ["  "]])
def test_an_empty_request_is_refused(ids):
    with pytest.raises(ValueError, match="customer id"):
        erase_customers(duckdb.connect(), ids, 90)


def test_the_command_refuses_a_missing_warehouse_or_list_and_writes_nothing(tmp_path, monkeypatch):
    from customer_assets.cli import main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    missing = tmp_path / "typo.duckdb"
    with pytest.raises(SystemExit, match=f"customer-assets forget: there is no warehouse at {missing} "):
        main(["forget", "--customer", "A", "--db", str(missing)])
    assert not missing.exists()
    with pytest.raises(SystemExit, match="customer-assets forget: .*No such file or directory.*ids.txt"):
        main(["forget", "--from-file", str(tmp_path / "ids.txt"), "--db", str(missing)])
    with pytest.raises(SystemExit, match="customer-assets forget: No customer id was given"):
        main(["forget", "--db", str(missing)])
