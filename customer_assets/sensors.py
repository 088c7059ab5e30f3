"""Alerts: a chat message when a run of the project's jobs fails, or succeeds with a check that warned.

The nightly schedules run unattended, so a failure (a cut-short export refused, a model that did not beat its
baseline, a scoring cutoff with no models) or a warning (the source stalled, the customers scored unlike those the
models learned from, a spend total that missed by more than every earlier backtest) would otherwise wait until
someone opens the UI. Two run-status sensors post a message to a webhook instead: ``alert_on_failure`` for a failed
run (the job, the partition, each failed step with the first lines of its error, the checks that failed, a link to
the run) and ``alert_on_warnings`` for a successful run with a failed non-blocking check (each check and what it
said). The body is ``{"text": "..."}``, which Slack, Mattermost, Rocket.Chat and Discord-compatible (``/slack``)
incoming webhooks accept.

The webhook URL comes from ``CUSTOMER_ASSETS_ALERT_WEBHOOK`` when the sensor runs. It carries a secret token, so it
is never logged: messages name only its host. Without it, each tick skips and says how to set it. A post that fails
is tried three times (1 s and 2 s apart); then the sensor's tick fails with the host and the reason, which the UI
shows with the sensor and the daemon logs, so a lost alert is visible too. Dagster does not retry it at a later tick.

A check that keeps warning (a stalled source, every night until the export moves) is posted when it starts to warn,
then again as a reminder once every ``CUSTOMER_ASSETS_ALERT_REPEAT_DAYS`` days (7 by default; 0 posts every
warning), and once more when it passes again. Which is which comes from the check's own executions in the
instance (``streak``), whichever job ran it, so the sensor keeps no state of its own. Likewise, the first run of a
job to succeed after failed runs says so (``failures_before``).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import dagster as dg

from customer_assets.settings import ENV_ALERT_REPEAT_DAYS, ENV_ALERT_WEBHOOK, ENV_UI_URL, alert_repeat_days

DEFAULT_UI_URL = "http://127.0.0.1:3000"
POST_ATTEMPTS = 3
POST_TIMEOUT_SECONDS = 10
ERROR_LINES = 3  # of each failed step's error message
BACKFILL_TAG = "dagster/backfill"
HISTORY_LOOKBACK = 500  # of a check's newest executions, read to find where its run of warnings began


class AlertError(RuntimeError):
    """The webhook was not set right, or did not accept the message. Never contains the URL's path or query."""


def webhook_url() -> str | None:
    """``CUSTOMER_ASSETS_ALERT_WEBHOOK``, or None when it is unset or blank. Raises ``AlertError`` when it is not an
    http(s) URL with a host, without repeating the value (it may be a secret)."""
    raw = os.environ.get(ENV_ALERT_WEBHOOK, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AlertError(f"{ENV_ALERT_WEBHOOK} must be an https:// (or http://) URL with a host, such as the incoming "
                         "webhook URL your chat tool gives you; the value set is not (not shown: it may hold a token)")
    return raw


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"


def post(url: str, text: str, attempts: int = POST_ATTEMPTS, pause: float = 1.0) -> None:
    """POST ``{"text": text}`` as JSON to ``url``; retries, waiting ``pause``, then twice that, between attempts.

    Raises ``AlertError`` naming the host and the last reason (an HTTP status or a connection error) when no attempt
    got a 2xx answer.
    """
    body = json.dumps({"text": text}).encode("utf-8")
    reason = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=POST_TIMEOUT_SECONDS) as answer:  # noqa: S310 (http(s) only)
                if 200 <= answer.status < 300:
                    return
                reason = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
        except urllib.error.URLError as exc:  # a socket's reason (refused, timed out, no such host): no URL in it
            reason = str(exc.reason)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # these may quote the URL: their kind only
            reason = type(exc).__name__
    raise AlertError(f"the alert webhook at {_host(url)} did not take the message after {attempts} attempt{'s' if attempts != 1 else ''}: {reason}")


