"""Bad input, faults and concurrent readers: nothing lost, every error clear."""

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from customer_assets.ingest import logic
from customer_assets.settings import ColumnMapping
from customer_assets_tests.conftest import CDNOW_CSV_COLUMNS, INGEST, LEDGER, LEDGER_COLUMNS, materialize, source_config

MAPPING = ColumnMapping.parse(LEDGER_COLUMNS)
GOOD = "cust,when,qty,price,order\nA,2020-01-05,1,10,O1\nB,2020-01-06,2,5,O2\n"


def _load(path: Path, encoding="utf-8", fmt=None):
    conn = duckdb.connect()
    logic.validate_source_path(str(path))
    spec = logic.SourceSpec(str(path), MAPPING, logic.detect_format(str(path), fmt), encoding)
    logic.load_raw(conn, spec, "t")
    return logic.clean_transactions(conn)


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


@pytest.mark.parametrize(
    "name, data, encoding, outcome",
    [
        ("empty.csv", b"", "utf-8", "Source file is empty"),
        ("header_only.csv", "cust,when,qty,price,order\n", "utf-8", "has a header but no data rows"),
        ("semicolons.csv", GOOD.replace(",", ";"), "utf-8", 2),  # the sniffer reads it correctly
        ("tabs.tsv", GOOD.replace(",", "\t"), "utf-8", 2),
        ("spaces.csv", GOOD.replace(",", " ").replace("A 2020", "A 2020"), "utf-8", 2),
        ("pipes_one_column.csv", GOOD.replace(",", "|").replace("|", "¦"), "utf-8", "another delimiter"),
        ("latin1.csv", GOOD.replace("A,", "Ä,").encode("latin-1"), "utf-8", "not UTF-8"),
        ("latin1_declared.csv", GOOD.replace("A,", "Ä,").encode("latin-1"), "latin-1", 2),
        ("utf16.csv", GOOD.encode("utf-16"), "utf-16", 2),
        ("compressed.csv.gz", gzip.compress(GOOD.encode()), "utf-8", 2),
        ("random.csv", bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8)), "utf-8", "Could not read the source file"),
        ("not_parquet.parquet", GOOD, "utf-8", "Is it really a Parquet file?"),
        ("blank_lines.csv", GOOD.replace("\nA,", "\n\n\nA,") + "\n  \n", "utf-8", 2),  # the sniffer gives up; we retry with ","
        ("crlf_bom.csv", ("\ufeff" + GOOD).replace("\n", "\r\n"), "utf-8", 2),
        ("truncated.csv.gz", gzip.compress((GOOD + "C,2020-01-07,1,5,O3\n").encode())[:-12], "utf-8", "truncated or corrupt"),
        ("ragged.csv", GOOD + "C,2020-01-07\nD,2020-01-08,1,5,O4,x,y\n", "utf-8", "rows probably have different numbers"),
    ],
)
def test_file_level_problems_are_read_or_explained(tmp_path, name, data, encoding, outcome):
    path = _write(tmp_path, name, data)
    if isinstance(outcome, int):
        counts = _load(path, encoding)
        assert counts["clean_rows"] == outcome and counts["raw_rows"] == counts["clean_rows"] + counts["rejected_rows"]
    else:
        with pytest.raises(ValueError, match=outcome):
            _load(path, encoding)


def test_a_failed_load_keeps_the_previous_one(ledger_csv, warehouse, tmp_path):
    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    bad = _write(tmp_path, "header_only.csv", "cust,when,qty,price,order\n")
    result = materialize(warehouse, INGEST, run_config=source_config(bad), raise_on_error=False)
    assert not result.success
    with duckdb.connect(warehouse, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 15
        assert conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0] == 11


