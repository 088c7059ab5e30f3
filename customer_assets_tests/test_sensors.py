"""The alert sensors: real runs on a temporary warehouse, and a real HTTP server on the loopback that takes the
webhook's posts."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from customer_assets import sensors as S
from customer_assets_tests.conftest import INGEST, LEDGER_COLUMNS, materialize, source_config

TOKEN = "T000/B000/secret-token"


class Webhook:
    """A local incoming webhook: records each post's JSON body and answers with ``status``."""

    def __init__(self, status: int = 200):
        self.posts: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append({"path": self.path, "type": self.headers["Content-Type"], "json": json.loads(body)})
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch):
    hook = Webhook()
    monkeypatch.setenv(S.ENV_ALERT_WEBHOOK, hook.url)
    monkeypatch.setenv(S.ENV_UI_URL, "http://dagster.example:3000/")
    yield hook
    hook.close()


def _context(result, instance, failed: bool):
    event = result.get_run_failure_event() if failed else result.get_run_success_event()
    ctx = dg.build_run_status_sensor_context(sensor_name="alert", dagster_event=event, dagster_instance=instance,
                                             dagster_run=result.dagster_run)
    return ctx.for_run_failure() if failed else ctx


def test_a_failed_run_posts_the_job_the_failed_step_its_error_and_a_link(ledger_csv, warehouse, webhook):
    instance = dg.DagsterInstance.ephemeral()
    # a mapping that names a column the file does not have: the load fails before anything is written
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv, "customer_id=customer,date=when,amount=qty"),
                         raise_on_error=False, instance=instance)
    assert not result.success
    assert S.alert_on_failure(_context(result, instance, failed=True)) is None
    assert len(webhook.posts) == 1
    post = webhook.posts[0]
    assert post["path"] == f"/services/{TOKEN}" and post["type"].startswith("application/json")
    text = post["json"]["text"]
    lines = text.splitlines()
    assert lines[0] == f"customer-assets: a run failed: job {result.dagster_run.job_name}"
    assert lines[1] == f"http://dagster.example:3000/runs/{result.dagster_run.run_id}"
    # the failed step and the first lines of its error: the missing field and how to set the mapping
    assert lines[2].startswith("• step raw__transactions failed: ValueError: The source file ")
    assert "has no column for customer_id -> 'customer'" in text


def test_a_run_whose_checks_warned_posts_each_check_and_what_it_said(ledger_csv, warehouse, webhook):
    """The hand-built ledger has 4 rejected rows of 15 (26.7%), above the 5% at which rejected_share_small warns."""
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv, LEDGER_COLUMNS), instance=instance)
    assert result.success
    warned = S.failed_checks(instance, result.dagster_run.run_id)
    assert [(c["asset"], c["check"], c["severity"]) for c in warned] == [("clean/transactions", "rejected_share_small", "WARN")]
    assert S.alert_on_warnings(_context(result, instance, failed=False)) is None
    assert len(webhook.posts) == 1
    text = webhook.posts[0]["json"]["text"]
    assert text.splitlines()[0] == f"customer-assets: a run succeeded with 1 check warning: job {result.dagster_run.job_name}"
    assert "• clean/transactions check rejected_share_small (WARN): 26.7% of 15 raw rows rejected" in text


def test_a_run_with_no_warning_posts_nothing(tmp_path, warehouse, webhook):
    clean = tmp_path / "clean.csv"
    clean.write_text("cust,when,qty,price,order\nA,2020-01-05,1,10,O1\nB,2020-02-05,2,5,O2\n")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(warehouse, INGEST, run_config=source_config(clean, LEDGER_COLUMNS), instance=instance)
    assert result.success and S.failed_checks(instance, result.dagster_run.run_id) == []
    skip = S.alert_on_warnings(_context(result, instance, failed=False))
    assert skip.skip_message == (f"No check warned in run {result.dagster_run.run_id}, and the job's run before it did "
                                 "not fail: no alert sent.")
    assert webhook.posts == []


