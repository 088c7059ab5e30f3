"""``customer-assets`` command line: materialize everything needed to score a cutoff."""

import argparse
import os
import socket
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from customer_assets.settings import DEFAULT_SOURCE, ENV_ALERT_WEBHOOK, ENV_DB, ENV_SOURCE, HORIZON_DAYS


def _instance() -> dg.DagsterInstance:
    """The DAGSTER_HOME instance when one is set (runs then show in the UI), else a throwaway one."""
    if home := os.environ.get("DAGSTER_HOME"):
        if not (os.path.isabs(home) and os.path.isdir(home)):  # else Dagster's own traceback
            raise SystemExit(
                f"customer-assets: DAGSTER_HOME={home} must be an existing folder, given by an absolute path. Create it "
                f"(`make run` uses {os.path.join('<project>', '.dagster_home')}), or unset DAGSTER_HOME to run without "
                "keeping the run history."
            )
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


class Progress:
    """A one-line-per-step progress display for the terminal."""

    def __init__(self, total: int, stream=None):
        # sys.stderr as it is now, not as it was at import (a test harness or a caller may have replaced it)
        self.total, self.done, self.t0 = total, 0, time.time()
        self.stream = stream if stream is not None else sys.stderr

    def step(self, label: str) -> None:
        self.done += 1
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"[{bar}] {self.done}/{self.total} {label} ({time.time() - self.t0:.0f}s)\n")
        self.stream.flush()


def root_cause(error) -> str:
    """The message of the first error in a Dagster error chain that is not Dagster's own step wrapper.

    That is the exception our code raised (e.g. a SourceReadError that names the file and the fix),
    not the library error it wraps, and not "Error occurred while executing op ...".
    """
    while (getattr(error, "cls_name", "") or "").startswith("Dagster") and getattr(error, "cause", None) is not None:
        error = error.cause
    message = error.message.strip()
    # an asset's dg.Failure already says what is wrong and what to do: its module path adds nothing
    return message.removeprefix("dagster._core.definitions.events.Failure: ") if error.cls_name == "Failure" else message


def check_line(check: dg.AssetCheckEvaluation) -> str:
    """``<asset> check <name>: <what it found>``: its description, else its non-zero numeric metadata."""
    found = check.description or ", ".join(
        f"{k} {v.value}" for k, v in check.metadata.items() if isinstance(v.value, (int, float)) and not isinstance(v.value, bool) and v.value
    ) or "did not pass"
    return f"{check.asset_key.to_user_string()} check {check.asset_check_key.name}: {found}"


class Runner:
    """Materializes asset selections in process, one partition at a time, with progress and clear failures."""

    def __init__(self, database: str | None = None, instance: dg.DagsterInstance | None = None,
                 log_level: str = "WARNING", steps: int = 1):
        try:  # the settings read when the definitions load (horizons, schedule times, time zone, runtime limit)
            from customer_assets.definitions import ASSETS, CHECKS, build_definitions

            defs = build_definitions(database)
        except ValueError as exc:  # a bad setting: its message names the variable; no traceback
            raise SystemExit(f"customer-assets: {exc}") from None
        self.resources = {"duckdb": defs.resources["duckdb"]}
        self.database = self.resources["duckdb"].database
        self.instance = instance or _instance()
        self.run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
        self.all_defs = [*ASSETS, *CHECKS]
        self.progress = Progress(steps)

    def run(self, selection, partition_key: str | None = None, label: str = "") -> dg.ExecuteInProcessResult:
        if isinstance(selection, str):
            selection = dg.AssetSelection.assets(*[dg.AssetKey(k.split("/")) for k in selection.split()])
        result = dg.materialize(self.all_defs, selection=selection, partition_key=partition_key, resources=self.resources,
                                instance=self.instance, run_config=self.run_config, raise_on_error=False)
        checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
        if not result.success:
            # a blocking check that failed: what it found, not Dagster's "1 blocking asset check failed"
            gates = [c for c in checks if c.severity == dg.AssetCheckSeverity.ERROR]
            failures = [e for e in result.all_events if e.is_failure and e.event_specific_data is not None
                        and getattr(e.event_specific_data, "error", None) is not None]
            msg = ("; ".join(f"{check_line(c)} (a blocking check: nothing downstream of it ran)" for c in gates) if gates
                   else root_cause(failures[0].event_specific_data.error) if failures else "see the run log")
            raise SystemExit(f"customer-assets: {label or partition_key} failed: {msg}")
        self.progress.step(label)
        # the checks that warn stop nothing, so the run succeeded: say what they found, as the UI would show it
        for check in checks:
            self.progress.stream.write(f"  warning: {check_line(check)}\n")
        return result

    def last_date(self) -> str:
        """The last transaction date in ``clean.transactions``; a clear exit when nothing was loaded yet."""
        import duckdb as ddb

        last = None
        if os.path.exists(self.database):
            try:  # through the resource: waits while another run holds the file's lock
                with self.resources["duckdb"].get_connection() as conn:
                    last = conn.execute("SELECT max(txn_date) FROM clean.transactions").fetchone()[0]
            except ddb.CatalogException:
                pass
        if last is None:
            raise SystemExit(f"customer-assets: no clean transactions in {self.database}; run `customer-assets materialize` "
                             "without --skip-ingest first, which loads the source")
        return str(last)


