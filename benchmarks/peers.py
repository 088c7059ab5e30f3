"""The CLV library peers, run on the same customers: lifetimes and PyMC-Marketing.

    pip install -c constraints.txt lifetimes pymc-marketing==0.19.2   # not project dependencies
    python benchmarks/peers.py --cutoff 1998-04-01

lifetimes is unmaintained (its last release, 0.11.3, is from 2020) and PyMC-Marketing pulls in
PyMC and PyTensor (which compiles C code at run time), so the project implements BG/NBD and
Gamma-Gamma itself (customer_assets/models/probabilistic.py, tested against the published CDNOW
parameters). This benchmark fits the libraries' models on the same customer summaries (repeat
purchase days, recency and tenure in weeks, mean repeat spend) and prints them next to the
project's implementation and, when benchmarks/accuracy.py has scored the same cutoff into the same
warehouse, next to the project's champion:

- purchase and spend in the H days after --cutoff, models fitted on data dated up to the cutoff;
  each system is ranked by its expected number of purchase days in H, and, where the library
  computes it for a customer's history, by its P(purchase in H), which also gives a Brier score
  and the calibration on one-time buyers (lifetimes has no such method; PyMC-Marketing has it for
  BG/NBD and Pareto/NBD, not for MBG/NBD);
- LTV in the 365 days after --ltv-cutoff (default: the last date - 365 days).

A summary follows (one column per cutoff of --cutoff and --rolling): the champion against the best library row, with the
champion-minus-row difference and its paired bootstrap 95% interval over customers. The champion's per-customer
predictions for it are recomputed from the models that served the cutoff, and used only when they reproduce
evaluation.backtest_metrics.

Either library may be missing: its rows are left out, and the run says so. PyMC-Marketing is fitted
by MAP (--pymc-method map, seconds) or, as is its default, by NUTS sampling (--pymc-method mcmc: minutes
for BG/NBD and MBG/NBD, more than 70 minutes for Pareto/NBD on 2 cores), and predicts with the posterior mean. The warehouse is --db (default: the accuracy
benchmark's); it is ingested first unless --skip-ingest.
"""

import argparse
import sys
import time
import warnings
from datetime import date, timedelta
from importlib.metadata import version
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from customer_assets.cli import Runner
from customer_assets.evaluation import metrics as M
from customer_assets.features import logic as F
from customer_assets.jobs import INGEST_SELECTION
from customer_assets.models import logic as L
from customer_assets.models import probabilistic as P
from customer_assets.settings import DATA_DIR, HORIZON_DAYS, LTV_HORIZON_DAYS

# (expected purchase days in the window, P(purchase in the window) or None, expected spend in the window)
System = tuple[np.ndarray, np.ndarray | None, np.ndarray]


def ours(x, t_x, T, m, weeks: float) -> dict[str, System]:
    bg = P.fit_bgnbd(x, t_x, T)
    gg = P.fit_gamma_gamma(x, m)
    purchases = P.bgnbd_expected_purchases(bg, weeks, x, t_x, T)
    return {"customer-assets BG/NBD + Gamma-Gamma": (purchases, P.bgnbd_probability_of_purchase(bg, weeks, x, t_x, T),
                                                     purchases * P.gamma_gamma_expected_spend(gg, x, m))}


def lifetimes_systems(x, t_x, T, m, weeks: float) -> dict[str, System]:
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

    fit = (x > 0) & (m > 0)
    lgg = GammaGammaFitter().fit(x[fit], m[fit])
    spend = np.asarray(lgg.conditional_expected_average_profit(x, np.where(x > 0, m, 0.0)), dtype=float)
    out = {}
    for name, cls in (("lifetimes BG/NBD + Gamma-Gamma", BetaGeoFitter), ("lifetimes Pareto/NBD + Gamma-Gamma", ParetoNBDFitter)):
        model = cls().fit(x, t_x, T)
        purchases = np.asarray(model.conditional_expected_number_of_purchases_up_to_time(weeks, x, t_x, T), dtype=float)
        out[name] = (purchases, None, purchases * spend)
    return out


def _posterior_mean(draws) -> np.ndarray:
    return np.asarray(draws.mean(("chain", "draw")).values, dtype=float)