def root_error(error) -> str:
    """The message of the innermost cause of a Dagster ``SerializableErrorInfo`` (Dagster wraps an op's exception in
    "Error occurred while executing op ..."), as ``Class: message``; a ``dagster.Failure``'s message alone."""
    while error.cause is not None:
        error = error.cause
    message, name = (error.message or "").strip(), error.cls_name or ""
    head, sep, rest = message.partition(": ")  # "module.Class: message": keep the class's own name
    if sep and head.split(".")[-1] == name:
        message = rest
    return message if name in ("Failure", "") else f"{name}: {message}"


def _first_lines(message: str, lines: int = ERROR_LINES) -> str:
    kept = [line for line in (message or "").strip().splitlines() if line.strip()]
    return "\n".join(kept[:lines]) + (" …" if len(kept) > lines else "")


def _run_line(run: dg.DagsterRun, ui_url: str) -> str:
    partition = run.tags.get("dagster/partition")
    first, last = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    if not partition and first and last:  # a backfill of a range in one run
        partition = first if first == last else f"{first} to {last}"
    schedule = run.tags.get("dagster/schedule_name")
    return (f"job {run.job_name}" + (f", partition {partition}" if partition else "")
            + (f", started by the schedule {schedule}" if schedule else "")
            + f"\n{ui_url.rstrip('/')}/runs/{run.run_id}")


def check_results(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """Every check evaluated in the run: its key, asset, check, whether it passed, severity and what it said."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    out = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        out.append({"key": evaluation.asset_check_key, "asset": evaluation.asset_key.to_user_string(),
                    "check": evaluation.check_name, "passed": evaluation.passed,
                    "severity": evaluation.severity.value, "description": evaluation.description or ""})
    return out


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """The checks that failed in the run: asset, check, severity and what the check said (its description)."""
    return [c for c in check_results(instance, run_id) if not c["passed"]]


@dataclass(frozen=True)
class Execution:
    """One completed execution of a check: its storage id (the order they happened in), run, outcome and time."""

    id: int
    run_id: str
    failed: bool
    timestamp: float


@dataclass(frozen=True)
class Streak:
    """What a check did in one run, read against its earlier executions.

    ``state`` is ``"new"`` (it warned, and had not in its previous execution), ``"reminder"`` (it keeps warning and
    a reminder is due), ``"repeat"`` (it keeps warning, no reminder due), ``"cleared"`` (it passed after warning) or
    ``"passing"``. ``since`` is when its warnings began (None when it did not warn) and ``runs`` the runs that warned
    in a row, this one included when it warned.
    """

    state: str
    since: float | None
    runs: int


def streak(history: list[Execution], run_id: str, repeat_days: int) -> Streak:
    """Where the run's execution of a check stands in the check's history of warnings.

    Parameters
    ----------
    history : the check's completed executions (any order); must include the run's own (one or more: a run over a
        range of partitions evaluates the check once per partition, and it warned when any of them did).
    run_id : the run.
    repeat_days : a check that keeps warning is a ``"reminder"`` when a multiple of this many days since its first
        warning has passed between its previous execution and this run's, else a ``"repeat"``; 0 makes every
        warning a reminder.

    Returns
    -------
    Streak
        An execution with no earlier one, or whose previous one passed, starts a new streak.
    """
    runs: dict[str, dict] = {}  # per run, in the order of its first execution: did any warn, and when
    for e in sorted(history, key=lambda e: e.id):
        r = runs.setdefault(e.run_id, {"failed": False, "first": e.timestamp, "last": e.timestamp})
        r["failed"] |= e.failed
        r["last"] = max(r["last"], e.timestamp)
    if run_id not in runs:
        raise ValueError(f"the check's history has no execution of run {run_id}")
    order = list(runs)
    this = runs[run_id]
    warned = []  # the runs that warned in a row just before this one, newest first
    for earlier in reversed(order[:order.index(run_id)]):
        if not runs[earlier]["failed"]:
            break
        warned.append(runs[earlier])
    since = min(r["first"] for r in warned) if warned else None
    if not this["failed"]:
        return Streak("cleared" if warned else "passing", since, len(warned))
    if not warned:
        return Streak("new", this["first"], 1)
    period = repeat_days * 86400.0
    due = period == 0 or (this["last"] - since) // period > (warned[0]["last"] - since) // period
    return Streak("reminder" if due else "repeat", since, len(warned) + 1)


def check_history(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> list[Execution]:
    """The check's newest completed executions (``HISTORY_LOOKBACK`` of them), from the instance's event log."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=HISTORY_LOOKBACK, status={Status.SUCCEEDED, Status.FAILED})
    return [Execution(r.id, r.run_id, r.status == Status.FAILED, r.event.timestamp if r.event else r.create_timestamp)
            for r in records]


def failures_before(instance: dg.DagsterInstance, run: dg.DagsterRun, lookback: int = HISTORY_LOOKBACK
                    ) -> tuple[int, float | None]:
    """How many runs of ``run``'s job failed in a row just before it, and when the first of them was created.

    Runs of backfills are left out, on both sides: a backfill's runs are of old partitions, and its failures are
    posted apart. ``(0, None)`` when the job's run before this one succeeded, or there is none.
    """
    records = instance.get_run_records(
        dg.RunsFilter(job_name=run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]),
        limit=lookback)
    this = next((r.storage_id for r in records if r.dagster_run.run_id == run.run_id), None)
    failed: list[float] = []
    for record in sorted(records, key=lambda r: r.storage_id, reverse=True):  # newest first
        if (this is not None and record.storage_id >= this) or BACKFILL_TAG in record.dagster_run.tags:
            continue
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failed.append(record.create_timestamp.timestamp())
    return len(failed), (min(failed) if failed else None)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _streak_note(check: dict) -> str:
    return f", warning in {check['runs']} runs in a row since {_when(check['since'])}" if check.get("runs", 1) > 1 else ""


