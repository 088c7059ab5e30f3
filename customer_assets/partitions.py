"""Partition definitions: one partition per daily cutoff date."""

from __future__ import annotations

import dagster as dg

from customer_assets.settings import HORIZON_DAYS, PARTITIONS_START

CUTOFF_PARTITIONS = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, fmt="%Y-%m-%d")

# Scoring at cutoff s uses the models of partition s - H: their labels end at s.
MODEL_FOR_SCORING = dg.TimeWindowPartitionMapping(start_offset=-HORIZON_DAYS, end_offset=-HORIZON_DAYS)


def check_scope(context: dg.AssetCheckExecutionContext) -> tuple[str, list]:
    """``WHERE cutoff_date = ?`` and its parameter in a partitioned run; no filter when the check runs on its own.

    So a check run with each partition of a backfill looks at that partition only, and one run alone checks the
    whole table.
    """
    partition = context.run.tags.get("dagster/partition")
    return ("WHERE cutoff_date = ?", [partition]) if partition else ("", [])
