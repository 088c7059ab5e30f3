"""Scale benchmark: each pipeline stage timed at several sizes, with peak memory and warehouse size.

    python benchmarks/scale.py --sizes 10000,100000,1000000

Per size it generates synthetic data (3 years by default), then runs every stage in a
fresh subprocess so that its wall time and peak RSS (from wait4) are its own:

* ingest: raw/transactions + clean/transactions from the CSV (Dagster run);
* ingest_files: the same, from the same rows split into one CSV per day of data (as many files as days, in the
  file's order), read through a glob pattern;
* floor: a bare single-pass DuckDB RFM aggregate over the same clean rows (no Dagster);
* features: the feature SQL for one cutoff, timed alone (no Dagster), like the floor;
* segments: segments/customer_segments for that cutoff (Dagster run);
* train: the four models of partition s - 90 with stacked cutoffs and model selection (Dagster run);
* rescore: the nightly rescoring of s (splits, features, segments, scores, serving copy; models trained);
* train_learned: the train stage again, with BG/NBD alone and the single families that no ensemble has left out of
  the candidates, so that a learned model (an ensemble, where it validates best) is the churn and spend champion:
  the costliest case, since the final fit and the same-season checks refit every member, where BG/NBD alone refits
  nothing (prints the champions it got);
* train_spend_ensemble: the train stage again (every candidate), with validation made to pick the spend ensemble
  ``ensemble(xgboost, lightgbm+bgnbd)`` whatever it scores (the other spend ensemble is left out): on the synthetic
  data none validates best, so this is the only way to time its refit of two members and its same-season checks
  (prints the champions it got);
* train_backtested: the four models of partition s - 2H, the newest whose backtest window is complete (Dagster run);
* backtest: evaluation/backtest of partition s - 2H, the nightly backtest (the models scored at s - H next to the
  baselines, 200 paired bootstrap resamples; Dagster run);
* backfill: features and segments for 24 monthly cutoffs (24 Dagster runs);
* erase: ``customer-assets forget`` of the first 100 scored customers (the erasure, the serving copy, the reports
  that named them), then the ingest again, which sets their rows aside (timed apart: ``ingest_after_seconds``);
* compact: ``customer-assets forget --compact``'s rewrite of the warehouse into a new file (``file_mb_before`` and
  ``file_mb_after``).

``--stages`` runs a subset in order (e.g. ``ingest,train_backtested,backtest``).

It prints one table and writes the figures to <workdir>/scale_results.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from customer_assets.settings import DATA_DIR

HERE = Path(__file__).resolve()
STAGES = ["ingest", "ingest_files", "floor", "features", "segments", "train", "train_learned", "train_spend_ensemble",
          "rescore", "train_backtested", "backtest", "backfill", "erase", "compact"]
H = 90


def _env(source: Path, db: Path, keep_cutoffs: int) -> dict:
    from customer_assets.generate import COLUMNS

    env = {**os.environ, "CUSTOMER_ASSETS_SOURCE": str(source), "CUSTOMER_ASSETS_COLUMNS": COLUMNS,
           "CUSTOMER_ASSETS_DB": str(db), "CUSTOMER_ASSETS_SERVING_DIR": str(db.parent / "serving"),
           "CUSTOMER_ASSETS_KEEP_CUTOFFS": str(keep_cutoffs)}
    env.pop("DAGSTER_HOME", None)
    return env


def _train_with_champions(db: str, t: str, label: str, t0: float) -> tuple[float, dict]:
    """The train stage's models of partition ``t``: the seconds since ``t0``, and the churn and spend champions."""
    from customer_assets.cli import Runner
    from customer_assets.jobs import TRAIN_SELECTION

    Runner(db).run(TRAIN_SELECTION, partition_key=t, label=label)
    seconds = time.perf_counter() - t0
    with duckdb.connect(db, read_only=True) as conn:
        champions = {m: conn.execute(f"SELECT family FROM models.{m} WHERE cutoff_date = ?", [t]).fetchone()[0]
                     for m in ("churn", "spend")}
    return seconds, {"champions": champions}