def _checks_lines(checks: list[dict]) -> list[str]:
    return [f"• {c['asset']} check {c['check']} ({c['severity']}){_streak_note(c)}: {_first_lines(c['description'])}"
            for c in checks]


def failure_message(run: dg.DagsterRun, step_errors: list[tuple[str, str]], run_error: str, checks: list[dict],
                    ui_url: str = DEFAULT_UI_URL) -> str:
    """The text of a failure alert.

    Parameters
    ----------
    run : the failed run.
    step_errors : (step key, error message) of each failed step.
    run_error : the run's own failure message (a run that could not start, or one stopped at its maximum runtime,
        says why there); left out when it only lists the failed steps.
    checks : the run's failed checks (``failed_checks``).
    ui_url : the Dagster UI's address, for the link to the run.
    """
    lines = [f"customer-assets: a run failed: {_run_line(run, ui_url)}"]
    # the run's own message, unless it only lists the failed steps below ("Execution of run for ... failed. Steps
    # failed: [...]"): a run that could not start, or one stopped at its maximum runtime, says why here
    if run_error and not (step_errors and run_error.startswith("Execution of run for")):
        lines.append(f"• {_first_lines(run_error)}")
    lines += [f"• step {step} failed: {_first_lines(error)}" for step, error in step_errors]
    lines += _checks_lines(checks)
    return "\n".join(lines + _backfill_line(run, ui_url, "failures"))


