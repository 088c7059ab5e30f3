"""The definitions load with the expected asset keys, partitions, jobs, schedules and sensors."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from customer_assets.definitions import defs
from customer_assets.partitions import CUTOFF_PARTITIONS, MODEL_FOR_SCORING
from customer_assets.schedules import nightly_backtest, nightly_ingest, nightly_rescore, nightly_retrain

EXPECTED_KEYS = {
    "raw/transactions",
    "clean/transactions",
    "quality/rejected_transactions",
    "quality/history_changes",
    "features/calibration_transactions",
    "features/holdout_transactions",
    "features/customer_features",
    "segments/customer_segments",
    "models/churn",
    "models/spend",
    "models/ltv",
    "models/next_purchase",
    "scores/scored_customers",
    "evaluation/backtest",
    "evaluation/ltv_backtest",
    "serving/snapshot",
    "reports/customer_report",
}
PARTITIONED = EXPECTED_KEYS - {"raw/transactions", "clean/transactions", "quality/rejected_transactions", "quality/history_changes"}


def _graph():
    return defs.resolve_asset_graph()


def test_asset_keys_are_pinned():
    keys = {k.to_user_string() for k in _graph().get_all_asset_keys()}
    assert keys == EXPECTED_KEYS


def test_key_prefix_is_a_known_schema():
    from customer_assets.storage import SCHEMAS

    assert {k.split("/")[0] for k in EXPECTED_KEYS} <= {*SCHEMAS, "serving", "reports"}  # files, not schemas


def test_partitions():
    graph = _graph()
    for key in EXPECTED_KEYS:
        node = graph.get(dg.AssetKey(key.split("/")))
        if key in PARTITIONED:
            assert node.partitions_def == CUTOFF_PARTITIONS, key
        else:
            assert node.partitions_def is None, key
    keys = CUTOFF_PARTITIONS.get_partition_keys()
    assert keys[0] == "1997-01-01" and "1998-06-30" in keys
    assert MODEL_FOR_SCORING.start_offset == -90 and MODEL_FOR_SCORING.end_offset == -90


def test_scoring_depends_on_models_h_days_earlier():
    graph = _graph()
    scores = dg.AssetKey(["scores", "scored_customers"])
    for name in ("churn", "spend", "ltv", "next_purchase"):
        model = dg.AssetKey(["models", name])
        mapping = graph.get_partition_mapping(scores, model)
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
            CUTOFF_PARTITIONS.subset_with_partition_keys(["1998-04-01"]), CUTOFF_PARTITIONS, CUTOFF_PARTITIONS
        ).partitions_subset.get_partition_keys()
        assert list(upstream) == ["1998-01-01"], name


def test_every_asset_is_in_the_duckdb_pool_and_documented():
    graph = _graph()
    for key in EXPECTED_KEYS:
        node = graph.get(dg.AssetKey(key.split("/")))
        assert node.pools == {"duckdb"}, key
        assert node.description, key
        assert "dagster/column_schema" in node.metadata, key


def test_jobs_and_schedules():
    assert {j.name for j in defs.jobs} >= {"ingest_transactions", "train_models", "rescore_customers", "backtest_models"}
    schedules = {s.name: s.cron_schedule for s in defs.schedules}
    assert schedules == {"nightly_ingest": "30 0 * * *", "nightly_retrain": "0 1 * * *", "nightly_rescore": "0 2 * * *",
                         "nightly_backtest": "0 3 * * *"}
    # the partitioned jobs take their partitions from their assets (define_asset_job's partitions_def is deprecated)
    for name in ("train_models", "rescore_customers", "backtest_models"):
        assert defs.resolve_job_def(name).partitions_def == CUTOFF_PARTITIONS, name
    assert defs.resolve_job_def("ingest_transactions").partitions_def is None


def test_the_jobs_have_a_maximum_runtime_that_run_monitoring_enforces(monkeypatch):
    import yaml

    from customer_assets.settings import PROJECT_ROOT, max_runtime_seconds

    for name in ("ingest_transactions", "train_models", "rescore_customers", "backtest_models"):
        assert defs.resolve_job_def(name).tags["dagster/max_runtime"] == "10800", name
    # the tag is enforced only with run monitoring on, in the instance's dagster.yaml (the Makefile copies it)
    assert yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())["run_monitoring"] == {"enabled": True}
    monkeypatch.setenv("CUSTOMER_ASSETS_MAX_RUNTIME_SECONDS", "0")
    assert max_runtime_seconds() == 0
    for bad in ("3h", "-5"):
        monkeypatch.setenv("CUSTOMER_ASSETS_MAX_RUNTIME_SECONDS", bad)
        with pytest.raises(ValueError, match="CUSTOMER_ASSETS_MAX_RUNTIME_SECONDS must be"):
            max_runtime_seconds()


def test_alert_sensors_watch_failed_and_warned_runs_and_start_stopped():
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"alert_on_failure", "alert_on_warnings"}
    # run-status sensors (which status each reacts to is tested on real runs in test_sensors.py)
    assert all(isinstance(s, dg.RunStatusSensorDefinition) for s in sensors.values())
    # like the schedules, off until turned on
    assert {s.default_status for s in sensors.values()} == {dg.DefaultSensorStatus.STOPPED}


def _tick(schedule, when, data_last: str | None = "yesterday"):
    """Evaluate ``schedule`` at ``when`` on an instance whose newest clean/transactions recorded ``data_last``
    ("yesterday": the day before ``when``; None: nothing materialized)."""
    from datetime import timedelta

    with dg.instance_for_test() as instance:
        if data_last is not None:
            last = (when.date() - timedelta(days=1)).isoformat() if data_last == "yesterday" else data_last
            instance.report_runless_asset_event(dg.AssetMaterialization(["clean", "transactions"], metadata={"last_date": last}))
        # closed before the instance: the context opens its own copy of the instance, which must not outlive it
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                       repository_def=defs.get_repository_def()) as ctx:
            return schedule.evaluate_tick(ctx)


@pytest.mark.parametrize(
    "when, data_last, rescore, retrain, backtest, ltv_backtest",
    [
        (datetime(2026, 11, 22, 2, 0, tzinfo=UTC), "yesterday", "2026-11-21", "2026-08-23", "2026-05-25", "2025-11-21"),
        # an export two days behind: everything follows its last day, so every label window is complete
        (datetime(2026, 11, 22, 2, 0, tzinfo=UTC), "2026-11-19", "2026-11-19", "2026-08-21", "2026-05-23", "2025-11-19"),
        # rows dated today (a partial day) are not scored before the day is over
        (datetime(2026, 11, 22, 2, 0, tzinfo=UTC), "2026-11-22", "2026-11-21", "2026-08-23", "2026-05-25", "2025-11-21"),
        # CDNOW's last day: the backtest of the models behind the 1998-04-01 scores, and the LTV check at 1997-06-30;
        # on the night after it, and on any night since (the run keys repeat, so nothing is launched twice)
        (datetime(1998, 7, 1, 2, 0, tzinfo=UTC), "yesterday", "1998-06-30", "1998-04-01", "1998-01-01", "1997-06-30"),
        (datetime(2026, 11, 22, 2, 0, tzinfo=UTC), "1998-06-30", "1998-06-30", "1998-04-01", "1998-01-01", "1997-06-30"),
        (datetime(2024, 3, 1, 2, 0, tzinfo=UTC), "yesterday", "2024-02-29", "2023-12-01", "2023-09-02", "2023-03-01"),
    ],
)
def test_schedules_evaluate_to_the_right_partition(when, data_last, rescore, retrain, backtest, ltv_backtest):
    def evaluate(schedule):
        (req,) = _tick(schedule, when, data_last).run_requests
        return req.partition_key, req.run_key

    assert evaluate(nightly_rescore) == (rescore, f"rescore-{rescore}")
    assert evaluate(nightly_retrain) == (retrain, f"train-{retrain}")
    assert evaluate(nightly_ingest)[0] is None
    runs = {tuple(k.to_user_string() for k in r.asset_selection): r.partition_key
            for r in _tick(nightly_backtest, when, data_last).run_requests}
    # then the serving copy and the report of the latest cutoff, republished with the night's backtests
    assert runs == {("evaluation/backtest",): backtest, ("evaluation/ltv_backtest",): ltv_backtest,
                    ("serving/snapshot", "reports/customer_report"): rescore}


def test_a_partition_materialized_since_the_data_last_changed_is_not_run_again():
    when = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        def load(changed):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                ["clean", "transactions"], metadata={"last_date": "2026-11-21", "data_changed": changed}))

        def materialized(key, partition):
            instance.report_runless_asset_event(dg.AssetMaterialization(key.split("/"), partition=partition))

        def tick(schedule):
            with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                           repository_def=defs.get_repository_def()) as ctx:
                result = schedule.evaluate_tick(ctx)
            return [r.partition_key for r in result.run_requests] or result.skip_message

        load(True)
        assert tick(nightly_rescore) == ["2026-11-21"]
        materialized("scores/scored_customers", "2026-11-21")
        skipped = ("rescore partition 2026-11-21: scores/scored_customers already materialized since the last load "
                   "that changed the data")
        assert tick(nightly_rescore) == skipped
        load(False)  # a reload that changed nothing
        assert tick(nightly_rescore) == skipped
        load(True)  # late rows, say: the scores are computed again
        assert tick(nightly_rescore) == ["2026-11-21"]
        # the training run is done when all four models are
        for name in ("churn", "spend", "ltv"):
            materialized(f"models/{name}", "2026-08-23")
        assert tick(nightly_retrain) == ["2026-08-23"]
        materialized("models/next_purchase", "2026-08-23")
        assert tick(nightly_retrain).startswith("train partition 2026-08-23: models/churn, models/spend, models/ltv, "
                                                "models/next_purchase already materialized")
        # each backtest on its own
        materialized("evaluation/backtest", "2026-05-25")
        assert tick(nightly_backtest) == ["2025-11-21", "2026-11-21"]  # the LTV check, then the serving copy
        materialized("evaluation/ltv_backtest", "2025-11-21")
        assert tick(nightly_backtest) == (
            "backtest partition 2026-05-25: evaluation/backtest already materialized since the last load that changed "
            "the data; ltv-backtest partition 2025-11-21: evaluation/ltv_backtest already materialized since the last "
            "load that changed the data")


def test_schedules_wait_for_the_first_load():
    when = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    assert [r.run_key for r in _tick(nightly_ingest, when, None).run_requests] == ["ingest-2026-11-22"]
    for schedule, prefix in ((nightly_retrain, "train"), (nightly_rescore, "rescore"), (nightly_backtest, "backtest")):
        tick = _tick(schedule, when, None)
        assert tick.run_requests == [] and tick.skip_message == (
            f"{prefix}: clean/transactions has not been materialized yet (nightly_ingest, or `make run`, loads it), "
            "so there is no data to follow")


def test_schedules_skip_partitions_before_the_first():
    # 1997-03-01: rescoring 1997-02-28 is fine; training 1996-11-30 and both backtests are before 1997-01-01
    when = datetime(1997, 3, 1, 2, 0, tzinfo=UTC)
    assert [r.partition_key for r in _tick(nightly_rescore, when).run_requests] == ["1997-02-28"]
    for schedule in (nightly_retrain, nightly_backtest):
        tick = _tick(schedule, when)
        assert tick.run_requests == [] and "before the first partition 1997-01-01" in tick.skip_message
    # 1997-09-01: the 90-day backtest (1997-08-31 - 180 d = 1997-03-04) runs, the LTV one (1996-08-31) does not
    runs = _tick(nightly_backtest, datetime(1997, 9, 1, 3, 0, tzinfo=UTC)).run_requests
    assert [(r.partition_key, r.asset_selection) for r in runs] == [("1997-03-04", [dg.AssetKey(["evaluation", "backtest"])]),
                                                                    ("1997-08-31", [dg.AssetKey(["serving", "snapshot"]),
                                                                                        dg.AssetKey(["reports", "customer_report"])])]
    # 1998-03-31: the LTV check of 1997-03-30 is after the start, but the model that serves it (1996-12-30) is not
    runs = _tick(nightly_backtest, datetime(1998, 3, 31, 3, 0, tzinfo=UTC)).run_requests
    assert [r.partition_key for r in runs] == ["1997-10-01", "1998-03-30"]
    runs = _tick(nightly_backtest, datetime(1998, 4, 2, 3, 0, tzinfo=UTC)).run_requests
    assert [r.partition_key for r in runs] == ["1997-10-03", "1997-04-01", "1998-04-01"]  # the LTV model of 1997-01-01 is the first


def test_blocking_checks_are_pinned():
    graph = _graph()
    checks = {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys}
    assert checks == {
        "clean/transactions:rows_reconcile",
        "clean/transactions:clean_values_valid",
        "clean/transactions:clean_keys_unique",
        "clean/transactions:rejected_share_small",
        "clean/transactions:erased_customers_out_of_source",
        "clean/transactions:stored_partitions_current",
        "clean/transactions:source_advancing",
        "features/customer_features:one_row_per_customer",
        "features/customer_features:features_valid",
        "models/churn:churn_beats_naive_baseline",
        "models/spend:spend_beats_naive_baseline",
        "scores/scored_customers:every_customer_scored_once",
        "scores/scored_customers:scores_valid",
        "scores/scored_customers:scores_stable",
        "scores/scored_customers:features_like_training",
        "evaluation/backtest:champion_not_worse_than_baselines",
        "evaluation/backtest:total_within_past_misses",
    }
    # every gate blocks what is downstream of it; the backtest's check only warns (nothing is downstream of it), and
    # so do the rejected share (a high one is a reason to look, not proof that the clean rows are wrong) and the stored
    # partitions' currency (the new rows are right; the partitions computed from the old ones are what to refresh) and
    # the source's advance (a stalled export is a reason to look; its rows are still right), and erased customers'
    # rows still in the export (set aside already; the export is the retailer's to clean), and customers unlike those
    # the models learned from (the scores are still the models' own; a reason to look at what changed)
    blocking = {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys if graph.get_check_spec(k).blocking}
    assert blocking == checks - {"evaluation/backtest:champion_not_worse_than_baselines",
                                 "evaluation/backtest:total_within_past_misses", "clean/transactions:rejected_share_small",
                                 "clean/transactions:erased_customers_out_of_source",
                                 "clean/transactions:stored_partitions_current", "clean/transactions:source_advancing",
                                 "scores/scored_customers:scores_stable", "scores/scored_customers:features_like_training"}


def test_the_night_starts_when_and_where_the_shop_says(monkeypatch):
    """CUSTOMER_ASSETS_NIGHTLY_START=23:00 in America/New_York: the four schedules keep their offsets, two of them
    past midnight, and every one reckons "yesterday" from the night's start."""
    from zoneinfo import ZoneInfo

    from customer_assets import settings
    from customer_assets.schedules import build_schedules

    monkeypatch.setenv("CUSTOMER_ASSETS_NIGHTLY_START", "23:00")
    monkeypatch.setenv("CUSTOMER_ASSETS_TIMEZONE", "America/New_York")
    schedules = build_schedules()
    assert [(s.name, s.cron_schedule, s.execution_timezone) for s in schedules] == [
        ("nightly_ingest", "0 23 * * *", "America/New_York"), ("nightly_retrain", "30 23 * * *", "America/New_York"),
        ("nightly_rescore", "30 0 * * *", "America/New_York"), ("nightly_backtest", "30 1 * * *", "America/New_York")]
    ny = ZoneInfo("America/New_York")
    # the night that began at 23:00 on 2026-11-22, with rows of that day (not over when the ingest ran): the retrain
    # at 23:30 and the rescore at 00:30 the next day both follow 2026-11-21, the last day complete at the start
    (train,) = _tick(schedules[1], datetime(2026, 11, 22, 23, 30, tzinfo=ny), "2026-11-22").run_requests
    (rescore,) = _tick(schedules[2], datetime(2026, 11, 23, 0, 30, tzinfo=ny), "2026-11-22").run_requests
    backtest = _tick(schedules[3], datetime(2026, 11, 23, 1, 30, tzinfo=ny), "2026-11-22").run_requests
    assert (train.partition_key, rescore.partition_key, backtest[-1].partition_key) == (
        "2026-08-23", "2026-11-21", "2026-11-21")
    # the default: 00:30 UTC
    monkeypatch.delenv("CUSTOMER_ASSETS_NIGHTLY_START")
    monkeypatch.delenv("CUSTOMER_ASSETS_TIMEZONE")
    assert [(s.cron_schedule, s.execution_timezone) for s in build_schedules()] == [
        ("30 0 * * *", "UTC"), ("0 1 * * *", "UTC"), ("0 2 * * *", "UTC"), ("0 3 * * *", "UTC")]
    for bad in ("24:00", "7", "7:5", "noon"):
        monkeypatch.setenv("CUSTOMER_ASSETS_NIGHTLY_START", bad)
        with pytest.raises(ValueError, match=f"CUSTOMER_ASSETS_NIGHTLY_START must be a time of day as HH:MM .*got '{bad}'"):
            settings.nightly_start()
    monkeypatch.setenv("CUSTOMER_ASSETS_NIGHTLY_START", "5:15")
    assert settings.nightly_start() == (5, 15)
    monkeypatch.setenv("CUSTOMER_ASSETS_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValueError, match=r"Unknown time zone 'Mars/Olympus' \(CUSTOMER_ASSETS_TIMEZONE\)"):
        build_schedules()


@pytest.mark.parametrize("variable, value, says", [
    ("CUSTOMER_ASSETS_NIGHTLY_START", "25:00", "CUSTOMER_ASSETS_NIGHTLY_START must be a time of day as HH:MM"),
    ("CUSTOMER_ASSETS_TIMEZONE", "Mars/Olympus", "Unknown time zone 'Mars/Olympus' (CUSTOMER_ASSETS_TIMEZONE)"),
])
def test_a_bad_setting_read_when_the_definitions_load_stops_the_command_line_with_its_message(tmp_path, variable, value,
                                                                                               says):
    """In a fresh process, as the definitions load only once per process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, variable: value, "CUSTOMER_ASSETS_DB": str(tmp_path / "w.duckdb")}
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run([sys.executable, "-c", "from customer_assets.cli import main; main(['materialize'])"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"customer-assets: {says}")
    assert "Traceback" not in done.stderr
