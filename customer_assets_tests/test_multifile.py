"""A glob pattern as the source: one file per export, read as one source.

The hand-built exports (worked out by hand):

orders_2020-01.csv (source_row 1-3)      cust,when,qty,price,order
  1  A,2020-01-05,1,10,O1                 clean
  2  A,2020-01-05,1,5,O2                  clean
  3  ,2020-01-20,1,10,O90                 null_customer_id
orders_2020-02.csv (source_row 4-7)      columns reordered, one more: order,when,cust,price,qty,channel
  1  O3,2020-02-10,A,10,2,web             clean (source_row 4)
  2  O2,2020-01-05,A,5,1,web              duplicate: the overlap of two exports repeats file 1's row 2 exactly
  3  O4,2020-02-30,B,10,1,shop            unparseable_date (30 February)
  4  O5,2020-02-15,B,50,2,shop            clean (source_row 7)
orders_2020-03.csv                       a header and no rows
notes.txt                                not matched by orders_*.csv

So 7 raw rows, 4 clean (A: 10, 5, 20; B: 100) and 3 rejected; the last date is 2020-02-15.
"""

import json
import os

import dagster as dg
import duckdb
import pytest

from customer_assets.ingest import logic
from customer_assets.settings import ColumnMapping
from customer_assets_tests.conftest import INGEST, LEDGER_COLUMNS, materialize, row_counts, source_config

JAN = "cust,when,qty,price,order\nA,2020-01-05,1,10,O1\nA,2020-01-05,1,5,O2\n,2020-01-20,1,10,O90\n"
FEB = ("order,when,cust,price,qty,channel\nO3,2020-02-10,A,10,2,web\nO2,2020-01-05,A,5,1,web\n"
       "O4,2020-02-30,B,10,1,shop\nO5,2020-02-15,B,50,2,shop\n")
MAR = "cust,when,qty,price,order\n"
MAPPING = ColumnMapping.parse(LEDGER_COLUMNS)