def _has_models(database: str, names: list[str], partition: str) -> bool:
    import duckdb as ddb

    from customer_assets.storage import table_exists

    with ddb.connect(database, read_only=True) as conn:
        return all(table_exists(conn, "models", n)
                   and conn.execute(f"SELECT count(*) FROM models.{n} WHERE cutoff_date = ?", [partition]).fetchone()[0]
                   for n in names)


def materialize_backtests(runner: Runner, last: date, publish: date | None = None) -> list[str]:
    """The newest backtests the data allow, training the model partitions they check when those are missing.

    ``evaluation/backtest`` of t = last - 2H (its scores at t + H have a complete window) and
    ``evaluation/ltv_backtest`` of c = last - LTV horizon (served by the LTV model of c - H). With ``publish`` (the
    scored cutoff), ``serving/snapshot`` and ``reports/customer_report`` of that partition are materialized again afterwards,
    so that the serving copy holds the backtests and the report's track record includes them. Returns what was skipped, and why.
    """
    from customer_assets.jobs import BACKTEST, LTV_BACKTEST, REPORT, SERVING, TRAIN_SELECTION
    from customer_assets.models.assets import MODEL_NAMES
    from customer_assets.settings import LTV_HORIZON_DAYS, PARTITIONS_START

    first, steps, skipped = date.fromisoformat(PARTITIONS_START), [], []
    t = last - timedelta(days=2 * HORIZON_DAYS)
    if t >= first:
        if not _has_models(runner.database, MODEL_NAMES, t.isoformat()):
            steps.append((TRAIN_SELECTION, t, f"trained the models of partition {t} for its backtest"))
        steps.append((dg.AssetSelection.assets(BACKTEST), t,
                      f"backtested the models of {t} (scored at {t + timedelta(days=HORIZON_DAYS)})"))
    else:
        skipped.append(f"evaluation/backtest: the data span less than 2 x {HORIZON_DAYS} days after {first}")
    c = last - timedelta(days=LTV_HORIZON_DAYS)
    ltv_model = c - timedelta(days=HORIZON_DAYS)  # the LTV served at c comes from the models/ltv of c - H
    if ltv_model >= first:
        if not _has_models(runner.database, ["ltv"], ltv_model.isoformat()):
            steps.append(("features/calibration_transactions features/holdout_transactions features/customer_features "
                          "models/ltv", ltv_model, f"fitted the LTV model of partition {ltv_model}, which serves {c}"))
        steps.append((dg.AssetSelection.assets(LTV_BACKTEST), c, f"checked the LTV served at {c} over the {LTV_HORIZON_DAYS} days after it"))
    else:
        skipped.append(f"evaluation/ltv_backtest: the data span less than {LTV_HORIZON_DAYS} + {HORIZON_DAYS} days after {first}")
    if steps and publish is not None:
        steps.append((dg.AssetSelection.assets(SERVING, REPORT), publish,
                      "published the serving copy and the report with the backtests"))
    runner.progress.total = runner.progress.done + len(steps)
    for selection, partition, label in steps:
        runner.run(selection, partition_key=partition.isoformat(), label=label)
    return skipped


