"""The learned champions on seasonal data: does the same season a year earlier correct them?

    python benchmarks/seasonal_champions.py                     # 100,000 synthetic customers, 3 years (about 25 minutes)
    python benchmarks/seasonal_champions.py --db <warehouse>    # any warehouse with clean.transactions

The models of partition t score at s = t + H. They are validated and calibrated on windows that end by t + H, which on
seasonal data are another season than the scored window (s, s + H]. ``benchmarks/seasonal_calibration.py`` showed
that for BG/NBD's P(purchase), which needs no training, a Platt fit on the window a year before s (s - 365 days)
beats the served windows t, t - 30, t - 60. This benchmark asks the same of the champions themselves. At each scoring
cutoff s it chooses and fits the churn and spend champions as ``models/churn`` and ``models/spend`` do at t, then
predicts the window s - 365 with the champion's spec fitted on cutoffs whose labels end by then (``out_of_time_champion``,
as the calibration windows are predicted), and prints:

* churn: the test Brier at s uncalibrated, with the served Platt fit (t, t - 30, t - 60 pooled) and with a Platt fit on
  the window s - 365;
* spend: the test R² and aggregate error at s as served, and multiplied by the level ratio of the window s - 365
  (its actual spend over the champion's prediction there, blended the same way).

Without ``--db`` it reuses or generates the synthetic warehouse of ``benchmarks/seasonal_calibration.py``
(``data/benchmarks/seasonal/``: December peak, weekly cycle).
"""

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np

from customer_assets.evaluation import metrics as M
from customer_assets.features import logic as F
from customer_assets.models import candidates as C
from customer_assets.models import logic as L
from customer_assets.settings import DATA_DIR, HORIZON_DAYS

