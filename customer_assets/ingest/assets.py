"""Ingest: the source file as read, then cleaned and reconciled."""


import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets import schemas
from customer_assets.erasure import not_erased
from customer_assets.ingest import logic
from customer_assets.settings import (
    ENV_COLUMNS,
    ENV_ENCODING,
    ENV_FORMAT,
    ENV_SOURCE,
    ColumnMapping,
    SettingError,
    date_order,
    max_history_loss,
    source_columns,
    source_path,
)
from customer_assets.storage import markdown_preview

GROUP = "ingest"


class SourceConfig(dg.Config):
    """Where the transactions come from. An empty ``path`` falls back to ``CUSTOMER_ASSETS_SOURCE``, then to the
    source of the last load (with its mapping, format, encoding and ``stored_copy``, unless set here), and only in
    a warehouse that never loaded anything to the bundled CDNOW file. So a run without config (the nightly
    ingest, a click on Materialize) reads again what the last load read, never the demo data instead.

    ``path`` is one file, or a glob pattern (``/exports/orders_*.csv``) whose files, one per export, are read
    as one source in the order of their names; they must all be CSV or all Parquet.

    ``stored_copy`` keeps a copy of the source rows in the warehouse (``raw.transactions`` as a table)
    instead of a view over the file: it costs about as much time and space as the clean table again, and
    is for sources that will not be kept where they are."""

    path: str = ""
    columns: str = ""
    format: str = ""
    encoding: str = ""  # empty: utf-8, or the last load's when its source is read again
    stored_copy: bool | None = None  # unset: false, or the last load's when its source is read again


@dataclass(frozen=True)
class ResolvedSource:
    """The source a load reads, and where the setting came from: ``config``, ``environment``, ``last load`` (no
    source set: the one the data in the warehouse came from) or ``default`` (the bundled CDNOW file)."""

    spec: logic.SourceSpec
    stored_copy: bool
    origin: str


def resolve_source(config: SourceConfig, last: dict | None = None) -> ResolvedSource:
    """The source to read: ``config``, else ``CUSTOMER_ASSETS_SOURCE``, else the source of ``last`` (the warehouse's
    last load, see ``logic.last_source``) with its mapping, format, encoding and stored copy where ``config`` leaves
    them unset, else the bundled CDNOW file. ``CUSTOMER_ASSETS_FORMAT`` and ``CUSTOMER_ASSETS_ENCODING`` stand in
    for the ``format`` and ``encoding`` config when it is empty, so a command-line or nightly run can set them."""
    env_format = os.environ.get(ENV_FORMAT, "").strip()
    env_encoding = os.environ.get(ENV_ENCODING, "").strip()
    if config.path or os.environ.get(ENV_SOURCE) or not last:
        origin = "config" if config.path else "environment" if os.environ.get(ENV_SOURCE) else "default"
        path = config.path or source_path()
        columns = config.columns or (source_columns() if not config.path else "")
        fmt_name, encoding, stored = config.format or env_format, config.encoding or env_encoding or "utf-8", \
            bool(config.stored_copy)
    else:
        origin = "last load"
        path = last["source_file"]
        columns = config.columns or os.environ.get(ENV_COLUMNS) or ",".join(f"{k}={v}" for k, v in last["mapping"].items())
        fmt_name = config.format or env_format or last["format"]
        encoding = config.encoding or env_encoding or last["encoding"] or "utf-8"
        stored = bool(last["stored_copy"]) if config.stored_copy is None else config.stored_copy
    fmt = logic.detect_format(path, fmt_name) if fmt_name else None  # an unknown format fails first
    p = logic.validate_source_path(path, fmt)
    mapping = ColumnMapping.parse(columns)
    first = logic.source_files(str(p), fmt)[0]  # a pattern's files are all read the same way
    return ResolvedSource(logic.SourceSpec(str(p), mapping, logic.detect_format(str(first), fmt), encoding), stored, origin)


@dg.asset(
    key=["raw", "transactions"],
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    description=(
        "The source transactions exactly as read (every field as text), with a load id and row number. A view over the "
        "source file, or over the files a glob pattern matched (or, with `stored_copy`, a table); each load is recorded "
        "in raw.loads with the files' sizes and times."
    ),
    metadata={"dagster/column_schema": schemas.column_schema(schemas.RAW_TRANSACTIONS)},
)
def raw_transactions(context: dg.AssetExecutionContext, config: SourceConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    load_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
    with duckdb.get_connection() as conn:
        last = logic.last_source(conn)
        source = resolve_source(config, last)
        spec = source.spec
        if source.origin == "last load":
            context.log.info(f"No source is set (no `path` config, no {ENV_SOURCE}): reading the source of load "
                             f"{last['load_id']} again, with its mapping, format and encoding. Set either to read "
                             "another.")
        context.log.info(f"Reading {spec.path} as {spec.fmt} ({spec.encoding}) with mapping {spec.mapping.columns} "
                         f"(the source set by: {source.origin})")
        n = logic.load_raw(conn, spec, load_id, stored_copy=source.stored_copy)
        files = logic.current_load(conn).file_list()
        # the source may still hold the rows of erased customers: the preview, kept in the run history, leaves them out
        preview = conn.execute(f"SELECT * FROM raw.transactions WHERE {not_erased(conn)} LIMIT 5").df()
    context.log.info(f"Loaded {n:,} rows (load {load_id})" + (f" from {len(files)} files" if len(files) > 1 else ""))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "load_id": load_id,
            "source": spec.path,
            "files": len(files),
            "rows_per_file": dg.MetadataValue.md(markdown_preview(pd.DataFrame(
                [{"file": Path(f["path"]).name, "rows": f["rows"], "first_row": f["first_row"]} for f in files]), n=50)),
            "source_set_by": source.origin,
            "format": spec.fmt,
            "encoding": spec.encoding,
            "stored_copy": source.stored_copy,
            "mapping": dg.MetadataValue.json(spec.mapping.columns),
            "preview": dg.MetadataValue.md(markdown_preview(preview)),
        }
    )


