"""Nightly schedules (UTC). All assets run in the single-writer ``duckdb`` pool.

Every partition follows the data, not only the clock: the *latest cutoff* is the last date in the data (the
``last_date`` that the newest ``clean/transactions`` materialization recorded), or yesterday if the data reach
further. So an export that lags by a day or two is scored at its own last day, with models whose labels it
completes. A partition already materialized since the last load that changed the data (``data_changed`` in the
metadata of ``clean/transactions``) is skipped, with the reason: a night whose export did not change runs nothing
again, and one that brought late rows or corrections reruns what they touch.

* 00:30 ``nightly_ingest``: reload and clean the source file;
* 01:00 ``nightly_retrain``: train the models of partition (latest cutoff - H), whose label
  window has just completed; they are the models that score the latest cutoff;
* 02:00 ``nightly_rescore``: score the latest cutoff;
* 03:00 ``nightly_backtest``: backtest the models of partition (latest cutoff - 2H), whose scores
  (made at latest cutoff - H) now have a complete window of actual purchases, and the LTV served at
  cutoff (latest cutoff - LTV horizon), whose LTV window has just completed; then, when either ran,
  republish the serving copy and the report (partition: the latest cutoff) so that they hold them.

A partition before the first partition (``CUSTOMER_ASSETS_START_DATE``) is skipped with a reason, and so is every
run before anything has been cleaned.
"""


from datetime import date, timedelta

import dagster as dg

from customer_assets.ingest.assets import clean_materializations
from customer_assets.jobs import BACKTEST, LTV_BACKTEST, REPORT, SERVING, backtest_job, ingest_job, rescore_job, train_job
from customer_assets.models.assets import MODEL_NAMES
from customer_assets.settings import HORIZON_DAYS, LTV_HORIZON_DAYS, PARTITIONS_START

MODELS = [dg.AssetKey(["models", n]) for n in MODEL_NAMES]
SCORES = dg.AssetKey(["scores", "scored_customers"])


def data_last_date(instance: dg.DagsterInstance) -> date | None:
    """The last transaction date recorded by the newest materialization of ``clean/transactions`` (None: none yet).

    Read from Dagster's event log, not the warehouse, so a schedule never opens the DuckDB file a run may be writing.
    """
    loads = clean_materializations(instance, 1)
    try:
        return date.fromisoformat(loads[0][2]["last_date"]) if loads else None
    except (KeyError, TypeError, ValueError):
        return None


def data_changed_since(instance: dg.DagsterInstance) -> int | None:
    """The event-log position of the newest ``clean/transactions`` materialization that changed the data (a first
    load, new days, changed days or another file; a materialization without the flag counts as a change)."""
    loads = clean_materializations(instance, 100)
    for position, _, meta in loads:
        if meta.get("data_changed", True):
            return position
    return loads[-1][0] if loads else None


def up_to_date(instance: dg.DagsterInstance, keys: list[dg.AssetKey], partition: str) -> bool:
    """Whether every asset of ``keys`` has materialized ``partition`` since the last load that changed the data."""
    since = data_changed_since(instance)
    return since is not None and all(
        instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=k, asset_partitions=[partition],
                                                              after_storage_id=since), limit=1).records
        for k in keys)


def latest_cutoff(scheduled_time, data_last: date) -> date:
    """The newest cutoff to score: the data's last date, or the last complete day before the scheduled time if
    the data reach further."""
    return min(scheduled_time.date() - timedelta(days=1), data_last)


def _latest(context: dg.ScheduleEvaluationContext, prefix: str) -> date | dg.SkipReason:
    last = data_last_date(context.instance)
    if last is None:
        return dg.SkipReason(f"{prefix}: clean/transactions has not been materialized yet (nightly_ingest, or "
                             "`make run`, loads it), so there is no data to follow")
    return latest_cutoff(context.scheduled_execution_time, last)