def test_without_a_webhook_the_sensor_skips_and_says_how_to_set_it(ledger_csv, warehouse, monkeypatch):
    monkeypatch.delenv(S.ENV_ALERT_WEBHOOK, raising=False)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(warehouse, INGEST, run_config=source_config(ledger_csv, LEDGER_COLUMNS), instance=instance)
    skip = S.alert_on_warnings(_context(result, instance, failed=False))
    assert isinstance(skip, dg.SkipReason)
    assert skip.skip_message.startswith("CUSTOMER_ASSETS_ALERT_WEBHOOK is not set, so no alert was sent for run ")


def test_a_webhook_that_refuses_fails_the_sensor_naming_the_host_and_never_the_token():
    hook = Webhook(status=500)
    try:
        with pytest.raises(S.AlertError) as err:
            S.post(hook.url, "hello", attempts=3, pause=0.01)
        assert str(err.value) == "the alert webhook at 127.0.0.1 did not take the message after 3 attempts: HTTP 500"
        assert len(hook.posts) == 3  # tried three times
        hook.status = 204
        S.post(hook.url, "hello again", pause=0.01)
        assert hook.posts[-1]["json"] == {"text": "hello again"}
    finally:
        hook.close()
    # nothing listens there any more: a connection error, again without the token
    with pytest.raises(S.AlertError) as err:
        S.post(hook.url, "hello", attempts=2, pause=0.01)
    assert "127.0.0.1" in str(err.value) and TOKEN not in str(err.value) and "services" not in str(err.value)
    # a URL that http.client refuses (a space in its path): its error would quote the path; the kind only is said
    with pytest.raises(S.AlertError) as err:
        S.post("http://127.0.0.1:9/services/T0 secret", "hello", attempts=1)
    assert str(err.value) == "the alert webhook at 127.0.0.1 did not take the message after 1 attempt: InvalidURL"


@pytest.mark.parametrize("value", ["hooks.slack.com/services/T0/B0/x", "ftp://example.com/x", "https:///no-host"])
def test_a_webhook_that_is_not_an_http_url_is_refused_without_repeating_it(monkeypatch, value):
    monkeypatch.setenv(S.ENV_ALERT_WEBHOOK, value)
    with pytest.raises(S.AlertError, match="CUSTOMER_ASSETS_ALERT_WEBHOOK must be an https://") as err:
        S.webhook_url()
    assert value not in str(err.value)


def test_failure_message_without_failed_steps_uses_the_runs_own_error_and_lists_failed_checks():
    run = dg.DagsterRun(job_name="rescore_customers", run_id="abc",
                        tags={"dagster/partition": "1998-06-30", "dagster/schedule_name": "nightly_rescore"})
    checks = [{"asset": "scores/scored_customers", "check": "scores_valid", "severity": "ERROR",
               "description": "line one\n\nline two\nline three\nline four"}]
    text = S.failure_message(run, [], "Run could not start:\nno space left", checks, "http://ui")
    # a run stopped at its maximum runtime (dagster/max_runtime): the run's message says so, then the interrupted step
    stopped = S.failure_message(run, [("models__churn", "DagsterExecutionInterruptedError: interrupted")],
                                "Exceeded maximum runtime of 10 seconds.", [], "http://ui").splitlines()
    assert stopped[2:] == ["• Exceeded maximum runtime of 10 seconds.",
                           "• step models__churn failed: DagsterExecutionInterruptedError: interrupted"]
    backfill = dg.DagsterRun(job_name="train_models", run_id="def", tags={
        "dagster/asset_partition_range_start": "1998-01-01", "dagster/asset_partition_range_end": "1998-03-01"})
    assert S.failure_message(backfill, [("x", "boom")], "", [], "http://ui").splitlines()[0] == (
        "customer-assets: a run failed: job train_models, partition 1998-01-01 to 1998-03-01")
    assert text == ("customer-assets: a run failed: job rescore_customers, partition 1998-06-30, started by the schedule "
                    "nightly_rescore\nhttp://ui/runs/abc\n• Run could not start:\nno space left\n"
                    "• scores/scored_customers check scores_valid (ERROR): line one\nline two\nline three …")


