"""reports/customer_report: an HTML page per cutoff for marketers."""

import os
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.partitions import CUTOFF_PARTITIONS
from customer_assets.reports import logic
from customer_assets.settings import HORIZON_DAYS, LTV_HORIZON_DAYS, currency, reports_dir
from customer_assets.storage import table_exists


@dg.asset(
    key=["reports", "customer_report"],
    deps=[dg.AssetKey(["scores", "scored_customers"])],
    partitions_def=CUTOFF_PARTITIONS,
    group_name="scores",
    kinds={"html", "duckdb"},
    pool="duckdb",
    description=(
        "A self-contained HTML report per cutoff, written under data/reports/: what changed since the previous scored "
        "cutoff, segment sizes and movement, revenue at risk, the customers to call first, the recommended action "
        "per segment with its reasoning, and how right the forecasts have been: the backtests that had ended by the "
        "cutoff, and the totals they imply if this forecast is off as those were."
    ),
    metadata={"dagster/column_schema": dg.TableSchema(columns=[
        dg.TableColumn("file", "VARCHAR", description="customer_report_<cutoff>.html"),
    ])},
)
def customer_report(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    cutoff = date.fromisoformat(context.partition_key)
    try:  # before anything is read or written: a bad label fails naming the variable
        money = currency()
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    with duckdb.get_connection() as conn:
        current = conn.execute("SELECT * FROM scores.scored_customers WHERE cutoff_date = ?", [cutoff]).df()
        if current.empty:
            raise dg.Failure(f"scores/scored_customers has no rows for {cutoff}: score that cutoff first.")
        prev_cutoff = conn.execute("SELECT max(cutoff_date) FROM scores.scored_customers WHERE cutoff_date < ?", [cutoff]).fetchone()[0]
        previous = (conn.execute("SELECT * FROM scores.scored_customers WHERE cutoff_date = ?", [prev_cutoff]).df()
                    if prev_cutoff else None)
        # what the check features_like_training found when these scores were written (none before the table existed)
        drift = (conn.execute("SELECT model, model_partition::VARCHAR AS model_partition, feature, psi, share_below_min, "
                              "share_above_max FROM scores.feature_drift WHERE cutoff_date = ? AND past_limits "
                              "ORDER BY psi DESC, model, feature", [cutoff]).df()
                 if table_exists(conn, "scores", "feature_drift") else None)
        # the backtests: track_record keeps those whose windows had ended by the cutoff
        backtests = (conn.execute("SELECT eval_cutoff_date, task, system, metric, value FROM evaluation.backtest_metrics "
                                  "WHERE system = 'champion' AND task IN ('purchase', 'spend')").df()
                     if table_exists(conn, "evaluation", "backtest_metrics") else None)
        deciles = (conn.execute("SELECT * FROM evaluation.spend_deciles WHERE system = 'champion'").df()
                   if table_exists(conn, "evaluation", "spend_deciles") else None)
        segments = (conn.execute("SELECT * FROM evaluation.segment_metrics WHERE system = 'champion'").df()
                    if table_exists(conn, "evaluation", "segment_metrics") else None)
        ltv = (conn.execute("SELECT cutoff_date, window_end, system, metric, value FROM evaluation.ltv_metrics "
                            "WHERE system = 'champion'").df()
               if table_exists(conn, "evaluation", "ltv_metrics") else None)
    record = logic.track_record(backtests, ltv, cutoff, HORIZON_DAYS, deciles=deciles, segments=segments)
    page, headline = logic.build_report(cutoff, current, previous, prev_cutoff, HORIZON_DAYS, LTV_HORIZON_DAYS, drift,
                                        record, currency=money)
    folder = reports_dir(duckdb.database)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"customer_report_{cutoff}.html"
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    context.log.info(f"Report written to {path}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": headline["customers"],
        "report": dg.MetadataValue.path(str(path)),
        "report_url": dg.MetadataValue.url(path.resolve().as_uri()),
        "previous_cutoff": str(prev_cutoff) if prev_cutoff else "none",
        **{k: float(v) for k, v in headline.items()},
    })
