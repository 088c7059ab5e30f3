"""BG/NBD purchase model and Gamma-Gamma spend model, implemented with scipy.

Why not a library: ``lifetimes`` is archived and breaks on current pandas, and
PyMC-Marketing pulls in PyMC and PyTensor. These few closed-form expressions
(Fader, Hardie & Lee 2005, "Counting your customers the easy way"; Fader &
Hardie 2013, "The Gamma-Gamma model of monetary value") are tested against the
published CDNOW parameters in ``customer_assets_tests/test_probabilistic.py``.

All functions are pure: they take per-customer summaries, never a cutoff date.
Time is in whatever unit the caller uses consistently (we use weeks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special


@dataclass(frozen=True)
class BGNBDParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    converged: bool
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    v: float
    log_likelihood: float
    converged: bool
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def _compress(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Collapse identical rows to (unique rows, counts) so fits scale with distinct values."""
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in cols])
    uniq, counts = np.unique(stacked, axis=0, return_counts=True)
    return [uniq[:, i] for i in range(uniq.shape[1])], counts.astype(float)


def _minimize(nll, x0: np.ndarray) -> tuple[np.ndarray, float, bool, str]:
    """Minimise ``nll`` with L-BFGS-B; if it does not converge, try Nelder-Mead from there.

    Returns the solution, its objective, whether the chosen run converged, and its method.
    """
    res = optimize.minimize(nll, x0, method="L-BFGS-B")
    if res.success:
        return res.x, float(res.fun), True, "L-BFGS-B"
    res2 = optimize.minimize(nll, res.x, method="Nelder-Mead", options={"maxiter": 20000, "xatol": 1e-8, "fatol": 1e-8})
    if res2.fun <= res.fun:
        return res2.x, float(res2.fun), bool(res2.success), "Nelder-Mead (after L-BFGS-B did not converge)"
    return res.x, float(res.fun), False, "L-BFGS-B (not converged; Nelder-Mead was no better)"


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6).

    Parameters
    ----------
    r, alpha : float
        Gamma heterogeneity of the purchase rate.
    a, b : float
        Beta heterogeneity of the dropout probability.
    x : array
        Number of repeat purchases in the calibration period.
    t_x : array
        Time of the last purchase, measured from the first purchase.
    T : array
        Time from the first purchase to the end of the calibration period.
    """
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, initial: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
) -> BGNBDParams:
    """Maximum-likelihood BG/NBD fit.

    Identical (x, t_x, T) rows are merged and weighted, so the cost grows with the
    number of distinct summaries rather than customers. The optimiser works on
    log-parameters; if L-BFGS-B does not converge, Nelder-Mead is tried and the
    result records which method produced it.

    Returns
    -------
    BGNBDParams
        Parameters, total log-likelihood, convergence flag and method used.
    """
    (ux, utx, uT), w = _compress(x, t_x, T)
    if len(w) == 0:
        raise ValueError("BG/NBD needs at least one customer to fit")

    def nll(logp: np.ndarray) -> float:
        r, alpha, a, b = np.exp(np.clip(logp, -20, 20))
        ll = bgnbd_log_likelihood(r, alpha, a, b, ux, utx, uT)
        val = -float(np.sum(w * ll))
        return val if np.isfinite(val) else 1e300

    sol, fun, converged, method = _minimize(nll, np.log(np.asarray(initial, dtype=float)))
    r, alpha, a, b = np.exp(sol)
    return BGNBDParams(float(r), float(alpha), float(a), float(b), -fun, converged, method)


def bgnbd_p_alive(params: BGNBDParams, x, t_x, T) -> np.ndarray:
    """P(customer still alive at T | x, t_x, T)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        odds = np.where(x > 0, np.exp(np.minimum(log_ratio, 700)), 0.0)
    return 1.0 / (1.0 + odds)


