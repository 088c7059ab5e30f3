"""Synthetic retail transactions with known ground truth, written in chunks with bounded memory.

The process is BG/NBD with Gamma-Gamma spend, plus what real exports have:

* customers are acquired uniformly over the period (cohorts);
* each has a purchase rate ``lambda ~ Gamma(r, alpha)`` per day and, after every purchase, drops
  out with probability ``p ~ Beta(a, b)``;
* order values follow Gamma-Gamma: ``nu ~ Gamma(q, gamma)``, value ``~ Gamma(p_spend, nu)``;
* weekly and yearly seasonality thin the purchase times (more at weekends and in December);
* a share of orders is returned later (negative quantity);
* messy rows at configurable rates: exact duplicates, null ids, unparseable dates, negative
  prices and dates in the future.

The ground-truth parameters and row counts are written next to the data as ``<out>.truth.json``.
"""

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

COLUMNS = "customer_id=CustomerID,date=InvoiceDate,quantity=Quantity,unit_price=UnitPrice,order_id=InvoiceNo,product_id=StockCode"


@dataclass
class Truth:
    r: float = 0.9
    alpha: float = 25.0  # days: mean rate r / alpha = 0.036 purchases a day, before seasonal thinning
    a: float = 1.0
    b: float = 12.0
    p_spend: float = 6.0
    q: float = 4.0
    gamma: float = 12.0
    weekly_amplitude: float = 0.3
    yearly_amplitude: float = 0.4
    return_rate: float = 0.03
    messy: dict = field(default_factory=lambda: {
        "duplicate": 0.002, "null_id": 0.001, "bad_date": 0.001, "negative_price": 0.001, "future_date": 0.0005})


def _season(days: np.ndarray, start: date, truth: Truth) -> np.ndarray:
    """Relative purchase intensity in [0, 1] for day offsets from ``start``."""
    weekday = (start.weekday() + days.astype(int)) % 7
    weekly = 1 + truth.weekly_amplitude * np.where(weekday >= 5, 1.0, -0.4)
    doy = (start.timetuple().tm_yday + days) % 365.25
    yearly = 1 + truth.yearly_amplitude * np.cos(2 * math.pi * (doy - 355) / 365.25)
    top = (1 + truth.weekly_amplitude) * (1 + truth.yearly_amplitude)
    return weekly * yearly / top


def simulate_chunk(rng: np.random.Generator, first_id: int, n: int, start: date, days: int, truth: Truth) -> pd.DataFrame:
    """Transactions of customers ``first_id .. first_id + n - 1``."""
    lam = rng.gamma(truth.r, 1 / truth.alpha, n)
    # season thinning keeps ~mean(season) of the events, so scale the rate up to keep r/alpha on average
    lam = lam / 0.62
    p_drop = rng.beta(truth.a, truth.b, n)
    nu = rng.gamma(truth.q, 1 / truth.gamma, n)
    t = rng.uniform(0, days, n)  # acquisition: the first purchase
    ids, times = [np.arange(n)], [t.copy()]
    alive = np.ones(n, dtype=bool)
    just_bought = np.ones(n, dtype=bool)  # the first purchase is the acquisition
    cur = t.copy()
    while True:
        # dropout happens only right after a purchase
        alive &= ~(just_bought & (rng.random(n) < p_drop))
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        cur[idx] += rng.exponential(1 / lam[idx])
        ended = idx[cur[idx] >= days]
        alive[ended] = False
        idx = np.flatnonzero(alive)
        # seasonality thins the events: a thinned event is not a purchase
        keep = rng.random(idx.size) < _season(cur[idx], start, truth)
        just_bought[:] = False
        just_bought[idx[keep]] = True
        ids.append(idx[keep])
        times.append(cur[idx[keep]])
    cust = np.concatenate(ids)
    when = np.concatenate(times)
    m = len(cust)
    value = rng.gamma(truth.p_spend, 1 / nu[cust])
    qty = rng.integers(1, 6, m)
    frame = pd.DataFrame({
        "CustomerID": (first_id + cust).astype(str),
        "InvoiceDate": (pd.Timestamp(start) + pd.to_timedelta(when * 86400, unit="s")).strftime("%Y-%m-%d %H:%M:%S"),
        "Quantity": qty,
        "UnitPrice": np.round(value / qty, 2),
        "InvoiceNo": [f"I{first_id}-{i}" for i in range(m)],
        "StockCode": rng.integers(10000, 10500, m).astype(str),
    })
    ret = rng.random(m) < truth.return_rate
    if ret.any():
        back = frame[ret].copy()
        lag = rng.integers(1, 30, ret.sum())
        back["InvoiceDate"] = (pd.to_datetime(back["InvoiceDate"]) + pd.to_timedelta(lag, unit="D")).dt.strftime("%Y-%m-%d %H:%M:%S")
        back["Quantity"] = -back["Quantity"]
        back["InvoiceNo"] = "C" + back["InvoiceNo"]
        back = back[pd.to_datetime(back["InvoiceDate"]) < pd.Timestamp(start + timedelta(days=days))]
        frame = pd.concat([frame, back], ignore_index=True)
    return _mess(rng, frame, truth, start, days)


