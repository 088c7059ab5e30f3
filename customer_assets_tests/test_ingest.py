"""Reading and cleaning: types, duplicates, rejections with reasons, reconciliation, mapping errors."""

import dagster as dg
import duckdb
import pytest

from customer_assets.ingest import logic
from customer_assets.settings import CDNOW_COLUMNS, ColumnMapping
from customer_assets_tests.conftest import INGEST, LEDGER_COLUMNS, materialize, row_counts, source_config


def _load(path, columns=LEDGER_COLUMNS, fmt=None):
    conn = duckdb.connect()
    spec = logic.SourceSpec(str(path), ColumnMapping.parse(columns), logic.detect_format(str(path), fmt))
    logic.load_raw(conn, spec, "test")
    return conn, logic.clean_transactions(conn)


def test_ledger_is_cleaned_and_reconciled(ledger_csv):
    conn, counts = _load(ledger_csv)
    assert counts["raw_rows"] == 15
    assert counts["clean_rows"] == 11
    assert counts["rejected_rows"] == 4
    reasons = dict(conn.execute("SELECT reject_reason, count(*) FROM quality.rejected_transactions GROUP BY 1").fetchall())
    assert reasons == {"null_customer_id": 1, "unparseable_date": 1, "duplicate": 1, "negative_price": 1}
    # The duplicate is the second copy (row 14), the first (row 3) is kept.
    assert conn.execute("SELECT source_row FROM quality.rejected_transactions WHERE reject_reason = 'duplicate'").fetchone()[0] == 14


def test_types_returns_and_id_normalisation(ledger_csv):
    conn, _ = _load(ledger_csv)
    rows = conn.execute(
        "SELECT customer_id, txn_date::VARCHAR, amount, is_return FROM clean.transactions WHERE customer_id = 'A' ORDER BY source_row"
    ).fetchall()
    assert rows[3] == ("A", "2020-03-20", 30.0, False)  # ' a ' -> 'A'
    assert rows[4] == ("A", "2020-03-25", -5.0, True)  # return kept as a negative amount
    assert [r[2] for r in rows] == [10.0, 5.0, 20.0, 30.0, -5.0, 40.0, 10.0]
    types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'transactions' AND table_schema = 'clean'").fetchall())
    assert types["txn_date"] == "DATE" and types["amount"] == "DOUBLE"


def test_cdnow_whitespace_file_reads_every_row():
    from customer_assets.settings import DEFAULT_SOURCE

    conn, counts = _load(DEFAULT_SOURCE, CDNOW_COLUMNS)
    assert counts["raw_rows"] == 69_659
    assert counts["clean_rows"] + counts["rejected_rows"] == 69_659
    assert conn.execute("SELECT count(DISTINCT customer_id) FROM clean.transactions").fetchone()[0] == 23_570
    assert conn.execute("SELECT min(txn_date)::VARCHAR, max(txn_date)::VARCHAR FROM clean.transactions").fetchone() == ("1997-01-01", "1998-06-30")


def test_missing_column_names_field_columns_found_and_how_to_fix(ledger_csv):
    with pytest.raises(ValueError) as err:
        _load(ledger_csv, "customer_id=customer,date=when,amount=qty")
    msg = str(err.value)
    assert "customer_id -> 'customer'" in msg
    assert "'cust'" in msg and "'when'" in msg  # the columns that were found
    assert "CUSTOMER_ASSETS_COLUMNS" in msg


@pytest.mark.parametrize(
    "mapping, fragment",
    [
        ("", "No column mapping"),
        ("customer_id=a", "lacks the required field(s) date"),
        ("customer_id=a,date=b", "either amount, or both quantity and unit_price"),
        ("customer=a,date=b,amount=c", "Unknown field 'customer'"),
        ("customer_id=a,date=b,amount", "is not field=Column"),
    ],
)
def test_bad_mappings_are_explained(mapping, fragment):
    with pytest.raises(ValueError, match="CUSTOMER_ASSETS_COLUMNS") as err:
        ColumnMapping.parse(mapping)
    assert fragment in str(err.value)