def test_the_command_line_posts_a_test_alert_and_says_where(webhook, capsys, monkeypatch):
    from customer_assets.cli import main

    assert main(["test-alert"]) == 0
    assert capsys.readouterr().out == "Posted a test alert to the webhook at 127.0.0.1.\n"
    assert webhook.posts[0]["json"]["text"].startswith("customer-assets: a test alert from ")
    monkeypatch.delenv(S.ENV_ALERT_WEBHOOK)
    with pytest.raises(SystemExit, match="customer-assets test-alert: CUSTOMER_ASSETS_ALERT_WEBHOOK is not set"):
        main(["test-alert"])
    webhook.status = 404
    monkeypatch.setenv(S.ENV_ALERT_WEBHOOK, webhook.url)
    with pytest.raises(SystemExit) as err:
        main(["test-alert"])
    assert str(err.value) == ("customer-assets test-alert: the alert webhook at 127.0.0.1 did not take the message after "
                              "3 attempts: HTTP 404")
    assert TOKEN not in capsys.readouterr().out


def test_a_backfill_posts_its_first_failure_and_its_first_warning_only(ledger_csv, warehouse, webhook):
    """Runs in this order: two failed runs of backfill bf1, a failed run of bf2, two runs of bf1 whose checks
    warned. Posts: bf1's first failure, bf2's failure, bf1's first warning; the rest skip and name the run alerted."""
    instance = dg.DagsterInstance.ephemeral()
    bad, good = (source_config(ledger_csv, m) for m in ("customer_id=customer,date=when,amount=qty", LEDGER_COLUMNS))

    def run(config, backfill):
        return materialize(warehouse, INGEST, run_config=config, raise_on_error=False, instance=instance,
                           tags={"dagster/backfill": backfill})

    runs = [run(bad, "bf1"), run(bad, "bf1"), run(bad, "bf2"), run(good, "bf1"), run(good, "bf1")]
    got = [S.alert_on_failure(_context(r, instance, failed=True)) if not r.success
           else S.alert_on_warnings(_context(r, instance, failed=False)) for r in runs]
    ids = [r.dagster_run.run_id for r in runs]
    assert [type(g).__name__ for g in got] == ["NoneType", "SkipReason", "NoneType", "NoneType", "SkipReason"]
    assert got[1].skip_message == (f"Run {ids[1]} of backfill bf1 failed; the backfill's first failure, run {ids[0]}, "
                                   "was alerted: one alert per backfill.")
    assert got[4].skip_message == (f"Checks warned in run {ids[4]} of backfill bf1; the backfill's first run with a "
                                   f"warning, run {ids[3]}, is the one considered for an alert: one alert per backfill.")
    texts = [p["json"]["text"] for p in webhook.posts]
    assert len(texts) == 3
    assert texts[0].startswith("customer-assets: a run failed") and ids[0] in texts[0]
    assert texts[0].endswith("Part of backfill bf1: its later failures are not posted one by one; see "
                             "http://dagster.example:3000/runs/b/bf1")
    assert ids[2] in texts[1] and texts[1].endswith("/runs/b/bf2")
    assert texts[2].startswith("customer-assets: a run succeeded with 1 check warning") and ids[3] in texts[2]
    assert texts[2].endswith("Part of backfill bf1: its later warnings are not posted one by one; see "
                             "http://dagster.example:3000/runs/b/bf1")


DAY = 86400.0


def _history(*rows):
    """(run id, failed, day) per execution, oldest first; storage ids follow the order."""
    return [S.Execution(i, run, failed, day * DAY) for i, (run, failed, day) in enumerate(rows, start=1)]


def test_a_check_that_keeps_warning_is_new_once_then_reminded_every_repeat_days_then_cleared():
    history = _history(("r1", False, 0), ("r2", True, 1), ("r3", True, 2), ("r4", True, 8.5), ("r5", True, 8.8),
                       ("r6", False, 9.5), ("r7", True, 10))
    assert S.streak(history, "r1", 7) == S.Streak("passing", None, 0)
    assert S.streak(history, "r2", 7) == S.Streak("new", 1 * DAY, 1)
    # one day into the streak: no reminder due; 7.5 days in, the 7-day mark was passed since r3: a reminder
    assert S.streak(history, "r3", 7) == S.Streak("repeat", 1 * DAY, 2)
    assert S.streak(history, "r4", 7) == S.Streak("reminder", 1 * DAY, 3)
    assert S.streak(history, "r5", 7) == S.Streak("repeat", 1 * DAY, 4)
    assert S.streak(history, "r6", 7) == S.Streak("cleared", 1 * DAY, 4)
    assert S.streak(history, "r7", 7) == S.Streak("new", 10 * DAY, 1)
    # 0 days: every warning is posted; 1 day: r3 (a day after r2) is due, r5 (0.3 days after r4, both 7 days and more
    # into the streak, less than 8) is not
    assert [S.streak(history, r, 0).state for r in ("r3", "r4", "r5")] == ["reminder"] * 3
    assert [S.streak(history, r, 1).state for r in ("r3", "r4", "r5")] == ["reminder", "reminder", "repeat"]
    # the order is the storage ids', whatever order the history comes in
    assert S.streak(list(reversed(history)), "r4", 7) == S.Streak("reminder", 1 * DAY, 3)
    with pytest.raises(ValueError, match="has no execution of run r9"):
        S.streak(history, "r9", 7)