@pytest.fixture
def exports(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    for name, text in (("orders_2020-01.csv", JAN), ("orders_2020-02.csv", FEB), ("orders_2020-03.csv", MAR),
                       ("notes.txt", "not an export\n")):
        (folder / name).write_text(text)
    return folder


def _load(conn, pattern, load_id="first", **kwargs):
    logic.load_raw(conn, logic.SourceSpec(str(pattern), MAPPING, "csv"), load_id)
    return logic.clean_transactions(conn, **kwargs)


def test_the_files_of_a_pattern_are_read_in_name_order_as_one_source(exports):
    conn = duckdb.connect()
    counts = _load(conn, exports / "orders_*.csv")
    assert (counts["raw_rows"], counts["clean_rows"], counts["rejected_rows"]) == (7, 4, 3)
    jan, feb, mar = (str(exports / f"orders_2020-0{m}.csv") for m in (1, 2, 3))
    # every row knows its file; the rows are numbered across the files, and the reordered columns are read by name
    raw = conn.execute("SELECT source_row, source_file, customer_id, date, quantity, unit_price, order_id "
                       "FROM raw.transactions ORDER BY source_row").fetchall()
    assert [(r[0], r[1]) for r in raw] == [(1, jan), (2, jan), (3, jan), (4, feb), (5, feb), (6, feb), (7, feb)]
    assert raw[3][2:] == ("A", "2020-02-10", "2", "10", "O3")
    clean = conn.execute("SELECT customer_id, txn_date::VARCHAR, amount, source_row FROM clean.transactions "
                         "ORDER BY source_row").fetchall()
    assert clean == [("A", "2020-01-05", 10.0, 1), ("A", "2020-01-05", 5.0, 2), ("A", "2020-02-10", 20.0, 4),
                     ("B", "2020-02-15", 100.0, 7)]
    # a rejected row names its file and its row in that file: the overlap's repeat is the later copy
    rejected = conn.execute("SELECT source_row, reject_reason, source_file, file_row FROM quality.rejected_transactions "
                            "ORDER BY source_row").fetchall()
    assert rejected == [(3, "null_customer_id", jan, 3), (5, "duplicate", feb, 2), (6, "unparseable_date", feb, 3)]
    load = logic.current_load(conn)
    assert load.source_file == str(exports / "orders_*.csv") and load.rows == 7
    assert [(f["path"], f["rows"], f["first_row"], f["last_row"]) for f in load.file_list()] == [
        (jan, 3, 1, 3), (feb, 4, 4, 7), (mar, 0, None, None)]
    sizes = [os.stat(p).st_size for p in (jan, feb, mar)]
    assert [f["bytes"] for f in load.file_list()] == sizes and load.file_bytes == sum(sizes)


def test_a_file_that_arrives_after_the_load_waits_for_the_next_one(exports):
    conn = duckdb.connect()
    _load(conn, exports / "orders_*.csv")
    (exports / "orders_2020-04.csv").write_text("cust,when,qty,price,order\nC,2020-04-02,1,50,O9\n")
    # the load's view lists its own files: cleaning it again reads the same 7 rows
    assert logic.clean_transactions(conn)["raw_rows"] == 7
    counts = _load(conn, exports / "orders_*.csv", "second")
    assert (counts["raw_rows"], counts["clean_rows"]) == (8, 5)
    # the same pattern is the same source: a new month adds days and changes none
    assert counts["history"] == ("same source: 0 day(s) on or before 2020-02-15 changed since load first; "
                                 "rows on or before 2020-02-15: 4 -> 4 (+0.0%); customers in them: 2, the same")
    assert counts["data_changed"]
    rejected = conn.execute("SELECT source_file, file_row FROM quality.rejected_transactions ORDER BY source_row").fetchall()
    assert [(os.path.basename(f), r) for f, r in rejected] == [("orders_2020-01.csv", 3), ("orders_2020-02.csv", 2),
                                                                ("orders_2020-02.csv", 3)]


def test_files_of_another_dialect_or_with_fewer_columns_are_each_read_their_own_way(exports):
    """DuckDB reads a list of files with the first one's dialect, fast; a file that does not fit (April's
    semicolons) makes the load read every file with its own dialect. April (source_row 8) and May (9, its columns
    in another order) follow the 7 rows above."""
    (exports / "orders_2020-04.csv").write_text("cust;when;qty;price;order\nC;2020-04-02;1;50;O9\n")
    (exports / "orders_2020-05.csv").write_text("when,cust,price,qty,order\n2020-05-03,D,4,3,O10\n")
    conn = duckdb.connect()
    counts = _load(conn, exports / "orders_*.csv")
    assert (counts["raw_rows"], counts["clean_rows"], counts["rejected_rows"]) == (9, 6, 3)
    assert conn.execute("SELECT customer_id, txn_date::VARCHAR, amount, order_id, source_row FROM clean.transactions "
                        "WHERE source_row >= 8 ORDER BY source_row").fetchall() == [
        ("C", "2020-04-02", 50.0, "O9", 8), ("D", "2020-05-03", 12.0, "O10", 9)]


def test_a_file_changed_or_gone_after_the_load_is_named_and_a_lost_export_is_refused(exports):
    conn = duckdb.connect()
    _load(conn, exports / "orders_*.csv")
    feb = exports / "orders_2020-02.csv"
    feb.write_text(FEB + "O6,2020-02-20,B,5,1,web\n")
    with pytest.raises(logic.SourceReadError, match=f"The source file {feb} changed after load first read it"):
        logic.clean_transactions(conn)
    feb.unlink()
    with pytest.raises(logic.SourceReadError, match=f"The source file {feb} of load first is gone"):
        logic.clean_transactions(conn)
    assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 4
    # reloading without February loses 2 of the 4 clean rows dated on or before 2020-02-15: a cut-short export
    with pytest.raises(logic.HistoryLossError, match=r"\(4 -> 2, -50.0%\)"):
        _load(conn, exports / "orders_*.csv", "second")
    assert conn.execute("SELECT count(*), any_value(load_id) FROM clean.transactions").fetchone() == (4, "first")


def test_a_file_without_a_mapped_column_is_named_and_the_previous_load_is_kept(exports):
    conn = duckdb.connect()
    _load(conn, exports / "orders_*.csv")
    (exports / "orders_2020-04.csv").write_text("cust,when,qty,order\nC,2020-04-02,1,O9\n")
    with pytest.raises(ValueError) as refused:
        logic.load_raw(conn, logic.SourceSpec(str(exports / "orders_*.csv"), MAPPING, "csv"), "second")
    message = str(refused.value)
    assert message.startswith(f"The source file {exports / 'orders_2020-04.csv'} has no column for unit_price -> 'price'.")
    assert "(4 files match" in message and "each must hold every mapped column" in message
    assert conn.execute("SELECT count(*), count(DISTINCT load_id) FROM raw.loads").fetchone() == (1, 1)
    assert conn.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 7


def test_a_file_that_cannot_be_read_is_named(exports):
    (exports / "orders_2020-04.csv").write_bytes(b"cust,when,qty,price,order\nC\xe9,2020-04-02,1,50,O9\n")
    with pytest.raises(logic.SourceReadError) as refused:
        _load(duckdb.connect(), exports / "orders_*.csv")
    # the read of all the files fails, then the file-by-file check of their headers finds the one
    assert str(refused.value).startswith(f"Could not read the source file {exports / 'orders_2020-04.csv'} as csv: ")
    assert str(refused.value).endswith("The file is not UTF-8: set CUSTOMER_ASSETS_ENCODING, or the `encoding` config of "
                                       "raw/transactions, to utf-16 or latin-1.")
    # a ragged row past the rows DuckDB samples for the header: the read of every file names it from DuckDB's details
    rows = "".join(f"C,2020-04-02,1,50,O{i}\n" for i in range(30_000))
    (exports / "orders_2020-04.csv").write_text(f"cust,when,qty,price,order\n{rows}D,2020-04-03,1,5,O9,extra\n")
    with pytest.raises(logic.SourceReadError) as refused:
        _load(duckdb.connect(), exports / "orders_*.csv")
    assert str(refused.value).startswith(
        f"Could not read the source file {exports / 'orders_2020-04.csv'} (one of the files matching "
        f"{exports / 'orders_*.csv'}) as csv: Invalid Input Error: CSV Error on Line: 30002.")


def test_patterns_that_cannot_be_one_source_are_explained(tmp_path, exports):
    with pytest.raises(FileNotFoundError, match="No file matches the source pattern .*orders_\\*.parquet"):
        logic.validate_source_path(str(exports / "orders_*.parquet"))
    with pytest.raises(ValueError, match="not all read the same way .*csv: 3 file\\(s\\), e.g. orders_2020-01.csv; "
                                         "whitespace: 1 file\\(s\\), e.g. notes.txt"):
        logic.validate_source_path(str(exports / "*"))
    with pytest.raises(ValueError, match="2 files match .* read from one file only"):
        (exports / "more.txt").write_text("x y\n1 2\n")
        logic.validate_source_path(str(exports / "*.txt"))
    (exports / "orders_2020-05.csv").write_text("")
    with pytest.raises(ValueError, match="Source file is empty \\(0 bytes\\): .*orders_2020-05.csv"):
        logic.validate_source_path(str(exports / "orders_*.csv"))
    with pytest.raises(ValueError, match="not a file but a folder: .* pattern such as .*exports/\\*.csv"):
        logic.validate_source_path(str(exports))
    # a file whose name holds a wildcard character is that file, not a pattern
    odd = tmp_path / "orders[1].csv"
    odd.write_text(JAN)
    assert logic.validate_source_path(str(odd)) == odd


def test_parquet_exports_are_read_by_column_name(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    conn = duckdb.connect()
    # the first file's totals are integers, the second's are not: 4.5 must stay 4.5, not be cast to the first's type
    conn.execute(f"COPY (SELECT * FROM (VALUES ('A', DATE '2020-01-05', 10), ('B', DATE '2020-01-06', 7)) "
                 f"t(cust, day, total)) TO '{folder / 'part-1.parquet'}' (FORMAT parquet)")
    conn.execute(f"COPY (SELECT * FROM (VALUES (4.5, 'A', DATE '2020-02-01')) t(total, cust, day)) "
                 f"TO '{folder / 'part-2.parquet'}' (FORMAT parquet)")
    spec = logic.SourceSpec(str(folder / "part-*.parquet"), ColumnMapping.parse("customer_id=cust,date=day,amount=total"),
                            "parquet")
    logic.load_raw(conn, spec, "pq")
    counts = logic.clean_transactions(conn)
    assert (counts["raw_rows"], counts["clean_rows"]) == (3, 3)
    assert conn.execute("SELECT customer_id, txn_date::VARCHAR, amount, source_row FROM clean.transactions "
                        "ORDER BY source_row").fetchall() == [("A", "2020-01-05", 10.0, 1), ("B", "2020-01-06", 7.0, 2),
                                                              ("A", "2020-02-01", 4.5, 3)]


def test_a_pattern_through_dagster_config_reconciles_and_a_stored_copy_outlives_the_files(exports, warehouse):
    cfg = source_config(exports / "orders_*.csv")
    cfg["ops"]["raw__transactions"]["config"]["stored_copy"] = True
    result = materialize(warehouse, INGEST, run_config=cfg)
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["rows_reconcile"] and checks["clean_keys_unique"] and checks["clean_values_valid"]
    assert row_counts(result) == {"raw/transactions": 7, "clean/transactions": 4, "quality/rejected_transactions": 3,
                                  "quality/history_changes": 0}
    raw = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["raw", "transactions"]))
    metadata = raw.materialization.metadata
    assert metadata["files"].value == 3 and metadata["source"].value == str(exports / "orders_*.csv")
    assert "| orders_2020-02.csv | 4 | 4 |" in metadata["rows_per_file"].value
    for f in exports.glob("orders_*.csv"):
        f.unlink()
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 7
        files = json.loads(conn.execute("SELECT files FROM raw.loads").fetchone()[0])
        assert [f["rows"] for f in files] == [3, 4, 0]