def _mess(rng, frame: pd.DataFrame, truth: Truth, start: date, days: int) -> pd.DataFrame:
    m = len(frame)
    rates = truth.messy
    frame = frame.copy()
    pick = lambda rate: rng.random(m) < rate  # noqa: E731
    frame.loc[pick(rates["null_id"]), "CustomerID"] = ""
    frame.loc[pick(rates["bad_date"]), "InvoiceDate"] = "not a date"
    neg = pick(rates["negative_price"]) & (frame["Quantity"] > 0)
    frame.loc[neg, "UnitPrice"] = -frame.loc[neg, "UnitPrice"]
    fut = pick(rates["future_date"])
    frame.loc[fut, "InvoiceDate"] = (date.today() + timedelta(days=400)).isoformat() + " 12:00:00"
    dup = frame[pick(rates["duplicate"])]
    return pd.concat([frame, dup], ignore_index=True)


def generate(customers: int, years: float, seed: int, out: str, start: date = date(2021, 1, 1),
             chunk_customers: int = 50_000, truth: Truth | None = None, progress=None) -> dict:
    """Write ``customers`` customers' transactions over ``years`` to ``out`` (.csv or .parquet).

    Memory is bounded by one chunk of ``chunk_customers`` customers. Returns the truth record.
    """
    if customers <= 0 or years <= 0:
        raise ValueError("--customers and --years must be positive")
    truth = truth or Truth()
    out_path = Path(out)
    if out_path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {out_path.name}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    days = int(round(365 * years))
    rng = np.random.default_rng(seed)
    rows = 0
    tmp_csv = out_path.with_suffix(".csv.part")
    if tmp_csv.exists():
        tmp_csv.unlink()
    chunks = math.ceil(customers / chunk_customers)
    for i in range(chunks):
        first = i * chunk_customers
        n = min(chunk_customers, customers - first)
        frame = simulate_chunk(rng, first + 1, n, start, days, truth)
        frame.to_csv(tmp_csv, mode="a", header=(i == 0), index=False)
        rows += len(frame)
        if progress:
            progress(i + 1, chunks, rows)
    if out_path.suffix == ".parquet":
        path = str(tmp_csv).replace("'", "''")
        target = str(out_path).replace("'", "''")
        duckdb.connect().execute(
            f"COPY (SELECT * FROM read_csv('{path}', header = true, all_varchar = true)) TO '{target}' (FORMAT parquet)"
        )
        tmp_csv.unlink()
    else:
        os.replace(tmp_csv, out_path)
    record = {"customers": customers, "years": years, "seed": seed, "start": start.isoformat(),
              "end": (start + timedelta(days=days - 1)).isoformat(), "rows": rows, "columns": COLUMNS, "truth": asdict(truth)}
    Path(str(out_path) + ".truth.json").write_text(json.dumps(record, indent=2))
    return record
