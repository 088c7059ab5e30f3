"""Shared fixtures: hand-built ledgers, CDNOW slices and a temporary warehouse per test."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from customer_assets.definitions import ASSETS, CHECKS
from customer_assets.resources import Warehouse
from customer_assets.settings import DATA_DIR

HERE = Path(__file__).parent
LEDGER_COLUMNS = "customer_id=cust,date=when,quantity=qty,unit_price=price,order_id=order"
# the ingest assets: they are materialized together (one multi-asset)
INGEST = "raw/transactions clean/transactions quality/rejected_transactions quality/history_changes"

# A hand-built ledger. Cutoff 2020-03-31, H = 90 days -> label window (2020-03-31, 2020-06-29].
# The expected features are worked out by hand in test_features.py.
LEDGER = """cust,when,qty,price,order
A,2020-01-05,1,10,O1
A,2020-01-05,1,5,O2
A,2020-02-10,2,10,O3
 a ,2020-03-20,3,10,O4
A,2020-03-25,-1,5,O5
A,2020-04-15,4,10,O6
A,2020-05-01,1,10,O7
B,2020-03-01,2,50,O8
C,2020-04-02,1,50,O9
D,2019-12-01,3,20,O10
D,2020-07-15,7,10,O11
,2020-02-01,1,10,O90
A,2020-13-45,1,10,O91
A,2020-02-10,2,10,O3
B,2020-03-02,1,-10,O92
"""


@pytest.fixture
def ledger_csv(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.csv"
    path.write_text(LEDGER)
    return path


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    return str(tmp_path / "warehouse.duckdb")


def materialize(warehouse: str, selection, partition_key=None, run_config=None, raise_on_error=True, instance=None,
                tags=None):
    if isinstance(selection, str):
        selection = dg.AssetSelection.assets(*[dg.AssetKey(k.split("/")) for k in selection.split()])
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection,
        partition_key=partition_key,
        resources={"duckdb": Warehouse(database=warehouse)},
        run_config=run_config,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
        tags=tags,
    )


def row_counts(result) -> dict[str, int]:
    """Asset key -> the dagster/row_count its materialization reported."""
    return {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata[
            "dagster/row_count"
        ].value
        for e in result.get_asset_materialization_events()
    }


def source_config(path, columns=LEDGER_COLUMNS) -> dict:
    return {"ops": {"raw__transactions": {"config": {"path": str(path), "columns": columns}}}}


@pytest.fixture(scope="session")
def cdnow_slice(tmp_path_factory) -> Path:
    """The first 2,000 CDNOW customers (about 6,000 purchases) as a CSV."""
    src = DATA_DIR / "CDNOW_master.txt"
    frame = pd.read_csv(src, sep=r"\s+", dtype=str)
    frame = frame[frame["customer_id"].astype(int) <= 2000]
    path = tmp_path_factory.mktemp("cdnow") / "cdnow_slice.csv"
    frame.to_csv(path, index=False)
    return path


CDNOW_CSV_COLUMNS = "customer_id=customer_id,date=date,quantity=number_of_cds,amount=dollar_value"


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, HERE.parent / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