def test_bad_paths_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="Source file not found"):
        logic.validate_source_path(str(tmp_path / "nope.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        logic.validate_source_path(str(empty))
    with pytest.raises(ValueError, match="not a file"):
        logic.validate_source_path(str(tmp_path))
    odd = tmp_path / "x.xlsx"
    odd.write_text("x")
    with pytest.raises(ValueError, match="Unsupported source file type"):
        logic.validate_source_path(str(odd))


def test_parquet_source_with_amount_mapping(tmp_path, ledger_csv):
    pq = tmp_path / "ledger.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT cust AS CustomerID, try_strptime(\"when\", '%Y-%m-%d') AS InvoiceDate, qty * price AS Total "
        f"FROM read_csv('{ledger_csv}', all_varchar=false, ignore_errors=true) WHERE cust IS NOT NULL) TO '{pq}' (FORMAT parquet)"
    )
    conn, counts = _load(pq, "customer_id=CustomerID,date=InvoiceDate,amount=Total")
    # negative totals without a quantity column are returns: A's -5 and B's -10
    assert conn.execute("SELECT count(*) FROM clean.transactions WHERE is_return").fetchone()[0] == 2
    assert counts["raw_rows"] == counts["clean_rows"] + counts["rejected_rows"]


def test_dagster_config_sets_the_source_and_the_check_reconciles(ledger_csv, warehouse):
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv))
    assert result.success
    checks = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert {k: e.passed for k, e in checks.items()} == {"rows_reconcile": True, "clean_values_valid": True,
                                                          "clean_keys_unique": True, "rejected_share_small": False,
                                                          "stored_partitions_current": True, "source_advancing": True,
                                                          "erased_customers_out_of_source": True}
    # the hand-built ledger is dirty on purpose: 4 of 15 rows rejected, one per reason, so the share check warns
    share = checks["rejected_share_small"]
    assert share.severity == dg.AssetCheckSeverity.WARN and share.description == "26.7% of 15 raw rows rejected, most as duplicate (1)"
    assert share.metadata["reasons"].value == {"duplicate": 1, "negative_price": 1, "null_customer_id": 1, "unparseable_date": 1}
    example = share.metadata["examples_duplicate"].value.splitlines()[2]  # the one row after the header
    assert [c.strip() for c in example.split("|")[1:3]] == ["14", "A"]  # the second copy, row 14
    assert row_counts(result) == {"raw/transactions": 15, "clean/transactions": 11, "quality/rejected_transactions": 4,
                                  "quality/history_changes": 0}


def test_environment_variables_set_the_source(ledger_csv, warehouse, monkeypatch):
    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(ledger_csv))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", LEDGER_COLUMNS)
    assert materialize(warehouse, "raw/transactions").success
    assert duckdb.connect(warehouse).execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 15


def test_env_source_without_mapping_fails_clearly(ledger_csv, warehouse, monkeypatch):
    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(ledger_csv))
    monkeypatch.delenv("CUSTOMER_ASSETS_COLUMNS", raising=False)
    with pytest.raises(ValueError, match="No column mapping was given"):
        materialize(warehouse, "raw/transactions")


def test_raw_is_a_view_over_the_file_and_the_load_is_recorded(ledger_csv, tmp_path):
    conn, counts = _load(ledger_csv)
    kind = conn.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'raw' "
                        "AND table_name = 'transactions'").fetchone()[0]
    assert kind == "VIEW"
    # every field as read, numbered in file order (row 4 is ' a ', padded and lower-case)
    assert conn.execute("SELECT source_row, customer_id FROM raw.transactions WHERE source_row = 4").fetchone() == (4, " a ")
    load = logic.current_load(conn)
    assert (load.load_id, load.rows, load.file_bytes, load.stored_copy) == ("test", 15, ledger_csv.stat().st_size, False)
    from customer_assets.schemas import RAW_LOADS

    assert [r[0] for r in conn.execute("DESCRIBE raw.loads").fetchall()] == [c[0] for c in RAW_LOADS]
    assert counts["raw_rows"] == 15