def stage(name: str, db: str, cutoff: str) -> float | tuple[float, dict]:
    """Run one stage in this process; returns the seconds of the timed part (and other figures, for some)."""
    from customer_assets.cli import Runner
    from customer_assets.features import logic as F
    from customer_assets.jobs import INGEST_SELECTION, SCORE_SELECTION, TRAIN_SELECTION

    s = date.fromisoformat(cutoff)
    backtested = (s - timedelta(days=2 * H)).isoformat()  # the newest model partition whose backtest window is complete
    t0 = time.perf_counter()
    if name in ("ingest", "ingest_files"):
        Runner(db).run(INGEST_SELECTION, label="ingest")
    elif name in ("floor", "features"):
        conn = duckdb.connect(db)
        _, end = F.data_bounds(conn)
        t0 = time.perf_counter()
        if name == "floor":
            conn.execute("CREATE OR REPLACE TEMP TABLE rfm AS SELECT customer_id, max(txn_date) AS last, "
                         "count(DISTINCT txn_date) AS days, sum(amount) AS spend FROM clean.transactions "
                         "WHERE txn_date <= ? GROUP BY customer_id", [s])
        else:
            conn.execute(f"CREATE OR REPLACE TEMP TABLE f AS {F.FEATURE_SQL}", F.feature_params(s, H, end))
        elapsed = time.perf_counter() - t0
        conn.close()
        return elapsed
    elif name == "segments":
        Runner(db).run("features/calibration_transactions features/holdout_transactions features/customer_features",
                       partition_key=cutoff, label="features")
        t0 = time.perf_counter()
        Runner(db).run("segments/customer_segments", partition_key=cutoff, label="segments")
    elif name == "train":
        Runner(db).run(TRAIN_SELECTION, partition_key=(s - timedelta(days=H)).isoformat(), label="train")
    elif name == "train_learned":
        from customer_assets.models import logic as L

        # only the ensembles' members (and the ensembles) are candidates: read by train_churn and train_spend at run time
        L.CHURN_FAMILIES = tuple(dict.fromkeys(m for members, _ in L.CHURN_ENSEMBLES.values() for m in members))
        L.SPEND_FAMILIES = tuple(dict.fromkeys(m for members, _ in L.SPEND_ENSEMBLES.values() for m in members))
        return _train_with_champions(db, (s - timedelta(days=H)).isoformat(), "train, learned champions", t0)
    elif name == "train_spend_ensemble":
        from customer_assets.models import candidates as C
        from customer_assets.models import logic as L

        ensemble = "ensemble(xgboost, lightgbm+bgnbd)"
        L.SPEND_ENSEMBLES = {ensemble: L.SPEND_ENSEMBLES[ensemble]}  # every single family is still fitted and scored
        combined, combine, task_spec = [], C.combine, L.task_spec

        def marked_combine(preds, how):  # the ensemble's validation predictions, remembered (kept alive: ids stay unique)
            out = combine(preds, how)
            combined.append(out)
            return out

        def rigged_spec(task, horizon):  # spend's validation metric lifted by 10 for the ensemble's own predictions only
            label_fn, objective, metric = task_spec(task, horizon)
            if task != "spend":
                return label_fn, objective, metric
            return label_fn, objective, lambda y, p: metric(y, p) + (10.0 if any(p is c for c in combined) else 0.0)

        C.combine, L.task_spec = marked_combine, rigged_spec
        return _train_with_champions(db, (s - timedelta(days=H)).isoformat(), "train, a spend ensemble champion", t0)
    elif name == "rescore":
        Runner(db).run(SCORE_SELECTION, partition_key=cutoff, label="rescore")
    elif name == "train_backtested":
        Runner(db).run(TRAIN_SELECTION, partition_key=backtested, label="train")
    elif name == "backtest":
        Runner(db).run("evaluation/backtest", partition_key=backtested, label="backtest")
    elif name == "backfill":
        runner = Runner(db, steps=24)
        c = s
        for _ in range(24):
            c = date(c.year, c.month, 1) - timedelta(days=1)  # the previous month end
            runner.run("features/calibration_transactions features/holdout_transactions features/customer_features "
                       "segments/customer_segments", partition_key=c.isoformat(), label=f"cutoff {c}")
    elif name == "erase":
        from customer_assets.cli import forget

        with duckdb.connect(db, read_only=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT DISTINCT customer_id FROM scores.scored_customers "
                                              "ORDER BY customer_id LIMIT 100").fetchall()]
        t0 = time.perf_counter()
        counts = forget(ids, db)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        Runner(db).run(INGEST_SELECTION, label="ingest")
        return seconds, {"ingest_after_seconds": time.perf_counter() - t1, "rows_changed": counts}
    elif name == "compact":
        from customer_assets.cli import rewrite_file

        before, after = rewrite_file(Runner(db))
        return time.perf_counter() - t0, {"file_mb_before": before / 2**20, "file_mb_after": after / 2**20}
    return time.perf_counter() - t0


