"""Accuracy benchmark: the champion against every baseline, out of time, with paired bootstrap intervals.

    python benchmarks/accuracy.py --cutoff 1998-04-01
    python benchmarks/accuracy.py --cutoff 1998-04-01 --rolling 1998-01-01,1998-02-01,1998-03-01,1998-04-01
    python benchmarks/accuracy.py --report-only ...   # print again from the warehouse, without materializing

For each scoring cutoff s it materializes (in process, into its own warehouse under
data/benchmarks/ unless --db is given) the models of partition t = s - H, trained on data
dated up to s only, then ``evaluation/backtest`` for t, which scores every customer at s and
compares with the purchases of (s, s + H]. The LTV check materializes the LTV model that serves
--ltv-cutoff c (default: the last date - 365 days), that of partition c - H, and ``evaluation/ltv_backtest`` at c,
which also refits BG/NBD + Gamma-Gamma on the histories at c (the column "BG/NBD + GG"). The
figures printed are read back from the evaluation tables in the warehouse.
"""

import argparse
import sys
from datetime import date, timedelta
from importlib.metadata import version
from pathlib import Path

import duckdb
import pandas as pd

from customer_assets.cli import Runner
from customer_assets.evaluation.logic import ONE_TIME_TASK, significantly_worse
from customer_assets.jobs import INGEST_SELECTION
from customer_assets.settings import DATA_DIR, HORIZON_DAYS, LTV_HORIZON_DAYS

TRAIN = "features/calibration_transactions features/holdout_transactions features/customer_features models/churn models/spend models/ltv models/next_purchase"

# metric, task, target, best peer (DESIGN.md / issue 3), better direction
TARGETS = [
    ("ROC-AUC (purchase in 90 d)", "purchase", "roc_auc", ">= 0.850", "0.840", 1),
    ("PR-AUC", "purchase", "pr_auc", ">= 0.555", "0.544", 1),
    ("Brier", "purchase", "brier", "<= 0.0875", "0.0884", -1),
    ("spend R2", "spend", "r2", ">= 0.54", "0.519", 1),
    ("aggregate error", "spend", "aggregate_error", "|x| <= 5%", "+1% to +15%", 0),
    ("top-10% revenue share", "spend", "top10_share", ">= 63%", "62.0%", 1),
]
LTV_TARGETS = [
    ("LTV R2", "r2", ">= 0.45", "0.41"),
    ("LTV aggregate error", "aggregate_error", "|x| <= 8%", "-17%"),
    ("LTV top-10% revenue share", "top10_share", ">= 50%", "46.8%"),
]
# the libraries the figures depend on (pinned in constraints.txt)
LIBRARIES = ("xgboost", "lightgbm", "scikit-learn", "scipy", "numpy", "pandas", "duckdb")
BASELINES = {"purchase": ["bgnbd", "seed_xgboost", "neg_recency", "frequency"],
             "spend": ["bgnbd_gamma_gamma", "seed_xgboost", "last_h_spend"]}


