"""Currency benchmark: the same CDNOW customers with their spend in other currencies.

    python benchmarks/currency.py                    # about a minute on 2 cores
    python benchmarks/currency.py --skip-ingest      # reuse data/benchmarks/accuracy.duckdb's clean rows

Every amount is multiplied by a currency factor (0.01: cents; 150: yen; 16,000: rupiah; 25,000: dong). A model
that does not depend on the currency gives the same customers the same forecasts, divided back by the factor.

1. Gamma-Gamma (``models/probabilistic.py``) on the repeat buyers at 1997-09-30: p, q, v / factor and the mean
   expected spend per purchase / factor, and the same fitted on the raw amounts (the L-BFGS-B step of the project before
   2026-11-24, with the fit from (1, 1, 1) that the project starts from).
2. The spend model's learned families, as the pipeline fits them (Tweedie, the money features and the label all in
   the currency): fitted on the features at 1997-10-03 with the labels of the next 90 days, early-stopped at
   1998-01-01, tested at 1998-04-01 against the spend of the 90 days after. The test R², the total's error, and how
   far the forecasts of the factor's model are from those of the dollar model (the largest ratio, per customer).
"""

import argparse
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy import optimize

from customer_assets.cli import Runner
from customer_assets.evaluation import metrics as M
from customer_assets.features import logic as F
from customer_assets.jobs import INGEST_SELECTION
from customer_assets.models import candidates as C
from customer_assets.models import logic as L
from customer_assets.models import probabilistic as P
from customer_assets.settings import DATA_DIR

FACTORS = (1.0, 0.01, 150.0, 16_000.0, 25_000.0)  # dollars first: the others are compared with them
TRAIN, STOP, TEST = date(1997, 10, 3), date(1998, 1, 1), date(1998, 4, 1)
GG_CUTOFF = date(1997, 9, 30)


def raw_fit(x: np.ndarray, m: np.ndarray) -> tuple[float, float, float]:
    """Gamma-Gamma fitted on the amounts as they are, from (1, 1, 1): the project's fit before 2026-11-24."""
    keep = (x > 0) & (m > 0)

    def nll(logp):
        p, q, v = np.exp(np.clip(logp, -20, 20))
        val = -float(np.sum(P.gamma_gamma_log_likelihood(p, q, v, x[keep], m[keep])))
        return val if np.isfinite(val) else 1e300

    res = optimize.minimize(nll, np.zeros(3), method="L-BFGS-B")
    return tuple(float(v) for v in np.exp(res.x))


def in_currency(frame: pd.DataFrame, factor: float) -> pd.DataFrame:
    out = frame.copy()
    money = [c for c in out.columns if any(w in c for w in ("spend", "monetary", "amount", "bg_expected_value"))]
    out[money] = out[money] * factor
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=str(DATA_DIR / "benchmarks" / "accuracy.duckdb"))
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_ingest:
        Runner(args.db).run(INGEST_SELECTION, label="ingest")
    with duckdb.connect(args.db, read_only=True) as conn:
        _, end = F.data_bounds(conn)
        # what the pipeline fits Gamma-Gamma on: repeat purchase days and their mean spend, from the features
        history = F.compute_features(conn, GG_CUTOFF, 90, end, 1.0)
        frames = {c: C.add_bgnbd_features(F.compute_features(conn, c, 90, end, 1.0), 90) for c in (TRAIN, STOP, TEST)}
    x, m = history["frequency"].to_numpy(float), history["repeat_monetary_mean"].to_numpy(float)

    print(f"\n## Gamma-Gamma on the repeat buyers at {GG_CUTOFF}, in each currency (amounts / factor)\n")
    print("| factor | p | q | v / factor | mean expected spend / factor | on the raw amounts: p | q | v / factor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for factor in FACTORS:
        fit = P.fit_gamma_gamma(x, m * factor)
        mean = float(np.mean(P.gamma_gamma_expected_spend(fit, x, m * factor))) / factor
        rp, rq, rv = raw_fit(x, m * factor)
        print(f"| {factor:,g} | {fit.p:.4f} | {fit.q:.4f} | {fit.v / factor:.4f} | {mean:.4f} | {rp:.4f} | {rq:.4f} | "
              f"{rv / factor:.4f} |")

    label_fn, objective, _ = L.task_spec("spend", 90)
    actual = np.clip(frames[TEST]["label_spend"].to_numpy(float), 0, None)
    print(f"\n## Spend in 90 days: fitted at {TRAIN}, early-stopped at {STOP}, tested at {TEST} (forecasts / factor)\n")
    print("| family | factor | rounds | test R² | total off by | largest ratio to the dollar model's forecast |")
    print("| --- | --- | --- | --- | --- | --- |")
    for family in ("xgboost", "xgboost+bgnbd", "lightgbm+bgnbd"):
        dollars = None
        for factor in FACTORS:
            train, stop, test = (in_currency(frames[c], factor) for c in (TRAIN, STOP, TEST))
            fitted = L._fit_family(family, objective, train, stop, label_fn)
            pred = fitted.predict(test) / factor
            if factor == 1.0:
                dollars = pred
            ratio = "–" if dollars is None or factor == 1.0 else f"{float(np.max(np.maximum(pred / dollars, dollars / pred))):.3f}"
            print(f"| {family} | {factor:,g} | {fitted.rounds} | {M.r2(actual, pred):.4f} | "
                  f"{pred.sum() / actual.sum() - 1:+.1%} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