def pymc_marketing_systems(x, t_x, T, m, weeks: float, method: str) -> dict[str, System]:
    from pymc_marketing import clv

    kwargs = {"method": "map"} if method == "map" else {"method": "mcmc", "random_seed": 1, "progressbar": False}
    d = pd.DataFrame({"customer_id": np.arange(len(x)), "frequency": x, "recency": t_x, "T": T})
    money = d.assign(monetary_value=np.where(x > 0, m, 0.0))
    gg = clv.GammaGammaModel(data=money[(x > 0) & (m > 0)])
    gg.fit(**kwargs)
    spend = _posterior_mean(gg.expected_customer_spend(data=money))
    out = {}
    for name, cls in (("BG/NBD", clv.BetaGeoModel), ("MBG/NBD", clv.ModifiedBetaGeoModel), ("Pareto/NBD", clv.ParetoNBDModel)):
        started = time.perf_counter()
        model = cls(data=d)
        model.fit(**kwargs)
        purchases = _posterior_mean(model.expected_purchases(future_t=weeks))
        if cls is clv.BetaGeoModel:
            p = 1 - _posterior_mean(model.expected_probability_no_purchase(t=weeks))
        elif cls is clv.ParetoNBDModel:
            p = 1 - _posterior_mean(model.expected_purchase_probability(n_purchases=0, future_t=weeks))
        else:  # MBG/NBD: "The MBG/NBD model does not support this method."
            p = None
        print(f"(PyMC-Marketing {name}, {method}: fitted and predicted in {time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
        out[f"PyMC-Marketing {name} + Gamma-Gamma ({method})"] = (purchases, p, purchases * spend)
    return out


# Fader, Hardie & Lee (2005): BG/NBD fitted on the 2,357-customer CDNOW sample (weeks)
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def formula_check(weeks: float) -> None:
    """P(purchase in ``weeks``) of four histories at the published BG/NBD parameters: ours, PyMC-Marketing's, by hand.

    A one-time buyer (x = 0) is alive under BG/NBD (dropout happens only after a repeat purchase), so its
    P(no purchase) is ((alpha + T) / (alpha + T + t)) ** r. PyMC-Marketing's expected_probability_no_purchase keeps
    the dropout term for x = 0 too, which its own expected_probability_alive (1 for x = 0) leaves out.
    """
    import arviz as az
    import xarray as xr
    from pymc_marketing import clv

    x, t_x, T = np.array([0.0, 0.0, 1.0, 3.0]), np.array([0.0, 0.0, 10.0, 20.0]), np.array([5.0, 60.0, 60.0, 60.0])
    model = clv.BetaGeoModel(data=pd.DataFrame({"customer_id": range(4), "frequency": x, "recency": t_x, "T": T}))
    model.build_model()
    model.idata = az.InferenceData(posterior=xr.Dataset(
        {k: xr.DataArray([[v]], dims=("chain", "draw")) for k, v in PUBLISHED_BGNBD.items()}))
    theirs = 1 - model.expected_probability_no_purchase(t=weeks).values.ravel()
    alive = model.expected_probability_alive().values.ravel()
    params = P.BGNBDParams(**PUBLISHED_BGNBD, log_likelihood=0.0, converged=True, method="published")
    mine = P.bgnbd_probability_of_purchase(params, weeks, x, t_x, T)
    r, alpha = PUBLISHED_BGNBD["r"], PUBLISHED_BGNBD["alpha"]
    print(f"\n## P(purchase in {weeks:.1f} weeks) at the published BG/NBD parameters (r = 0.243, alpha = 4.414, "
          "a = 0.793, b = 2.426)\n")
    print("| x | t_x | T | customer-assets | PyMC-Marketing | for x = 0 by hand: 1 - ((alpha + T) / (alpha + T + t)) ** r "
          "| PyMC-Marketing's P(alive) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i in range(4):
        hand = f"{1 - ((alpha + T[i]) / (alpha + T[i] + weeks)) ** r:.4f}" if x[i] == 0 else "–"
        print(f"| {x[i]:.0f} | {t_x[i]:.0f} | {T[i]:.0f} | {mine[i]:.4f} | {theirs[i]:.4f} | {hand} | {alive[i]:.4f} |")


def champion_metrics(conn, cutoff: date) -> dict[str, float] | None:
    """The project's champion at ``cutoff``, read from evaluation.backtest_metrics (benchmarks/accuracy.py writes it)."""
    try:
        rows = conn.execute("SELECT task, metric, value FROM evaluation.backtest_metrics WHERE eval_cutoff_date = ? "
                            "AND system = 'champion'", [cutoff]).fetchall()
    except duckdb.CatalogException:
        return None
    v = {(task, metric): value for task, metric, value in rows}
    if ("purchase", "roc_auc") not in v:
        return None
    return {"roc_auc": v["purchase", "roc_auc"], "pr_auc": v["purchase", "pr_auc"], "brier": v["purchase", "brier"],
            "one_time_p": v["purchase_one_time_buyers", "mean_predicted"], "one_time_rate": v["purchase_one_time_buyers", "observed_rate"],
            "r2": v["spend", "r2"], "aggregate_error": v["spend", "aggregate_error"], "top10_share": v["spend", "top10_share"]}


def champion_predictions(conn, cutoff: date, f: pd.DataFrame, horizon: int) -> System | None:
    """The champion's P(purchase) and spend for the customers of ``f``, from the models that serve ``cutoff``.

    Those are the models evaluation/backtest scored (benchmarks/accuracy.py materializes them into the same
    warehouse); None when they are not there. Only the paired bootstrap intervals use these: the champion's figures
    are read from evaluation.backtest_metrics.
    """
    from customer_assets.models import candidates as C
    from customer_assets.models.assets import MODEL_NAMES
    from customer_assets.scores.assets import served_models

    try:
        models = {n: v[0] for n, v in served_models(conn, MODEL_NAMES, cutoff, lambda msg: None).items()}
    except dg.Failure as exc:  # no models table, or no model for that partition: the figures alone are shown
        print(f"No intervals at {cutoff}: the champion's models are not in the warehouse ({exc})", file=sys.stderr)
        return None
    test = C.add_bgnbd_features(f, horizon)
    p = L.predict_purchase(models["churn"], test, horizon)
    return None, p, L.predict_spend(models["spend"], test, horizon)


def system_metrics(y_buy, y_spend, one, system: System, purchase: bool) -> dict[str, float]:
    purchases, p, value = system
    out = {"r2": M.r2(y_spend, value), "aggregate_error": M.aggregate_error(y_spend, value),
           "top10_share": M.top_share(y_spend, value), "purchase_days": float(purchases.sum())}
    if purchase:
        out |= {"roc_auc_days": M.roc_auc(y_buy, purchases), "pr_auc": M.pr_auc(y_buy, purchases if p is None else p)}
        if p is not None:
            out |= {"roc_auc": M.roc_auc(y_buy, p), "brier": M.brier(y_buy, p), "one_time_p": float(p[one].mean()),
                    "one_time_rate": float(y_buy[one].mean())}
    return out


def _cell(v: dict[str, float], key: str) -> str:
    return f"{v[key]:.4f}" if key in v else "–"


def table(conn, cutoff: date, horizon: int, end: date, purchase: bool, libraries: list[str],
          pymc_method: str) -> dict[str, dict[str, float]]:
    """Print one window's table; return every row's metrics by system name (the champion's too, when stored)."""
    f = F.compute_features(conn, cutoff, horizon, end)
    x, t_x, T, m = L.rfm_weeks(f)
    y_spend = f["label_spend"].astype(float).to_numpy()
    y_buy = f["label_purchase"].astype(float).to_numpy()
    one = x == 0  # a single purchase day by the cutoff
    weeks = horizon / L.WEEK
    systems = ours(x, t_x, T, m, weeks)
    if "lifetimes" in libraries:
        systems |= lifetimes_systems(x, t_x, T, m, weeks)
    if "pymc-marketing" in libraries:
        systems |= pymc_marketing_systems(x, t_x, T, m, weeks, pymc_method)
    rows = {name: system_metrics(y_buy, y_spend, one, s, purchase) for name, s in systems.items()}
    if purchase and (champion := champion_metrics(conn, cutoff)):
        rows = {CHAMPION: champion} | rows
        served = champion_predictions(conn, cutoff, f, horizon)
        if served is not None and not np.allclose([M.roc_auc(y_buy, served[1]), M.r2(y_spend, served[2])],
                                                  [champion["roc_auc"], champion["r2"]], rtol=0, atol=1e-9):
            print(f"No intervals at {cutoff}: the served models do not reproduce evaluation.backtest_metrics "
                  "(rerun benchmarks/accuracy.py)", file=sys.stderr)
            served = None
        if served is not None:
            systems[CHAMPION] = served
    for name in rows:  # what the summary's paired bootstrap resamples
        rows[name][PREDICTIONS] = systems.get(name)
    rows[LABELS] = {"purchase": y_buy, "spend": y_spend}
    print(f"\n## {horizon} days after {cutoff}, fitted on data up to {cutoff} ({len(f):,} customers, {one.sum():,} one-time "
          "buyers)\n")
    print("| system | ROC-AUC, P(purchase) | ROC-AUC, expected purchase days | PR-AUC (of P(purchase), else of the expected days) "
          "| Brier | one-time buyers: mean P vs rate | spend R² | aggregate error | top-10% share | purchase days, expected vs actual |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    days = float(f["label_purchase_days"].sum())
    for name, v in rows.items():
        if name == LABELS:
            continue
        one_time = f"{v['one_time_p']:.4f} vs {v['one_time_rate']:.4f}" if "one_time_p" in v else "–"
        expected = f"{v['purchase_days']:,.0f} vs {days:,.0f}" if "purchase_days" in v else "–"
        print(f"| {name} | {_cell(v, 'roc_auc')} | {_cell(v, 'roc_auc_days')} | {_cell(v, 'pr_auc')} | "
              f"{_cell(v, 'brier')} | {one_time} | {v['r2']:.4f} | {v['aggregate_error']:+.1%} | {v['top10_share']:.1%} | "
              f"{expected} |", flush=True)
    return rows


CHAMPION = "customer-assets champion (evaluation.backtest_metrics)"
LIBRARY_PREFIXES = ("lifetimes", "PyMC-Marketing")
PREDICTIONS, LABELS = "_predictions", "_labels"  # a row's System, and the window's labels (not metrics)
# metric, label, direction (1: higher is better, -1: lower, 0: closer to zero)
SUMMARY = [("roc_auc", "ROC-AUC", 1), ("pr_auc", "PR-AUC", 1), ("brier", "Brier", -1), ("r2", "spend R²", 1),
           ("aggregate_error", "aggregate error", 0), ("top10_share", "top-10% share", 1)]
# per metric: the function the bootstrap resamples (the aggregate error by its size) and the labels it scores
BOOTSTRAP = {"roc_auc": (M.roc_auc, "purchase"), "pr_auc": (M.pr_auc, "purchase"), "brier": (M.brier, "purchase"),
             "r2": (M.r2, "spend"), "aggregate_error": (lambda y, p: abs(M.aggregate_error(y, p)), "spend"),
             "top10_share": (M.top_share, "spend")}
BOOTSTRAP_SAMPLES = 200


def best_library(rows: dict[str, dict], metric: str, direction: int) -> tuple[float, str, str] | None:
    """The best library row on ``metric`` (for ROC-AUC, by either of its scores): picked on the test, so generous.

    Returns (value, row name, the key of the score it came from).
    """
    found = []
    for name, v in rows.items():
        if name.startswith(LIBRARY_PREFIXES):
            for key in ((metric, "roc_auc_days") if metric == "roc_auc" else (metric,)):
                if key in v:
                    found.append((v[key], name, key))
    if not found:
        return None
    if direction == 0:
        return min(found, key=lambda c: abs(c[0]))
    return max(found) if direction > 0 else min(found)


def _score(system: System, key: str) -> np.ndarray:
    """The prediction behind a metric key: expected purchase days, P(purchase) (else the days), or spend."""
    purchases, p, value = system
    if key == "roc_auc_days":
        return purchases
    if key in ("roc_auc", "pr_auc", "brier"):
        return purchases if p is None else p
    return value


def champion_interval(rows: dict[str, dict], metric: str, library: str, key: str) -> tuple[float, float, float] | None:
    """Champion minus the library row on ``metric`` (the aggregate error by its size), with a paired bootstrap 95%
    interval over customers; None without the champion's per-customer predictions."""
    mine, theirs = rows[CHAMPION].get(PREDICTIONS), rows[library].get(PREDICTIONS)
    if mine is None or theirs is None:
        return None
    fn, labels = BOOTSTRAP[metric]
    return M.paired_bootstrap(fn, rows[LABELS][labels], _score(mine, metric), _score(theirs, key), BOOTSTRAP_SAMPLES)


def summary(by_cutoff: dict[date, dict[str, dict]]) -> None:
    print("\n## The champion against the best library row at each cutoff (the library row picked on the test)\n")
    print("In brackets: the champion minus that row, with a paired bootstrap 95% interval (resampling customers; for "
          "the aggregate error, the difference of their sizes, so negative is better). *significantly* counts the "
          "cutoffs whose interval lies wholly on the champion's side.\n")
    print("| metric | " + " | ".join(str(c) for c in by_cutoff) + " | champion better | significantly |")
    print("| --- | " + " | ".join("---" for _ in by_cutoff) + " | --- | --- |")
    for metric, label, direction in SUMMARY:
        cells, wins, sure, n = [], 0, 0, 0
        for rows in by_cutoff.values():
            best = best_library(rows, metric, direction)
            if CHAMPION not in rows or best is None:
                cells.append("–")
                continue
            mine, (theirs, who, key) = rows[CHAMPION][metric], best
            fmt = "+.1%" if metric == "aggregate_error" else (".1%" if metric == "top10_share" else ".4f")
            better = abs(mine) < abs(theirs) if direction == 0 else (mine - theirs) * direction > 0
            wins, n = wins + better, n + 1
            cell = f"{format(mine, fmt)} vs {format(theirs, fmt)} ({who.replace(' + Gamma-Gamma', '')})"
            if (iv := champion_interval(rows, metric, who, key)) is not None:
                d, low, high = iv
                side = -1 if direction == 0 else direction  # the sign of a difference in the champion's favour
                sure += (low > 0) if side > 0 else (high < 0)
                dfmt = "+.1%" if metric in ("aggregate_error", "top10_share") else "+.4f"
                cell += f" [{format(d, dfmt)}: {format(low, dfmt)}, {format(high, dfmt)}]"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + f" | {wins}/{n} | {sure}/{n} |")


def installed(libraries: list[str]) -> list[str]:
    found = []
    for lib in libraries:
        try:
            __import__(lib.replace("-", "_"))
            found.append(lib)
        except ImportError:
            print(f"{lib} is not installed (it is not a project dependency): its rows are left out. "
                  f"`.venv/bin/pip install -c constraints.txt {lib}` adds them.", file=sys.stderr)
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cutoff", default="1998-04-01", help="scoring cutoff of the 90-day table")
    ap.add_argument("--rolling", default="", help="more comma-separated scoring cutoffs: a 90-day table each, then a summary")
    ap.add_argument("--ltv-cutoff", default="", help="LTV cutoff (default: last date - LTV horizon)")
    ap.add_argument("--libraries", default="lifetimes,pymc-marketing", help="comma-separated: lifetimes, pymc-marketing")
    ap.add_argument("--pymc-method", choices=("map", "mcmc"), default="map",
                    help="how PyMC-Marketing fits: MAP (seconds) or NUTS sampling, its default (minutes)")
    ap.add_argument("--db", default=str(DATA_DIR / "benchmarks" / "accuracy.duckdb"))
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args(argv)
    unknown = set(args.libraries.split(",")) - {"lifetimes", "pymc-marketing"}
    if unknown:
        ap.error(f"--libraries: unknown {sorted(unknown)}; choose from lifetimes, pymc-marketing")
    libraries = installed(args.libraries.split(","))
    if not libraries:
        return 2
    warnings.filterwarnings("ignore")  # both libraries warn at length about their own dependencies
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_ingest:
        Runner(args.db).run(INGEST_SELECTION, label="ingest")
    with duckdb.connect(args.db, read_only=True) as conn:
        _, end = F.data_bounds(conn)
        scoring = sorted({date.fromisoformat(c) for c in [args.cutoff, *args.rolling.split(",")] if c})
        by_cutoff = {s: table(conn, s, HORIZON_DAYS, end, True, libraries, args.pymc_method) for s in scoring}
        ltv = date.fromisoformat(args.ltv_cutoff) if args.ltv_cutoff else end - timedelta(days=LTV_HORIZON_DAYS)
        table(conn, ltv, LTV_HORIZON_DAYS, end, False, libraries, args.pymc_method)
    if "pymc-marketing" in libraries:
        formula_check(HORIZON_DAYS / L.WEEK)
    summary(by_cutoff)  # one cutoff or several
    print("\nVersions: " + ", ".join(f"{lib} {version(lib)}" for lib in libraries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
