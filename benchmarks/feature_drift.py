"""The cost of the check features_like_training: what scoring spends comparing its customers with the models' profiles.

    python benchmarks/feature_drift.py --rows 1000000

It builds a synthetic feature frame with every column the four models may read (heavy-tailed spend, counts with
many ties, a tenth of some columns missing), profiles it as training does (``drift.feature_profile``, on the
``--profile-rows`` customers a model of a large warehouse trains on per cutoff), shifts it, and times
``drift.compare_models`` for four models that read every feature, as ``scores/scored_customers`` runs it. Models of
one partition share each feature's profile (all are profiled on the customers at t), and a shared one is compared
once; ``--distinct-profiles`` gives each model its own, the cost of four partitions' models (kept models, say).
It prints the seconds of each step, the peak memory and the largest PSI found.
"""

import argparse
import resource
import sys
import time

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="customers scored")
    parser.add_argument("--profile-rows", type=int, default=50_000, help="customers profiled at training")
    parser.add_argument("--shift", type=float, default=0.1, help="how far the scored customers moved")
    parser.add_argument("--distinct-profiles", action="store_true", help="a profile of its own for each model")
    args = parser.parse_args(argv)

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
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"features: {len(features)}; models compared: 4; comparisons: {len(table)}")
    print(f"profile of {args.profile_rows:,} customers: {t_profile:.3f} s")
    print(f"compare {args.rows:,} scored customers with them, 4 models, "
          f"{'distinct profiles' if args.distinct_profiles else 'one shared profile'}: {t_compare:.2f} s")
    print(f"largest PSI {table['psi'].max():.3f}; comparisons past the limits: {len(past)}")
    print(f"peak RSS of the process: {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
