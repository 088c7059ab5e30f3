"""Gate on the models: validation at least as good as the naive baseline.

A model that fails is stored but not promoted. The check fails with severity WARN when
an earlier promoted model exists (scoring keeps using it, so nothing needs blocking),
and with ERROR, which blocks downstream assets, when there is none to fall back on.
"""

import json

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.storage import table_exists


def _beats_baseline_check(name: str, metric: str, baseline: str):
    @dg.asset_check(asset=dg.AssetKey(["models", name]), name=f"{name}_beats_naive_baseline", blocking=True, pool="duckdb",
                    description=f"The newest models/{name}: validation {metric} > naive {baseline} (else not promoted).")
    def _check(duckdb: DuckDBResource) -> dg.AssetCheckResult:
        with duckdb.get_connection() as conn:
            if not table_exists(conn, "models", name):
                return dg.AssetCheckResult(passed=False, metadata={"reason": f"models.{name} does not exist"})
            row = conn.execute(
                f"SELECT cutoff_date, promoted, metrics FROM models.{name} ORDER BY trained_at DESC LIMIT 1"
            ).fetchone()
            fallback = conn.execute(f"SELECT count(*) FROM models.{name} WHERE promoted AND cutoff_date < ?", [row[0]]).fetchone()[0]
        metrics = json.loads(row[2])
        meta = {"partition": str(row[0]), "validation": metrics.get(metric), "naive_baseline": metrics.get(baseline)}
        if row[1]:
            return dg.AssetCheckResult(passed=True, metadata=meta)
        severity = dg.AssetCheckSeverity.WARN if fallback else dg.AssetCheckSeverity.ERROR
        return dg.AssetCheckResult(passed=False, severity=severity,
                                   metadata={**meta, "earlier_promoted_models": int(fallback)})

    return _check


churn_beats_baseline = _beats_baseline_check("churn", "validation_roc_auc", "baseline_neg_recency_roc_auc")
spend_beats_baseline = _beats_baseline_check("spend", "validation_r2", "baseline_last_h_spend_r2")
MODEL_CHECKS = [churn_beats_baseline, spend_beats_baseline]
