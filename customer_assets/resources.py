"""Resources: the DuckDB warehouse.

``Warehouse`` is ``dagster_duckdb.DuckDBResource`` with two changes:

* the connection is closed in a ``finally`` block (upstream closes it only when the
  asset body succeeds, so after a failure the file stayed open and locked);
* when another process holds the file's lock, it waits and retries (up to
  ``lock_timeout_seconds``) instead of failing, so two runs started at once are
  serialized rather than one of them dying with "Could not set lock on file".

``database`` is a path or a MotherDuck ``md:`` URI, so swapping the storage is a
configuration change only.
"""

import random
import re
import time
from contextlib import contextmanager

import duckdb
from dagster_duckdb import DuckDBResource

from customer_assets.settings import ENV_TIMEZONE, timezone, warehouse_path

LOCK_MESSAGES = ("Could not set lock", "Conflicting lock", "database is locked")


def redact(text: str) -> str:
    """Hide tokens and passwords in connection strings before they are logged."""
    return re.sub(r"(?i)(token|password|secret)=[^&;\s]+", r"\1=***", text)


class Warehouse(DuckDBResource):
    """One DuckDB connection per asset execution: waits for the lock, always closed afterwards, and set to
    ``timezone`` (empty: ``CUSTOMER_ASSETS_TIMEZONE``, else UTC), so instants become the same dates on every machine
    rather than in the machine's own time zone."""

    lock_timeout_seconds: float = 900.0
    timezone: str = ""

    def connect(self) -> duckdb.DuckDBPyConnection:
        conn = self._open()
        tz = timezone(self.timezone)
        try:  # after connecting: DuckDB's ICU extension is built in, but not loaded while the connection is configured
            conn.execute("SET TimeZone = '" + tz.replace("'", "''") + "'")
        except duckdb.Error as exc:
            conn.close()
            raise ValueError(f"Unknown time zone {tz!r} (set by the duckdb resource's `timezone` or "
                             f"{ENV_TIMEZONE}): use an IANA name such as UTC or America/New_York") from exc
        return conn

    def _open(self) -> duckdb.DuckDBPyConnection:
        config = {"custom_user_agent": "dagster", **self.connection_config}
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.2
        while True:
            try:
                return duckdb.connect(database=self.database, read_only=False, config=config)
            except duckdb.IOException as exc:
                if not any(m in str(exc) for m in LOCK_MESSAGES) or time.monotonic() > deadline:
                    raise duckdb.IOException(
                        f"Could not open the warehouse {redact(self.database)} for writing: {exc}. Another process holds "
                        "it; analysts should query the serving copy (data/serving/) instead of the warehouse."
                    ) from exc
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 1.5, 5.0)

    @contextmanager
    def get_connection(self):
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()


def warehouse_resource(database: str | None = None) -> Warehouse:
    """The warehouse resource for ``database`` (default: ``$CUSTOMER_ASSETS_DB`` or ``data/warehouse.duckdb``)."""
    return Warehouse(database=warehouse_path(database))