def warning_message(run: dg.DagsterRun, checks: list[dict], ui_url: str = DEFAULT_UI_URL, cleared: list[dict] = (),
                    quiet: list[dict] = (), recovered: tuple[int, float | None] = (0, None)) -> str:
    """The text of an alert for a successful run whose non-blocking checks warned, or that passed again.

    Parameters
    ----------
    run : the run.
    checks : the checks whose warning is posted; one that keeps warning carries ``runs`` and ``since`` (its streak).
    ui_url : the Dagster UI's address, for the link to the run.
    cleared : the checks that passed in this run after warning (with ``runs`` and ``since``).
    quiet : the checks that warned again with no reminder due: named in one line, without their descriptions.
    recovered : how many runs of the job failed in a row before this one, and when the first was created
        (``failures_before``).
    """
    n, k, f = len(checks), len(cleared), recovered[0]
    if n:
        head = f"a run succeeded with {n} check{'s' if n != 1 else ''} warning"
    else:
        head = ("a run succeeded" + (f" after {f} failed run{'s' if f != 1 else ''}" if f else "")
                + (f"; {k} check{'s' if k != 1 else ''} that warned pass{'es' if k == 1 else ''} again" if k else ""))
    lines = [f"customer-assets: {head}: {_run_line(run, ui_url)}"]
    if f:
        lines.append(f"• the job's run before this one failed (created {_when(recovered[1])}); this one succeeded" if f == 1
                     else f"• the job's {f} runs before this one failed in a row, the first created "
                     f"{_when(recovered[1])}; this one succeeded")
    lines += _checks_lines(checks)
    lines += [f"• passes again: {c['asset']} check {c['check']} (it warned in {c['runs']} run{'s' if c['runs'] != 1 else ''} "
              f"in a row since {_when(c['since'])})" for c in cleared]
    if quiet:
        lines.append("Still warning as before, not posted again until a reminder is due: "
                     + "; ".join(f"{c['asset']} check {c['check']}" for c in quiet))
    return "\n".join(lines + _backfill_line(run, ui_url, "warnings"))


def earlier_alert_in_backfill(instance: dg.DagsterInstance, run: dg.DagsterRun, status: dg.DagsterRunStatus,
                              warned: bool = False) -> str | None:
    """The id of a run of ``run``'s backfill that reached ``status`` before it (and, with ``warned``, had a check that
    warned), so that its alert was sent already; None when there is none or ``run`` is not part of a backfill.

    A backfill of a hundred partitions that fail the same way would otherwise post a hundred alerts. Runs are taken
    in the order they ended, the order in which the sensor meets them.
    """
    backfill = run.tags.get(BACKFILL_TAG)
    if not backfill:
        return None
    records = instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: backfill}, statuses=[status]))
    this = next((r for r in records if r.dagster_run.run_id == run.run_id), None)
    key = (this.end_time or 0.0, this.storage_id) if this else (float("inf"), 0)
    for record in sorted(records, key=lambda r: (r.end_time or 0.0, r.storage_id)):
        if (record.end_time or 0.0, record.storage_id) >= key:
            break
        if not warned or failed_checks(instance, record.dagster_run.run_id):
            return record.dagster_run.run_id
    return None


def _backfill_line(run: dg.DagsterRun, ui_url: str, what: str) -> list[str]:
    backfill = run.tags.get(BACKFILL_TAG)
    return [f"Part of backfill {backfill}: its later {what} are not posted one by one; see "
            f"{ui_url.rstrip('/')}/runs/b/{backfill}"] if backfill else []


def _ui_url() -> str:
    return os.environ.get(ENV_UI_URL, "").strip() or DEFAULT_UI_URL


def _send(context, text: str, what: str):
    url = webhook_url()
    if url is None:
        return dg.SkipReason(f"{ENV_ALERT_WEBHOOK} is not set, so no alert was sent for run {context.dagster_run.run_id} "
                             f"({what}). Set it to a chat tool's incoming webhook URL where the daemon runs.")
    post(url, text)
    context.log.info(f"Sent an alert to the webhook at {_host(url)} for run {context.dagster_run.run_id} ({what})")
    return None


