"""Churn calibration on seasonal data: which out-of-time windows should the Platt fit use?

    python benchmarks/seasonal_calibration.py                     # 100,000 synthetic customers, 3 years (about 1 minute)
    python benchmarks/seasonal_calibration.py --db <warehouse>    # any warehouse with clean.transactions

``models/churn`` Platt-calibrates its champion on the windows at t, t - 30 and t - 60 days (``CALIBRATION_OFFSETS_DAYS``),
and the model of partition t scores at s = t + H. When purchases are seasonal those windows are another season than
(s, s + H]. This benchmark scores BG/NBD's P(purchase in H), fitted on the histories at s (no training, so cheap at
every cutoff), at several scoring cutoffs s, calibrated six ways:

* not at all;
* on t, t - 30 and t - 60 days (what the pipeline serves);
* on s - 365 days alone (the same season a year earlier; its labels end at s - 275, before t);
* on s - 395, s - 365 and s - 335 days;
* on the served windows and s - 365 together;
* guarded: on the served windows only where a fit on t - 30 and t - 60 beat no calibration on the window t.

It prints the test Brier at s, the expected calibration error and the mean prediction against the purchase rate.
Without ``--db`` it generates the synthetic data (``customer-assets generate``: December peak, weekly cycle) and
ingests it into ``data/benchmarks/seasonal/``.
"""

import argparse
import os
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

DEFAULT_CUTOFFS = "2022-06-01,2022-08-01,2022-10-01,2022-12-01,2023-02-01,2023-04-01,2023-06-01,2023-08-01,2023-10-01"


def prepare(customers: int, workdir: Path, yearly_amplitude: float | None = None) -> Path:
    """Generate (seed 1, 3 years from 2021-01-01) and ingest synthetic data; returns the warehouse.

    ``yearly_amplitude`` overrides the generator's December peak (0 = no yearly cycle; kept in its own files)."""
    from customer_assets.cli import Runner
    from customer_assets.generate import COLUMNS, Truth, generate
    from customer_assets.jobs import INGEST_SELECTION

    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{customers}" if yearly_amplitude is None else f"{customers}_yearly{yearly_amplitude:g}"
    src, db = workdir / f"synthetic_{tag}.csv", workdir / f"warehouse_{tag}.duckdb"
    if not db.exists():
        generate(customers, 3.0, 1, str(src), truth=None if yearly_amplitude is None else Truth(yearly_amplitude=yearly_amplitude))
        os.environ.update({"CUSTOMER_ASSETS_SOURCE": str(src), "CUSTOMER_ASSETS_COLUMNS": COLUMNS,
                           "CUSTOMER_ASSETS_DB": str(db)})
        Runner(str(db)).run(INGEST_SELECTION, label="ingest")
    return db


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="a warehouse with clean.transactions (default: generate synthetic data)")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--cutoffs", default=DEFAULT_CUTOFFS, help="comma-separated scoring cutoffs s")
    args = ap.parse_args(argv)
    db = Path(args.db) if args.db else prepare(args.customers, DATA_DIR / "benchmarks" / "seasonal")
    h, day = HORIZON_DAYS, timedelta(days=1)
    cache: dict[date, tuple[np.ndarray, np.ndarray]] = {}
    with duckdb.connect(str(db), read_only=True) as conn:
        _, end = F.data_bounds(conn)

        def window(c: date) -> tuple[np.ndarray, np.ndarray]:  # (BG/NBD P(purchase in H) at c, labels of (c, c + H])
            if c not in cache:
                f = C.add_bgnbd_features(F.compute_features(conn, c, h, end), h)
                cache[c] = f["bg_p_purchase"].to_numpy(), f["label_purchase"].astype(float).to_numpy()
            return cache[c]

        def platt(cutoffs: list[date]) -> tuple[float, float]:
            return L.fit_platt(np.concatenate([window(c)[0] for c in cutoffs]), np.concatenate([window(c)[1] for c in cutoffs]))

        def brier_at(c: date, ab: tuple[float, float] | None) -> float:
            p, y = window(c)
            return M.brier(y, p if ab is None else L.apply_platt(p, *ab))

        options = {
            "uncalibrated": lambda s, t: None,
            "t, t - 30, t - 60 (served)": lambda s, t: [t, t - 30 * day, t - 60 * day],
            "s - 365": lambda s, t: [s - 365 * day],
            "s - 395, s - 365, s - 335": lambda s, t: [s - 395 * day, s - 365 * day, s - 335 * day],
            "served + s - 365": lambda s, t: [t, t - 30 * day, t - 60 * day, s - 365 * day],
            # guarded: the served windows only if a Platt fit on t - 30 and t - 60 beat no calibration on the window t
            "guarded": lambda s, t: ([t, t - 30 * day, t - 60 * day]
                                     if brier_at(t, platt([t - 30 * day, t - 60 * day])) < brier_at(t, None)
                                     else None),
        }
        print(f"\n## Churn calibration windows on {db.name}: BG/NBD's P(purchase in {h} d) scored at s, t = s - {h} d\n")
        print("Test Brier at s (expected calibration error; mean prediction). **Bold**: the lowest Brier.\n")
        print("| s | purchase rate | " + " | ".join(options) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in options) + " |")
        briers = {name: [] for name in options}
        for s in [date.fromisoformat(c) for c in args.cutoffs.split(",") if c]:
            if s + h * day > end:
                raise SystemExit(f"scoring cutoff {s} needs labels to {s + h * day}; the data end {end}")
            t = s - h * day
            p, y = window(s)
            cells = []
            for name, pick in options.items():
                windows = pick(s, t)
                q = p if windows is None else L.apply_platt(p, *platt(windows))
                b = M.brier(y, q)
                briers[name].append(b)
                cells.append((b, f"{b:.4f} ({M.expected_calibration_error(y, q):.3f}; {q.mean():.3f})"))
            best = min(b for b, _ in cells)
            print(f"| {s} | {y.mean():.3f} | " + " | ".join(f"**{c}**" if b == best else c for b, c in cells) + " |", flush=True)
        print("| mean Brier | – | " + " | ".join(f"{np.mean(v):.4f}" for v in briers.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
