"""Do the customers being scored look like the customers a model learned from?

Training keeps a profile of each model's input features with the model (``models.<name>.feature_profile``): the
deciles of every feature over the customers at the partition's own cutoff t, the share of those customers in each
decile bin, the share with no value, and the smallest and largest value of every row the model was fitted on (the
customers at t and at each earlier cutoff it stacked: a model of spend in the last 30 days has seen the largest
value of any of them, not only of the customers at t). Scoring at s compares the customers at s
with it, feature by feature (``features_like_training``, a non-blocking check on ``scores/scored_customers``):

* the population stability index (PSI) over the same bins plus one for missing values,
  ``sum((a - e) * ln(a / e))`` with both shares floored at ``PSI_FLOOR``. Above 0.25 is the usual rule of thumb
  for a major shift (0.1 to 0.25 moderate). But two samples of one population differ by chance, and with few
  customers by more than that: 50 profiled customers against 5,000 scored gave a PSI above 0.25 in 19.9% of 10,000
  simulated draws (``benchmarks/feature_drift.py --chance``, lognormal values). So the limit (``psi_limit``) is the
  larger of 0.25 and the PSI that chance alone exceeds one time in a thousand. With many customers that is the
  chi-square approximation: n_eff x PSI is asymptotically chi-square with (bins - 1) degrees of freedom, n_eff =
  n_then x n_now / (n_then + n_now) (PSI is the symmetric Kullback-Leibler divergence); at 1,000 and 1,000 its
  quantile is 0.056 and the simulated one 0.056. With fewer it is too low (1.115 against 2.182 at 50 and 50, where
  6.5% of the draws passed it), so below n_eff = 1,000 the quantile is simulated (``simulated_psi_quantile``): the
  population's mass in each profiled bin is drawn from the Dirichlet of the profiled counts (for continuous values,
  the spacings of order statistics are exactly that), then the scored counts from their multinomial;
* the share of the customers at s below the smallest or above the largest value the model was fitted on. Trees
  predict for them as for the most extreme customers they saw: they cannot extrapolate. It warns above 10%, or above
  what chance gives when few customers were compared (``outside_limit``): the population's mass outside the range of
  n values is Beta(2, n - 1) distributed (the range covers Beta(n - 1, 2) of it), whose 99.9th percentile is 17% at
  n = 50, 4.5% at n = 200 and 0.46% at n = 2,000, and the count of m scored values outside it is beta-binomial
  (m, 2, n - 1): at m = 50 and n = 50, 11 of them (22%). n counts the customers at t only: the stacked cutoffs repeat
  the same customers, and their wider range is less often left by chance, so this errs towards not warning.

In ``benchmarks/feature_drift.py --chance --draws 10000`` (two samples of one lognormal population; about 60 s), each
limit is passed by at most 0.12% of the draws at every pair of sizes from 50 and 50 to 1,000 and 1,000, and the check
(either limit) flags 0.16% of 50 against 50, 0.22% of 50 against 200, 0.24% of 50 against 5,000, 0.02% of 200
against 200, and none from 200 against 2,000 on. With the chi-square and Beta limits alone it flagged 7.08%, 0.61%,
0.19%, 0.16% and none. The rule of thumb alone (0.25) is passed by 76.2%, 37.5%, 19.9% and 0.4% of the first four.

Pure functions over arrays and frames; no warehouse access.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import beta, betabinom, chi2

PROFILE_QUANTILES = tuple(round(q, 1) for q in np.arange(0.1, 0.91, 0.1))
PSI_FLOOR = 1e-4
PSI_WARN = 0.25
PSI_CHANCE_QUANTILE = 0.999
OUT_OF_RANGE_WARN = 0.10
COMPARE_COLUMNS = ["feature", "psi", "psi_limit", "share_below_min", "share_above_max", "outside_limit",
                   "missing_share_then", "missing_share_now"]


def _values(frame: pd.DataFrame, feature: str) -> np.ndarray:
    return pd.to_numeric(frame[feature], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def bin_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Shares of ``values`` in the bins (-inf, e0], (e0, e1], ..., (e_last, inf), then the share that is not finite.

    Returns ``len(edges) + 2`` shares that sum to 1 (all 0 for no values).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(len(edges) + 2)
    finite = np.isfinite(values)
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values[finite], side="left"),
                         minlength=len(edges) + 1)
    return np.append(counts, (~finite).sum()) / values.size


def value_ranges(frame: pd.DataFrame) -> dict[str, tuple[float, float, int]]:
    """The smallest and largest finite value of each numeric column of ``frame``, and how many rows have one.

    Columns without a finite value are left out. For the rows a model was fitted on (``feature_profile``'s
    ``ranges``).
    """
    out = {}
    for f in frame.columns:
        if not (pd.api.types.is_numeric_dtype(frame[f]) and not pd.api.types.is_bool_dtype(frame[f])):
            continue
        v = _values(frame, f)
        finite = v[np.isfinite(v)]
        if finite.size:
            out[f] = (float(finite.min()), float(finite.max()), int(finite.size))
    return out


def feature_profile(frame: pd.DataFrame, features: list[str],
                    ranges: dict[str, tuple[float, float, int]] | None = None) -> dict[str, dict[str, Any]]:
    """The reference profile of ``features`` over the rows of ``frame`` (the customers a model learned from).

    Parameters
    ----------
    frame : one row per customer, at one cutoff.
    features : the model's input features; those not in ``frame`` are left out.
    ranges : ``value_ranges`` of every row the model was fitted on (several stacked cutoffs), or None. The profile's
        ``min`` and ``max`` then span those rows as well as ``frame``'s, and ``range_n`` counts the values they span.
        The deciles and shares stay those of ``frame``: the latest customers, one row each.

    Returns
    -------
    dict
        feature -> ``{"n", "edges", "shares", "min", "max"}``. ``edges`` are the distinct deciles (values that occur in
        the data, so no bin below the top one is empty); ``shares`` are those of ``bin_shares``, the last one the share
        with no value; ``min`` and ``max`` are None when no row has a value. With ``ranges``, also ``range_n``.
    """
    out: dict[str, dict[str, Any]] = {}
    for f in features:
        if f not in frame.columns:
            continue
        v = _values(frame, f)
        finite = v[np.isfinite(v)]
        edges = np.unique(np.quantile(finite, PROFILE_QUANTILES, method="inverted_cdf")).tolist() if finite.size else []
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        out[f] = {"n": int(v.size), "edges": edges, "shares": bin_shares(v, edges).tolist(), "min": lo, "max": hi}
        if ranges is not None:
            seen = ranges.get(f)
            if seen is not None:
                lo = seen[0] if lo is None else min(lo, seen[0])
                hi = seen[1] if hi is None else max(hi, seen[1])
            out[f].update({"min": lo, "max": hi, "range_n": seen[2] if seen is not None else int(finite.size)})
    return out


def population_stability(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, each share floored at ``floor`` so that an empty bin counts."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


# Below this effective sample size the chi-square approximation of the PSI's chance distribution is too low (1.115
# against a simulated 2.18 at 50 and 50), so the limit is simulated instead (``simulated_psi_quantile``).
SIMULATE_BELOW_N_EFF = 1000
CHANCE_DRAWS = 50_000


@lru_cache(maxsize=4096)
def _simulated_quantile(counts: tuple[int, ...], n_now: int, quantile: float, floor: float) -> float:
    alpha = np.asarray(counts, dtype=float)
    keep = alpha > 0
    # the population's mass in the bins between the profiled deciles: for n_then values, the spacings of their order
    # statistics are Dirichlet with the counts in each bin, one more in the top bin (open above; the last bin is
    # the missing values')
    alpha[len(counts) - 2 if keep[len(counts) - 2] else np.flatnonzero(keep)[-1]] += 1
    rng = np.random.default_rng([len(counts), *counts, n_now])  # reproducible: the same limit for the same sizes
    mass = rng.dirichlet(alpha[keep], size=CHANCE_DRAWS)
    now = rng.multinomial(n_now, mass) / n_now
    then = np.maximum(np.asarray(counts, dtype=float)[keep] / sum(counts), floor)  # the profiled shares
    now = np.maximum(now, floor)
    return float(np.quantile(np.sum((now - then) * np.log(now / then), axis=1), quantile))


def simulated_psi_quantile(expected: np.ndarray, n_then: int, n_now: int, quantile: float = PSI_CHANCE_QUANTILE,
                           floor: float = PSI_FLOOR) -> float:
    """The PSI that a sample of ``n_now`` from the population of a profile of ``n_then`` (bin shares ``expected``)
    exceeds with probability 1 - ``quantile``, simulated (``CHANCE_DRAWS`` draws, seeded by the sizes).

    The bins' population masses are drawn from the Dirichlet of the profiled counts, then the scored counts from the
    multinomial of those masses; the PSI is taken against the profiled shares with the same floor as the check's.
    """
    counts = tuple(int(round(e * n_then)) for e in np.asarray(expected, dtype=float))
    if sum(c > 0 for c in counts) < 2 or n_now < 1:
        return 0.0
    return _simulated_quantile(counts, int(n_now), float(quantile), float(floor))


def psi_limit(expected: np.ndarray, actual: np.ndarray, n_then: int, n_now: int, psi_warn: float = PSI_WARN,
              quantile: float = PSI_CHANCE_QUANTILE) -> float:
    """The larger of ``psi_warn`` and the PSI that two samples of one population, of ``n_then`` and ``n_now``, exceed
    by chance with probability 1 - ``quantile``: chi2(quantile, bins - 1) / n_eff, counting the bins with a share on
    either side, n_eff = n_then n_now / (n_then + n_now). Below ``SIMULATE_BELOW_N_EFF`` that approximation is too
    low, and the PSI's chance quantile is simulated instead (``simulated_psi_quantile``)."""
    bins = int(np.sum((np.asarray(expected) > 0) | (np.asarray(actual) > 0)))
    if bins < 2 or n_then < 1 or n_now < 1:
        return psi_warn
    n_eff = n_then * n_now / (n_then + n_now)
    if n_eff < SIMULATE_BELOW_N_EFF:
        return float(max(psi_warn, simulated_psi_quantile(expected, n_then, n_now, quantile)))
    return float(max(psi_warn, chi2.ppf(quantile, bins - 1) / n_eff))