def test_a_run_over_several_partitions_warned_when_any_of_its_executions_did():
    history = _history(("r1", True, 0), ("r2", False, 1), ("r2", True, 1), ("r3", False, 2), ("r3", False, 2))
    assert S.streak(history, "r2", 7) == S.Streak("repeat", 0.0, 2)
    assert S.streak(history, "r3", 7) == S.Streak("cleared", 0.0, 2)


def test_warning_message_with_a_reminder_a_check_that_passes_again_and_one_that_stays_quiet():
    run = dg.DagsterRun(job_name="ingest_transactions", run_id="abc", tags={"dagster/schedule_name": "nightly_ingest"})
    reminder = {"asset": "clean/transactions", "check": "source_advancing", "severity": "WARN",
                "description": "The last date has not moved in 8 days", "runs": 9, "since": 1 * DAY}
    cleared = {"asset": "clean/transactions", "check": "rejected_share_small", "runs": 2, "since": 2.5 * DAY}
    quiet = {"asset": "scores/scored_customers", "check": "features_like_training", "runs": 3, "since": 0.0}
    assert S.warning_message(run, [reminder], "http://ui", cleared=[cleared], quiet=[quiet]) == (
        "customer-assets: a run succeeded with 1 check warning: job ingest_transactions, started by the schedule "
        "nightly_ingest\nhttp://ui/runs/abc\n"
        "• clean/transactions check source_advancing (WARN), warning in 9 runs in a row since 1970-01-02 00:00 UTC: "
        "The last date has not moved in 8 days\n"
        "• passes again: clean/transactions check rejected_share_small (it warned in 2 runs in a row since "
        "1970-01-03 12:00 UTC)\n"
        "Still warning as before, not posted again until a reminder is due: scores/scored_customers check "
        "features_like_training")
    assert S.warning_message(run, [], "http://ui", cleared=[cleared]).splitlines()[0] == (
        "customer-assets: a run succeeded; 1 check that warned passes again: job ingest_transactions, started by "
        "the schedule nightly_ingest")
    # after failed runs of the job: said in the first line and in its own, also next to a warning
    assert S.warning_message(run, [], "http://ui", recovered=(2, 3 * DAY)).splitlines()[::2] == [
        "customer-assets: a run succeeded after 2 failed runs: job ingest_transactions, started by the schedule "
        "nightly_ingest",
        "• the job's 2 runs before this one failed in a row, the first created 1970-01-04 00:00 UTC; this one succeeded"]
    assert S.warning_message(run, [reminder], "http://ui", recovered=(1, 0.0)).splitlines()[2] == (
        "• the job's run before this one failed (created 1970-01-01 00:00 UTC); this one succeeded")


