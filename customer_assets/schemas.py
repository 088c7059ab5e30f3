"""Column documentation for every table, used for ``dagster/column_schema`` and the README."""

from __future__ import annotations

import dagster as dg

from customer_assets.features.logic import WINDOWS

C = tuple[str, str, str]

RAW_TRANSACTIONS: list[C] = [
    ("load_id", "VARCHAR", "Identifier of the load that read these rows"),
    ("source_row", "BIGINT", "1-based data row number in the source (across its files, in name order, when a pattern matched several)"),
    ("customer_id", "VARCHAR", "Customer id as read"),
    ("date", "VARCHAR", "Date or timestamp as read"),
    ("amount", "VARCHAR", "Line amount as read (if mapped)"),
    ("quantity", "VARCHAR", "Quantity as read (if mapped)"),
    ("unit_price", "VARCHAR", "Unit price as read (if mapped)"),
    ("order_id", "VARCHAR", "Order id as read (if mapped)"),
    ("product_id", "VARCHAR", "Product id as read (if mapped)"),
    ("n_fields", "INTEGER", "Fields on the line (whitespace files only)"),
    ("source_file", "VARCHAR", "Path of the file the row was read from"),
    ("loaded_at", "TIMESTAMP", "When the load ran"),
]
RAW_LOADS: list[C] = [
    ("load_id", "VARCHAR", "Identifier of the load"),
    ("source_file", "VARCHAR", "Absolute path of the file that was read, or of the glob pattern"),
    ("format", "VARCHAR", "Reader used: csv, parquet or whitespace"),
    ("encoding", "VARCHAR", "Text encoding used"),
    ("delimiter", "VARCHAR", "Delimiter given to the CSV reader (NULL: sniffed)"),
    ("mapping", "VARCHAR", "Column mapping as JSON (our field -> the file's column)"),
    ("rows", "BIGINT", "Data rows the load counted; rows_reconcile checks clean + rejected against it"),
    ("file_bytes", "BIGINT", "File size when loaded (the sum over the files of a pattern)"),
    ("file_modified_ns", "BIGINT", "File modification time when loaded (ns since the epoch; the latest of a pattern's files)"),
    ("stored_copy", "BOOLEAN", "Whether raw.transactions holds a copy (else it is a view over the file)"),
    ("loaded_at", "TIMESTAMP", "When the load ran (UTC)"),
    ("files", "VARCHAR", "JSON list of the files read, in order: path, bytes, modified_ns, rows, and the first_row and last_row of their source_row (NULL in loads of versions before it)"),
]
CLEAN_TRANSACTIONS: list[C] = [
    ("customer_id", "VARCHAR", "Trimmed, upper-cased customer id"),
    ("txn_date", "DATE", "Transaction date"),
    ("amount", "DOUBLE", "Line amount; negative for returns"),
    ("quantity", "DOUBLE", "Quantity; negative for returns (NULL if not mapped)"),
    ("is_return", "BOOLEAN", "True for a return (negative quantity, or negative amount when no quantity is mapped)"),
    ("is_outlier", "BOOLEAN", "Kept but flagged: |amount| > 10 x the load's 99th percentile of |amount|"),
    ("order_id", "VARCHAR", "Order id (NULL if not mapped)"),
    ("product_id", "VARCHAR", "Product id (NULL if not mapped)"),
    ("load_id", "VARCHAR", "Load that produced the row"),
    ("source_row", "BIGINT", "Row number in the source (raw.transactions.source_row)"),
]
REJECTED_TRANSACTIONS: list[C] = [
    ("load_id", "VARCHAR", "Load that produced the row"),
    ("source_row", "BIGINT", "Row number in the source (raw.transactions.source_row)"),
    ("reject_reason", "VARCHAR", "erased_customer (every value then NULL), null_customer_id, unparseable_date, future_date, date_before_1970, non_numeric_amount, amount_out_of_range, zero_quantity, negative_price or duplicate"),
    ("customer_id", "VARCHAR", "Customer id as read"),
    ("txn_date", "VARCHAR", "Date as read"),
    ("amount", "VARCHAR", "Amount as read"),
    ("quantity", "VARCHAR", "Quantity as read"),
    ("unit_price", "VARCHAR", "Unit price as read"),
    ("order_id", "VARCHAR", "Order id"),
    ("product_id", "VARCHAR", "Product id"),
    ("source_file", "VARCHAR", "The file the row was read from"),
    ("file_row", "BIGINT", "Its data row number in that file (= source_row when the source is one file)"),
]
ERASED_CUSTOMERS: list[C] = [
    ("customer_key", "VARCHAR", "sha256 of the erased customer's id as cleaned (trimmed, upper-cased); the id itself is not kept"),
    ("erased_at", "TIMESTAMP", "When it was erased (UTC)"),
]
HISTORY_CHANGES: list[C] = [
    ("load_id", "VARCHAR", "The load now in clean.transactions"),
    ("previous_load_id", "VARCHAR", "The load it replaced"),
    ("txn_date", "DATE", "A day, on or before the previous load's last date, whose clean rows differ between the two"),
    ("rows_before", "BIGINT", "Clean rows of that day in the previous load"),
    ("rows_after", "BIGINT", "Clean rows of that day now"),
    ("amount_before", "DOUBLE", "Their net amount in the previous load"),
    ("amount_after", "DOUBLE", "Their net amount now"),
]
PARTITION_INPUTS: list[C] = [
    ("cutoff_date", "DATE", "Partition c of features.customer_features"),
    ("load_id", "VARCHAR", "The clean load the partition was computed from"),
    ("history_rows", "BIGINT", "Clean transactions dated on or before c"),
    ("history_digest", "HUGEINT", "Sum of a hash of each of those rows (every field a feature reads)"),
    ("window_rows", "BIGINT", "Clean transactions in (c, c + H]; NULL when the labels were incomplete"),
    ("window_digest", "HUGEINT", "The same sum over the label window; NULL when the labels were incomplete"),
    ("written_at", "TIMESTAMP", "When the partition was written"),
    ("horizon_days", "BIGINT", "The label horizon H its labels were computed for; readers of labels recompute a partition of another H. NULL in rows of earlier versions"),
]
CUTOFF_WINDOWS: list[C] = [
    ("cutoff_date", "DATE", "Partition: the cutoff c"),
    ("horizon_days", "INTEGER", "Label window length H"),
    ("history_start", "DATE", "First transaction date in the data"),
    ("history_end", "DATE", "Last date of the calibration history (= c)"),
    ("holdout_start", "DATE", "First date of the label window (c + 1)"),
    ("holdout_end", "DATE", "Last date of the label window (c + H)"),
    ("data_end_date", "DATE", "Last date the data covers"),
    ("labels_complete", "BOOLEAN", "True when c + H <= data_end_date"),
    ("history_rows", "BIGINT", "Clean transactions in the history"),
    ("holdout_rows", "BIGINT", "Clean transactions in the label window"),
    ("customers", "BIGINT", "Customers with a purchase on or before c"),
]
CALIBRATION_TRANSACTIONS: list[C] = [
    ("cutoff_date", "DATE", "The cutoff whose history this row belongs to"),
    ("customer_id", "VARCHAR", "Customer id"),
    ("txn_date", "DATE", "Transaction date (<= cutoff_date)"),
    ("amount", "DOUBLE", "Amount; negative for returns"),
    ("quantity", "DOUBLE", "Quantity"),
    ("is_return", "BOOLEAN", "Return flag"),
    ("order_id", "VARCHAR", "Order id"),
    ("product_id", "VARCHAR", "Product id"),
]
HOLDOUT_TRANSACTIONS: list[C] = [
    CALIBRATION_TRANSACTIONS[0],
    ("labels_complete", "BOOLEAN", "Whether the whole window is inside the data"),
    *[c if c[0] != "txn_date" else ("txn_date", "DATE", "Transaction date in (cutoff_date, cutoff_date + H]") for c in CALIBRATION_TRANSACTIONS[1:]],
]
CUSTOMER_FEATURES: list[C] = [
    ("cutoff_date", "DATE", "Partition: the cutoff c"),
    ("customer_id", "VARCHAR", "Customer id"),
    ("recency_days", "INTEGER", "Days from the last purchase to c"),
    ("frequency", "INTEGER", "Repeat purchase days (purchase days - 1), as in BG/NBD"),
    ("purchase_days", "INTEGER", "Distinct days with a purchase"),
    ("n_transactions", "INTEGER", "Purchase lines (returns excluded)"),
    ("monetary_total", "DOUBLE", "Net spend to date (returns subtracted)"),
    ("monetary_mean", "DOUBLE", "Net spend per purchase day"),
    ("repeat_monetary_mean", "DOUBLE", "Mean spend of repeat purchase days (0 if none); Gamma-Gamma input"),
    ("first_purchase_amount", "DOUBLE", "Spend on the first purchase day"),
    ("max_day_spend", "DOUBLE", "Largest single-day spend"),
    ("tenure_days", "INTEGER", "Days from the first purchase to c (BG/NBD T)"),
    ("t_x_days", "INTEGER", "Days from the first to the last purchase (BG/NBD t_x)"),
    ("mean_gap_days", "DOUBLE", "Mean days between purchase days (NULL for one-time buyers)"),
    ("last_gap_days", "DOUBLE", "Days between the last two purchase days (NULL for one-time buyers)"),
    *[(f"spend_{w}d", "DOUBLE", f"Net spend in (c - {w}, c]") for w in WINDOWS],
    *[(f"purchases_{w}d", "INTEGER", f"Purchase days in (c - {w}, c]") for w in WINDOWS],
    ("momentum_ratio", "DOUBLE", "Purchase rate in the last 90 days / lifetime purchase rate (1 = steady)"),
    ("return_amount", "DOUBLE", "Total returned amount (<= 0)"),
    ("return_count", "INTEGER", "Return lines"),
    ("first_purchase_date", "DATE", "First purchase date"),
    ("last_purchase_date", "DATE", "Last purchase date on or before c"),
    ("labels_complete", "BOOLEAN", "True when the label window (c, c + H] is inside the data"),
    ("label_spend", "DOUBLE", "Label: net spend in (c, c + H]; NULL unless labels_complete"),
    ("label_purchase", "BOOLEAN", "Label: any purchase in (c, c + H]; NULL unless labels_complete"),
    ("label_purchase_days", "INTEGER", "Label: purchase days in (c, c + H]; NULL unless labels_complete"),
    ("label_days_to_next_purchase", "INTEGER", "Label: days from c to the next purchase; NULL if none in the window or incomplete"),
]
CUSTOMER_SEGMENTS: list[C] = [
    ("cutoff_date", "DATE", "Partition: the cutoff c"),
    ("customer_id", "VARCHAR", "Customer id"),
    ("cluster_id", "INTEGER", "K-Means cluster, ordered by descending value (0 = most valuable)"),
    ("segment", "VARCHAR", "Persona derived from the cluster centroid (Champions, Loyal, Promising, New, At Risk, Needs Attention, Hibernating)"),
    ("distance_to_centroid", "DOUBLE", "Euclidean distance to the centroid in scaled space"),
]
SEGMENT_CENTROIDS: list[C] = [
    ("cutoff_date", "DATE", "Partition"),
    ("cluster_id", "BIGINT", "Cluster"),
    ("segment", "VARCHAR", "Persona"),
    ("size", "BIGINT", "Customers in the cluster"),
    ("centroid", "DOUBLE[]", "Centroid in scaled log space"),
    ("feature_names", "VARCHAR[]", "Features, in centroid order"),
    ("scaler_mean", "DOUBLE[]", "Scaler mean of log1p(features)"),
    ("scaler_scale", "DOUBLE[]", "Scaler standard deviation of log1p(features)"),
    ("k", "BIGINT", "Number of clusters"),
    ("silhouette", "DOUBLE", "Silhouette of the chosen k"),
    ("mean_recency_days", "DOUBLE", "Profile: mean recency"),
    ("mean_purchase_days", "DOUBLE", "Profile: mean purchase days"),
    ("mean_monetary_total", "DOUBLE", "Profile: mean net spend"),
]
MODEL_REGISTRY: list[C] = [
    ("cutoff_date", "DATE", "Partition t: features at t (and earlier stacked cutoffs), labels up to t + H"),
    ("model_name", "VARCHAR", "churn, spend, ltv or next_purchase"),
    ("family", "VARCHAR", "Champion family chosen on validation"),
    ("promoted", "BOOLEAN", "False when it did not beat the naive baseline on validation"),
    ("library", "VARCHAR", "Library that fitted the model"),
    ("library_version", "VARCHAR", "Its version"),
    ("artifact_format", "VARCHAR", "xgboost-json, lightgbm-text, json-coefficients, json-params, ensemble-json (the members' own texts nested in JSON), or bgnbd-features (BG/NBD itself won; `features` names the output served): portable, loading runs no code"),
    ("artifact", "VARCHAR", "The model itself"),
    ("features", "VARCHAR", "JSON list of input features, in order"),
    ("params", "VARCHAR", "JSON hyper-parameters (or fitted parameters)"),
    ("metrics", "VARCHAR", "JSON validation metrics (out of time)"),
    ("calibration", "VARCHAR", "JSON calibration mapping (churn: Platt a, b, and the out-of-time windows and rows they were fitted on; spend: the BG/NBD blend weight, where it came from (`validation`, `config`, or `none: …` when the champion is BG/NBD + Gamma-Gamma alone) and `season_ratio`; both: `same_season`, the same-season check's figures and outcome)"),
    ("training_cutoffs", "VARCHAR", "JSON list of the cutoffs whose rows trained it"),
    ("n_train_rows", "BIGINT", "Training rows"),
    ("notes", "VARCHAR", "JSON list of fallbacks taken while fitting"),
    ("feature_profile", "VARCHAR", "JSON, per input feature, of the customers it learned from (those at t; for ltv, those it was fitted on): the deciles (`edges`), the share of customers in each bin and with no value (`shares`, the last one) and `n`; `min` and `max` over every row the model was fitted on (all its stacked cutoffs; `range_n` values). The check `features_like_training` compares the customers scored with it"),
    ("trained_at", "TIMESTAMP", "When it was fitted"),
    ("horizon_days", "BIGINT", "The label horizon H it was trained for (CUSTOMER_ASSETS_HORIZON_DAYS then); scoring refuses a model of another H. NULL in rows of earlier versions"),
    ("ltv_horizon_days", "BIGINT", "The LTV horizon it was trained for (CUSTOMER_ASSETS_LTV_HORIZON_DAYS then); scoring refuses an LTV model of another one. NULL in rows of earlier versions"),
]
FEATURE_DRIFT: list[C] = [
    ("cutoff_date", "DATE", "Partition: the scoring cutoff s"),
    ("model", "VARCHAR", "churn, spend, ltv or next_purchase: a model that scored s"),
    ("model_partition", "DATE", "The partition of that model (s - H, or an earlier one kept because s - H's was not promoted)"),
    ("feature", "VARCHAR", "An input feature of the model"),
    ("psi", "DOUBLE", "Population stability index of the customers at s against those the model learned from, over the training deciles plus a bin for missing values (each share floored at 0.0001)"),
    ("psi_limit", "DOUBLE", "The PSI above which the check warns: 0.25 (CUSTOMER_ASSETS_DRIFT_PSI), or what chance gives two samples of these sizes one time in 1,000 when that is more (few customers)"),
    ("share_below_min", "DOUBLE", "Share of the customers at s below the smallest training value"),
    ("share_above_max", "DOUBLE", "Share of the customers at s above the largest training value"),
    ("outside_limit", "DOUBLE", "The share outside the training range above which the check warns: 10% (CUSTOMER_ASSETS_DRIFT_OUTSIDE), or what chance gives one time in 1,000 when so few customers were compared that it is more"),
    ("missing_share_then", "DOUBLE", "Share of the training customers with no value"),
    ("missing_share_now", "DOUBLE", "Share of the customers at s with no value"),
    ("past_limits", "BOOLEAN", "psi > psi_limit, or share_below_min + share_above_max > outside_limit: the check features_like_training warns"),
]
SCORED_CUSTOMERS: list[C] = [
    ("cutoff_date", "DATE", "Partition: the scoring cutoff s (history up to s)"),
    ("customer_id", "VARCHAR", "Customer id"),
    ("segment", "VARCHAR", "Persona at s"),
    ("purchase_probability", "DOUBLE", "P(at least one purchase in (s, s + H])"),
    ("churn_probability", "DOUBLE", "P(no purchase in (s, s + H]) = 1 - purchase_probability"),
    ("predicted_spend", "DOUBLE", "Expected net spend in (s, s + H]"),
    ("predicted_ltv", "DOUBLE", "Expected net spend over the LTV horizon (BG/NBD + Gamma-Gamma, times the share of "
                                "purchase-day spend kept after returns; 1 without returns)"),
    ("predicted_days_to_next_purchase", "DOUBLE", "Predicted days from s to the next purchase (may exceed H)"),
    ("value_decile", "INTEGER", "1-10 by predicted_ltv; 10 = most valuable tenth"),
    ("recommended_action", "VARCHAR", "Next-best action from segment, churn risk and value"),
    ("horizon_days", "BIGINT", "H"),
    ("ltv_horizon_days", "BIGINT", "LTV horizon in days"),
    ("model_cutoff_date", "DATE", "Partition of the models used (= s - H)"),
    ("top_drivers", "VARCHAR", "The 3 features that moved this customer's churn risk and spend most, from the models' own "
                               "per-row contributions (link scale), e.g. 'recency_days (churn +0.84)'"),
    ("models_kept", "VARCHAR", "NULL when all four models are of model_cutoff_date. Otherwise the models that scoring "
                               "kept from an earlier partition because that of model_cutoff_date was not promoted, "
                               "e.g. 'churn 1997-12-01'"),
    ("outside_training_range", "VARCHAR", "The model inputs on which this customer lies outside the range of the "
                                          "customers the models learned from, e.g. 'tenure_days, recency_days': "
                                          "their scores extrapolate, and trees score them as the most extreme "
                                          "customers they saw. NULL: inside every range"),
]


