"""Nightly schedules (UTC). All assets run in the single-writer ``duckdb`` pool.

* 00:30 ``nightly_ingest``: reload and clean the source file;
* 01:00 ``nightly_retrain``: train the models of partition (yesterday - H), whose label
  window has just completed; they are the models that score yesterday;
* 02:00 ``nightly_rescore``: score the latest cutoff partition (yesterday).
"""


from datetime import timedelta

import dagster as dg

from customer_assets.jobs import ingest_job, rescore_job, train_job
from customer_assets.settings import HORIZON_DAYS


def latest_cutoff(scheduled_time) -> str:
    """The last complete day before the scheduled time."""
    return (scheduled_time.date() - timedelta(days=1)).isoformat()


def training_cutoff(scheduled_time) -> str:
    """The newest training partition whose label window is complete: latest cutoff - H."""
    return (scheduled_time.date() - timedelta(days=1 + HORIZON_DAYS)).isoformat()


@dg.schedule(job=ingest_job, cron_schedule="30 0 * * *", execution_timezone="UTC", name="nightly_ingest")
def nightly_ingest(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=f"ingest-{context.scheduled_execution_time.date()}")


@dg.schedule(job=train_job, cron_schedule="0 1 * * *", execution_timezone="UTC", name="nightly_retrain")
def nightly_retrain(context: dg.ScheduleEvaluationContext):
    key = training_cutoff(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"train-{key}", partition_key=key)


@dg.schedule(job=rescore_job, cron_schedule="0 2 * * *", execution_timezone="UTC", name="nightly_rescore")
def nightly_rescore(context: dg.ScheduleEvaluationContext):
    key = latest_cutoff(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"rescore-{key}", partition_key=key)


SCHEDULES = [nightly_ingest, nightly_retrain, nightly_rescore]
