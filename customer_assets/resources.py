"""Resources: the DuckDB warehouse.

``Warehouse`` is ``dagster_duckdb.DuckDBResource`` with one fix: the connection is
closed in a ``finally`` block. Upstream closes it only when the asset body succeeds,
so after a failure the file stayed open (and locked) until garbage collection.

``database`` is a path or a MotherDuck ``md:`` URI, so swapping the storage is a
configuration change only.
"""

from contextlib import contextmanager

import duckdb
from dagster_duckdb import DuckDBResource

from customer_assets.settings import warehouse_path


class Warehouse(DuckDBResource):
    """DuckDB connection per asset execution, always closed afterwards."""

    @contextmanager
    def get_connection(self):
        config = {"custom_user_agent": "dagster", **self.connection_config}
        conn = duckdb.connect(database=self.database, read_only=False, config=config)
        try:
            yield conn
        finally:
            conn.close()


def warehouse_resource(database: str | None = None) -> Warehouse:
    """The warehouse resource for ``database`` (default: ``$CUSTOMER_ASSETS_DB`` or ``data/warehouse.duckdb``)."""
    return Warehouse(database=database or warehouse_path())