# From this many scored values on, the beta-binomial's quantile is the Beta's (0.1705 against 0.1702 at 10,000 scored
# and 50 profiled), and scipy's beta-binomial quantile grows slow (0.05 to 0.18 s at a million scored values)
BETA_FROM_N_NOW = 10_000


def outside_limit(n_then: int, out_of_range_warn: float = OUT_OF_RANGE_WARN, quantile: float = PSI_CHANCE_QUANTILE,
                  n_now: int | None = None, n_rows: int | None = None) -> float:
    """The larger of ``out_of_range_warn`` and the share of a same-population sample that falls outside the range of
    ``n_then`` values by chance with probability 1 - ``quantile``.

    The population's mass outside that range is Beta(2, n_then - 1). Of ``n_now`` values drawn from it, the number
    outside is then beta-binomial (n_now, 2, n_then - 1), which is wider than the Beta when n_now is small too; the
    share is of ``n_rows`` (the scored rows, the missing values included; default n_now). Without ``n_now``, or from
    ``BETA_FROM_N_NOW`` scored values on, the Beta."""
    if n_then < 2:
        return 1.0  # no range to speak of: never warn on it
    if n_now is None or n_now >= BETA_FROM_N_NOW:
        return float(max(out_of_range_warn, beta.ppf(quantile, 2, n_then - 1)))
    if n_now < 1:
        return out_of_range_warn
    return float(max(out_of_range_warn, betabinom.ppf(quantile, n_now, 2, n_then - 1) / (n_rows or n_now)))


