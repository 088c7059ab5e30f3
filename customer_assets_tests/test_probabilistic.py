"""BG/NBD and Gamma-Gamma against the published CDNOW figures (shared/data/README.md).

Fader, Hardie & Lee (2005) fit the 1/10 CDNOW sample with 39 weeks of calibration
(to 1997-09-30), weeks as the time unit and same-day purchases merged:
BG/NBD r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4.
Gamma-Gamma on the repeat buyers' mean repeat-transaction value: p = 6.25, q = 3.74, v = 15.44.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from customer_assets.models import probabilistic as P

SAMPLE = Path(__file__).parent / "data" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def cdnow_sample_summary():
    d = pd.read_csv(SAMPLE, sep=r"\s+", header=None, names=["id", "original_id", "date", "quantity", "amount"], dtype={"date": str})
    d["date"] = pd.to_datetime(d["date"], format="%Y%m%d")
    end = pd.Timestamp("1997-09-30")
    days = d.groupby(["id", "date"], as_index=False)["amount"].sum()
    cal = days[days["date"] <= end].sort_values(["id", "date"])
    g = cal.groupby("id")
    first, last = g["date"].min(), g["date"].max()
    x = g.size() - 1
    week = pd.Timedelta(days=7)
    repeat_mean = cal.groupby("id")["amount"].apply(lambda s: s.iloc[1:].mean() if len(s) > 1 else np.nan)
    return x.to_numpy(float), ((last - first) / week).to_numpy(float), ((end - first) / week).to_numpy(float), repeat_mean.to_numpy(float)


def _sig3(value: float) -> float:
    return float(f"{value:.3g}")


def test_bgnbd_reproduces_published_parameters(cdnow_sample_summary):
    x, t_x, T, _ = cdnow_sample_summary
    assert len(x) == 2357
    fit = P.fit_bgnbd(x, t_x, T)
    assert (_sig3(fit.r), _sig3(fit.alpha), _sig3(fit.a), _sig3(fit.b)) == (0.243, 4.41, 0.793, 2.43)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert fit.converged


def test_gamma_gamma_reproduces_published_parameters(cdnow_sample_summary):
    x, _, _, m = cdnow_sample_summary
    fit = P.fit_gamma_gamma(x, m)
    assert (_sig3(fit.p), _sig3(fit.q), _sig3(fit.v)) == (6.25, 3.74, 15.4)


@pytest.mark.parametrize("currency", [0.01, 150.0, 16_000.0, 25_000.0])
def test_gamma_gamma_gives_the_same_customers_the_same_value_in_any_currency(cdnow_sample_summary, currency):
    """The spend in cents, yen, rupiah or dong: v and the expected spend scale with the amounts, p and q stay, and
    the log-likelihood falls by log(currency) per repeat buyer (its density is over the amount). Fitted on the raw
    amounts, the rupiah and dong fits stopped at p = 2970 and 4011 (q 2.68 and 2.67, against 6.25 and 3.74) and said
    they had converged."""
    x, _, _, m = cdnow_sample_summary
    base = P.fit_gamma_gamma(x, m)
    fit = P.fit_gamma_gamma(x, m * currency)
    assert (fit.p, fit.q, fit.v / currency) == pytest.approx((base.p, base.q, base.v), rel=1e-3)
    repeat_buyers = int(np.sum((x > 0) & (m > 0)))
    assert fit.log_likelihood == pytest.approx(base.log_likelihood - repeat_buyers * np.log(currency), abs=0.01)
    assert P.gamma_gamma_expected_spend(fit, x, m * currency) / currency == pytest.approx(
        P.gamma_gamma_expected_spend(base, x, m), rel=1e-3)


def test_bgnbd_predictions_match_the_paper_closed_forms():
    params = P.BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=0, converged=True, method="given")
    # No repeat purchase: P(alive) = 1 by the model's assumption (dropout happens only after a purchase).
    assert P.bgnbd_p_alive(params, [0], [0], [38.86])[0] == 1.0
    # Fader, Hardie & Lee (2005), section 5: a customer with x = 2, t_x = 30.43, T = 38.86 is expected to make
    # 1.226 purchases in the next 39 weeks.
    assert P.bgnbd_expected_purchases(params, 39, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=0.002)
    # P(purchase in t) is P(alive) times P(at least one purchase while alive), so it is at most P(alive).
    p_buy = P.bgnbd_probability_of_purchase(params, 13, [2], [30.43], [38.86])[0]
    assert 0 < p_buy < P.bgnbd_p_alive(params, [2], [30.43], [38.86])[0]
    # By hand: P(alive) = 1 / (1 + 0.793 / 3.426 * (43.274 / 34.844) ** 2.243) = 0.72657, and an alive customer's
    # P(no purchase in 13 weeks) = (43.274 / 56.274) ** 2.243 = 0.55479, so P(purchase) = 0.72657 * 0.44521 = 0.3235.
    assert p_buy == pytest.approx(0.3235, abs=0.0002)
    # A one-time buyer (x = 0) is alive, so P(purchase in 13 weeks) = 1 - (9.414 / 22.414) ** 0.243 = 0.1901 at
    # T = 5 weeks. (PyMC-Marketing 0.19.2's expected_probability_no_purchase gives 0.1139 here: it keeps the
    # dropout term for x = 0, which its own expected_probability_alive leaves out; benchmarks/peers.py prints both.)
    assert P.bgnbd_probability_of_purchase(params, 13, [0], [0], [5])[0] == pytest.approx(0.1901, abs=0.0002)


def test_gamma_gamma_expected_spend_is_a_weighted_mean():
    params = P.GammaGammaParams(p=6.25, q=3.74, v=15.44, log_likelihood=0, converged=True, method="given")
    pop = 6.25 * 15.44 / (3.74 - 1)
    assert P.gamma_gamma_expected_spend(params, [0], [0])[0] == pytest.approx(pop)
    # E[M | x, m] = w * pop + (1 - w) * m with w = (q - 1) / (p x + q - 1)
    x, m = 3.0, 50.0
    w = (3.74 - 1) / (6.25 * x + 3.74 - 1)
    assert P.gamma_gamma_expected_spend(params, [x], [m])[0] == pytest.approx(w * pop + (1 - w) * m)


def test_gamma_gamma_expected_spend_of_repeat_days_that_netted_zero_or_less_is_the_limit_at_zero():
    """Returns larger than the purchases make a customer's mean repeat spend negative. Gamma-Gamma is fitted on m > 0
    only; applied to m = -10 its formula gives p (v + x m) / (p x + q - 1) = 6 (15 - 20) / 15 = -2. The limit m -> 0 is
    6 x 15 / 15 = 6, the population mean 6 x 15 / 3 = 30 shrunk by the weight of two repeat days, 3 / 15."""
    params = P.GammaGammaParams(p=6.0, q=4.0, v=15.0, log_likelihood=0, converged=True, method="given")
    spend = P.gamma_gamma_expected_spend(params, [2, 2, 2, 0, 0], [-10.0, 0.0, float("nan"), -10.0, 0.0])
    np.testing.assert_allclose(spend, [6.0, 6.0, 6.0, 30.0, 30.0])


def test_gamma_gamma_refuses_too_few_repeat_buyers():
    with pytest.raises(ValueError, match="at least 2 repeat customers"):
        P.fit_gamma_gamma(np.array([0, 0, 1.0]), np.array([0, 0, 10.0]))


def test_bgnbd_probability_of_purchase_of_a_one_time_buyer_matches_a_simulation():
    # BG/NBD's story, simulated: each customer's rate lambda ~ Gamma(r, alpha); a customer can drop out only right
    # after a repeat purchase, so one with no repeat purchase in (0, T] is still alive, and buys again in
    # (T, T + t] with probability 1 - exp(-lambda t). The share of such customers who do is what the closed form
    # must give (0.1888 for T = 5 weeks, t = 90 days; PyMC-Marketing 0.19.2 gives 0.1132, see benchmarks/peers.py).
    r, alpha, T, t = 0.243, 4.414, 5.0, 90 / 7
    rng = np.random.default_rng(7)
    lam = rng.gamma(r, 1 / alpha, 400_000)
    one_time = rng.random(lam.size) < np.exp(-lam * T)
    bought = rng.random(lam.size) < 1 - np.exp(-lam * t)
    simulated = bought[one_time].mean()
    params = P.BGNBDParams(r=r, alpha=alpha, a=0.793, b=2.426, log_likelihood=0, converged=True, method="given")
    closed_form = P.bgnbd_probability_of_purchase(params, t, [0], [0], [T])[0]
    assert closed_form == pytest.approx(0.1888, abs=0.0001)
    # 333,000 one-time buyers: the simulated share's standard error is 0.0007
    assert simulated == pytest.approx(closed_form, abs=0.003)