def materialize_cutoff(cutoff: str | None, database: str | None = None, skip_ingest: bool = False,
                       instance: dg.DagsterInstance | None = None, log_level: str = "WARNING",
                       backtests: bool = False) -> str:
    """Ingest (unless skipped), train the models of ``cutoff - H`` and score ``cutoff``; with ``backtests``,
    then the newest backtests the data allow (``materialize_backtests``).

    Returns the scored cutoff. ``cutoff=None`` means the last date in the data.
    """
    from customer_assets.jobs import INGEST_SELECTION, SCORE_SELECTION, TRAIN_SELECTION
    from customer_assets.settings import ENV_START, PARTITIONS_START

    try:
        c = date.fromisoformat(cutoff) if cutoff is not None else None
    except ValueError:
        raise SystemExit(f"customer-assets: --cutoff must be YYYY-MM-DD, got {cutoff!r}") from None
    runner = Runner(database, instance, log_level, steps=2 if skip_ingest else 3)
    if not skip_ingest:
        loaded = runner.run(INGEST_SELECTION, label="ingested and cleaned the transactions")
        raw = loaded.asset_materializations_for_node("raw__transactions")[0].metadata
        # no source set, and the last load's is not the bundled file: say which file was read, and how to change it
        if raw["source_set_by"].value == "last load" and raw["source"].value != str(DEFAULT_SOURCE):
            runner.progress.stream.write(f"  read {raw['source'].value} again, the source of the last load ({ENV_SOURCE} "
                                         "is not set; set it to read another file)\n")
    last = date.fromisoformat(runner.last_date())
    c = c or last
    cutoff = c.isoformat()
    train = (c - timedelta(days=HORIZON_DAYS)).isoformat()
    if c > last:
        raise SystemExit(f"customer-assets: --cutoff {c} is after the last date in the data ({last}). Scoring at a cutoff "
                         f"uses the models of {HORIZON_DAYS} days earlier, whose labels run up to the cutoff, so the "
                         f"latest cutoff is {last}.")
    if train < PARTITIONS_START:
        raise SystemExit(f"customer-assets: scoring at {c} uses the models of partition {train} ({HORIZON_DAYS} days "
                         f"earlier), which is before the first partition, {PARTITIONS_START} ({ENV_START}). Use a later "
                         "cutoff.")
    runner.run(TRAIN_SELECTION, partition_key=train, label=f"trained the models of partition {train}")
    runner.run(SCORE_SELECTION, partition_key=cutoff, label=f"scored customers at {cutoff}")
    if backtests:
        for reason in materialize_backtests(runner, last, publish=c):
            sys.stderr.write(f"skipped {reason}\n")
    return cutoff


def forget(ids: list[str], database: str | None = None, instance: dg.DagsterInstance | None = None,
           dry_run: bool = False, delete_runs: bool = False, compact: bool = False) -> dict[str, Any]:
    """Erase customers from the warehouse (``customer_assets.erasure``), then publish the serving copy again and
    rewrite the HTML reports that name them. Returns the rows changed per table, the ``reports`` rewritten, the
    ``customers`` asked for, and ``runs``: the Dagster runs whose metadata showed them (run id -> where), which
    ``delete_runs`` deletes when they have finished (``runs_left``: those still in progress). ``compact`` then
    rewrites the warehouse file, so that the old values of the erased rows are not left in its free blocks
    (``file_bytes``: its size before and after)."""
    from customer_assets import erasure
    from customer_assets.settings import reports_dir

    runner = Runner(database, instance)
    customers = erasure.normalise(ids)
    if compact and (runner.database.startswith("md:") or runner.database == ":memory:"):
        raise ValueError(f"--compact rewrites a warehouse file, and {runner.database} is not one; nothing was erased")
    if not runner.database.startswith("md:") and not os.path.exists(runner.database):
        raise ValueError(f"there is no warehouse at {runner.database} (set --db or {ENV_DB}); nothing was erased")
    with runner.resources["duckdb"].get_connection() as conn:  # waits while a run holds the file's lock
        counts = erasure.erase_customers(conn, customers, HORIZON_DAYS, dry_run)
        scored = conn.execute("SELECT max(cutoff_date) FROM scores.scored_customers").fetchone()[0] \
            if "scores.scored_customers" in counts else None
    reports = erasure.reports_showing(reports_dir(runner.database), customers)
    if dry_run:  # what it would rewrite
        return {**counts, "reports": len(reports), "customers": len(customers),
                "runs": erasure.runs_showing(runner.instance, customers)}
    runner.progress.total = (scored is not None) + len(reports)
    if scored is not None:
        runner.run("serving/snapshot", partition_key=str(scored), label="published the serving copy again")
    for report in reports:
        runner.run("reports/customer_report", partition_key=report.stem.removeprefix("customer_report_"),
                   label=f"rewrote {report.name}")
    counts["reports"] = len(reports)
    counts["customers"] = len(customers)
    if compact:
        counts["file_bytes"] = rewrite_file(runner)
    # after the runs above, whose previews no longer hold them
    counts["runs"] = erasure.runs_showing(runner.instance, customers)
    if delete_runs:
        _, left = erasure.delete_runs(runner.instance, list(counts["runs"]))
        counts["runs_left"] = {run_id: counts["runs"].pop(run_id) for run_id in left}
    return counts