@dg.run_failure_sensor(
    name="alert_on_failure",
    minimum_interval_seconds=60,
    description=(f"Posts a message to the webhook in {ENV_ALERT_WEBHOOK} when a run of the project's jobs fails: the "
                 "job, the partition, each failed step's error, the failed checks and a link to the run."),
)
def alert_on_failure(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    if first := earlier_alert_in_backfill(context.instance, run, dg.DagsterRunStatus.FAILURE):
        return dg.SkipReason(f"Run {run.run_id} of backfill {run.tags[BACKFILL_TAG]} failed; the backfill's first "
                             f"failure, run {first}, was alerted: one alert per backfill.")
    steps = [(event.step_key or "?", root_error(event.event_specific_data.error) if event.event_specific_data
              and event.event_specific_data.error else event.message or "")
             for event in context.get_step_failure_events()]
    text = failure_message(run, steps, context.failure_event.message or "",
                           failed_checks(context.instance, run.run_id), _ui_url())
    return _send(context, text, "failed")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="alert_on_warnings",
    minimum_interval_seconds=60,
    description=(f"Posts a message to the webhook in {ENV_ALERT_WEBHOOK} when a run of the project's jobs succeeds "
                 "but a non-blocking check warned (the source stalled, the customers scored unlike those the models "
                 "learned from, a spend total outside the range of earlier misses, and the rest): each check and what "
                 "it said. A check that keeps warning is posted again once every CUSTOMER_ASSETS_ALERT_REPEAT_DAYS "
                 "days, and once when it passes again; a job that succeeds after failing says so once."),
)
def alert_on_warnings(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    results = check_results(context.instance, run.run_id)
    warned = [c for c in results if not c["passed"]]
    if warned and (first := earlier_alert_in_backfill(context.instance, run, dg.DagsterRunStatus.SUCCESS, warned=True)):
        return dg.SkipReason(f"Checks warned in run {run.run_id} of backfill {run.tags[BACKFILL_TAG]}; the backfill's "
                             f"first run with a warning, run {first}, is the one considered for an alert: one alert "
                             "per backfill.")
    repeat_days = alert_repeat_days()
    posted, quiet, cleared = [], [], []
    for key in dict.fromkeys(c["key"] for c in results):
        mine = [c for c in results if c["key"] == key]
        found = streak(check_history(context.instance, key), run.run_id, repeat_days)
        noted = {"since": found.since, "runs": found.runs}
        if found.state in ("new", "reminder"):
            posted += [{**c, **noted} for c in mine if not c["passed"]]
        elif found.state == "repeat":
            quiet.append({**next(c for c in mine if not c["passed"]), **noted})
        elif found.state == "cleared" and BACKFILL_TAG not in run.tags:  # a backfill's old partitions say nothing of now
            cleared.append({**mine[0], **noted})
    recovered = (0, None) if BACKFILL_TAG in run.tags else failures_before(context.instance, run)
    if not posted and not cleared and not recovered[0]:  # a skip, not None: None would log in the run that the
        if not warned:                                     # sensor acted on it
            return dg.SkipReason(f"No check warned in run {run.run_id}, and the job's run before it did not fail: "
                                 "no alert sent.")
        return dg.SkipReason(
            f"Checks warned in run {run.run_id} as they did in the runs before it: "
            + "; ".join(f"{c['asset']} check {c['check']} (in {c['runs']} runs in a row since {_when(c['since'])})"
                        for c in quiet)
            + f". No alert sent: a check that keeps warning is posted again every {repeat_days} days "
            f"({ENV_ALERT_REPEAT_DAYS}), and when it passes again.")
    what = "checks warned" if posted else "checks pass again" if cleared else "the job succeeded after failing"
    return _send(context, warning_message(run, posted, _ui_url(), cleared=cleared, quiet=quiet, recovered=recovered),
                 what)


SENSORS = [alert_on_failure, alert_on_warnings]