def test_row_level_problems_are_rejected_with_reasons(tmp_path):
    rows = GOOD + "\n".join([
        "C,2020-01-07,abc,5,O3",  # non-numeric quantity
        "D,2020-01-08,0,5,O4",  # zero quantity
        "E,2999-01-01,1,5,O5",  # future
        " ,2020-01-09,1,5,O6",  # blank id
        "F,yesterday,1,5,O7",  # unparseable date
        "G,2020-01-10,1,-5,O8",  # negative price, not a return
        "H,2020-01-11,-1,5,O9",  # a return: kept, negative
        "a ,2020-01-12,1,5,O10",  # padded lower-case id -> A
        "I,2020-01-13,1e300,1e300,O11",  # overflows to inf: not a usable amount
        "J,2020-01-14,1,NaN,O12",  # NaN price
        "K,2020-01-15,1000,2e9,O13",  # 2e12: beyond a trillion, not a purchase
        "L,1899-12-30,1,5,O14",  # Excel's zero date: an export artefact
    ]) + "\n"
    conn = duckdb.connect()
    spec = logic.SourceSpec(str(_write(tmp_path, "rows.csv", rows)), MAPPING, "csv")
    logic.load_raw(conn, spec, "t")
    counts = logic.clean_transactions(conn)
    reasons = dict(conn.execute("SELECT reject_reason, count(*) FROM quality.rejected_transactions GROUP BY 1").fetchall())
    assert reasons == {"non_numeric_amount": 3, "zero_quantity": 1, "future_date": 1, "null_customer_id": 1,
                       "unparseable_date": 1, "negative_price": 1, "amount_out_of_range": 1,
                       "date_before_1970": 1}
    assert counts["raw_rows"] == 14 == counts["clean_rows"] + counts["rejected_rows"]
    assert conn.execute("SELECT amount, is_return FROM clean.transactions WHERE customer_id = 'H'").fetchone() == (-5.0, True)
    assert conn.execute("SELECT count(*) FROM clean.transactions WHERE customer_id = 'A'").fetchone()[0] == 2


def test_extreme_amounts_are_kept_and_flagged(tmp_path):
    lines = ["cust,when,qty,price,order"] + [f"C{i},2020-01-{1 + i % 28:02d},1,{10 + i % 7},O{i}" for i in range(300)]
    lines.append("BIG,2020-02-01,1,1000000,OBIG")
    conn = duckdb.connect()
    logic.load_raw(conn, logic.SourceSpec(str(_write(tmp_path, "o.csv", "\n".join(lines) + "\n")), MAPPING, "csv"), "t")
    counts = logic.clean_transactions(conn)
    assert counts["outlier_rows"] == 1 and counts["rejected_rows"] == 0
    assert conn.execute("SELECT customer_id FROM clean.transactions WHERE is_outlier").fetchall() == [("BIG",)]


KILL_SCRIPT = """
import sys, duckdb
from datetime import date
from customer_assets.storage import replace_partition
conn = duckdb.connect(sys.argv[1])
print("writing", flush=True)
replace_partition(conn, "features", "t", date(2020, 1, 1),
                  "SELECT DATE '2020-01-01' AS cutoff_date, range AS v, md5(range::VARCHAR) AS h FROM range(200000000)")
print("done", flush=True)
"""