def clean_materializations(instance: dg.DagsterInstance, limit: int) -> list[tuple[int, float, dict]]:
    """The newest ``limit`` materializations of clean/transactions, newest first, as (event-log position, time, the
    values of its metadata, such as ``last_date`` and ``data_changed``). The schedules and the check
    ``source_advancing`` read the loads from here, from Dagster's event log, never from the warehouse."""
    records = instance.fetch_materializations(dg.AssetKey(["clean", "transactions"]), limit=limit).records
    return [(r.storage_id, r.timestamp, {k: v.value for k, v in r.asset_materialization.metadata.items()})
            for r in records if r.asset_materialization]


class CleanConfig(dg.Config):
    """``date_order``: how slash dates such as 03/04/2011 are read: "auto" (decided from the file: day first when
    some dates only read that way, as 13/01/2011, and none only month first), "month_first" or "day_first". Empty:
    from ``CUSTOMER_ASSETS_DATE_ORDER``, else "auto".

    ``max_history_loss``: the largest share of the previous load's rows (those dated on or before its last date),
    or of the customers in them, that a reload of the same source file may lose; more is refused (a cut-short
    export, rewritten customer ids), and clean.transactions stays as it was. Unset:
    ``CUSTOMER_ASSETS_MAX_HISTORY_LOSS``, else 0.05. 1 accepts any reload."""

    date_order: str = ""
    max_history_loss: float | None = None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["clean", "transactions"],
            deps=[raw_transactions],
            group_name=GROUP,
            kinds={"duckdb"},
            description="Typed, de-duplicated transactions. Ids trimmed and upper-cased; returns kept as negative amounts.",
            metadata={"dagster/column_schema": schemas.column_schema(schemas.CLEAN_TRANSACTIONS)},
        ),
        dg.AssetSpec(
            ["quality", "rejected_transactions"],
            deps=[raw_transactions],
            group_name=GROUP,
            kinds={"duckdb"},
            description="Raw rows that did not pass cleaning, each with its reason. raw = clean + rejected.",
            metadata={"dagster/column_schema": schemas.column_schema(schemas.REJECTED_TRANSACTIONS)},
        ),
        dg.AssetSpec(
            ["quality", "history_changes"],
            deps=[raw_transactions],
            group_name=GROUP,
            kinds={"duckdb"},
            description=("The days, up to the previous load's last date, whose clean rows differ from the previous "
                         "load's: late rows, corrections, deletions. Replaced on each load. A reload of the same file "
                         "that loses more than max_history_loss of those rows, or of their customers, is refused."),
            metadata={"dagster/column_schema": schemas.column_schema(schemas.HISTORY_CHANGES)},
        ),
    ],
    pool="duckdb",
)
def clean_transactions(context: dg.AssetExecutionContext, config: CleanConfig, duckdb: DuckDBResource):
    with duckdb.get_connection() as conn:
        try:
            counts = logic.clean_transactions(conn, date_order(config.date_order), max_history_loss(config.max_history_loss))
        except (logic.DateOrderError, logic.HistoryLossError, logic.NothingCleanError) as exc:
            raise dg.Failure(str(exc)) from exc
        except SettingError as exc:
            raise dg.Failure(f"{exc} {exc.where('clean/transactions')}") from exc
        clean_preview = conn.execute("SELECT * FROM clean.transactions LIMIT 5").df()
        rej_preview = conn.execute("SELECT * FROM quality.rejected_transactions LIMIT 5").df()
        changes_preview = conn.execute("SELECT * FROM quality.history_changes ORDER BY txn_date LIMIT 5").df()
        span = conn.execute("SELECT min(txn_date), max(txn_date), count(DISTINCT customer_id) FROM clean.transactions").fetchone()
    context.log.info(f"Cleaning: {counts}")
    if counts.get("history_changed_days"):
        context.log.warning(f"The history changed: {counts['history']}. See quality.history_changes; the check "
                            "stored_partitions_current lists the stored partitions computed from the old rows.")
    reasons = {k.removeprefix("rejected_"): v for k, v in counts.items() if k.startswith("rejected_") and k != "rejected_rows"}
    outlier_rule = (f"|amount| > {logic.OUTLIER_FACTOR:g} x p99(|amount|) = {counts['outlier_threshold']:.2f}"
                    if counts["outlier_threshold"] is not None else "no rows")
    yield dg.MaterializeResult(
        asset_key=["clean", "transactions"],
        metadata={
            "dagster/row_count": counts["clean_rows"],
            "raw_rows": counts["raw_rows"],
            "first_date": str(span[0]),
            "last_date": str(span[1]),
            "customers": span[2] or 0,
            "outlier_rows": counts["outlier_rows"],
            "outlier_rule": outlier_rule,
            "date_order": counts["date_order"],
            "history": counts["history"],
            "history_changed_days": counts.get("history_changed_days", 0),
            "history_customers_missing": counts.get("history_customers_missing", 0),
            "data_changed": counts["data_changed"],
            "preview": dg.MetadataValue.md(markdown_preview(clean_preview)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quality", "rejected_transactions"],
        metadata={
            "dagster/row_count": counts["rejected_rows"],
            "reasons": dg.MetadataValue.json(reasons),
            "preview": dg.MetadataValue.md(markdown_preview(rej_preview)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quality", "history_changes"],
        metadata={
            "dagster/row_count": counts.get("history_changed_days", 0),
            "history": counts["history"],
            "preview": dg.MetadataValue.md(markdown_preview(changes_preview)),
        },
    )