def compare(profile: dict[str, dict[str, Any]], frame: pd.DataFrame, memo: dict | None = None,
            psi_warn: float = PSI_WARN, out_of_range_warn: float = OUT_OF_RANGE_WARN) -> pd.DataFrame:
    """Each profiled feature of ``frame`` against its reference.

    Returns one row per feature: ``feature``, ``psi``, ``psi_limit`` (``psi_limit`` of the two samples' sizes),
    ``share_below_min`` and ``share_above_max`` (of all the rows of ``frame``; 0 when the reference had no value),
    ``outside_limit`` (``outside_limit`` of the profiled and the scored values), ``missing_share_then`` and
    ``missing_share_now``.
    A profiled feature that ``frame`` lacks is left out. ``psi_warn`` and ``out_of_range_warn`` are the limits
    before chance raises them. ``memo`` keeps the bin shares and range counts across calls on the same
    ``frame``: models of one partition share the bins of each feature they both read, and often its range.
    """
    memo = {} if memo is None else memo

    def once(key, compute):  # computed once per frame, whichever model asks
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    rows = []
    for f, ref in profile.items():
        if f not in frame.columns:
            continue
        v = _values(frame, f)  # not kept: a million customers' values of every feature would stay in memory
        now = once(("bins", f, tuple(ref["edges"])), lambda v=v, ref=ref: bin_shares(v, ref["edges"]))
        n = max(v.size, 1)
        below, above = once(("range", f, ref["min"], ref["max"]), lambda v=v, ref=ref, n=n: (
            float(np.sum(v < ref["min"]) / n) if ref["min"] is not None else 0.0,
            float(np.sum(v > ref["max"]) / n) if ref["max"] is not None else 0.0))
        rows.append({
            "feature": f,
            "psi": population_stability(ref["shares"], now),
            "psi_limit": psi_limit(ref["shares"], now, ref["n"], v.size, psi_warn),
            "share_below_min": below,
            "share_above_max": above,
            "outside_limit": outside_limit(round(ref["n"] * (1 - ref["shares"][-1])), out_of_range_warn,
                                           n_now=int(np.isfinite(v).sum()), n_rows=v.size),
            "missing_share_then": float(ref["shares"][-1]),
            "missing_share_now": float(now[-1]),
        })
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def drifted(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ``compare`` table (or several, with a ``model`` column) past either limit (``psi`` above its
    ``psi_limit``, or the share outside the range above its ``outside_limit``), largest PSI first."""
    outside = table["share_below_min"] + table["share_above_max"]
    return table[(table["psi"] > table["psi_limit"]) | (outside > table["outside_limit"])].sort_values("psi", ascending=False)


def compare_models(profiles: dict[str, tuple[dict[str, Any], str]], frame: pd.DataFrame, psi_warn: float = PSI_WARN,
                   out_of_range_warn: float = OUT_OF_RANGE_WARN) -> tuple[pd.DataFrame, list[str]]:
    """``compare`` for several models at once.

    Parameters
    ----------
    profiles : model name -> (its feature profile, the partition it was trained at).
    frame : the customers being scored, with every feature the models read.
    psi_warn, out_of_range_warn : the limits, before chance raises them (``compare``).

    Returns
    -------
    The ``compare`` rows of every model with ``model`` and ``model_partition`` columns first, and the names of the
    models whose profile is empty (stored before profiles were kept).
    """
    parts, unprofiled, memo = [], [], {}
    for name, (profile, partition) in profiles.items():
        if not profile:
            unprofiled.append(name)
            continue
        parts.append(compare(profile, frame, memo, psi_warn, out_of_range_warn)
                     .assign(model=name, model_partition=str(partition)))
    cols = ["model", "model_partition", *COMPARE_COLUMNS]
    return (pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)), unprofiled


def summary(past: pd.DataFrame, n: int = 3) -> list[str]:
    """One phrase per feature and training partition past a limit, largest PSI first: the models that read it, its
    PSI and the shares outside the training range (from 0.1%), e.g. ``tenure_days (churn, spend): PSI 8.28, 100.0% above the
    training range (cutoffs to 1998-04-01)``: the range of every row the models were fitted on."""
    out = []
    for (feature, partition), g in past.groupby(["feature", "model_partition"], sort=False):
        worst = g.loc[g["psi"].idxmax()]
        outside = [f"{worst[col]:.1%} {side}" for col, side in (("share_above_max", "above"), ("share_below_min", "below"))
                   if worst[col] >= 0.001]  # fewer is in the metadata's table, not worth the words
        out.append((worst["psi"], f"{feature} ({', '.join(g['model'])}): PSI {worst['psi']:.2f}"
                    + (f", {' and '.join(outside)} the training range (cutoffs to {partition})" if outside else "")))
    out.sort(key=lambda t: -t[0])
    phrases = [p for _, p in out[:n]]
    if len(out) > n:
        phrases.append(f"and {len(out) - n} more")
    return phrases


def narrowest_ranges(profiles: list[dict[str, dict[str, Any]]]) -> dict[str, tuple[float, float]]:
    """Per profiled feature, the range inside every one of ``profiles``: the largest ``min`` and the smallest
    ``max``, in the order the profiles name the features. Features without a value are left out."""
    ranges: dict[str, tuple[float, float]] = {}
    for profile in profiles:
        for f, ref in profile.items():
            if ref["min"] is not None:
                lo, hi = ranges.get(f, (-np.inf, np.inf))
                ranges[f] = (max(lo, ref["min"]), min(hi, ref["max"]))
    return ranges


def outside_features(profiles: list[dict[str, dict[str, Any]]], frame: pd.DataFrame) -> pd.Series:
    """Per row of ``frame``, the profiled features whose value lies outside the range of the customers a model
    learned from: below the smallest or above the largest value of any of ``profiles`` (so the narrowest range
    counts: ``narrowest_ranges``). Returns a string Series, ``"a, b"`` in the order the profiles name the features,
    and NA for a row inside every range (or without a value)."""
    ranges = {f: r for f, r in narrowest_ranges(profiles).items() if f in frame.columns}
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    if not ranges:
        return out
    names = np.array(list(ranges), dtype=object)
    flags = np.column_stack([(v < lo) | (v > hi) for v, (lo, hi) in
                             ((_values(frame, f), r) for f, r in ranges.items())])  # NaN compares False: not outside
    rows = np.flatnonzero(flags.any(axis=1))
    if rows.size:
        # one string per distinct pattern of flags, not per row: at a million rows the patterns are few. A pattern
        # of up to 62 features is one integer (sorting integers is much faster than sorting rows of booleans)
        flagged = flags[rows]
        if flagged.shape[1] <= 62:
            codes, inverse = np.unique(flagged @ (np.int64(1) << np.arange(flagged.shape[1], dtype=np.int64)),
                                       return_inverse=True)
            patterns = (codes[:, None] >> np.arange(flagged.shape[1], dtype=np.int64)) & 1 == 1
        else:
            patterns, inverse = np.unique(flagged, axis=0, return_inverse=True)
        text = np.array([", ".join(names[p]) for p in patterns], dtype=object)
        values = out.to_numpy(dtype=object, na_value=None)
        values[rows] = text[inverse.ravel()]
        out = pd.Series(values, index=frame.index, dtype="string")
    return out