def test_sigkill_during_a_partition_write_leaves_the_partition_as_it_was(tmp_path):
    db = str(tmp_path / "kill.duckdb")
    from datetime import date

    from customer_assets.storage import replace_partition

    with duckdb.connect(db) as conn:
        sql = "SELECT DATE '2020-01-01' AS cutoff_date, range AS v, 'old' AS h FROM range(1000)"
        replace_partition(conn, "features", "t", date(2020, 1, 1), sql)
        replace_partition(conn, "features", "t", date(2020, 2, 1), sql.replace("2020-01-01", "2020-02-01"))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, db], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(2.0)  # inside the DELETE + INSERT transaction
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with duckdb.connect(db, read_only=True) as conn:
        rows = conn.execute("SELECT cutoff_date::VARCHAR, count(*), min(h), max(h) FROM features.t GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("2020-01-01", 1000, "old", "old"), ("2020-02-01", 1000, "old", "old")]


def test_a_table_written_by_an_earlier_version_gains_the_new_columns(caplog):
    from datetime import date

    from customer_assets.storage import replace_partition

    conn = duckdb.connect()
    old = "SELECT DATE '2020-01-01' AS cutoff_date, 'A' AS customer_id, 1.5 AS score"
    replace_partition(conn, "scores", "t", date(2020, 1, 1), old)
    new = ("SELECT DATE '2020-02-01' AS cutoff_date, 'A' AS customer_id, 2.5 AS score, 'why' AS top_drivers, "
           "[1, 2] AS ranks")
    with caplog.at_level("WARNING"):
        assert replace_partition(conn, "scores", "t", date(2020, 2, 1), new) == 1
    assert ("scores.t was written by an earlier version: added the column(s) top_drivers VARCHAR, ranks INTEGER[]. "
            "The partitions written before hold NULL there until they are materialized again.") in caplog.text
    rows = conn.execute("SELECT cutoff_date::VARCHAR, score, top_drivers, ranks FROM scores.t ORDER BY 1").fetchall()
    assert rows == [("2020-01-01", 1.5, None, None), ("2020-02-01", 2.5, "why", [1, 2])]
    # a write that adds nothing says nothing; one that fails adds nothing either (one transaction)
    caplog.clear()
    with caplog.at_level("WARNING"):
        replace_partition(conn, "scores", "t", date(2020, 1, 1), new.replace("2020-02-01", "2020-01-01"))
    assert "earlier version" not in caplog.text
    with pytest.raises(duckdb.Error, match="boom"):  # raised by the INSERT, after the new columns were added
        replace_partition(conn, "scores", "t", date(2020, 3, 1), new.replace("2020-02-01", "2020-03-01").replace(
            "[1, 2] AS ranks", "[1, 2] AS ranks, 'x' AS more, CASE WHEN score > 0 THEN error('boom') ELSE 'x' END AS broken"))
    assert [r[0] for r in conn.execute("DESCRIBE scores.t").fetchall()] == ["cutoff_date", "customer_id", "score",
                                                                           "top_drivers", "ranks"]


def test_features_stored_by_an_earlier_version_are_extended_on_the_next_write(ledger_csv, warehouse):
    from customer_assets_tests.conftest import source_config

    assert materialize(warehouse, INGEST, run_config=source_config(ledger_csv)).success
    feats = "features/calibration_transactions features/holdout_transactions features/customer_features"
    assert materialize(warehouse, feats, partition_key="2020-03-31").success
    with duckdb.connect(warehouse) as conn:  # the table as a version without momentum_ratio left it
        conn.execute("ALTER TABLE features.customer_features DROP COLUMN momentum_ratio")
    result = materialize(warehouse, feats, partition_key="2020-04-30")
    assert result.success
    with duckdb.connect(warehouse, read_only=True) as conn:
        got = conn.execute("SELECT cutoff_date::VARCHAR, count(*), count(momentum_ratio) FROM features.customer_features "
                           "GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [("2020-03-31", 3, 0), ("2020-04-30", 4, 4)]


FUZZ_ERRORS = ("Could not read the source file", "has no column for", "has a header but no data rows",
               "Source file is empty", "Unsupported source file type")


def _corrupt(rng: np.random.Generator, text: str) -> bytes:
    lines = text.splitlines()
    kind = rng.integers(0, 6)
    if kind == 0:  # truncated lines
        lines = [ln[: rng.integers(0, len(ln) + 1)] if rng.random() < 0.3 else ln for ln in lines]
    elif kind == 1:  # swapped columns on some lines
        lines = [",".join(reversed(ln.split(","))) if rng.random() < 0.3 and i else ln for i, ln in enumerate(lines)]
    elif kind == 2:  # random bytes sprinkled in
        data = bytearray("\n".join(lines).encode())
        for _ in range(rng.integers(1, 20)):
            data[rng.integers(0, len(data))] = int(rng.integers(0, 256))
        return bytes(data)
    elif kind == 3:  # extreme values
        lines = [ln.replace(",1,", f",{rng.choice(['1e308', '-1e308', 'nan', 'inf', '99999999999999999999'])},") for ln in lines]
    elif kind == 4:  # extra and missing fields
        lines = [ln + ",x,y" if rng.random() < 0.2 else ln.rsplit(",", 1)[0] if rng.random() < 0.2 else ln for ln in lines]
    else:  # header damaged
        lines[0] = lines[0].replace("when", "wh en") if rng.random() < 0.5 else ""
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


@pytest.mark.parametrize("seed", range(30))
def test_fuzzed_files_reconcile_or_fail_clearly(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = _write(tmp_path, "fuzz.csv", _corrupt(rng, LEDGER * 3))
    try:
        counts = _load(path)
    except ValueError as exc:
        assert any(m in str(exc) for m in FUZZ_ERRORS), f"unexplained error: {exc}"
        return
    assert counts["raw_rows"] == counts["clean_rows"] + counts["rejected_rows"]


READER_SCRIPT = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
n0 = conn.execute("SELECT count(*) FROM scores.scored_customers").fetchone()[0]
print("open", n0, flush=True)
deadline = time.time() + 120
while time.time() < deadline and sys.stdin.readline().strip() != "stop":
    pass
n1 = conn.execute("SELECT count(*) FROM scores.scored_customers").fetchone()[0]
print("read", n1, flush=True)
"""


def test_a_reader_on_the_serving_copy_does_not_block_the_run(cdnow_slice, tmp_path, monkeypatch):
    from customer_assets.cli import materialize_cutoff

    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(cdnow_slice))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", CDNOW_CSV_COLUMNS)
    monkeypatch.delenv("CUSTOMER_ASSETS_SERVING_DIR", raising=False)
    db = str(tmp_path / "warehouse.duckdb")
    instance = dg.DagsterInstance.ephemeral()
    materialize_cutoff("1998-06-30", db, instance=instance)
    serving = tmp_path / "serving" / "serving.duckdb"
    assert serving.exists()
    reader = subprocess.Popen([sys.executable, "-c", READER_SCRIPT, str(serving)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().split() == ["open", "2000"]
    # a full run while the analyst's session stays open: scores another cutoff and republishes
    materialize_cutoff("1998-05-01", db, skip_ingest=True, instance=instance)
    reader.stdin.write("stop\n")
    reader.stdin.flush()
    assert reader.stdout.readline().split() == ["read", "4000"]  # the new file is visible to the open session
    assert reader.wait(timeout=30) == 0
    parquet = str(tmp_path / "serving" / "scores.scored_customers.parquet")
    cutoffs = duckdb.sql(f"SELECT DISTINCT cutoff_date::VARCHAR FROM read_parquet('{parquet}') ORDER BY 1").fetchall()
    assert cutoffs == [("1998-05-01",), ("1998-06-30",)]


def test_two_runs_started_at_once_are_serialized(cdnow_slice, tmp_path):
    db = str(tmp_path / "warehouse.duckdb")
    env = {**os.environ, "CUSTOMER_ASSETS_SOURCE": str(cdnow_slice), "CUSTOMER_ASSETS_COLUMNS": CDNOW_CSV_COLUMNS}
    env.pop("DAGSTER_HOME", None)
    cli = [sys.executable, "-m", "customer_assets.cli", "materialize", "--db", db]
    subprocess.run([*cli, "--cutoff", "1998-06-30"], env=env, check=True, capture_output=True, timeout=300)
    procs = [subprocess.Popen([*cli, "--skip-ingest", "--cutoff", c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in ("1998-05-01", "1998-04-01")]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "lock" not in err.lower()
    with duckdb.connect(db, read_only=True) as conn:
        per_cutoff = dict(conn.execute("SELECT cutoff_date::VARCHAR, count(*) FROM scores.scored_customers GROUP BY 1").fetchall())
    assert per_cutoff == {"1998-06-30": 2000, "1998-05-01": 2000, "1998-04-01": 2000}


def test_config_paths_are_validated(tmp_path, monkeypatch):
    """A warehouse setting that points at a folder, at the source or at a non-DuckDB file is refused by name."""
    from customer_assets import settings

    source = tmp_path / "sales.csv"
    source.write_text("customer_id,date,amount\n1,2020-01-01,5\n")
    monkeypatch.setenv(settings.ENV_SOURCE, str(source))
    with pytest.raises(ValueError, match="CUSTOMER_ASSETS_DB points at a directory"):
        settings.warehouse_path(str(tmp_path))
    with pytest.raises(ValueError, match="points at the transaction source"):
        settings.warehouse_path(str(source))
    other = tmp_path / "notes.txt"
    other.write_text("not a database, and it must survive\n")
    with pytest.raises(ValueError, match="not a DuckDB database file"):
        settings.warehouse_path(str(other))
    assert other.read_text() == "not a database, and it must survive\n"
    with pytest.raises(ValueError, match="not a usable path"):
        settings.warehouse_path("bad\x00name.duckdb")
    # A real DuckDB file, a new file in a new folder and MotherDuck URIs are accepted.
    real = tmp_path / "wh.duckdb"
    duckdb.connect(str(real)).close()
    assert settings.warehouse_path(str(real)) == str(real)
    new = tmp_path / "sub" / "new.duckdb"
    assert settings.warehouse_path(str(new)) == str(new) and new.parent.is_dir()
    assert settings.warehouse_path("md:customer_assets") == "md:customer_assets"
    monkeypatch.setenv(settings.ENV_REPORTS, str(other))
    with pytest.raises(ValueError, match="CUSTOMER_ASSETS_REPORTS_DIR must be a folder"):
        settings.reports_dir()
    monkeypatch.setenv(settings.ENV_SERVING, str(other))
    with pytest.raises(ValueError, match="CUSTOMER_ASSETS_SERVING_DIR must be a folder"):
        settings.serving_dir()


def test_the_cli_shows_what_the_warning_checks_found(ledger_csv, tmp_path, monkeypatch, capfd):
    """A check that warns stops nothing; the CLI prints what it found under the step, as the UI shows it."""
    from customer_assets.cli import Runner
    from customer_assets.jobs import INGEST_SELECTION

    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(ledger_csv))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", LEDGER_COLUMNS)
    Runner(str(tmp_path / "w.duckdb"), instance=dg.DagsterInstance.ephemeral()).run(INGEST_SELECTION, label="ingest")
    err = capfd.readouterr().err  # the dirty ledger: 4 of its 15 rows are rejected
    assert ("  warning: clean/transactions check rejected_share_small: 26.7% of 15 raw rows rejected, most as duplicate (1)"
            in err.splitlines())
    assert err.count("warning:") == 1  # the other checks passed


@pytest.mark.parametrize("home", ["missing", "relative"])
def test_a_dagster_home_that_is_not_an_existing_absolute_folder_is_refused_clearly(home, tmp_path, monkeypatch):
    from customer_assets.cli import main

    value = str(tmp_path / "not_there") if home == "missing" else "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", value)
    with pytest.raises(SystemExit) as exit_:
        main(["materialize", "--db", str(tmp_path / "w.duckdb")])
    assert str(exit_.value).startswith(f"customer-assets: DAGSTER_HOME={value} must be an existing folder, given by an "
                                       "absolute path. Create it")
    assert not (tmp_path / "w.duckdb").exists()  # refused before anything was written


def test_a_check_without_a_description_is_summed_up_by_its_nonzero_counts():
    from customer_assets.cli import check_line

    check = dg.AssetCheckEvaluation(asset_key=dg.AssetKey(["features", "customer_features"]), check_name="features_valid",
                                    passed=False, metadata={"recency_out_of_range": 2, "rows_with_nulls": 0, "scoped": True})
    assert check_line(check) == "features/customer_features check features_valid: recency_out_of_range 2"
    described = dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name="x", passed=False, description="why")
    assert check_line(described) == "features/customer_features check x: why"
    bare = dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name="y", passed=False, metadata={"n": 0})
    assert check_line(bare) == "features/customer_features check y: did not pass"


def test_the_cli_shows_the_reason_not_the_step_wrapper(tmp_path, monkeypatch):
    """A failed ingest through the CLI's runner ends with our message (file, problem, fix), not Dagster's wrapper."""
    from customer_assets.cli import Runner
    from customer_assets.jobs import INGEST_SELECTION

    bad = _write(tmp_path, "sales.csv.gz", gzip.compress(GOOD.encode())[:-12])
    monkeypatch.setenv("CUSTOMER_ASSETS_SOURCE", str(bad))
    monkeypatch.setenv("CUSTOMER_ASSETS_COLUMNS", LEDGER_COLUMNS)
    with pytest.raises(SystemExit) as exc:
        Runner(str(tmp_path / "w.duckdb"), instance=dg.DagsterInstance.ephemeral()).run(INGEST_SELECTION, label="ingest")
    text = str(exc.value)
    assert text.startswith("customer-assets: ingest failed: ") and "SourceReadError" in text
    assert "sales.csv.gz is truncated or corrupt" in text and "Error occurred while executing" not in text