def test_stored_copy_keeps_the_rows_after_the_file_is_gone(ledger_csv, tmp_path):
    conn = duckdb.connect()
    spec = logic.SourceSpec(str(ledger_csv), ColumnMapping.parse(LEDGER_COLUMNS), "csv")
    assert logic.load_raw(conn, spec, "copy", stored_copy=True) == 15
    ledger_csv.unlink()
    kind = conn.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'raw' "
                        "AND table_name = 'transactions'").fetchone()[0]
    assert kind == "BASE TABLE"
    assert conn.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 15
    assert logic.clean_transactions(conn)["clean_rows"] == 11


def test_a_source_changed_or_gone_after_the_load_is_refused_and_clean_is_kept(ledger_csv):
    conn, _ = _load(ledger_csv)
    ledger_csv.write_text(ledger_csv.read_text() + "Z,2020-01-01,1,1,O100\n")
    with pytest.raises(logic.SourceReadError, match="changed after load test read it"):
        logic.clean_transactions(conn)
    ledger_csv.unlink()
    with pytest.raises(logic.SourceReadError, match="is gone"):
        logic.clean_transactions(conn)
    assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 11


def test_an_edit_that_keeps_size_and_time_is_caught_by_the_row_count(ledger_csv):
    import os

    conn, _ = _load(ledger_csv)
    st = ledger_csv.stat()
    text = ledger_csv.read_text()
    # drop the last line and pad another so the size stays the same, then restore the modification time
    lines = text.splitlines(keepends=True)
    dropped = lines.pop()
    lines[1] = lines[1].rstrip("\n") + " " * len(dropped) + "\n"
    ledger_csv.write_text("".join(lines))
    os.utime(ledger_csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ledger_csv.stat().st_size == st.st_size
    with pytest.raises(logic.SourceReadError, match="now has 14 rows but load test counted 15"):
        logic.clean_transactions(conn)
    assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 11


def test_stored_copy_through_dagster_config(ledger_csv, warehouse):
    cfg = source_config(ledger_csv)
    cfg["ops"]["raw__transactions"]["config"]["stored_copy"] = True
    result = materialize(warehouse, INGEST, run_config=cfg)
    assert row_counts(result)["clean/transactions"] == 11
    ledger_csv.unlink()
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 15


def test_a_quote_in_the_file_name_is_read_safely(tmp_path, ledger_csv):
    """The path goes into the view's SQL as a literal: a quote in it must neither break nor inject SQL."""
    odd = tmp_path / "o'brien'); DROP TABLE x; --.csv"
    odd.write_text(ledger_csv.read_text())
    conn, counts = _load(odd)
    assert counts["clean_rows"] == 11
    assert logic.current_load(conn).source_file == str(odd.resolve())


SLASH_HEADER = "customer,when,amount\n"


def _slash_file(tmp_path, name, dates):
    path = tmp_path / name
    path.write_text(SLASH_HEADER + "".join(f"C{i},{d},10\n" for i, d in enumerate(dates)))
    return path


def _dates(conn):
    return conn.execute("SELECT txn_date::VARCHAR FROM clean.transactions ORDER BY source_row").fetchall()


def test_slash_dates_are_read_day_first_when_the_file_says_so(tmp_path):
    """A European export: 13/01/2011 only reads day first, so 02/01/2011 is 2 January, not 1 February."""
    path = _slash_file(tmp_path, "eu.csv", ["13/01/2011 08:26", "02/01/2011", "25/12/2010 17:05:09"])
    conn, counts = _load(path, "customer_id=customer,date=when,amount=amount")
    assert _dates(conn) == [("2011-01-13",), ("2011-01-02",), ("2010-12-25",)]
    assert counts["rejected_rows"] == 0
    assert counts["date_order"] == "day_first (detected): 2 dates read only day first (e.g. 13/01/2011 08:26), 0 only month first"


def test_slash_dates_are_read_month_first_when_the_file_says_so_or_nothing_tells(tmp_path):
    us = _slash_file(tmp_path, "us.csv", ["01/13/2011 8:26", "02/01/2011"])
    conn, counts = _load(us, "customer_id=customer,date=when,amount=amount")
    assert _dates(conn) == [("2011-01-13",), ("2011-02-01",)]
    assert counts["date_order"].startswith("month_first (detected): 0 dates read only day first, 1 only month first")
    unclear = _slash_file(tmp_path, "unclear.csv", ["02/01/2011", "03/04/2011"])
    conn, counts = _load(unclear, "customer_id=customer,date=when,amount=amount")
    assert _dates(conn) == [("2011-02-01",), ("2011-03-04",)]
    assert counts["date_order"].startswith("month_first (the default: no slash date tells the order)")
    # set by hand, the other order reads the same file the other way
    assert logic.clean_transactions(conn, "day_first")["date_order"].startswith("day_first (set)")
    assert _dates(conn) == [("2011-01-02",), ("2011-04-03",)]


def test_a_file_with_both_date_orders_is_refused_and_clean_is_kept(tmp_path):
    good = _slash_file(tmp_path, "good.csv", ["13/01/2011"])
    conn, _ = _load(good, "customer_id=customer,date=when,amount=amount")
    mixed = _slash_file(tmp_path, "mixed.csv", ["13/01/2011", "01/13/2011", "02/01/2011"])
    spec = logic.SourceSpec(str(mixed), ColumnMapping.parse("customer_id=customer,date=when,amount=amount"), "csv")
    logic.load_raw(conn, spec, "mixed")
    with pytest.raises(logic.DateOrderError) as refused:
        logic.clean_transactions(conn)
    message = str(refused.value)
    assert "1 dates read only day first (e.g. 13/01/2011), 1 only month first (e.g. 01/13/2011)" in message
    assert "clean.transactions is unchanged" in message and "CUSTOMER_ASSETS_DATE_ORDER" in message
    assert _dates(conn) == [("2011-01-13",)]  # the previous clean table
    # choosing an order cleans it; the dates that do not read that way are rejected, not misdated
    counts = logic.clean_transactions(conn, "day_first")
    assert _dates(conn) == [("2011-01-13",), ("2011-01-02",)]
    assert (counts["rejected_rows"], counts["rejected_unparseable_date"]) == (1, 1)
    with pytest.raises(ValueError, match="date_order 'european' is not one of auto, month_first, day_first"):
        logic.clean_transactions(conn, "european")


def test_the_date_order_is_set_by_config_or_environment_and_a_refusal_names_both(tmp_path, warehouse, monkeypatch):
    from customer_assets import settings

    mixed = _slash_file(tmp_path, "mixed.csv", ["13/01/2011", "01/13/2011"])
    columns = "customer_id=customer,date=when,amount=amount"
    selection = INGEST
    result = materialize(warehouse, selection, run_config=source_config(mixed, columns), raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "both day first and month first" in failure.step_failure_data.error.message
    monkeypatch.setenv(settings.ENV_DATE_ORDER, "month_first")
    result = materialize(warehouse, selection, run_config=source_config(mixed, columns))
    assert row_counts(result) == {"raw/transactions": 2, "clean/transactions": 1, "quality/rejected_transactions": 1,
                                  "quality/history_changes": 0}
    clean = next(e.event_specific_data.materialization for e in result.get_asset_materialization_events()
                 if e.event_specific_data.materialization.asset_key.to_user_string() == "clean/transactions")
    assert clean.metadata["date_order"].value.startswith("month_first (set)")
    with duckdb.connect(warehouse, read_only=True) as conn:  # 01/13/2011, the second row
        assert conn.execute("SELECT source_row, txn_date::VARCHAR FROM clean.transactions").fetchall() == [(2, "2011-01-13")]
    config = source_config(mixed, columns)
    # the config wins; the row kept is another customer's, so this reload loses every customer: accepted as such
    config["ops"]["clean_transactions"] = {"config": {"date_order": "day_first", "max_history_loss": 1.0}}
    result = materialize(warehouse, selection, run_config=config)
    with duckdb.connect(warehouse, read_only=True) as conn:  # now the first row is the one kept
        assert conn.execute("SELECT source_row, txn_date::VARCHAR FROM clean.transactions").fetchall() == [(1, "2011-01-13")]
    config["ops"]["clean_transactions"] = {"config": {"date_order": "dmy"}}
    result = materialize(warehouse, selection, run_config=config, raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert ("date_order 'dmy' is not one of auto, month_first, day_first (set by the `date_order` config of "
            "clean/transactions or CUSTOMER_ASSETS_DATE_ORDER)") in failure.step_failure_data.error.message


def test_the_date_layouts_of_common_exports_are_read(tmp_path):
    """ISO with a time zone (the date as written), US slashes with seconds, YYYY/MM/DD, and German dots."""
    path = _slash_file(tmp_path, "mixed_layouts.csv", ["2011-01-13T23:30:00-05:00", "1/13/2011 8:26:01", "2011/01/14",
                                                        "15.01.2011", "16.01.2011 09:15", "Jan 17 2011"])
    conn, counts = _load(path, "customer_id=customer,date=when,amount=amount")
    assert _dates(conn) == [("2011-01-13",), ("2011-01-13",), ("2011-01-14",), ("2011-01-15",), ("2011-01-16",)]
    assert counts["rejected_unparseable_date"] == 1  # the month name is not read


def test_a_file_without_slash_dates_says_so(ledger_csv):
    _, counts = _load(ledger_csv)
    assert counts["date_order"] == "month_first (the default; the file has no slash dates)"


def test_the_rejected_share_check_passes_on_cdnow(cdnow_slice, warehouse):
    """The clean fixture: the first 2,000 CDNOW customers lose only exact duplicates, well under 5%."""
    from customer_assets_tests.conftest import CDNOW_CSV_COLUMNS

    result = materialize(warehouse, INGEST,
                         run_config=source_config(cdnow_slice, CDNOW_CSV_COLUMNS))
    share = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "rejected_share_small")
    counts = row_counts(result)
    assert share.passed and share.metadata["raw_rows"].value == counts["raw/transactions"]
    assert share.metadata["reasons"].value == {"duplicate": counts["quality/rejected_transactions"]}
    assert 0 < share.metadata["rejected_share"].value == round(counts["quality/rejected_transactions"] / counts["raw/transactions"], 6) < 0.05


def test_a_currency_sign_is_dropped_but_a_thousands_separator_is_refused(tmp_path):
    path = tmp_path / "money.csv"
    path.write_text('customer,when,amount\nA,2011-01-13,$12.50\nB,2011-01-13,-$3\nC,2011-01-13,7.25 €\n'
                    'D,2011-01-13,£4\nE,2011-01-13,"1,234.50"\nF,2011-01-13,12\n')
    conn, counts = _load(path, "customer_id=customer,date=when,amount=amount")
    rows = conn.execute("SELECT customer_id, amount, is_return FROM clean.transactions ORDER BY source_row").fetchall()
    assert rows == [("A", 12.5, False), ("B", -3.0, True), ("C", 7.25, False), ("D", 4.0, False), ("F", 12.0, False)]
    assert conn.execute("SELECT customer_id, reject_reason, amount FROM quality.rejected_transactions").fetchall() == [
        ("E", "non_numeric_amount", "1,234.50")]


TZ_SCRIPT = """
import sys
from customer_assets.ingest import logic
from customer_assets.resources import Warehouse
from customer_assets.settings import ColumnMapping
with Warehouse(database=sys.argv[1]).get_connection() as conn:
    spec = logic.SourceSpec(sys.argv[2], ColumnMapping.parse("customer_id=cust,date=ts,amount=amt"), "parquet")
    logic.load_raw(conn, spec, "tz")
    logic.clean_transactions(conn)
    print(conn.execute("SELECT string_agg(txn_date::VARCHAR, ',' ORDER BY customer_id) FROM clean.transactions").fetchone()[0])
"""


def test_instants_become_dates_in_the_configured_time_zone_on_any_machine(tmp_path, warehouse, monkeypatch):
    """A Parquet TIMESTAMPTZ column is an instant: its date depends on the time zone, which is UTC unless set."""
    import os
    import subprocess
    import sys

    from customer_assets import settings

    path = tmp_path / "orders.parquet"
    duckdb.connect().execute(
        "COPY (SELECT * FROM (VALUES ('A', TIMESTAMPTZ '2011-12-01 23:30:00+00', 10.0), "
        "('B', TIMESTAMPTZ '2011-12-02 01:00:00+00', 20.0)) t(cust, ts, amt)) TO '" + str(path) + "' (FORMAT parquet)")
    columns = "customer_id=cust,date=ts,amount=amt"

    def dates():
        assert materialize(warehouse, INGEST, run_config=source_config(path, columns)).success
        with duckdb.connect(warehouse, read_only=True) as conn:
            return [r[0] for r in conn.execute("SELECT txn_date::VARCHAR FROM clean.transactions ORDER BY customer_id").fetchall()]

    assert dates() == ["2011-12-01", "2011-12-02"]  # UTC
    monkeypatch.setenv(settings.ENV_TIMEZONE, "America/New_York")  # 18:30 and 20:00 on 1 December there
    monkeypatch.setenv(settings.ENV_MAX_HISTORY_LOSS, "1")  # the same file, read another way: not a loss to refuse
    assert dates() == ["2011-12-01", "2011-12-01"]
    monkeypatch.setenv(settings.ENV_TIMEZONE, "Asia/Tokyo")  # 08:30 and 10:00 on 2 December there
    assert dates() == ["2011-12-02", "2011-12-02"]
    monkeypatch.setenv(settings.ENV_TIMEZONE, "Mars/Base")
    failed = materialize(warehouse, INGEST, run_config=source_config(path, columns), raise_on_error=False)
    from customer_assets.cli import root_cause

    message = root_cause(next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data.error)
    assert "Unknown time zone 'Mars/Base' (set by the duckdb resource's `timezone` or CUSTOMER_ASSETS_TIMEZONE)" in message
    # the machine's own time zone plays no part: a process in Tokyo time gets the UTC dates by default
    env = {k: v for k, v in os.environ.items() if k != settings.ENV_TIMEZONE} | {"TZ": "Asia/Tokyo"}
    out = subprocess.run([sys.executable, "-c", TZ_SCRIPT, str(tmp_path / "other.duckdb"), str(path)], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "2011-12-01,2011-12-02"


ALL_REJECTED = ("cust,when,qty,price,order\n"
                "A,2020-01-05,1,-10,O1\n"   # row 1: negative_price
                ",2020-01-06,1,10,O2\n"     # row 2: null_customer_id
                "B,2020-02-30,1,10,O3\n"    # row 3: unparseable_date (there is no 30 February)
                "C,2020-01-07,2,-2,O4\n")   # row 4: negative_price again


def test_a_load_whose_every_row_is_rejected_is_refused_naming_each_reason_and_its_first_row(tmp_path, ledger_csv):
    conn, _ = _load(ledger_csv)  # a good load of another file first: it must survive
    bad = tmp_path / "export.csv"
    bad.write_text(ALL_REJECTED)
    logic.load_raw(conn, logic.SourceSpec(str(bad), ColumnMapping.parse(LEDGER_COLUMNS), "csv"), "bad")
    with pytest.raises(logic.NothingCleanError) as refused:
        logic.clean_transactions(conn)
    # the reasons by count, then by name; each with its first row's file, row and mapped raw values
    assert str(refused.value) == (
        f"Every one of the 4 rows of load bad ({bad}) was rejected by the cleaning rules, so there is nothing to "
        "model: negative_price: 2 (the first: export.csv row 1, date='2020-01-05', quantity='1', "
        "unit_price='-10'); null_customer_id: 1 (the first: export.csv row 2, date='2020-01-06', quantity='1', "
        "unit_price='10'); unparseable_date: 1 (the first: export.csv row 3, date='2020-02-30', "
        "quantity='1', unit_price='10'). clean.transactions and quality.rejected_transactions are unchanged. When "
        "one rule rejects every row, the column mapping usually names the wrong column (this load's: "
        "customer_id=cust, date=when, quantity=qty, unit_price=price, order_id=order); set CUSTOMER_ASSETS_COLUMNS "
        "or the `columns` config of raw/transactions. The rules are in the README (Cleaning rules).")
    # no customer id is quoted (the message reaches the run log and the failure alert)
    assert not any(f"'{c}'" in str(refused.value) for c in "ABC")
    # nothing of the first load is lost, and no temporary table is left behind
    assert conn.execute("SELECT count(*), any_value(load_id) FROM clean.transactions").fetchone() == (11, "test")
    assert conn.execute("SELECT count(*), any_value(load_id) FROM quality.rejected_transactions").fetchone() == (4, "test")
    assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0


def test_a_mapping_that_names_the_wrong_column_fails_the_ingest_asset_and_keeps_the_clean_rows(tmp_path, ledger_csv,
                                                                                               warehouse):
    materialize(warehouse, INGEST, run_config=source_config(ledger_csv))
    # `date` mapped to the quantity column: not one date parses
    wrong = LEDGER_COLUMNS.replace("date=when", "date=qty")
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv, wrong), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "Every one of the 15 rows of load" in message
    assert "unparseable_date: 14 (the first: ledger.csv row 1, date='1', quantity='1'" in message
    assert "null_customer_id: 1 (the first: ledger.csv row 12, date='1'" in message
    assert "(this load's: customer_id=cust, date=qty," in message
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 11


def _raw_meta(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("raw__transactions")[0].metadata.items()}


def test_a_run_with_no_source_set_reads_the_last_loads_source_again_never_the_bundled_demo(tmp_path, warehouse,
                                                                                           monkeypatch):
    """The source set once in the Launchpad (config), then the nightly ingest, which runs with no config: before, it
    loaded the bundled CDNOW file over the user's data. Now it reads the last load's file again, with its mapping,
    encoding and stored copy."""
    monkeypatch.delenv("CUSTOMER_ASSETS_SOURCE", raising=False)
    monkeypatch.delenv("CUSTOMER_ASSETS_COLUMNS", raising=False)
    latin = tmp_path / "export.csv"
    latin.write_bytes("cust,when,qty,price,order\nJOSÉ,2020-01-05,1,10,O1\nB,2020-02-05,2,5,O2\n".encode("latin-1"))
    config = source_config(latin)
    config["ops"]["raw__transactions"]["config"].update(encoding="latin-1", stored_copy=True)
    first = materialize(warehouse, INGEST, run_config=config)
    again = materialize(warehouse, INGEST)  # what nightly_ingest runs
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT customer_id, amount FROM clean.transactions ORDER BY 1").fetchall() == [
            ("B", 10.0), ("JOSÉ", 10.0)]
        assert conn.execute("SELECT count(DISTINCT source_file), count(*) FROM raw.loads").fetchone() == (1, 2)
        assert conn.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'raw' "
                            "AND table_name = 'transactions'").fetchone()[0] == "BASE TABLE"  # the stored copy
    meta = _raw_meta(again)
    assert (meta["source"], meta["source_set_by"], meta["encoding"], meta["stored_copy"]) == (
        str(latin), "last load", "latin-1", True)
    assert _raw_meta(first)["source_set_by"] == "config"
    # what is set still wins: a mapping in config keeps the last load's file; the environment's source replaces it
    wrong = materialize(warehouse, INGEST, run_config={"ops": {"raw__transactions": {"config": {"columns": "customer_id=x,date=when,amount=qty"}}}},
                        raise_on_error=False)
    assert not wrong.success  # the last load's file has no column x
    other = tmp_path / "other.csv"
    other.write_text("cust,when,qty,price,order\nC,2020-03-05,1,7,O9\n")
    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(other))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", LEDGER_COLUMNS)
    meta = _raw_meta(materialize(warehouse, INGEST))
    assert (meta["source"], meta["source_set_by"], meta["encoding"], meta["stored_copy"]) == (
        str(other), "environment", "utf-8", False)