def locate(ids: list[str], database: str | None = None, instance: dg.DagsterInstance | None = None) -> dict[str, Any]:
    """Where the customers still are (``erasure.locate``): the warehouse's tables and views, the serving copy and the
    reports, by rows or files, the number of ``customers`` asked for, and ``runs``: the Dagster runs whose metadata
    shows them. Reads only."""
    import duckdb

    from customer_assets import erasure
    from customer_assets.settings import reports_dir, serving_dir

    runner = Runner(database, instance)
    customers = erasure.normalise(ids)
    if not runner.database.startswith("md:") and not os.path.exists(runner.database):
        raise ValueError(f"there is no warehouse at {runner.database} (set --db or {ENV_DB})")
    try:
        conn = duckdb.connect(runner.database, read_only=True)
    except duckdb.IOException:  # a run is writing: wait for it, as a writer would
        conn = runner.resources["duckdb"].connect()
    try:
        found = erasure.locate(conn, customers, serving_dir(runner.database), reports_dir(runner.database))
    finally:
        conn.close()
    return {**found, "customers": len(customers), "runs": erasure.runs_showing(runner.instance, customers)}


def rewrite_file(runner: Runner) -> tuple[int, int]:
    """Rewrite the warehouse into a new file and swap it in (``storage.copy_to_fresh_file``); its size before and
    after. Done while no one else has the file open: the copy holds the lock, and the swap follows its close."""
    import duckdb

    from customer_assets.storage import copy_to_fresh_file

    database = runner.database
    before = os.path.getsize(database)
    try:
        with runner.resources["duckdb"].get_connection() as conn:  # waits while a run holds the file's lock
            fresh = copy_to_fresh_file(conn, database)
    except (duckdb.Error, ValueError) as exc:
        raise ValueError(f"the customers were erased, but the warehouse file was not rewritten ({exc}); run the "
                         "command again with --compact") from exc
    if os.path.exists(database + ".wal"):  # another process opened the file in between: its changes are not copied
        os.remove(fresh)
        raise ValueError(f"the customers were erased, but {database} was opened by another process during the "
                         "rewrite, so it was left as it was; run the command again with --compact")
    os.replace(fresh, database)
    return before, os.path.getsize(database)


def _runs_line(counts: dict[str, Any], instance_kept: bool, dry_run: bool, deleted: bool,
               offer: str = "Run again with --delete-runs to delete them (or delete them in the UI).") -> str:
    """What ``forget`` (and ``locate``) says about the Dagster run history; ``offer`` follows the runs found when
    they were not deleted (a dry run says what --delete-runs would do)."""
    runs = counts["runs"]
    if not instance_kept:
        return ("The Dagster run history was not searched: DAGSTER_HOME is not set (`make run` and `make ui` use "
                "<project>/.dagster_home; set it to that folder to search and clean it).")
    left = counts.get("runs_left", {})
    if not runs and not left:
        return "No Dagster run shows them in its metadata."

    def listed(found):
        return "; ".join(f"{run_id} ({', '.join(places)})" for run_id, places in found.items())

    if deleted and not dry_run:
        said = [f"Deleted {len(runs)} Dagster run(s) whose metadata showed them, with their event and captured logs: "
                f"{listed(runs)}."] if runs else []
        if left:
            said.append(f"{len(left)} run(s) that show them are still in progress and were left: {listed(left)}. Run the "
                        "command again with --delete-runs when they have finished.")
        return " ".join(said)
    return (f"{len(runs)} Dagster run(s) show them in their metadata: {listed(runs)}. "
            + ("--delete-runs would delete them." if dry_run else offer))