def training_cutoff(latest: date) -> str:
    """The newest training partition whose label window is complete: latest cutoff - H."""
    return (latest - timedelta(days=HORIZON_DAYS)).isoformat()


def backtest_cutoff(latest: date) -> str:
    """The newest model partition t whose scores (at t + H) can be checked: (t + H, t + 2H] ends at the latest cutoff."""
    return (latest - timedelta(days=2 * HORIZON_DAYS)).isoformat()


def ltv_backtest_cutoff(latest: date) -> str:
    """The newest LTV model partition c whose window (c, c + LTV horizon] ends at the latest cutoff."""
    return (latest - timedelta(days=LTV_HORIZON_DAYS)).isoformat()


def _request(context: dg.ScheduleEvaluationContext, prefix: str, key: str, targets: list[dg.AssetKey],
             needs_days_before: int = 0, **kwargs) -> dg.RunRequest | dg.SkipReason:
    """A run of partition ``key``, or a skip when it (or the model partition it needs, ``needs_days_before`` days
    earlier) is before the first partition, or when ``targets`` already hold it from the current data."""
    first, needed = date.fromisoformat(PARTITIONS_START), date.fromisoformat(key) - timedelta(days=needs_days_before)
    if needed < first:
        what = f"partition {key}" + (f" needs partition {needed}, which" if needs_days_before else "")
        return dg.SkipReason(f"{prefix} {what} is before the first partition {first} (CUSTOMER_ASSETS_START_DATE)")
    if up_to_date(context.instance, targets, key):
        return dg.SkipReason(f"{prefix} partition {key}: {', '.join(t.to_user_string() for t in targets)} already "
                             "materialized since the last load that changed the data")
    return dg.RunRequest(run_key=f"{prefix}-{key}", partition_key=key, **kwargs)


@dg.schedule(job=ingest_job, cron_schedule="30 0 * * *", execution_timezone="UTC", name="nightly_ingest")
def nightly_ingest(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=f"ingest-{context.scheduled_execution_time.date()}")


@dg.schedule(job=train_job, cron_schedule="0 1 * * *", execution_timezone="UTC", name="nightly_retrain")
def nightly_retrain(context: dg.ScheduleEvaluationContext):
    latest = _latest(context, "train")
    return latest if isinstance(latest, dg.SkipReason) else _request(context, "train", training_cutoff(latest), MODELS)


@dg.schedule(job=rescore_job, cron_schedule="0 2 * * *", execution_timezone="UTC", name="nightly_rescore")
def nightly_rescore(context: dg.ScheduleEvaluationContext):
    latest = _latest(context, "rescore")
    return latest if isinstance(latest, dg.SkipReason) else _request(context, "rescore", latest.isoformat(), [SCORES])


@dg.schedule(job=backtest_job, cron_schedule="0 3 * * *", execution_timezone="UTC", name="nightly_backtest")
def nightly_backtest(context: dg.ScheduleEvaluationContext):
    latest = _latest(context, "backtest")
    if isinstance(latest, dg.SkipReason):
        return latest
    requests = [_request(context, "backtest", backtest_cutoff(latest), [BACKTEST], asset_selection=[BACKTEST]),
                # the LTV served at c comes from the models/ltv of c - H
                _request(context, "ltv-backtest", ltv_backtest_cutoff(latest), [LTV_BACKTEST], HORIZON_DAYS,
                         asset_selection=[LTV_BACKTEST])]
    runs = [r for r in requests if isinstance(r, dg.RunRequest)]
    if not runs:
        return dg.SkipReason("; ".join(r.skip_message for r in requests))
    # then the serving copy and the report, so that analysts see tonight's backtests (both were written at 02:00,
    # before them); runs are queued one at a time in the order requested
    return [*runs, dg.RunRequest(run_key=f"publish-{latest}", partition_key=latest.isoformat(),
                                 asset_selection=[SERVING, REPORT])]


SCHEDULES = [nightly_ingest, nightly_retrain, nightly_rescore, nightly_backtest]