def bgnbd_expected_purchases(params: BGNBDParams, t: float, x, t_x, T) -> np.ndarray:
    """E[number of purchases in (T, T + t] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    z = t / (alpha + T + t)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    first = (a + b + x - 1) / (a - 1)
    second = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        denom = 1 + np.where(
            x > 0,
            np.exp(np.minimum(np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)), 700)),
            0.0,
        )
    out = first * second / denom
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)


def bgnbd_probability_of_purchase(params: BGNBDParams, t: float, x, t_x, T) -> np.ndarray:
    """P(at least one purchase in (T, T + t] | x, t_x, T).

    Alive at T with probability P(alive); an alive customer's rate has posterior
    Gamma(r + x, alpha + T), so P(no purchase in t | alive) = ((alpha+T)/(alpha+T+t))^(r+x).
    Unlike P(alive), this ranks by how likely a purchase is, so it is the model's
    purchase score.
    """
    r, alpha = params.r, params.alpha
    T = np.asarray(T, dtype=float)
    x = np.asarray(x, dtype=float)
    p_alive = bgnbd_p_alive(params, x, t_x, T)
    p_none_if_alive = ((alpha + T) / (alpha + T + t)) ** (r + x)
    return p_alive * (1.0 - p_none_if_alive)


def gamma_gamma_log_likelihood(p: float, q: float, v: float, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood of the mean repeat spend ``m`` over ``x`` purchases."""
    x = np.asarray(x, dtype=float)
    m = np.asarray(m, dtype=float)
    return (
        special.gammaln(p * x + q)
        - special.gammaln(p * x)
        - special.gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(x * m + v)
    )


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray, initial: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit on customers with x >= 1 and m > 0 (others are ignored).

    The fit does not depend on the currency: it runs on ``m`` divided by the power of 1,000 that brings its mean
    between 1 and 1,000 (``initial`` is in those units), and ``v`` and the log-likelihood are scaled back.
    Multiplying ``m`` by ``c`` multiplies ``v`` by ``c`` and subtracts ``log c`` per customer from the
    log-likelihood. Fitted on the raw amounts, L-BFGS-B from (1, 1, 1) stopped on a ridge for CDNOW's spend in
    rupiah (x 16,000, a mean near 600,000): p near 3,000 instead of about 6.3, reported as converged. Means from 0.04
    to 47,000 fitted right. A mean already in the range (dollars, euros) is fitted as it is, so its figures do not
    move: dividing by the mean itself moved CDNOW's fit in the fifth digit, enough to change a near-tie in the
    spend model's validation (README, the models).
    """
    x = np.asarray(x, dtype=float)
    m = np.asarray(m, dtype=float)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    if keep.sum() < 2:
        raise ValueError(
            f"Gamma-Gamma needs at least 2 repeat customers with positive spend; found {int(keep.sum())}"
        )
    scale = 1000.0 ** math.floor(math.log10(float(np.mean(m[keep]))) / 3)  # 1 for a mean from 1 to 1,000
    (ux, um), w = _compress(x[keep], m[keep] / scale)

    def nll(logp: np.ndarray) -> float:
        p, q, v = np.exp(np.clip(logp, -20, 20))
        val = -float(np.sum(w * gamma_gamma_log_likelihood(p, q, v, ux, um)))
        return val if np.isfinite(val) else 1e300

    sol, fun, converged, method = _minimize(nll, np.log(np.asarray(initial, dtype=float)))
    p, q, v = np.exp(sol)
    return GammaGammaParams(float(p), float(q), float(v) * scale, -fun - float(w.sum()) * np.log(scale), converged, method)


def gamma_gamma_expected_spend(params: GammaGammaParams, x, m) -> np.ndarray:
    """E[spend per purchase | x, m]; customers with no repeat purchase get the population mean p*v/(q-1).

    Gamma-Gamma models positive spend and is fitted on customers with ``m > 0`` only. A customer whose repeat
    purchase days netted zero or less (returns larger than the purchases) gets the limit ``m -> 0``: the population
    mean shrunk by the weight of their ``x`` repeat days, ``(q - 1) / (p x + q - 1) * p v / (q - 1)``. Applied to a
    negative ``m``, the formula would predict negative spend.
    """
    p, q, v = params.p, params.q, params.v
    x = np.asarray(x, dtype=float)
    m = np.clip(np.nan_to_num(np.asarray(m, dtype=float), nan=0.0), 0.0, None)
    pop_mean = p * v / (q - 1) if q > 1 else np.nan
    cond = (p * (v + x * m)) / (p * x + q - 1)
    return np.where(x > 0, cond, pop_mean)