def _customer_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that name customers and the warehouse (``forget``, ``locate``)."""
    parser.add_argument("--customer", action="append", default=[], help="a customer id (repeat for several)")
    parser.add_argument("--from-file", help="a text file with one customer id per line")
    parser.add_argument("--db", help=f"warehouse file (default: ${ENV_DB} or data/warehouse.duckdb)")


def _customer_ids(args: argparse.Namespace) -> list[str]:
    """The ids of ``--customer`` and of the lines of ``--from-file`` (OSError when it cannot be read)."""
    ids = list(args.customer)
    if args.from_file:
        ids += [line for line in Path(args.from_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="customer-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("materialize", help="materialize everything needed to score at a cutoff, in order")
    m.add_argument("--cutoff", help="scoring cutoff YYYY-MM-DD (default: the last date in the data)")
    m.add_argument("--db", help=f"warehouse file (default: ${ENV_DB} or data/warehouse.duckdb)")
    m.add_argument("--skip-ingest", action="store_true", help="reuse the clean transactions already in the warehouse")
    m.add_argument("--log-level", default="WARNING", help="Dagster console log level (default WARNING)")
    m.add_argument("--backtests", action="store_true",
                   help="then the newest backtests the data allow: the models of last date - 2H scored at last date - H, "
                        "and the LTV served at last date - LTV horizon (training those partitions when missing)")
    g = sub.add_parser("generate", help="write synthetic transactions with known ground truth (CSV or Parquet)")
    g.add_argument("--customers", type=int, required=True)
    g.add_argument("--years", type=float, default=3.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True, help="output file, .csv or .parquet")
    g.add_argument("--chunk-customers", type=int, default=50_000, help="customers simulated per chunk (bounds memory)")
    f = sub.add_parser("forget", help="erase customers (a request to be forgotten) from the warehouse, the serving "
                                      "copy and the reports, and from every later load")
    _customer_arguments(f)
    f.add_argument("--dry-run", action="store_true", help="count what it would change, and change nothing")
    f.add_argument("--compact", action="store_true",
                   help="then rewrite the warehouse file, so that the erased rows' old values do not stay in its free space")
    f.add_argument("--delete-runs", action="store_true",
                   help="also delete the Dagster runs whose metadata previews show them (searched in $DAGSTER_HOME)")
    loc = sub.add_parser("locate", help="show where customers still are (tables, serving copy, reports, Dagster runs), "
                                        "for example to check an erasure; changes nothing")
    _customer_arguments(loc)
    sub.add_parser("test-alert", help=f"post a test message to the alert webhook ({ENV_ALERT_WEBHOOK}), to check it "
                                      "before the nightly runs need it")
    args = parser.parse_args(argv)
    if args.command == "test-alert":
        from customer_assets.sensors import AlertError, post, webhook_url

        try:
            url = webhook_url()
            if url is None:
                raise AlertError(f"{ENV_ALERT_WEBHOOK} is not set: set it to your chat tool's incoming webhook URL")
            post(url, f"customer-assets: a test alert from {socket.gethostname()}. Failed runs, and runs whose checks "
                      "warned, will be reported here once the sensors alert_on_failure and alert_on_warnings are on.")
        except AlertError as exc:
            raise SystemExit(f"customer-assets test-alert: {exc}") from None
        print(f"Posted a test alert to the webhook at {urlsplit(url).hostname}.")
        return 0
    if args.command == "locate":
        try:
            instance = _instance()
            found = locate(_customer_ids(args), args.db, instance)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"customer-assets locate: {exc}") from None
        runs, customers = found.pop("runs"), found.pop("customers")
        erased = found.pop("quality.erased_customers", 0)
        print(f"{customers} customer(s), {erased} of them erased.")
        for place, n in found.items():
            unit = "file(s)" if place == "reports" else "row(s)"
            export = "  (a view over the source export" + ("; delete the erased customers' rows there)" if erased else ")")
            print(f"  {place}: {n:,} {unit}" + (export if place == "raw.transactions" else ""))
        if not found:
            print("  No table, serving file or report holds them.")
        print("  " + _runs_line({"runs": runs}, not instance.is_ephemeral, dry_run=False, deleted=False,
                                offer="`customer-assets forget --delete-runs` deletes them."))
        return 0
    if args.command == "forget":
        try:
            instance = _instance()
            counts = forget(_customer_ids(args), args.db, instance, dry_run=args.dry_run, delete_runs=args.delete_runs,
                            compact=args.compact)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"customer-assets forget: {exc}") from None
        changed = ", ".join(f"{k} {v:,}" for k, v in counts.items() if "." in k)  # the tables
        runs = _runs_line(counts, not instance.is_ephemeral, args.dry_run, args.delete_runs)
        if args.dry_run:
            print(f"Dry run, nothing changed. Erasing {counts['customers']} customer(s) would change rows: {changed}; "
                  f"reports to rewrite: {counts['reports']}.")
            print(runs)
            if args.compact:
                from customer_assets.resources import warehouse_resource

                db = args.db or warehouse_resource().database
                print(f"--compact would then rewrite the warehouse file ({os.path.getsize(db) / 1e6:,.1f} MB now), and "
                      "needs room for a second copy of it.")
            return 0
        print(f"Erased {counts['customers']} customer(s). Rows changed: {changed}; reports rewritten: {counts['reports']}.")
        print(runs)
        if "file_bytes" in counts:
            before, after = counts["file_bytes"]
            print(f"Rewrote the warehouse file ({before / 1e6:,.1f} MB before, {after / 1e6:,.1f} MB after): the old "
                  "values of the erased rows are not in it.")
        else:
            print("The old values of the erased rows stay in the warehouse file's free space until DuckDB reuses it; "
                  "--compact rewrites the file without them.")
        print("Their rows are set aside as erased_customer by every later load. Delete them from the source export too "
              "(quality.rejected_transactions lists their source_file and file_row).")
        return 0
    if args.command == "generate":
        from customer_assets.generate import generate

        bar = Progress(1)

        def progress(done, total, rows):
            bar.total, bar.done = total, done - 1
            bar.step(f"chunks, {rows:,} rows")

        try:
            record = generate(args.customers, args.years, args.seed, args.out, chunk_customers=args.chunk_customers,
                              progress=progress)
        except ValueError as exc:
            raise SystemExit(f"customer-assets generate: {exc}") from None
        print(f"Wrote {record['rows']:,} rows for {args.customers:,} customers to {args.out}")
        print(f"Ground truth: {args.out}.truth.json. Load it with:")
        print(f"  CUSTOMER_ASSETS_SOURCE={args.out} CUSTOMER_ASSETS_COLUMNS={record['columns']} customer-assets materialize")
        return 0
    if args.command == "materialize":
        cutoff = materialize_cutoff(args.cutoff, args.db, args.skip_ingest, log_level=args.log_level, backtests=args.backtests)
        from customer_assets.resources import warehouse_resource

        db = args.db or warehouse_resource().database
        print(f"\nWarehouse: {db}")
        print("Tables: raw.transactions, clean.transactions, quality.{rejected_transactions,history_changes},")
        print("        features.customer_features, segments.customer_segments, models.{churn,spend,ltv,next_purchase},")
        print("        scores.{scored_customers,feature_drift}"
              + (", evaluation.backtest_metrics, evaluation.reliability, evaluation.spend_deciles, evaluation.segment_metrics, "
                 "evaluation.ltv_metrics"
                 if args.backtests else ""))
        print("Try this query in `make sql` (DuckDB CLI, read-only) or any DuckDB client:")
        print(f"  SELECT segment, count(*) AS customers, round(avg(churn_probability), 3) AS mean_churn, "
              f"round(sum(predicted_ltv)) AS expected_ltv FROM scores.scored_customers WHERE cutoff_date = '{cutoff}' "
              "GROUP BY segment ORDER BY expected_ltv DESC;")
        from customer_assets.settings import reports_dir

        report = reports_dir(db) / f"customer_report_{cutoff}.html"
        if report.exists():
            print(f"The report for marketers (segments, customers to call first, how right the forecasts have been): "
                  f"{report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
