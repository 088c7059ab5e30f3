"""Partition definitions: one partition per daily cutoff date."""

from __future__ import annotations

import dagster as dg

from customer_assets.settings import HORIZON_DAYS, PARTITIONS_START

CUTOFF_PARTITIONS = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, fmt="%Y-%m-%d")

# Scoring at cutoff s uses the models of partition s - H: their labels end at s.
MODEL_FOR_SCORING = dg.TimeWindowPartitionMapping(start_offset=-HORIZON_DAYS, end_offset=-HORIZON_DAYS)
