"""The synthetic generator: deterministic, messy at the configured rates, and loadable end to end."""

import json

import duckdb

from customer_assets.generate import COLUMNS, Truth, generate
from customer_assets.ingest import logic
from customer_assets.settings import ColumnMapping


def test_generated_data_loads_and_reconciles(tmp_path):
    out = tmp_path / "syn.csv"
    truth = Truth(messy={"duplicate": 0.02, "null_id": 0.01, "bad_date": 0.01, "negative_price": 0.01, "future_date": 0.01})
    record = generate(2_000, 2, 7, str(out), chunk_customers=700, truth=truth)
    saved = json.loads((tmp_path / "syn.csv.truth.json").read_text())
    assert saved["rows"] == record["rows"] and saved["truth"]["r"] == truth.r and saved["columns"] == COLUMNS
    conn = duckdb.connect()
    logic.load_raw(conn, logic.SourceSpec(str(out), ColumnMapping.parse(COLUMNS), "csv"), "t")
    counts = logic.clean_transactions(conn)
    assert counts["raw_rows"] == record["rows"] == counts["clean_rows"] + counts["rejected_rows"]
    for reason in ("duplicate", "null_customer_id", "unparseable_date", "negative_price", "future_date"):
        assert counts.get(f"rejected_{reason}", 0) > 0, reason
    returns, customers = conn.execute("SELECT count(*) FILTER (WHERE is_return), count(DISTINCT customer_id) FROM clean.transactions").fetchone()
    assert returns > 0 and 1_900 <= customers <= 2_000
    # cohorts: first purchases spread over the whole period, and weekends busier than weekdays
    spread = conn.execute("SELECT count(DISTINCT date_trunc('month', f)) FROM (SELECT min(txn_date) f FROM clean.transactions GROUP BY customer_id)").fetchone()[0]
    assert spread >= 20
    weekend, weekday = conn.execute(
        "SELECT count(*) FILTER (WHERE dayofweek(txn_date) IN (0, 6)) / 2.0, count(*) FILTER (WHERE dayofweek(txn_date) NOT IN (0, 6)) / 5.0 "
        "FROM clean.transactions WHERE NOT is_return").fetchone()
    assert weekend > weekday


def test_same_seed_same_data(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    generate(300, 1, 3, str(a), chunk_customers=100)
    generate(300, 1, 3, str(b), chunk_customers=100)
    assert a.read_bytes() == b.read_bytes()


def test_parquet_output(tmp_path):
    out = tmp_path / "syn.parquet"
    record = generate(500, 1, 1, str(out), chunk_customers=200)
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0] == record["rows"]