def test_a_warehouse_that_never_loaded_reads_the_bundled_cdnow_file(monkeypatch):
    from customer_assets.ingest.assets import SourceConfig, resolve_source
    from customer_assets.settings import DEFAULT_SOURCE

    monkeypatch.delenv("CUSTOMER_ASSETS_SOURCE", raising=False)
    monkeypatch.delenv("CUSTOMER_ASSETS_COLUMNS", raising=False)
    source = resolve_source(SourceConfig(), None)
    assert (source.spec.path, source.spec.fmt, source.spec.mapping, source.origin) == (
        str(DEFAULT_SOURCE), "whitespace", ColumnMapping.parse(CDNOW_COLUMNS), "default")


def test_the_command_line_says_when_it_reads_the_last_loads_source_again(ledger_csv, tmp_path, monkeypatch, capsys):
    from customer_assets.cli import main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    db = str(tmp_path / "w.duckdb")
    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(ledger_csv))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", LEDGER_COLUMNS)
    # a cutoff after the data: the command loads, then stops before training
    with pytest.raises(SystemExit, match=r"is after the last date in the data \(2020-07-15\)"):
        main(["materialize", "--db", db, "--cutoff", "2099-01-01"])
    said = capsys.readouterr()
    assert "again" not in said.out + said.err
    monkeypatch.delenv("CUSTOMER_ASSETS_SOURCE")
    monkeypatch.delenv("CUSTOMER_ASSETS_COLUMNS")
    with pytest.raises(SystemExit, match=r"is after the last date in the data \(2020-07-15\)"):
        main(["materialize", "--db", db, "--cutoff", "2099-01-01"])
    said = capsys.readouterr()
    assert (f"  read {ledger_csv} again, the source of the last load (CUSTOMER_ASSETS_SOURCE is not set; set it to "
            "read another file)\n") in said.out + said.err