def test_a_warehouse_of_an_older_version_gains_the_files_column(ledger_csv):
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw")
    conn.execute("CREATE TABLE raw.loads (load_id VARCHAR, source_file VARCHAR, format VARCHAR, encoding VARCHAR, "
                 "delimiter VARCHAR, mapping VARCHAR, rows BIGINT, file_bytes BIGINT, file_modified_ns BIGINT, "
                 "stored_copy BOOLEAN, loaded_at TIMESTAMP)")
    st = ledger_csv.stat()
    conn.execute("INSERT INTO raw.loads VALUES ('old', ?, 'csv', 'utf-8', NULL, '{}', 15, ?, ?, false, "
                 "TIMESTAMP '2020-01-01')", [str(ledger_csv), st.st_size, st.st_mtime_ns])
    old = logic.current_load(conn)
    assert old.files is None
    assert old.file_list() == [{"path": str(ledger_csv), "bytes": st.st_size, "modified_ns": st.st_mtime_ns,
                                "rows": 15, "first_row": 1, "last_row": 15}]
    logic.check_source_unchanged(old)  # the old load's one file is compared as before
    logic.load_raw(conn, logic.SourceSpec(str(ledger_csv), MAPPING, "csv"), "new")
    assert [r[0] for r in conn.execute("SELECT files IS NULL FROM raw.loads ORDER BY loaded_at").fetchall()] == [True, False]
    assert logic.clean_transactions(conn)["clean_rows"] == 11


def test_a_pattern_whose_every_row_is_rejected_names_the_file_and_row_of_each_first_rejection(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "orders_1.csv").write_text("cust,when,qty,price,order\nA,2020-01-05,1,-1,O1\nB,2020-01-06,1,-2,O2\n")
    (folder / "orders_2.csv").write_text("when,cust,qty,price,order\n2020-01-07,C,1,-3,O3\n2020-13-01,D,1,4,O4\n")
    conn = duckdb.connect()
    with pytest.raises(logic.NothingCleanError) as refused:
        _load(conn, folder / "orders_*.csv", "bad")
    # source rows 1-2 are the first file's, 3-4 the second's: the date error is the second file's row 2
    assert ("so there is nothing to model: negative_price: 3 (the first: orders_1.csv row 1, "
            "date='2020-01-05', quantity='1', unit_price='-1'); unparseable_date: 1 (the first: orders_2.csv row 2, "
            "date='2020-13-01', quantity='1', unit_price='4').") in str(refused.value)
    assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0
