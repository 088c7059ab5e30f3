"""Resources: the DuckDB warehouse.

The warehouse is ``dagster_duckdb.DuckDBResource``; its ``database`` is a path or a
MotherDuck ``md:`` URI, so swapping the storage is a configuration change only.
"""

from __future__ import annotations

from dagster_duckdb import DuckDBResource

from customer_assets.settings import warehouse_path


def warehouse_resource(database: str | None = None) -> DuckDBResource:
    """The DuckDB resource for ``database`` (default: ``$CUSTOMER_ASSETS_DB`` or ``data/warehouse.duckdb``)."""
    return DuckDBResource(database=database or warehouse_path())