def test_the_encoding_and_the_format_can_be_set_in_the_environment(tmp_path, warehouse, monkeypatch):
    """The command line and the nightly runs carry no config: CUSTOMER_ASSETS_ENCODING and CUSTOMER_ASSETS_FORMAT
    are how they read a latin-1 export or a file whose name misleads."""
    latin = tmp_path / "export.dat"  # a .dat file is read as whitespace-separated unless told otherwise
    latin.write_bytes("cust,when,qty,price,order\nJOSÉ,2020-01-05,1,10,O1\nB,2020-02-05,2,5,O2\n".encode("latin-1"))
    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(latin))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", LEDGER_COLUMNS)
    monkeypatch.setenv("CUSTOMER_ASSETS_FORMAT", "csv")
    refused = materialize(warehouse, INGEST, raise_on_error=False)
    error, messages = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error, []
    while error is not None:  # the SourceReadError, inside Dagster's wrapping
        messages.append(error.message)
        error = error.cause
    assert any(m.rstrip().endswith("The file is not UTF-8: set CUSTOMER_ASSETS_ENCODING, or the `encoding` config of "
                                   "raw/transactions, to utf-16 or latin-1.") for m in messages)
    monkeypatch.setenv("CUSTOMER_ASSETS_ENCODING", "latin-1")
    meta = _raw_meta(materialize(warehouse, INGEST))
    assert (meta["format"], meta["encoding"], meta["source_set_by"]) == ("csv", "latin-1", "environment")
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT customer_id FROM clean.transactions ORDER BY 1").fetchall() == [("B",), ("JOSÉ",)]
    # the config still wins
    cfg = source_config(latin)
    cfg["ops"]["raw__transactions"]["config"]["encoding"] = "utf-16"
    assert not materialize(warehouse, INGEST, run_config=cfg, raise_on_error=False).success
