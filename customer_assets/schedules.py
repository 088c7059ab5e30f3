"""Nightly schedules. All assets run in the single-writer ``duckdb`` pool.

The night starts at ``CUSTOMER_ASSETS_NIGHTLY_START`` (00:30 by default) in the time zone
``CUSTOMER_ASSETS_TIMEZONE`` (UTC by default); the times below are the defaults, and each schedule keeps its offset
from the start (``OFFSET_MINUTES``). "Yesterday" is the day before the night's start, for every schedule of the
night, even one that runs after midnight.

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
from customer_assets.settings import HORIZON_DAYS, LTV_HORIZON_DAYS, PARTITIONS_START, nightly_start, schedule_timezone

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


# minutes after the night's start (CUSTOMER_ASSETS_NIGHTLY_START) at which each schedule runs
OFFSET_MINUTES = {"nightly_ingest": 0, "nightly_retrain": 30, "nightly_rescore": 90, "nightly_backtest": 150}


def cron_at(start: tuple[int, int], offset_minutes: int) -> str:
    """The daily cron expression ``offset_minutes`` after ``start`` (hour, minute), past midnight if need be."""
    minutes = (start[0] * 60 + start[1] + offset_minutes) % (24 * 60)
    return f"{minutes % 60} {minutes // 60} * * *"


def night_start(scheduled_time, start: tuple[int, int]):
    """The start of the night that ``scheduled_time`` belongs to: the latest time of day ``start`` at or before it."""
    begun = scheduled_time.replace(hour=start[0], minute=start[1], second=0, microsecond=0)
    return begun if begun <= scheduled_time else begun - timedelta(days=1)


def _latest(context: dg.ScheduleEvaluationContext, prefix: str, start: tuple[int, int]) -> date | dg.SkipReason:
    last = data_last_date(context.instance)
    if last is None:
        return dg.SkipReason(f"{prefix}: clean/transactions has not been materialized yet (nightly_ingest, or "
                             "`make run`, loads it), so there is no data to follow")
    # reckoned from the night's start, so a schedule that runs after midnight follows the same day as the ingest
    return latest_cutoff(night_start(context.scheduled_execution_time, start), last)


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


def build_schedules(start: tuple[int, int] | None = None, tz: str | None = None) -> list[dg.ScheduleDefinition]:
    """The four nightly schedules, the night starting at ``start`` (hour, minute; default ``nightly_start()``) in
    the time zone ``tz`` (default ``schedule_timezone()``)."""
    start = start or nightly_start()
    tz = tz or schedule_timezone()
    off = OFFSET_MINUTES

    @dg.schedule(job=ingest_job, cron_schedule=cron_at(start, off["nightly_ingest"]), execution_timezone=tz,
                 name="nightly_ingest")
    def nightly_ingest(context: dg.ScheduleEvaluationContext):
        return dg.RunRequest(run_key=f"ingest-{context.scheduled_execution_time.date()}")

    @dg.schedule(job=train_job, cron_schedule=cron_at(start, off["nightly_retrain"]), execution_timezone=tz,
                 name="nightly_retrain")
    def nightly_retrain(context: dg.ScheduleEvaluationContext):
        latest = _latest(context, "train", start)
        return latest if isinstance(latest, dg.SkipReason) else _request(context, "train", training_cutoff(latest), MODELS)

    @dg.schedule(job=rescore_job, cron_schedule=cron_at(start, off["nightly_rescore"]), execution_timezone=tz,
                 name="nightly_rescore")
    def nightly_rescore(context: dg.ScheduleEvaluationContext):
        latest = _latest(context, "rescore", start)
        return latest if isinstance(latest, dg.SkipReason) else _request(context, "rescore", latest.isoformat(), [SCORES])

    @dg.schedule(job=backtest_job, cron_schedule=cron_at(start, off["nightly_backtest"]), execution_timezone=tz,
                 name="nightly_backtest")
    def nightly_backtest(context: dg.ScheduleEvaluationContext):
        latest = _latest(context, "backtest", start)
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

    return [nightly_ingest, nightly_retrain, nightly_rescore, nightly_backtest]


SCHEDULES = build_schedules()
nightly_ingest, nightly_retrain, nightly_rescore, nightly_backtest = SCHEDULES
