"""The CLV library peer, run on the same customers: lifetimes' BG/NBD and Pareto/NBD with Gamma-Gamma.

    pip install lifetimes        # not a project dependency: only this check needs it
    python benchmarks/peers.py --cutoff 1998-04-01

lifetimes is unmaintained (its last release, 0.11.3, is from 2020), so the project implements
BG/NBD and Gamma-Gamma itself (customer_assets/models/probabilistic.py, tested against the
published CDNOW parameters). This benchmark fits lifetimes' models on the same customer summaries
(repeat purchase days, recency and tenure in weeks, mean repeat spend) and prints them next to the
project's implementation:

- purchase and spend in the H days after --cutoff, models fitted on data dated up to the cutoff;
  the purchase score is the expected number of purchase days in H (a ranking, so ROC-AUC and
  PR-AUC only: lifetimes has no P(purchase in H) given a customer's history);
- LTV in the 365 days after --ltv-cutoff (default: the last date - 365 days).

Pareto/NBD is the one probabilistic purchase model in lifetimes that the project does not have.
The warehouse is --db (default: the accuracy benchmark's); it is ingested first unless --skip-ingest.
"""

import argparse
import sys
import warnings
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np

from customer_assets.cli import Runner
from customer_assets.evaluation import metrics as M
from customer_assets.features import logic as F
from customer_assets.jobs import INGEST_SELECTION
from customer_assets.models import logic as L
from customer_assets.models import probabilistic as P
from customer_assets.settings import DATA_DIR, HORIZON_DAYS, LTV_HORIZON_DAYS


def systems(x, t_x, T, m, weeks: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(expected purchase days in ``weeks``, expected value) per customer, for every system."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

    bg = P.fit_bgnbd(x, t_x, T)
    gg = P.fit_gamma_gamma(x, m)
    ours = P.bgnbd_expected_purchases(bg, weeks, x, t_x, T)
    out = {"customer-assets BG/NBD + Gamma-Gamma": (ours, ours * P.gamma_gamma_expected_spend(gg, x, m))}
    fit = (x > 0) & (m > 0)
    lgg = GammaGammaFitter().fit(x[fit], m[fit])
    spend = np.asarray(lgg.conditional_expected_average_profit(x, np.where(x > 0, m, 0.0)), dtype=float)
    for name, cls in (("lifetimes BG/NBD + Gamma-Gamma", BetaGeoFitter), ("lifetimes Pareto/NBD + Gamma-Gamma", ParetoNBDFitter)):
        model = cls().fit(x, t_x, T)
        purchases = np.asarray(model.conditional_expected_number_of_purchases_up_to_time(weeks, x, t_x, T), dtype=float)
        out[name] = (purchases, purchases * spend)
    return out


def table(conn, cutoff: date, horizon: int, end: date, purchase: bool) -> None:
    f = F.compute_features(conn, cutoff, horizon, end)
    x, t_x, T, m = L.rfm_weeks(f)
    y_spend = f["label_spend"].astype(float).to_numpy()
    y_buy = f["label_purchase"].astype(float).to_numpy()
    print(f"\n## {horizon} days after {cutoff}, fitted on data up to {cutoff} ({len(f):,} customers)\n")
    print("| system | ROC-AUC | PR-AUC | spend R² | aggregate error | top-10% share | purchase days, expected vs actual |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    days = float(f["label_purchase_days"].sum())
    for name, (purchases, value) in systems(x, t_x, T, m, horizon / L.WEEK).items():
        rank = f"{M.roc_auc(y_buy, purchases):.4f} | {M.pr_auc(y_buy, purchases):.4f}" if purchase else "– | –"
        print(f"| {name} | {rank} | {M.r2(y_spend, value):.4f} | {M.aggregate_error(y_spend, value):+.1%} | "
              f"{M.top_share(y_spend, value):.1%} | {purchases.sum():,.0f} vs {days:,.0f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cutoff", default="1998-04-01", help="scoring cutoff of the 90-day table")
    ap.add_argument("--ltv-cutoff", default="", help="LTV cutoff (default: last date - LTV horizon)")
    ap.add_argument("--db", default=str(DATA_DIR / "benchmarks" / "accuracy.duckdb"))
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args(argv)
    try:
        import lifetimes  # noqa: F401
    except ImportError:
        print("benchmarks/peers.py needs the lifetimes package, which is not a project dependency: "
              "run `pip install lifetimes` in the venv first.", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", module="lifetimes")
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_ingest:
        Runner(args.db).run(INGEST_SELECTION, label="ingest")
    with duckdb.connect(args.db, read_only=True) as conn:
        _, end = F.data_bounds(conn)
        table(conn, date.fromisoformat(args.cutoff), HORIZON_DAYS, end, purchase=True)
        ltv = date.fromisoformat(args.ltv_cutoff) if args.ltv_cutoff else end - timedelta(days=LTV_HORIZON_DAYS)
        table(conn, ltv, LTV_HORIZON_DAYS, end, purchase=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
