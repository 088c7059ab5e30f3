"""Checks on the scored table, the one analysts query.

The two blocking ones gate what is published from it: when one fails, ``serving/snapshot`` and
``reports/customer_report`` do not run in that run, so the serving copy keeps the last scores that passed. In a
partitioned run they look at the run's partition only; run on their own, at every stored cutoff. ``scores_stable``
only warns: a large move since the previous night may be real.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.partitions import check_scope
from customer_assets.storage import duplicated_customers, table_exists

SCORES = dg.AssetKey(["scores", "scored_customers"])
NOT_NULL = ["customer_id", "segment", "recommended_action", "horizon_days", "ltv_horizon_days", "model_cutoff_date"]
# each rule: (metadata name, the SQL condition a row breaks it by). NaN and infinities break every numeric rule.
RULES = [
    ("probability_out_of_range", "NOT (isfinite(purchase_probability) AND purchase_probability BETWEEN 0 AND 1 "
                                 "AND isfinite(churn_probability) AND churn_probability BETWEEN 0 AND 1)"),
    ("probabilities_not_complementary", "abs(purchase_probability + churn_probability - 1) > 1e-9"),
    ("negative_or_non_finite_value", "NOT (isfinite(predicted_spend) AND predicted_spend >= 0 "
                                     "AND isfinite(predicted_ltv) AND predicted_ltv >= 0)"),
    ("days_to_next_purchase_invalid", "NOT (isfinite(predicted_days_to_next_purchase) AND predicted_days_to_next_purchase > 0)"),
    ("value_decile_out_of_range", "value_decile NOT BETWEEN 1 AND 10"),
    ("model_cutoff_not_h_days_before", "model_cutoff_date <> cutoff_date - horizon_days::INTEGER"),
    ("rows_with_nulls", " OR ".join(f"{c} IS NULL" for c in NOT_NULL)),
]


def _broken(cond: str, name: str) -> str:
    """A row breaks a value rule also when the rule cannot be evaluated (NULL); the NULL rule is exact."""
    return cond if name == "rows_with_nulls" else f"coalesce({cond}, true)"


def invalid_cutoffs(conn) -> dict[str, int]:
    """Cutoffs of ``scores.scored_customers`` with rows that break a rule of ``scores_valid`` or repeat a customer, and
    how many such rows each has: the serving copy refuses to publish them whoever runs it."""
    bad = " OR ".join(f"({_broken(cond, name)})" for name, cond in RULES)
    rows = conn.execute(
        f"""SELECT cutoff_date::VARCHAR, count(*) FROM (
                SELECT cutoff_date FROM scores.scored_customers WHERE {bad}
                UNION ALL
                SELECT cutoff_date FROM scores.scored_customers GROUP BY cutoff_date, customer_id HAVING count(*) > 1)
            GROUP BY 1 ORDER BY 1""").fetchall()
    return {c: int(n) for c, n in rows}


@dg.asset_check(asset=SCORES, blocking=True, pool="duckdb",
                description="Every customer of the cutoff's features/customer_features is scored exactly once, and no one else.")
def every_customer_scored_once(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    where, params = check_scope(context)
    with duckdb.get_connection() as conn:
        dupes = duplicated_customers(conn, "scores.scored_customers", where, params)
        # coverage is compared where the cutoff's features are stored (the retention may have deleted older ones)
        missing = extra = 0
        unchecked: list[str] = []
        if table_exists(conn, "features", "customer_features"):
            missing, extra = conn.execute(
                f"""WITH s AS (SELECT DISTINCT cutoff_date, customer_id FROM scores.scored_customers {where}),
                         f AS (SELECT cutoff_date, customer_id FROM features.customer_features
                               WHERE cutoff_date IN (SELECT cutoff_date FROM s))
                    SELECT (SELECT count(*) FROM f ANTI JOIN s USING (cutoff_date, customer_id)),
                           (SELECT count(*) FROM s ANTI JOIN f USING (cutoff_date, customer_id)
                            WHERE s.cutoff_date IN (SELECT cutoff_date FROM f))""", params
            ).fetchone()
            unchecked = [str(r[0]) for r in conn.execute(
                f"""SELECT DISTINCT cutoff_date FROM scores.scored_customers {where} EXCEPT
                    SELECT DISTINCT cutoff_date FROM features.customer_features ORDER BY 1""", params
            ).fetchall()]
    metadata = {"duplicated_customers": int(dupes), "customers_not_scored": int(missing),
                "scored_customers_not_in_features": int(extra)}
    if unchecked:
        metadata["cutoffs_without_features"] = ", ".join(unchecked)
    passed = dupes == 0 and missing == 0 and extra == 0
    return dg.AssetCheckResult(passed=passed, metadata=metadata,
                               description=None if passed else "; ".join(f"{k} {v}" for k, v in metadata.items()
                                                                        if k != "cutoffs_without_features" and v))


@dg.asset_check(asset=SCORES, blocking=True, pool="duckdb",
                description="Probabilities in [0, 1] that sum to 1, spend and LTV finite and >= 0, days to next purchase "
                            "> 0, value decile 1-10, model cutoff = cutoff - H, and no NULLs where none may be.")
def scores_valid(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    where, params = check_scope(context)
    counts = ", ".join(f"count(*) FILTER (WHERE {_broken(cond, name)})" for name, cond in RULES)
    with duckdb.get_connection() as conn:
        row = conn.execute(f"SELECT {counts}, count(*) FROM scores.scored_customers {where}", params).fetchone()
    broken = {name: int(n) for (name, _), n in zip(RULES, row[:-1], strict=True)}
    passed = not any(broken.values())
    return dg.AssetCheckResult(
        passed=passed, metadata={**broken, "rows_checked": int(row[-1])},
        description=None if passed else "Rows breaking each rule: " + "; ".join(f"{k} {v}" for k, v in broken.items() if v),
    )


# a nightly rescore is compared with the scored cutoff before it when that one is at most this many days older
STABLE_MAX_GAP_DAYS = 7
# warn when a total moves by more than this share overnight, or the customers' scores correlate less than this
STABLE_MAX_CHANGE = 0.25
STABLE_MIN_CORRELATION = 0.9
STABLE_SQL = """
WITH now AS (SELECT * FROM scores.scored_customers WHERE cutoff_date = ?),
     before AS (SELECT * FROM scores.scored_customers WHERE cutoff_date = ?)
