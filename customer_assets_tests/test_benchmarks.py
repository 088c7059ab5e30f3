"""The feature SQL that benchmarks/headroom.py adds to its candidates, on the hand-built ledger of test_features.

Cutoff c = 2020-03-31; the 30-day bins are (c - 30 (i + 1), c - 30 i], so bin 0 is (03-01, 03-31], bin 1
(01-31, 03-01], bin 2 (01-01, 01-31], bin 4 (2019-11-02, 2019-12-02]. Purchases only (returns are not counted).

Customer A: 01-05 10 + 5 (one purchase day) -> bin 2: 1 day, 15; 02-10 20 -> bin 1: 1 day, 20;
  03-20 30 -> bin 0: 1 day, 30; the 03-25 return and the purchases after c are not counted.
Customer B: 03-01 100 -> c - 30 is not in bin 0 -> bin 1: 1 day, 100.
Customer D: 2019-12-01 60 -> c - 121 -> bin 4: 1 day, 60.
"""

import importlib.util
from pathlib import Path

import duckdb

from customer_assets_tests.test_features import C, built  # noqa: F401  (the fixture)


def _headroom():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "headroom.py"
    spec = importlib.util.spec_from_file_location("headroom", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_history_bins_by_hand(built):  # noqa: F811
    hd = _headroom()
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