def fmt(metric: str, v) -> str:
    if v is None or v != v:
        return "–"
    if metric in ("aggregate_error",):
        return f"{v:+.1%}"
    if metric in ("top10_share",):
        return f"{v:.1%}"
    return f"{v:.4f}" if metric == "brier" else f"{v:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cutoff", default="1998-04-01", help="scoring cutoff s (models trained at s - H)")
    ap.add_argument("--rolling", default="", help="comma-separated scoring cutoffs for the rolling backtest")
    ap.add_argument("--ltv-cutoff", default="", help="LTV check cutoff (default: last date - LTV horizon)")
    ap.add_argument("--db", default=str(DATA_DIR / "benchmarks" / "accuracy.duckdb"))
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="materialize nothing: print the tables from the evaluation tables already in --db")
    args = ap.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    scoring = [args.cutoff] + [c for c in args.rolling.split(",") if c and c != args.cutoff]
    runner = Runner(args.db, steps=(0 if args.skip_ingest else 1) + 2 * len(scoring) + 2)
    if not args.skip_ingest and not args.report_only:
        runner.run(INGEST_SELECTION, label="ingest")
    ltv_cutoff = args.ltv_cutoff or (date.fromisoformat(runner.last_date()) - timedelta(days=LTV_HORIZON_DAYS)).isoformat()
    if not args.report_only:
        for s in scoring:
            t = (date.fromisoformat(s) - timedelta(days=HORIZON_DAYS)).isoformat()
            runner.run(TRAIN, partition_key=t, label=f"models of partition {t} (data up to {s})")
            runner.run("evaluation/backtest", partition_key=t, label=f"backtest at {s}")
        ltv_model = (date.fromisoformat(ltv_cutoff) - timedelta(days=HORIZON_DAYS)).isoformat()  # serves ltv_cutoff
        runner.run("features/calibration_transactions features/holdout_transactions features/customer_features models/ltv",
                   partition_key=ltv_model, label=f"LTV model of partition {ltv_model} (serves {ltv_cutoff})")
        runner.run("evaluation/ltv_backtest", partition_key=ltv_cutoff, label=f"LTV backtest at {ltv_cutoff}")

    with duckdb.connect(args.db, read_only=True) as conn:
        m = conn.execute("SELECT * FROM evaluation.backtest_metrics").df()
        ltv = conn.execute("SELECT * FROM evaluation.ltv_metrics WHERE cutoff_date = ?", [ltv_cutoff]).df()
    t_main = pd.Timestamp(date.fromisoformat(args.cutoff) - timedelta(days=HORIZON_DAYS))
    cur = m[m.cutoff_date == t_main]
    if cur.empty or ltv.empty:
        missing = f"the backtest of partition {t_main.date()}" if cur.empty else f"the LTV backtest at {ltv_cutoff}"
        print(f"{args.db} has no rows for {missing}: run without --report-only first.", file=sys.stderr)
        return 1
    n = int(cur.n_customers.iloc[0])
    print(f"\nCDNOW-style backtest: models trained on data up to {args.cutoff} (partition {t_main.date()}), scored at "
          f"{args.cutoff}, {n:,} customers, truth = purchases in the next {HORIZON_DAYS} days\n")
    print("| metric | target | best peer | customer-assets | BG/NBD + GG | seed XGBoost | naive | champion − best baseline [95% CI] |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, task, metric, target, peer, _ in TARGETS:
        v = cur.set_index(["task", "system", "metric"])["value"]
        champ = v.get((task, "champion", metric))
        bg = v.get((task, BASELINES[task][0], metric))
        seed = v.get((task, "seed_xgboost", metric))
        naive_sys = "neg_recency" if task == "purchase" else "last_h_spend"
        naive = v.get((task, naive_sys, metric))
        rows = cur[(cur.task == task) & (cur.metric == metric) & (cur.system != "champion") & cur.diff_ci_low.notna()]
        if len(rows):
            best = rows.loc[rows.value.idxmax() if metric not in ("brier", "aggregate_error") else rows.value.abs().idxmin()]
            ci = f"{best.diff_champion_minus_system:+.4f} [{best.diff_ci_low:+.4f}, {best.diff_ci_high:+.4f}] vs {best.system}"
        else:
            ci = "–"
        print(f"| {label} | {target} | {peer} | {fmt(metric, champ)} | {fmt(metric, bg)} | {fmt(metric, seed)} | "
              f"{fmt(metric, naive)} | {ci} |")
    nxt = cur[(cur.task == "next_purchase") & (cur.metric == "c_index")].set_index("system")
    if len(nxt):
        r = nxt.loc["recency"]
        print(f"| concordance index (days to next purchase) | – | – | {nxt.value['champion']:.3f} | – | – | {r.value:.3f} | "
              f"{r.diff_champion_minus_system:+.4f} [{r.diff_ci_low:+.4f}, {r.diff_ci_high:+.4f}] vs recency |")
    lv = ltv.set_index(["system", "metric"])["value"]
    for label, metric, target, peer in LTV_TARGETS:
        print(f"| {label} ({LTV_HORIZON_DAYS} d from {ltv_cutoff}) | {target} | {peer} | {fmt(metric, lv.get(('champion', metric)))} "
              f"| {fmt(metric, lv.get(('bgnbd_gamma_gamma', metric)))} | – | {fmt(metric, lv.get(('last_365d_spend', metric)))} | – |")
    one = cur[cur.task == ONE_TIME_TASK]
    if len(one):
        ov = one.set_index(["system", "metric"])["value"]
        print(f"\nOne-time buyers at {args.cutoff} (a single purchase day by then; {int(one.n_customers.iloc[0]):,} customers): "
              "their P(purchase in 90 d) on their own\n")
        print("| system | mean P | observed rate | Brier | expected calibration error | ROC-AUC among them |")
        print("| --- | --- | --- | --- | --- | --- |")
        for system, label in (("champion", "customer-assets"), ("bgnbd", "BG/NBD"), ("seed_xgboost", "seed XGBoost")):
            print(f"| {label} | " + " | ".join(f"{ov.get((system, k), float('nan')):.4f}"
                                             for k in ("mean_predicted", "observed_rate", "brier", "ece", "roc_auc")) + " |")
    by_range = cur[cur.task.str.endswith("_training_range")]
    if len(by_range):
        rv = by_range.set_index(["task", "system", "metric"])["value"]
        print(f"\nInside and outside the training ranges at {args.cutoff} (scores.scored_customers.outside_training_range: "
              "outside the range of some input of the customers the models learned from)\n")
        print("| customers | system | mean P | observed rate | Brier | ROC-AUC | spend: mean predicted | mean actual | "
              "aggregate error | R² |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for group in ("inside", "outside"):
            task = f"purchase_{group}_training_range"
            if task not in set(by_range.task):
                print(f"| {group}: none | – | – | – | – | – | – | – | – | – |")
                continue
            count = int(by_range[by_range.task == task].n_customers.iloc[0])
            for system, spend_system, label in (("champion", "champion", "customer-assets"), ("bgnbd", "bgnbd_gamma_gamma", "BG/NBD + GG")):
                p = [rv.get((task, system, k), float("nan")) for k in ("mean_predicted", "observed_rate", "brier", "roc_auc")]
                sp = [rv.get((f"spend_{group}_training_range", spend_system, k), float("nan"))
                      for k in ("mean_predicted", "mean_actual", "aggregate_error", "r2")]
                print(f"| {group}: {count:,} | {label} | " + " | ".join(f"{x:.4f}" for x in p)
                      + f" | {sp[0]:.2f} | {sp[1]:.2f} | {sp[2]:+.1%} | {sp[3]:.4f} |")
    ts = [pd.Timestamp(date.fromisoformat(s) - timedelta(days=HORIZON_DAYS)) for s in scoring]
    if len(scoring) > 1:
        roll = m[m.cutoff_date.isin(ts)]
        print(f"\nRolling backtest over scoring cutoffs {', '.join(sorted(scoring))} (mean ± sd across cutoffs)\n")
        print("| metric | customer-assets | BG/NBD + GG | seed XGBoost | naive | champion wins |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, task, metric, _, _, direction in TARGETS:
            def stat(system, task=task, metric=metric):
                x = roll[(roll.task == task) & (roll.system == system) & (roll.metric == metric)].set_index("cutoff_date")["value"]
                return x

            champ = stat("champion")
            others = {s: stat(s) for s in (BASELINES[task][0], "seed_xgboost", "neg_recency" if task == "purchase" else "last_h_spend")}
            cells = []
            for x in [champ, *others.values()]:
                cells.append(f"{fmt(metric, x.mean())} ± {x.std():.3f}" if len(x) else "–")
            best_other = pd.concat(others.values(), axis=1)
            if direction == 1:
                wins = int((champ > best_other.max(axis=1)).sum())
            elif direction == -1:
                wins = int((champ < best_other.min(axis=1)).sum())
            else:
                wins = int((champ.abs() < best_other.abs().min(axis=1)).sum())
            print(f"| {label} | " + " | ".join(cells) + f" | {wins}/{len(champ)} |")
    print("\nThe backtest's check (champion significantly worse than a baseline: paired 95% interval on the losing side):\n")
    for t, rows in m[m.cutoff_date.isin(ts)].groupby("cutoff_date"):
        worse = significantly_worse(rows)
        found = "; ".join(f"{r.task} {r.metric} vs {r.system} {r.diff_champion_minus_system:+.4f} "
                          f"[{r.diff_ci_low:+.4f}, {r.diff_ci_high:+.4f}]" for r in worse.itertuples())
        print(f"- scored at {(t + pd.Timedelta(days=HORIZON_DAYS)).date()}: {found or 'passes'}")
    print(f"\nWarehouse: {args.db} (tables evaluation.backtest_metrics, evaluation.reliability, evaluation.ltv_metrics)")
    print("Libraries: " + ", ".join(f"{name} {version(name)}" for name in LIBRARIES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