SELECT (SELECT avg(purchase_probability) FROM now) / nullif((SELECT avg(purchase_probability) FROM before), 0) - 1,
       (SELECT sum(predicted_spend) FROM now) / nullif((SELECT sum(predicted_spend) FROM before), 0) - 1,
       (SELECT sum(predicted_ltv) FROM now) / nullif((SELECT sum(predicted_ltv) FROM before), 0) - 1,
       corr(n.purchase_probability, b.purchase_probability), corr(n.predicted_ltv, b.predicted_ltv), count(*)
FROM now n JOIN before b USING (customer_id)
"""


@dg.asset_check(asset=SCORES, blocking=False, pool="duckdb",
                description=f"The scores moved little since the previous scored cutoff (at most {STABLE_MAX_GAP_DAYS} days "
                            f"earlier): mean purchase probability, expected spend and LTV totals within "
                            f"±{STABLE_MAX_CHANGE:.0%}, and the customers' purchase probabilities and LTVs correlated at "
                            f"least {STABLE_MIN_CORRELATION} with the night before.")
def scores_stable(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        cutoff = context.run.tags.get("dagster/partition") or conn.execute(
            "SELECT max(cutoff_date)::VARCHAR FROM scores.scored_customers").fetchone()[0]
        previous = conn.execute(
            "SELECT max(cutoff_date)::VARCHAR FROM scores.scored_customers WHERE cutoff_date < ?::DATE "
            "AND cutoff_date >= ?::DATE - ?::INTEGER", [cutoff, cutoff, STABLE_MAX_GAP_DAYS]).fetchone()[0]
        if previous is None:
            return dg.AssetCheckResult(passed=True, metadata={
                "cutoff": cutoff, "compared_with": f"nothing: no scored cutoff in the {STABLE_MAX_GAP_DAYS} days before"})
        row = conn.execute(STABLE_SQL, [cutoff, previous]).fetchone()
    names = ["mean_purchase_probability_change", "expected_spend_change", "expected_ltv_change",
             "purchase_probability_correlation", "ltv_correlation"]
    found = {n: None if v is None else round(float(v), 4) for n, v in zip(names, row[:5], strict=True)}
    moved = {n: v for n, v in found.items() if v is not None and (
        abs(v) > STABLE_MAX_CHANGE if n.endswith("_change") else v < STABLE_MIN_CORRELATION)}
    return dg.AssetCheckResult(
        passed=not moved, severity=dg.AssetCheckSeverity.WARN,
        metadata={"cutoff": cutoff, "compared_with": previous, "customers_in_both": int(row[5]),
                  **{n: v for n, v in found.items() if v is not None}},
        description=None if not moved else (
            f"The scores at {cutoff} moved far from those at {previous}: "
            + ", ".join(f"{k} {v:+.1%}" if k.endswith("_change") else f"{k} {v}" for k, v in moved.items())
            + f" (limits ±{STABLE_MAX_CHANGE:.0%} and {STABLE_MIN_CORRELATION}). A changed source or mapping, or a model "
            "that behaves differently, is the usual cause: compare the two cutoffs before acting on them."),
    )


SCORE_CHECKS = [every_customer_scored_once, scores_valid, scores_stable]