def split_by_day(src: Path, folder: Path, days: int) -> int:
    """Write the rows of ``src`` as ``days`` CSV files of consecutive rows, named in order (part-00001.csv …)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    conn = duckdb.connect()
    conn.execute("SET preserve_insertion_order = true")
    conn.execute(f"CREATE TABLE t AS SELECT *, row_number() OVER () AS __n FROM read_csv('{src}', header = true, all_varchar = true)")
    rows = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    per_file = -(-rows // days)
    for i in range(days):
        conn.execute(f"COPY (SELECT * EXCLUDE (__n) FROM t WHERE __n > {i * per_file} AND __n <= {(i + 1) * per_file} "
                     f"ORDER BY __n) TO '{folder / f'part-{i + 1:05d}.csv'}' (HEADER)")
    return days


def run_stage(name: str, env: dict, db: Path, cutoff: str) -> dict:
    proc = subprocess.Popen([sys.executable, str(HERE), "--stage", name, "--db", str(db), "--cutoff", cutoff],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.perf_counter()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_seconds"] = wall
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--years", type=float, default=3.0)
    ap.add_argument("--workdir", default=str(DATA_DIR / "benchmarks" / "scale"))
    ap.add_argument("--keep-cutoffs", type=int, default=3,
                    help="retention of features and segments (CUSTOMER_ASSETS_KEEP_CUTOFFS; 0 keeps every cutoff)")
    ap.add_argument("--reuse", action="store_true", help="reuse synthetic files generated by an earlier run (same seed)")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages to run, in order (default: all)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--cutoff", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:  # child process: run one stage, report seconds and peak RSS
        import resource

        seconds = stage(args.stage, args.db, args.cutoff)
        seconds, extra = seconds if isinstance(seconds, tuple) else (seconds, {})
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"stage": args.stage, "seconds": seconds, "peak_rss_mb": rss_kb / 1024, **extra}))
        return 0

    from customer_assets.generate import generate

    stages = [x for x in args.stages.split(",") if x]
    if unknown := [x for x in stages if x not in STAGES]:
        ap.error(f"unknown stages {unknown}; choose from {STAGES}")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        src = work / f"synthetic_{n}.csv"
        truth = Path(str(src) + ".truth.json")
        t0 = time.perf_counter()
        reuse = args.reuse and src.exists() and truth.exists() and json.loads(truth.read_text())["years"] == args.years
        record = json.loads(truth.read_text()) if reuse else generate(n, args.years, 1, str(src))
        gen_s = time.perf_counter() - t0
        db = work / f"warehouse_{n}.duckdb"
        for p in (db, Path(str(db) + ".wal")):
            if p.exists():
                p.unlink()
        pq = work / f"synthetic_{n}.parquet"
        duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{src}', header = true, all_varchar = true)) TO '{pq}' (FORMAT parquet)")
        cutoff = record["end"]
        env = _env(src, db, args.keep_cutoffs)
        res = {"customers": n, "rows": record["rows"], "generate_seconds": gen_s, "csv_mb": src.stat().st_size / 2**20,
               "raw_parquet_mb": pq.stat().st_size / 2**20, "keep_cutoffs": args.keep_cutoffs, "stages": {}}
        if "ingest_files" in stages:
            res["files"] = split_by_day(src, work / f"synthetic_{n}_files", int(round(365 * args.years)))
        for name in stages:
            stage_env = {**env, "CUSTOMER_ASSETS_SOURCE": str(work / f"synthetic_{n}_files" / "*.csv")} if name == "ingest_files" else env
            r = run_stage(name, stage_env, db, cutoff)
            res["stages"][name] = r
            if name.startswith("ingest"):
                with duckdb.connect(str(db), read_only=True) as conn:
                    # the clean rows' digest (every field and the row number): one file or many must give the same
                    r["raw_rows"], r["clean_rows"], r["clean_digest"] = conn.execute(
                        "SELECT (SELECT count(*) FROM raw.transactions), (SELECT count(*) FROM clean.transactions), "
                        "(SELECT sum(hash(customer_id, txn_date, amount, quantity, is_return, order_id, product_id, "
                        "source_row))::VARCHAR FROM clean.transactions)").fetchone()
            print(f"{n:>9,} customers  {name:<12} {r['seconds']:8.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB"
                  + (f"  raw {r['raw_rows']:,} clean {r['clean_rows']:,} digest {r['clean_digest']}" if "raw_rows" in r else "")
                  + (f"  then the ingest {r['ingest_after_seconds']:.1f} s; rows changed {r['rows_changed']}"
                     if "rows_changed" in r else "")
                  + (f"  file {r['file_mb_before']:,.0f} MB -> {r['file_mb_after']:,.0f} MB" if "file_mb_after" in r else "")
                  + (f"  champions {r['champions']}" if "champions" in r else ""),
                  file=sys.stderr)
        res["warehouse_mb"] = sum(p.stat().st_size for p in (db, Path(str(db) + ".wal")) if p.exists()) / 2**20
        results[n] = res
        (work / "scale_results.json").write_text(json.dumps(results, indent=2))

    sizes = list(results)
    print("\n| stage | " + " | ".join(f"{n:,} customers ({results[n]['rows'] / 1e6:.1f}M rows)" for n in sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    for name in stages:
        cells = [f"{results[n]['stages'][name]['seconds']:.1f} s, {results[n]['stages'][name]['peak_rss_mb']:.0f} MB" for n in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"| warehouse after {stages[-1]} (keep_cutoffs {args.keep_cutoffs}) | " + " | ".join(f"{results[n]['warehouse_mb']:.0f} MB (raw Parquet {results[n]['raw_parquet_mb']:.0f} MB, "
                                                     f"{results[n]['warehouse_mb'] / results[n]['raw_parquet_mb']:.1f}x)" for n in sizes) + " |")
    if len(sizes) >= 2:
        a, b = sizes[-2], sizes[-1]
        print(f"\nGrowth {a:,} -> {b:,} customers ({b / a:.0f}x): " + ", ".join(
            f"{name} {results[b]['stages'][name]['seconds'] / max(results[a]['stages'][name]['seconds'], 1e-9):.1f}x" for name in stages))
    last = results[sizes[-1]]["stages"]
    if "features" in last and "floor" in last:
        print(f"features / floor at {sizes[-1]:,}: {last['features']['seconds'] / last['floor']['seconds']:.1f}x")
    print(f"\nFigures also in {work / 'scale_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
