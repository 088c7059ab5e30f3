"""Publishing the read-only serving copy after each scoring run."""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.partitions import CUTOFF_PARTITIONS
from customer_assets.scores.checks import invalid_cutoffs
from customer_assets.serving import logic
from customer_assets.settings import serving_dir
from customer_assets.storage import table_exists


class ServingConfig(dg.Config):
    """Folder of the serving copy; empty = ``$CUSTOMER_ASSETS_SERVING_DIR`` or ``serving/`` next to the warehouse."""

    path: str = ""


@dg.asset(
    key=["serving", "snapshot"],
    deps=[dg.AssetKey(["scores", "scored_customers"])],
    partitions_def=CUTOFF_PARTITIONS,
    group_name="scores",
    kinds={"parquet", "duckdb"},
    pool="duckdb",
    description=(
        "The read-only copy analysts query: scores, segments, rejected rows and evaluation tables exported to Parquet (swapped in "
        "atomically) plus serving.duckdb with views of the same names. Readers here never block the pipeline."
    ),
    metadata={"dagster/column_schema": dg.TableSchema(columns=[
        dg.TableColumn("file", "VARCHAR", description="<schema>.<table>.parquet, one per published table"),
        dg.TableColumn("rows", "BIGINT", description="Rows in the published table (all cutoffs)"),
    ])},
)
def serving_snapshot(context: dg.AssetExecutionContext, config: ServingConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    folder = Path(config.path) if config.path else serving_dir(duckdb.database)
    with duckdb.get_connection() as conn:
        # the blocking score checks stop this asset only in the run that scored; run on its own (or after a run that
        # skipped them), it checks the same rules itself, since it publishes every cutoff
        if table_exists(conn, "scores", "scored_customers") and (bad := invalid_cutoffs(conn)):
            raise dg.Failure(
                "Not published: scores.scored_customers has rows that break the checks scores_valid or "
                "every_customer_scored_once at " + ", ".join(f"{c} ({n} rows)" for c, n in bad.items())
                + f". The serving copy in {folder} is unchanged. Materialize those partitions of scores/scored_customers "
                "again, and see their checks for what is wrong."
            )
        counts = logic.publish(conn, folder)
    views = logic.write_views(folder)
    context.log.info(f"Published {counts} to {folder}; {views}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": counts.get("scores.scored_customers", 0),
        "folder": str(folder),
        "tables": dg.MetadataValue.json(counts),
        "views": views,
    })
