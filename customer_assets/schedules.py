"""Nightly schedules (UTC). All assets run in the single-writer ``duckdb`` pool.

* 00:30 ``nightly_ingest``: reload and clean the source file;
* 01:00 ``nightly_retrain``: train the models of partition (yesterday - H), whose label
  window has just completed; they are the models that score yesterday;
* 02:00 ``nightly_rescore``: score the latest cutoff partition (yesterday);
* 03:00 ``nightly_backtest``: backtest the models of partition (yesterday - 2H), whose scores
  (made at yesterday - H) now have a complete window of actual purchases, and the LTV served at
  cutoff (yesterday - LTV horizon), whose LTV window has just completed.

A partition before the first partition (``CUSTOMER_ASSETS_START_DATE``) is skipped with a reason.
"""


from datetime import date, timedelta

import dagster as dg

from customer_assets.jobs import BACKTEST, LTV_BACKTEST, backtest_job, ingest_job, rescore_job, train_job
from customer_assets.settings import HORIZON_DAYS, LTV_HORIZON_DAYS, PARTITIONS_START


def latest_cutoff(scheduled_time) -> str:
    """The last complete day before the scheduled time."""
    return (scheduled_time.date() - timedelta(days=1)).isoformat()


def training_cutoff(scheduled_time) -> str:
    """The newest training partition whose label window is complete: latest cutoff - H."""
    return (scheduled_time.date() - timedelta(days=1 + HORIZON_DAYS)).isoformat()


def backtest_cutoff(scheduled_time) -> str:
    """The newest model partition t whose scores (at t + H) can be checked: (t + H, t + 2H] ends at the latest cutoff."""
    return (scheduled_time.date() - timedelta(days=1 + 2 * HORIZON_DAYS)).isoformat()


def ltv_backtest_cutoff(scheduled_time) -> str:
    """The newest LTV model partition c whose window (c, c + LTV horizon] ends at the latest cutoff."""
    return (scheduled_time.date() - timedelta(days=1 + LTV_HORIZON_DAYS)).isoformat()


def _request(prefix: str, key: str, needs_days_before: int = 0, **kwargs) -> dg.RunRequest | dg.SkipReason:
    """A run of partition ``key``, or a skip when it (or the model partition it needs, ``needs_days_before`` days
    earlier) is before the first partition."""
    first, needed = date.fromisoformat(PARTITIONS_START), date.fromisoformat(key) - timedelta(days=needs_days_before)
    if needed < first:
        what = f"partition {key}" + (f" needs partition {needed}, which" if needs_days_before else "")
        return dg.SkipReason(f"{prefix} {what} is before the first partition {first} (CUSTOMER_ASSETS_START_DATE)")
    return dg.RunRequest(run_key=f"{prefix}-{key}", partition_key=key, **kwargs)


@dg.schedule(job=ingest_job, cron_schedule="30 0 * * *", execution_timezone="UTC", name="nightly_ingest")
def nightly_ingest(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=f"ingest-{context.scheduled_execution_time.date()}")


@dg.schedule(job=train_job, cron_schedule="0 1 * * *", execution_timezone="UTC", name="nightly_retrain")
def nightly_retrain(context: dg.ScheduleEvaluationContext):
    return _request("train", training_cutoff(context.scheduled_execution_time))


@dg.schedule(job=rescore_job, cron_schedule="0 2 * * *", execution_timezone="UTC", name="nightly_rescore")
def nightly_rescore(context: dg.ScheduleEvaluationContext):
    return _request("rescore", latest_cutoff(context.scheduled_execution_time))


@dg.schedule(job=backtest_job, cron_schedule="0 3 * * *", execution_timezone="UTC", name="nightly_backtest")
def nightly_backtest(context: dg.ScheduleEvaluationContext):
    when = context.scheduled_execution_time
    requests = [_request("backtest", backtest_cutoff(when), asset_selection=[BACKTEST]),
                # the LTV served at c comes from the models/ltv of c - H
                _request("ltv-backtest", ltv_backtest_cutoff(when), HORIZON_DAYS, asset_selection=[LTV_BACKTEST])]
    runs = [r for r in requests if isinstance(r, dg.RunRequest)]
    return runs or requests[0]


SCHEDULES = [nightly_ingest, nightly_retrain, nightly_rescore, nightly_backtest]