def column_schema(columns: list[C]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns])

BACKTEST_METRICS: list[C] = [
    ("cutoff_date", "DATE", "Partition t: the model partition under test"),
    ("eval_cutoff_date", "DATE", "Scoring cutoff s = t + H; actual purchases of (s, s + H] are the truth"),
    ("task", "VARCHAR", "purchase, spend, next_purchase; purchase_one_time_buyers (the purchase scores of customers with a single purchase day by s); purchase_inside_training_range, purchase_outside_training_range, spend_inside_training_range and spend_outside_training_range (the customers inside every range of the inputs the models learned from, and those outside one, as scores.scored_customers.outside_training_range names them at s)"),
    ("system", "VARCHAR", "champion, or a baseline: bgnbd, bgnbd_gamma_gamma, neg_recency, frequency, last_h_spend, seed_xgboost, recency"),
    ("metric", "VARCHAR", "roc_auc, pr_auc, brier, log_loss, ece, r2, rmse, aggregate_error, normalized_gini, top10_share, mae, c_index, mae_days_buyers; for purchase_one_time_buyers and purchase_*_training_range also mean_predicted and observed_rate; for spend_*_training_range mean_predicted and mean_actual"),
    ("value", "DOUBLE", "The metric"),
    ("diff_champion_minus_system", "DOUBLE", "Champion minus this baseline (headline metrics only)"),
    ("diff_ci_low", "DOUBLE", "Paired bootstrap 2.5% quantile of that difference (customers resampled; above 50,000 customers, 50,000 per resample, rescaled by sqrt(50,000 / n))"),
    ("diff_ci_high", "DOUBLE", "Paired bootstrap 97.5% quantile"),
    ("n_customers", "BIGINT", "Customers scored (for task purchase_one_time_buyers: the one-time buyers; for the *_training_range tasks: the customers of that group)"),
]
RELIABILITY: list[C] = [
    ("cutoff_date", "DATE", "Model partition t"),
    ("system", "VARCHAR", "champion"),
    ("bin", "BIGINT", "1..10, equal-width probability bins"),
    ("lower", "DOUBLE", "Bin lower edge"),
    ("upper", "DOUBLE", "Bin upper edge"),
    ("count", "BIGINT", "Customers in the bin"),
    ("mean_predicted", "DOUBLE", "Mean predicted purchase probability"),
    ("observed_rate", "DOUBLE", "Share that did purchase"),
]
SPEND_DECILES: list[C] = [
    ("cutoff_date", "DATE", "Model partition t"),
    ("eval_cutoff_date", "DATE", "Scoring cutoff s = t + H; the spend of (s, s + H] is the truth"),
    ("system", "VARCHAR", "champion"),
    ("decile", "BIGINT", "10 = the tenth of the customers forecast to spend most in (s, s + H], 1 = the least (ranked as value_decile ranks the LTV)"),
    ("customers", "BIGINT", "Customers in the decile"),
    ("predicted_spend", "DOUBLE", "Total forecast spend of the decile; the ten add up to the forecast's total"),
    ("actual_spend", "DOUBLE", "Total net spend of the decile in (s, s + H]"),
    ("aggregate_error", "DOUBLE", "(predicted_spend - actual_spend) / actual_spend; NULL when the decile spent nothing"),
    ("share_of_actual", "DOUBLE", "The decile's share of all the actual spend (decile 10: about the top-10% share)"),
    ("mean_purchase_probability", "DOUBLE", "Mean purchase probability of the decile's customers"),
    ("observed_purchase_rate", "DOUBLE", "Share of them that bought in (s, s + H]"),
]
SEGMENT_METRICS: list[C] = [
    ("cutoff_date", "DATE", "Model partition t"),
    ("eval_cutoff_date", "DATE", "Scoring cutoff s = t + H; the purchases of (s, s + H] are the truth"),
    ("system", "VARCHAR", "champion"),
    ("segment", "VARCHAR", "The customers' persona at s"),
    ("segments_from", "VARCHAR", "stored (segments.customer_segments at s, what scoring at s served) or fitted (none stored at s: fitted here on the features at s as segments/customer_segments would fit them)"),
    ("customers", "BIGINT", "Customers in the segment"),
    ("mean_purchase_probability", "DOUBLE", "Mean purchase probability of its customers"),
    ("observed_purchase_rate", "DOUBLE", "Share of them that bought in (s, s + H]"),
    ("roc_auc", "DOUBLE", "ROC-AUC of the purchase probability within the segment; NULL when all or none bought"),
    ("predicted_spend", "DOUBLE", "Total forecast spend of the segment; the segments add up to the forecast's total"),
    ("actual_spend", "DOUBLE", "Total net spend of the segment in (s, s + H]"),
    ("aggregate_error", "DOUBLE", "(predicted_spend - actual_spend) / actual_spend; NULL when the segment spent nothing"),
    ("share_of_actual", "DOUBLE", "The segment's share of all the actual spend"),
]
LTV_METRICS: list[C] = [
    ("cutoff_date", "DATE", "Partition c: the cutoff whose LTV is checked (served by the models/ltv of c - H)"),
    ("task", "VARCHAR", "ltv"),
    ("system", "VARCHAR", "champion (the LTV scoring serves at c), bgnbd_gamma_gamma (refitted on the histories at c) or last_365d_spend"),
    ("metric", "VARCHAR", "r2, rmse, aggregate_error, normalized_gini, top10_share, mae"),
    ("value", "DOUBLE", "The metric over (c, c + LTV horizon]"),
    ("window_end", "DATE", "c + LTV horizon"),
    ("n_customers", "BIGINT", "Customers scored"),
]