sys.path.insert(0, str(Path(__file__).parent))
from seasonal_calibration import DEFAULT_CUTOFFS, prepare  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="a warehouse with clean.transactions (default: the synthetic seasonal warehouse)")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--cutoffs", default=DEFAULT_CUTOFFS, help="comma-separated scoring cutoffs s")
    ap.add_argument("--without-bgnbd", action="store_true",
                    help="leave BG/NBD alone out of the candidates, so a learned family wins (on data generated the "
                         "way BG/NBD assumes, BG/NBD itself usually does)")
    args = ap.parse_args(argv)
    churn_families = tuple(f for f in L.CHURN_FAMILIES if not (args.without_bgnbd and f == "bgnbd"))
    spend_families = tuple(f for f in L.SPEND_FAMILIES if not (args.without_bgnbd and f == "bgnbd"))
    db = Path(args.db) if args.db else prepare(args.customers, DATA_DIR / "benchmarks" / "seasonal")
    h, day = HORIZON_DAYS, timedelta(days=1)
    cache: dict[date, object] = {}
    churn_rows, spend_rows = [], []
    with duckdb.connect(str(db), read_only=True) as conn:
        start, end = F.data_bounds(conn)
        n = F.customer_count(conn, end)
        fraction = min(1.0, L.MAX_ROWS_PER_CUTOFF / max(n, 1))

        def load(c: date):
            if c not in cache:
                cache[c] = C.add_bgnbd_features(F.compute_features(conn, c, h, end, fraction), h)
            return cache[c]

        for s in [date.fromisoformat(c) for c in args.cutoffs.split(",") if c]:
            if s + h * day > end:
                raise SystemExit(f"scoring cutoff {s} needs labels to {s + h * day}; the data end {end}")
            t, back = s - h * day, s - 365 * day
            data = L.TrainingData(t, h, start, load)
            test = C.add_bgnbd_features(F.compute_features(conn, s, h, end), h)
            y_buy, y_spend = test["label_purchase"].astype(float).to_numpy(), test["label_spend"].astype(float).to_numpy()

            # churn: the champion's raw scores at s, calibrated three ways
            sel = L.select_and_fit("churn", data, churn_families, None, L.CHURN_ENSEMBLES)
            raw = test["bg_p_purchase"].to_numpy() if sel["final"] is None else sel["final"].predict(test)
            windows, scores, labels = L.calibration_windows(data, sel)
            served = L.apply_platt(raw, *L.fit_platt(np.concatenate(scores), np.concatenate(labels)))
            past = L.out_of_time_champion("churn", data, sel, back, L.CHURN_ENSEMBLES)
            same = None if past is None else L.apply_platt(raw, *L.fit_platt(past[1], past[0]["label_purchase"].astype(float).to_numpy()))
            churn_rows.append((s, sel["family"], y_buy.mean(), M.brier(y_buy, raw), M.brier(y_buy, served),
                               None if same is None else M.brier(y_buy, same), served.mean(), None if same is None else same.mean()))

            # spend: as served, and times the level ratio of the window a year back
            sel = L.select_and_fit("spend", data, spend_families, None, L.SPEND_ENSEMBLES)
            w = sel["blend_bgnbd_weight"]

            def blended(frame, own, w=w):
                return (1 - w) * np.clip(own, 0, None) + w * frame["bg_expected_value"].to_numpy()

            pred = test["bg_expected_value"].to_numpy() if sel["final"] is None else blended(test, sel["final"].predict(test))
            past = L.out_of_time_champion("spend", data, sel, back, L.SPEND_ENSEMBLES)
            ratio = None
            if past is not None:
                frame, own = past
                past_pred = own if sel["final"] is None else blended(frame, own)
                ratio = frame["label_spend"].astype(float).sum() / past_pred.sum()
            spend_rows.append((s, sel["family"], w, M.r2(y_spend, pred), M.aggregate_error(y_spend, pred), ratio,
                               None if ratio is None else M.r2(y_spend, ratio * pred),
                               None if ratio is None else M.aggregate_error(y_spend, ratio * pred)))
            print(f"scored at {s}: churn {churn_rows[-1][1]}, spend {spend_rows[-1][1]}", file=sys.stderr, flush=True)

    def f(v, spec):
        return "–" if v is None else format(v, spec)

    print(f"\n## Churn on {db.name}: test Brier at s, the champion of partition t = s - {h} d\n")
    print("| s | champion | purchase rate | uncalibrated | served Platt (t, t - 30, t - 60) | Platt on s - 365 | "
          "mean P served / s - 365 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s, fam, rate, b0, b1, b2, m1, m2 in churn_rows:
        print(f"| {s} | {fam} | {rate:.3f} | {b0:.4f} | {b1:.4f} | {f(b2, '.4f')} | {m1:.3f} / {f(m2, '.3f')} |")
    both = [r for r in churn_rows if r[5] is not None]
    print(f"| mean over the {len(both)} cutoffs with a window a year back | – | – | {np.mean([r[3] for r in both]):.4f} | "
          f"{np.mean([r[4] for r in both]):.4f} | {np.mean([r[5] for r in both]):.4f} | – |")
    print(f"\n## Spend on {db.name}: test R² and aggregate error at s, as served and times the level ratio of s - 365\n")
    print("| s | champion | BG/NBD weight | R² served | aggregate error served | ratio at s - 365 | R² x ratio | "
          "aggregate error x ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s, fam, w, r0, a0, k, r1, a1 in spend_rows:
        print(f"| {s} | {fam} | {w} | {r0:.4f} | {a0:+.1%} | {f(k, '.3f')} | {f(r1, '.4f')} | {f(a1, '+.1%')} |")
    both = [r for r in spend_rows if r[5] is not None]
    print(f"| mean over the {len(both)} cutoffs with a window a year back | – | – | {np.mean([r[3] for r in both]):.4f} | "
          f"{np.mean([abs(r[4]) for r in both]):.1%} (mean of absolute) | – | {np.mean([r[6] for r in both]):.4f} | "
          f"{np.mean([abs(r[7]) for r in both]):.1%} (mean of absolute) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
