"""The learned champions on seasonal data: what the same-season correction does, and whether its check chooses well.

    python benchmarks/seasonal_champions.py --without-bgnbd     # 100,000 synthetic customers, 3 years (5 to 15 minutes)
    python benchmarks/seasonal_champions.py --yearly-amplitude 0 --same-season assume_seasonal   # the same, no seasons
    python benchmarks/seasonal_champions.py --db <warehouse>    # any warehouse with clean.transactions

The models of partition t score at s = t + H. They are validated and calibrated on windows that end by t + H, which on
seasonal data are another season than the scored window (s, s + H]. ``models/churn`` and ``models/spend`` therefore
correct to the scoring window's season a year back, b = s - 365 days (a Platt fit there; the spend level ratio
Σ actual / Σ predicted there), where the same correction two years back (from b - 365, applied at b) passes its check
(``same_season_churn``, ``same_season_spend`` in models/logic.py; ``--same-season`` sets the mode).

At each scoring cutoff s this trains the two models of partition t = s - H exactly as the assets do, and prints the
check's figures and the test figures at s:

* churn: the test Brier uncalibrated, with the recent windows' Platt fit (t, t - 30, t - 60 pooled: what is served
  without the correction), as served and with the Platt fit on b always;
* spend: the test R² and aggregate error without the ratio, as served, and with the ratio of b always.

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


def _spec(rec: L.ModelRecord) -> dict:
    return {"family": rec.params["family"], "stack": (rec.params["stacked_cutoffs"], rec.params["stack_step_days"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="a warehouse with clean.transactions (default: the synthetic seasonal warehouse)")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--cutoffs", default=DEFAULT_CUTOFFS, help="comma-separated scoring cutoffs s")
    ap.add_argument("--without-bgnbd", action="store_true",
                    help="leave BG/NBD alone out of the candidates, so a learned family wins (on data generated the "
                         "way BG/NBD assumes, BG/NBD itself usually does)")
    ap.add_argument("--yearly-amplitude", type=float,
                    help="generate the synthetic data with this yearly amplitude instead (0 = no seasons: what the "
                         "correction's check must not switch on for)")
    ap.add_argument("--same-season", default="checked", choices=sorted(L.SEASON_MODES),
                    help="the models' same_season mode (default: checked, as the assets)")
    args = ap.parse_args(argv)
    if args.without_bgnbd:
        L.CHURN_FAMILIES = tuple(f for f in L.CHURN_FAMILIES if f != "bgnbd")
        L.SPEND_FAMILIES = tuple(f for f in L.SPEND_FAMILIES if f != "bgnbd")
    db = Path(args.db) if args.db else prepare(args.customers, DATA_DIR / "benchmarks" / "seasonal", args.yearly_amplitude)
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
            data = L.TrainingData(s - h * day, h, start, load, same_season=args.same_season)
            b = L.season_windows(data)[0]
            test = C.add_bgnbd_features(F.compute_features(conn, s, h, end), h)
            y_buy, y_spend = test["label_purchase"].astype(float).to_numpy(), test["label_spend"].astype(float).to_numpy()

            churn = L.train_churn(data)
            cal, season = churn.calibration, churn.calibration["same_season"]
            raw = L._raw_predict(churn, test, h)
            recent = cal.get("recent", cal)
            always = (cal["a"], cal["b"]) if season["applied"] else None
            if always is None and L._predictable(data, b):
                frame, past = L.out_of_time_champion("churn", data, _spec(churn), b, L.CHURN_ENSEMBLES)
                always = L.fit_platt(past, frame["label_purchase"].astype(float).to_numpy())
            churn_rows.append((s, churn.params["family"], season["applied"], season.get("check_brier_recent"),
                               season.get("check_brier_corrected"), y_buy.mean(), M.brier(y_buy, raw),
                               M.brier(y_buy, L.apply_platt(raw, recent["a"], recent["b"])),
                               M.brier(y_buy, L.predict_purchase(churn, test, h)),
                               None if always is None else M.brier(y_buy, L.apply_platt(raw, *always))))

            spend = L.train_spend(data)
            season, ratio = spend.calibration["same_season"], spend.calibration["season_ratio"]
            served = L.predict_spend(spend, test, h)
            plain = served / ratio
            always = ratio if season["applied"] else None
            if always is None and L._predictable(data, b):
                frame, own = L.out_of_time_champion("spend", data, _spec(spend), b, L.SPEND_ENSEMBLES)
                past = L.blend_with_bgnbd(own, frame, spend.calibration["blend_bgnbd_weight"])
                always = L.level_ratio(frame["label_spend"].astype(float).to_numpy(), past)
            spend_rows.append((s, spend.params["family"], spend.calibration["blend_bgnbd_weight"], season["applied"],
                               season.get("check_ratio"), season.get("check_aggregate_error"),
                               season.get("check_aggregate_error_corrected"), ratio, M.r2(y_spend, plain), M.aggregate_error(y_spend, plain),
                               M.r2(y_spend, served), M.aggregate_error(y_spend, served),
                               None if always is None else M.r2(y_spend, always * plain),
                               None if always is None else M.aggregate_error(y_spend, always * plain)))
            print(f"scored at {s}: churn {churn_rows[-1][1]} (same season applied: {churn_rows[-1][2]}), "
                  f"spend {spend_rows[-1][1]} (applied: {spend_rows[-1][3]})", file=sys.stderr, flush=True)

    def f(v, spec):
        return "–" if v is None else format(v, spec)

    print(f"\n## Churn on {db.name}: test Brier at s, the model of partition t = s - {h} d\n")
    print("| s | champion | check at b = s - 365: Brier with the Platt fit of b - H / of b - 365 | same season applied | purchase rate | uncalibrated | "
          "recent Platt (t, t - 30, t - 60) | served | Platt on s - 365 always |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s, fam, applied, c0, c1, rate, b0, b1, b2, b3 in churn_rows:
        print(f"| {s} | {fam} | {f(c0, '.4f')} / {f(c1, '.4f')} | {'yes' if applied else 'no'} | {rate:.3f} | {b0:.4f} | "
              f"{b1:.4f} | {b2:.4f} | {f(b3, '.4f')} |")
    print(f"| mean | – | – | {sum(r[2] for r in churn_rows)} of {len(churn_rows)} | – | {np.mean([r[6] for r in churn_rows]):.4f} | "
          f"{np.mean([r[7] for r in churn_rows]):.4f} | {np.mean([r[8] for r in churn_rows]):.4f} | "
          f"{f(np.mean([r[9] for r in churn_rows]) if all(r[9] is not None for r in churn_rows) else None, '.4f')} |")
    print(f"\n## Spend on {db.name}: test R² and aggregate error at s\n")
    print("| s | champion | BG/NBD weight | check at b = s - 365: ratio of b - 365, aggregate error plain / corrected | "
          "same season applied | served ratio (s - 365) | R² plain / served / ratio always | "
          "aggregate error plain / served / ratio always |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s, fam, w, applied, kg, v0, v1, kb, r0, a0, r1, a1, r2, a2 in spend_rows:
        print(f"| {s} | {fam} | {w} | {f(kg, '.3f')}, {f(v0, '+.1%')} / {f(v1, '+.1%')} | {'yes' if applied else 'no'} | "
              f"{kb:.3f} | {r0:.4f} / {r1:.4f} / {f(r2, '.4f')} | {a0:+.1%} / {a1:+.1%} / {f(a2, '+.1%')} |")
    full = all(r[12] is not None for r in spend_rows)
    print(f"| mean | – | – | – | {sum(r[3] for r in spend_rows)} of {len(spend_rows)} | – | "
          f"{np.mean([r[8] for r in spend_rows]):.4f} / {np.mean([r[10] for r in spend_rows]):.4f} / "
          f"{f(np.mean([r[12] for r in spend_rows]) if full else None, '.4f')} | "
          f"{np.mean([abs(r[9]) for r in spend_rows]):.1%} / {np.mean([abs(r[11]) for r in spend_rows]):.1%} / "
          f"{f(np.mean([abs(r[13]) for r in spend_rows]) if full else None, '.1%')} (means of absolute) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
