"""The cost of the check features_like_training: what scoring spends comparing its customers with the models' profiles.

    python benchmarks/feature_drift.py --rows 1000000

It builds a synthetic feature frame with every column the four models may read (heavy-tailed spend, counts with
many ties, a tenth of some columns missing), profiles it as training does (``drift.feature_profile``, on the
``--profile-rows`` customers a model of a large warehouse trains on per cutoff), shifts it, and times
``drift.compare_models`` for four models that read every feature, as ``scores/scored_customers`` runs it, and
``drift.outside_features``, which names each scored customer's inputs outside the training ranges. Models of
one partition share each feature's profile (all are profiled on the customers at t), and a shared one is compared
once; ``--distinct-profiles`` gives each model its own, the cost of four partitions' models (kept models, say).
It prints the seconds of each step, the peak memory and the largest PSI found.

    python benchmarks/feature_drift.py --chance

prints instead how far two samples of one population (lognormal values) differ by chance, at several pairs of
sizes (profiled, scored): the simulated 99th and 99.9th percentiles of their PSI over ``--draws`` draws (2,000 by
default), the share of
draws above 0.25, the limit the check uses (``drift.psi_limit``) with the share of draws above it, the share of
draws with more than 10% of the scored values outside the profiled range, the limit the check uses for that share
(``drift.outside_limit``) with the share of draws above it, and the share the check would flag
(``drift.drifted``: either limit, the range's being ``drift.outside_limit``).

    python benchmarks/feature_drift.py --ranges data/warehouse.duckdb 1998-06-30

reads a warehouse instead, scored at the given cutoff s, and prints per model input how many of the customers at s
lie outside the narrowest range of the models that scored them: the range of the customers at their partition t
alone (the stored features at t), and the range the check uses, of every row the models were fitted on (their
stacked cutoffs; ``min`` and ``max`` of the stored ``feature_profile``).
"""

import argparse
import json
import resource
import sys
import time

import duckdb
import numpy as np
import pandas as pd

from customer_assets.features.logic import FEATURE_COLUMNS
from customer_assets.models import drift as D
from customer_assets.models.candidates import BG_FEATURES