def test_the_sensor_posts_a_warning_once_stays_quiet_while_it_repeats_and_posts_when_it_passes_again(
        ledger_csv, tmp_path, warehouse, webhook, monkeypatch):
    """Real runs on one instance: the ledger's 4 rejected rows of 15 warn twice, then a clean export passes, then the
    ledger warns again. Posts: the first warning, the pass, the new warning; the repeat skips and says why."""
    instance = dg.DagsterInstance.ephemeral()
    clean = tmp_path / "clean.csv"
    clean.write_text("cust,when,qty,price,order\nA,2020-01-05,1,10,O1\nB,2020-02-05,2,5,O2\n")
    runs, got = [], []
    for path in (ledger_csv, ledger_csv, clean, ledger_csv):
        runs.append(materialize(warehouse, INGEST, run_config=source_config(path, LEDGER_COLUMNS), instance=instance))
        got.append(S.alert_on_warnings(_context(runs[-1], instance, failed=False)))
    assert [type(g).__name__ for g in got] == ["NoneType", "SkipReason", "NoneType", "NoneType"]
    assert got[1].skip_message.startswith(
        f"Checks warned in run {runs[1].dagster_run.run_id} as they did in the runs before it: clean/transactions "
        "check rejected_share_small (in 2 runs in a row since ")
    assert got[1].skip_message.endswith("No alert sent: a check that keeps warning is posted again every 7 days "
                                        "(CUSTOMER_ASSETS_ALERT_REPEAT_DAYS), and when it passes again.")
    texts = [p["json"]["text"] for p in webhook.posts]
    assert len(texts) == 3
    assert texts[0].startswith("customer-assets: a run succeeded with 1 check warning") and "26.7% of 15" in texts[0]
    assert texts[1].startswith("customer-assets: a run succeeded; 1 check that warned passes again: job ")
    assert "• passes again: clean/transactions check rejected_share_small (it warned in 2 runs in a row since " in texts[1]
    assert texts[2].startswith("customer-assets: a run succeeded with 1 check warning") and "in a row" not in texts[2]
    # with 0 days, the repeat is posted too, as a warning that has lasted 2 runs
    monkeypatch.setenv("CUSTOMER_ASSETS_ALERT_REPEAT_DAYS", "0")
    assert S.alert_on_warnings(_context(runs[1], instance, failed=False)) is None
    assert "(WARN), warning in 2 runs in a row since " in webhook.posts[-1]["json"]["text"]
    monkeypatch.setenv("CUSTOMER_ASSETS_ALERT_REPEAT_DAYS", "weekly")
    with pytest.raises(ValueError, match="CUSTOMER_ASSETS_ALERT_REPEAT_DAYS must be a whole number of days"):
        S.alert_on_warnings(_context(runs[1], instance, failed=False))


def test_a_job_that_succeeds_after_failing_says_so_once(ledger_csv, tmp_path, warehouse, webhook):
    """Two failed loads (a mapping with a missing column), then two clean ones, then a backfill run that fails and a
    clean run: the first clean run posts that the job recovered after 2 failed runs; the second posts nothing; a
    backfill's failure does not count against the job."""
    instance = dg.DagsterInstance.ephemeral()
    clean = tmp_path / "clean.csv"
    clean.write_text("cust,when,qty,price,order\nA,2020-01-05,1,10,O1\nB,2020-02-05,2,5,O2\n")
    bad, good = source_config(ledger_csv, "customer_id=customer,date=when,amount=qty"), source_config(clean, LEDGER_COLUMNS)

    def run(config, **tags):
        return materialize(warehouse, INGEST, run_config=config, raise_on_error=False, instance=instance, tags=tags)

    failed = [run(bad), run(bad)]
    ok = [run(good), run(good)]
    assert [r.success for r in failed + ok] == [False, False, True, True]
    assert S.failures_before(instance, ok[0].dagster_run) == (
        2, min(instance.get_run_record_by_id(r.dagster_run.run_id).create_timestamp.timestamp() for r in failed))
    assert S.alert_on_warnings(_context(ok[0], instance, failed=False)) is None
    text = webhook.posts[-1]["json"]["text"]
    assert text.splitlines()[0] == f"customer-assets: a run succeeded after 2 failed runs: job {ok[0].dagster_run.job_name}"
    assert text.splitlines()[2].startswith("• the job's 2 runs before this one failed in a row, the first created ")
    skip = S.alert_on_warnings(_context(ok[1], instance, failed=False))
    assert isinstance(skip, dg.SkipReason) and len(webhook.posts) == 1
    # a backfill's failed run is of an old partition: the next run is not a recovery
    run(bad, **{"dagster/backfill": "bf"})
    after = run(good)
    assert S.failures_before(instance, after.dagster_run) == (0, None)
    assert isinstance(S.alert_on_warnings(_context(after, instance, failed=False)), dg.SkipReason)