def synthetic_features(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = {}
    for i, f in enumerate([*FEATURE_COLUMNS, *BG_FEATURES]):
        kind = i % 3
        if kind == 0:  # a count with many ties
            v = rng.poisson(0.8 + shift, rows).astype(float)
        elif kind == 1:  # heavy-tailed money
            v = rng.lognormal(3.0 + shift, 1.2, rows)
        else:  # days, some missing
            v = rng.uniform(0, 400 + 100 * shift, rows)
            v[rng.random(rows) < 0.1] = np.nan
        frame[f] = v
    return pd.DataFrame(frame)


CHANCE_SIZES = ((50, 50), (50, 200), (50, 5000), (200, 200), (200, 2000), (1000, 1000))


def chance(draws: int = 2000, seed: int = 0) -> list[dict]:
    """PSI between two samples of one lognormal population, ``draws`` times per pair of sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for n_then, n_now in CHANCE_SIZES:
        psi, limit, outside, flagged = np.empty(draws), np.empty(draws), np.empty(draws), np.empty(draws)
        out_limit = np.empty(draws)
        for i in range(draws):
            profile = D.feature_profile(pd.DataFrame({"x": rng.lognormal(0, 1, n_then)}), ["x"])
            table = D.compare(profile, pd.DataFrame({"x": rng.lognormal(0, 1, n_now)}))
            row = table.iloc[0]
            psi[i], limit[i] = row["psi"], row["psi_limit"]
            outside[i], out_limit[i] = row["share_below_min"] + row["share_above_max"], row["outside_limit"]
            flagged[i] = len(D.drifted(table))
        out.append({"n_then": n_then, "n_now": n_now, "q99": float(np.quantile(psi, 0.99)),
                    "q999": float(np.quantile(psi, 0.999)), "above_025": float(np.mean(psi > D.PSI_WARN)),
                    "limit": float(np.median(limit)), "above_limit": float(np.mean(psi > limit)),
                    "outside_above_10": float(np.mean(outside > D.OUT_OF_RANGE_WARN)),
                    "outside_limit": float(np.median(out_limit)), "above_outside_limit": float(np.mean(outside > out_limit)),
                    "flagged": float(np.mean(flagged))})
    return out


def range_effect(warehouse: str, cutoff: str) -> pd.DataFrame:
    """Per model input, the customers at ``cutoff`` outside the narrowest range of the supervised models that scored
    them: ``at_t`` (the ranges of the features stored at their partition t) and ``fitted`` (the profiles' ranges, of
    every row the models were fitted on). Only inputs with a customer outside either range."""
    with duckdb.connect(warehouse, read_only=True) as conn:
        scored = conn.execute("SELECT DISTINCT model_cutoff_date FROM scores.scored_customers WHERE cutoff_date = ?",
                              [cutoff]).fetchone()
        if scored is None:
            raise SystemExit(f"scores.scored_customers has no rows at {cutoff}: give a cutoff that was scored")
        (t,) = scored
        profiles = [json.loads(conn.execute(f"SELECT feature_profile FROM models.{m} WHERE cutoff_date = ?", [t]).fetchone()[0])
                    for m in ("churn", "spend", "next_purchase")]
        at_t = conn.execute("SELECT * FROM features.customer_features WHERE cutoff_date = ?", [t]).df()
        now = conn.execute("SELECT * FROM features.customer_features WHERE cutoff_date = ?", [cutoff]).df()
    if at_t.empty or now.empty:
        raise SystemExit(f"features.customer_features has no rows at {t if at_t.empty else cutoff}: materialize that "
                         "partition of features/customer_features first")
    rows = []
    for f, fitted in D.narrowest_ranges(profiles).items():
        if f not in now.columns:
            continue  # BG/NBD's outputs are not stored with the features
        v = now[f].astype(float)
        counts = {"feature": f, "at_t": int(((v < at_t[f].min()) | (v > at_t[f].max())).sum()),
                  "fitted": int(((v < fitted[0]) | (v > fitted[1])).sum())}
        if counts["at_t"] or counts["fitted"]:
            rows.append(counts)
    return pd.DataFrame(rows, columns=["feature", "at_t", "fitted"]).assign(n=len(now), model_partition=str(t))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="customers scored")
    parser.add_argument("--profile-rows", type=int, default=50_000, help="customers profiled at training")
    parser.add_argument("--shift", type=float, default=0.1, help="how far the scored customers moved")
    parser.add_argument("--distinct-profiles", action="store_true", help="a profile of its own for each model")
    parser.add_argument("--chance", action="store_true", help="how far samples of one population differ by chance")
    parser.add_argument("--draws", type=int, default=2000, help="draws per pair of sizes, with --chance")
    parser.add_argument("--ranges", nargs=2, metavar=("WAREHOUSE", "CUTOFF"),
                        help="customers outside the training ranges at t alone and over every fitted row, in a warehouse")
    args = parser.parse_args(argv)
    if args.ranges:
        table = range_effect(*args.ranges)
        n, t = (table[c].iloc[0] for c in ("n", "model_partition")) if len(table) else (0, "-")
        print(f"{args.ranges[1]}, scored with the models of {t}: customers outside the narrowest range of the models, of {n:,}")
        print("| input | the range at t alone | the range of every row fitted on (the check's) |")
        print("| --- | --- | --- |")
        for r in table.itertuples():
            print(f"| {r.feature} | {r.at_t:,} ({r.at_t / r.n:.1%}) | {r.fitted:,} ({r.fitted / r.n:.1%}) |")
        return 0
    if args.chance:
        print(f"PSI between two samples of one lognormal population, {args.draws:,} draws per pair of sizes")
        print("| profiled | scored | PSI: 99th percentile | 99.9th percentile | share above 0.25 | psi_limit | share "
              "above it | share with more than 10% outside the range | outside_limit | share above it | share the check flags |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in chance(args.draws):
            print(f"| {r['n_then']:,} | {r['n_now']:,} | {r['q99']:.3f} | {r['q999']:.3f} | {r['above_025']:.1%} | "
                  f"{r['limit']:.3f} | {r['above_limit']:.2%} | {r['outside_above_10']:.2%} | {r['outside_limit']:.3f} | "
                  f"{r['above_outside_limit']:.2%} | {r['flagged']:.2%} |")
        return 0

    models = ("churn", "spend", "next_purchase", "ltv")
    trains = [synthetic_features(args.profile_rows, seed=1 + (i if args.distinct_profiles else 0)) for i in range(len(models))]
    features = list(trains[0].columns)
    t0 = time.perf_counter()
    profiles = [D.feature_profile(t, features) for t in trains]
    t_profile = (time.perf_counter() - t0) / len(models)
    scored = synthetic_features(args.rows, seed=10, shift=args.shift)
    t0 = time.perf_counter()
    table, _ = D.compare_models({m: (p, "2024-01-01") for m, p in zip(models, profiles, strict=True)}, scored)
    past = D.drifted(table)
    t_compare = time.perf_counter() - t0
    t0 = time.perf_counter()
    outside = D.outside_features(profiles, scored)
    t_outside = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"features: {len(features)}; models compared: 4; comparisons: {len(table)}")
    print(f"profile of {args.profile_rows:,} customers: {t_profile:.3f} s")
    print(f"compare {args.rows:,} scored customers with them, 4 models, "
          f"{'distinct profiles' if args.distinct_profiles else 'one shared profile'}: {t_compare:.2f} s")
    print(f"largest PSI {table['psi'].max():.3f}; comparisons past the limits: {len(past)}")
    print(f"name each scored customer's inputs outside the training ranges: {t_outside:.2f} s "
          f"({outside.notna().mean():.1%} of the customers outside at least one)")
    print(f"peak RSS of the process: {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
