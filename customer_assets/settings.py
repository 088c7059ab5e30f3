"""Project-wide settings: defaults under ``data/``, overridable by environment variables.

Nothing here depends on the working directory: the default data folder is the
project's own ``data/`` (resolved from this file), and every path can be
overridden by an environment variable or by Dagster config.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_SOURCE = DATA_DIR / "CDNOW_master.txt"
DEFAULT_WAREHOUSE = DATA_DIR / "warehouse.duckdb"

ENV_SOURCE = "CUSTOMER_ASSETS_SOURCE"
ENV_COLUMNS = "CUSTOMER_ASSETS_COLUMNS"
ENV_DB = "CUSTOMER_ASSETS_DB"
ENV_HORIZON = "CUSTOMER_ASSETS_HORIZON_DAYS"
ENV_LTV_HORIZON = "CUSTOMER_ASSETS_LTV_HORIZON_DAYS"
ENV_START = "CUSTOMER_ASSETS_START_DATE"
ENV_SERVING = "CUSTOMER_ASSETS_SERVING_DIR"
ENV_REPORTS = "CUSTOMER_ASSETS_REPORTS_DIR"
ENV_KEEP_CUTOFFS = "CUSTOMER_ASSETS_KEEP_CUTOFFS"
ENV_SAME_SEASON = "CUSTOMER_ASSETS_SAME_SEASON"
ENV_SPEND_BLEND_WEIGHT = "CUSTOMER_ASSETS_SPEND_BLEND_WEIGHT"
ENV_DATE_ORDER = "CUSTOMER_ASSETS_DATE_ORDER"
ENV_MAX_HISTORY_LOSS = "CUSTOMER_ASSETS_MAX_HISTORY_LOSS"
ENV_MAX_STALL_DAYS = "CUSTOMER_ASSETS_MAX_STALL_DAYS"
ENV_DRIFT_PSI = "CUSTOMER_ASSETS_DRIFT_PSI"
ENV_DRIFT_OUTSIDE = "CUSTOMER_ASSETS_DRIFT_OUTSIDE"
ENV_TIMEZONE = "CUSTOMER_ASSETS_TIMEZONE"
ENV_ALERT_WEBHOOK = "CUSTOMER_ASSETS_ALERT_WEBHOOK"
ENV_UI_URL = "CUSTOMER_ASSETS_UI_URL"
ENV_MAX_RUNTIME = "CUSTOMER_ASSETS_MAX_RUNTIME_SECONDS"
ENV_ALERT_REPEAT_DAYS = "CUSTOMER_ASSETS_ALERT_REPEAT_DAYS"
ENV_SEGMENTS = "CUSTOMER_ASSETS_SEGMENTS"
ENV_NIGHTLY_START = "CUSTOMER_ASSETS_NIGHTLY_START"
ENV_ENCODING = "CUSTOMER_ASSETS_ENCODING"
ENV_FORMAT = "CUSTOMER_ASSETS_FORMAT"
ENV_CURRENCY = "CUSTOMER_ASSETS_CURRENCY"
ENV_STACK_OPTIONS = "CUSTOMER_ASSETS_STACK_OPTIONS"
ENV_MAX_ROWS_PER_CUTOFF = "CUSTOMER_ASSETS_MAX_ROWS_PER_CUTOFF"
# settings that both Dagster config and an environment variable can set: config field -> variable
SETTING_ENVS = {"same_season": ENV_SAME_SEASON, "spend_blend_weight": ENV_SPEND_BLEND_WEIGHT, "date_order": ENV_DATE_ORDER,
                "max_history_loss": ENV_MAX_HISTORY_LOSS, "stack_options": ENV_STACK_OPTIONS,
                "max_rows_per_cutoff": ENV_MAX_ROWS_PER_CUTOFF}


class SettingError(ValueError):
    """A bad value of one of ``SETTING_ENVS``; ``setting`` names its config field, so the asset can say where it is set."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting

    def where(self, config_of: str = "") -> str:
        return f"(set by the `{self.setting}` config{f' of {config_of}' if config_of else ''} or {SETTING_ENVS[self.setting]})"


def _setting_env(setting: str, kind: type, default, fix: str):
    """The number (``kind``: int or float) in the variable of ``setting`` (``SETTING_ENVS``); ``default`` when it is
    unset or blank. Another value raises ``SettingError`` for ``setting``, saying ``fix`` (what to set instead)."""
    env = SETTING_ENVS[setting]
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SettingError(setting, f"{env}={raw!r} is not {'a whole number' if kind is int else 'a number'}: "
                           f"{fix}") from None


# The bundled CDNOW file: whitespace separated, header `customer_id date number_of_cds dollar_value`.
CDNOW_COLUMNS = "customer_id=customer_id,date=date,quantity=number_of_cds,amount=dollar_value"

FIELDS = ("customer_id", "date", "amount", "quantity", "unit_price", "order_id", "product_id")
MAPPING_HELP = (
    f"Set the mapping with the environment variable {ENV_COLUMNS} (or the `columns` config of "
    "raw/transactions), e.g. customer_id=CustomerID,date=InvoiceDate,quantity=Quantity,"
    "unit_price=UnitPrice,order_id=InvoiceNo (or amount=... instead of quantity and unit_price)."
)


def _whole_env(name: str, default: int, what: str, least: int = 0) -> int:
    """The whole number (``least`` or more) that the environment variable ``name`` holds; ``default`` when it is unset
    or blank. A bad value fails saying that ``name`` must be ``what``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from exc
    if value < least:
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def keep_cutoffs(value: int | None = None) -> int:
    """How many of the newest cutoffs ``features.customer_features`` and ``segments.customer_segments`` keep.

    ``value`` (Dagster config) wins over ``CUSTOMER_ASSETS_KEEP_CUTOFFS``; 0, the default, keeps every cutoff.
    Read at run time, so a changed setting applies to the next run.
    """
    if value is None:
        return _whole_env(ENV_KEEP_CUTOFFS, 0, "a whole number of cutoffs (0 keeps all)")
    if value < 0:
        raise ValueError(f"keep_cutoffs ({ENV_KEEP_CUTOFFS}) must be 0 (keep all) or a positive number, got {value}")
    return value


def same_season(value: str | None = None) -> str:
    """The same-season mode of models/churn and models/spend: ``value`` (Dagster config) wins over
    ``CUSTOMER_ASSETS_SAME_SEASON``; the default is "checked". Read at run time, so the nightly schedule's runs
    follow the environment. The models validate the name (``SEASON_MODES`` in models/logic.py)."""
    if value is None:
        raw = os.environ.get(ENV_SAME_SEASON, "").strip()
        value = raw or "checked"
    return value


def date_order(value: str = "") -> str:
    """How clean/transactions reads slash dates: ``value`` (Dagster config) wins over ``CUSTOMER_ASSETS_DATE_ORDER``;
    the default is "auto" (decided from the file). Read at run time. The cleaning validates the name."""
    return value.strip() or os.environ.get(ENV_DATE_ORDER, "").strip() or "auto"


DEFAULT_MAX_HISTORY_LOSS = 0.05


def max_history_loss(value: float | None = None) -> float:
    """The largest share of its history a reload of the same source may lose before clean/transactions refuses it.

    ``value`` (Dagster config) wins over ``CUSTOMER_ASSETS_MAX_HISTORY_LOSS``; the default is 0.05. The history
    is the previous load's clean rows dated on or before its last date, and the customers in them; 1 accepts any
    reload. Read at run time.
    """
    if value is None:
        value = _setting_env("max_history_loss", float, DEFAULT_MAX_HISTORY_LOSS,
                             "set a share from 0 to 1, or unset it for the default 0.05")
    if not 0.0 <= value <= 1.0:
        raise SettingError("max_history_loss", f"max_history_loss {value!r} is not a share from 0 to 1")
    return float(value)


def timezone(value: str = "") -> str:
    """The time zone in which the warehouse turns instants into dates (a Parquet TIMESTAMPTZ column's purchase
    dates, "today" for the future-date rule): ``value`` (the duckdb resource's ``timezone``) wins over
    ``CUSTOMER_ASSETS_TIMEZONE``; the default is UTC, so a file cleans to the same dates on every machine."""
    return value.strip() or os.environ.get(ENV_TIMEZONE, "").strip() or "UTC"


def schedule_timezone() -> str:
    """The time zone of the nightly schedules: ``CUSTOMER_ASSETS_TIMEZONE`` (the shop's zone, in which instants
    become dates and "yesterday" is reckoned), else UTC. An unknown name fails naming the variable."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    tz = timezone()
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Unknown time zone {tz!r} ({ENV_TIMEZONE}): use an IANA name such as UTC or "
                         "America/New_York") from None
    return tz


DEFAULT_NIGHTLY_START = "00:30"


def nightly_start() -> tuple[int, int]:
    """``CUSTOMER_ASSETS_NIGHTLY_START``: the time of day (HH:MM, 24-hour, in ``schedule_timezone()``) at which the
    nightly ingest starts; the other schedules follow it (see ``schedules.OFFSET_MINUTES``). Default 00:30. Read
    when the definitions load."""
    raw = os.environ.get(ENV_NIGHTLY_START, "").strip() or DEFAULT_NIGHTLY_START
    found = re.fullmatch(r"(\d{1,2}):(\d{2})", raw)
    if not found or int(found[1]) > 23 or int(found[2]) > 59:
        raise ValueError(f"{ENV_NIGHTLY_START} must be a time of day as HH:MM (24-hour), such as 00:30 or 05:15, "
                         f"got {raw!r}")
    return int(found[1]), int(found[2])


def max_stall_days() -> float:
    """How many days the data's last date may stay the same across loads before ``source_advancing`` warns
    (``CUSTOMER_ASSETS_MAX_STALL_DAYS``, default 3; 0 switches the warning off). Read at run time."""
    raw = os.environ.get(ENV_MAX_STALL_DAYS, "").strip()
    try:
        value = float(raw) if raw else 3.0
    except ValueError:
        raise ValueError(f"{ENV_MAX_STALL_DAYS}={raw!r} is not a number of days (0 switches the warning off)") from None
    if not value >= 0:
        raise ValueError(f"{ENV_MAX_STALL_DAYS} must be 0 or more days, got {raw!r}")
    return value


def drift_limits() -> tuple[float, float]:
    """The limits of the check ``features_like_training``, before chance raises them for few customers: the PSI
    (``CUSTOMER_ASSETS_DRIFT_PSI``, default 0.25, above 0) and the share of customers outside a training range
    (``CUSTOMER_ASSETS_DRIFT_OUTSIDE``, default 0.10, above 0 and at most 1; 1 never warns on the range). Read at
    run time, so the nightly runs follow them."""
    out = []
    for env, default, top, what in ((ENV_DRIFT_PSI, 0.25, float("inf"), "a PSI above 0, e.g. 0.25"),
                                    (ENV_DRIFT_OUTSIDE, 0.10, 1.0, "a share above 0 and at most 1, e.g. 0.10")):
        raw = os.environ.get(env, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError:
            raise ValueError(f"{env}={raw!r} is not a number: set {what}, or unset it for {default}") from None
        if not 0 < value <= top:
            raise ValueError(f"{env}={raw!r} is out of range: set {what}, or unset it for {default}")
        out.append(value)
    return out[0], out[1]


def spend_blend_weight(value: float | None = None) -> float | None:
    """models/spend's fixed weight on BG/NBD + Gamma-Gamma: ``value`` (Dagster config) wins over
    ``CUSTOMER_ASSETS_SPEND_BLEND_WEIGHT``; unset (None), validation chooses it. Read at run time, like
    ``same_season``. The model checks the range."""
    if value is not None:
        return value
    return _setting_env("spend_blend_weight", float, None,
                        "set a weight from 0 to 1, or unset it to choose the weight on validation")


DEFAULT_CURRENCY = "$"


def currency() -> str:
    """What money amounts start with in the report and the charts: ``CUSTOMER_ASSETS_CURRENCY`` (e.g. "€", "£",
    "Rp " or "CHF "), else "$". The warehouse holds plain numbers in the source's own currency; this only labels
    them. Read at run time. A value that is not short text fails naming the variable: it goes into HTML and SVG."""
    raw = os.environ.get(ENV_CURRENCY, "")
    if not raw.strip():
        return DEFAULT_CURRENCY
    if len(raw) > 8 or any(c in raw for c in "<>&\"'{}") or not raw.isprintable():
        raise ValueError(f"{ENV_CURRENCY}={raw!r} is not a currency label: set up to 8 printable characters without "
                         "<, >, &, quotes or braces that money amounts start with (e.g. €, £, 'Rp ' or 'CHF '), or unset "
                         "it for $")
    return raw


def stack_options(value: list[str] | None, default: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The candidate stackings of models/churn, spend and next_purchase as (cutoffs, days apart): ``value`` (their
    ``stack_options`` config, e.g. ``["4x30", "8x30"]``) wins over ``CUSTOMER_ASSETS_STACK_OPTIONS`` (the same,
    comma-separated: ``4x30,8x30``); ``default`` when neither is set. Read at run time, so the nightly runs, which
    carry no config, follow the variable. A malformed option raises ``SettingError`` naming it."""
    if value is None:
        raw = os.environ.get(ENV_STACK_OPTIONS, "").strip()
        if not raw:
            return default
        value = raw.split(",")
    out = []
    for option in value:
        try:
            n, step = (int(v) for v in option.strip().lower().split("x"))
        except ValueError:
            raise SettingError("stack_options", f"stack option {option.strip()!r} is not <cutoffs>x<days>, e.g. 4x30") from None
        if n < 1 or step < 1:
            raise SettingError("stack_options", f"stack option {option.strip()!r} needs at least 1 cutoff and 1 day")
        out.append((n, step))
    if not out:
        raise SettingError("stack_options", "stack_options is empty: give at least one, e.g. 4x30")
    return tuple(out)


def max_rows_per_cutoff(value: int | None, default: int) -> int:
    """How many customers of each cutoff the models train on (a fixed hash sample beyond it, the same customers at
    every cutoff): ``value`` (the model assets' ``max_rows_per_cutoff`` config) wins over
    ``CUSTOMER_ASSETS_MAX_ROWS_PER_CUTOFF``; ``default`` when neither is set. Read at run time."""
    if value is None:
        value = _setting_env("max_rows_per_cutoff", int, default,
                             f"set how many customers per cutoff to train on, or unset it for {default:,}")
    if value < 1:
        raise SettingError("max_rows_per_cutoff", f"max_rows_per_cutoff {value} is not a number of customers, 1 or more")
    return value


# A run of a job that lasts longer is failed by Dagster's run monitoring (enabled in dagster.yaml), so that a hung run
# does not hold the one-run queue through the next nights; its failure is alerted like any other. The longest job run
# measured at a million customers took under 5 minutes (training; docs/scaling.md), so 3 hours only stops a hang.
DEFAULT_MAX_RUNTIME_SECONDS = 3 * 3600


def max_runtime_seconds() -> int:
    """``CUSTOMER_ASSETS_MAX_RUNTIME_SECONDS``: the longest a run of the project's jobs may last (0: no limit). Read
    when the definitions load (it is a tag of the jobs)."""
    return _whole_env(ENV_MAX_RUNTIME, DEFAULT_MAX_RUNTIME_SECONDS, "a whole number of seconds (0 for no limit)")


HORIZON_DAYS = _whole_env(ENV_HORIZON, 90, "a positive whole number of days", least=1)
LTV_HORIZON_DAYS = _whole_env(ENV_LTV_HORIZON, 365, "a positive whole number of days", least=1)
PARTITIONS_START = os.environ.get(ENV_START, "1997-01-01")
try:
    date.fromisoformat(PARTITIONS_START)
except ValueError as exc:  # pragma: no cover - configuration error path
    raise ValueError(f"{ENV_START} must be a YYYY-MM-DD date, got {PARTITIONS_START!r}") from exc


DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file


def _config_path(env: str, value: str) -> Path:
    """A path from configuration, refused with the variable's name if it cannot be a path at all."""
    if "\x00" in value or not value.strip():
        raise ValueError(f"{env} is not a usable path: {value!r}")
    return Path(value).expanduser()


def _folder(env: str, path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ValueError(f"{env} must be a folder, got a file: {path}")
    return path


def warehouse_path(value: str | None = None) -> str:
    """The DuckDB warehouse: ``value`` (e.g. the CLI's ``--db``), ``$CUSTOMER_ASSETS_DB`` or ``data/warehouse.duckdb``.

    MotherDuck style ``md:`` URIs pass through unchanged. A local path is refused if it is a
    folder, the transaction source itself, or an existing file that is not a DuckDB database
    (so a mistyped setting cannot make DuckDB overwrite someone's CSV).
    """
    value = value or os.environ.get(ENV_DB) or str(DEFAULT_WAREHOUSE)
    if value.startswith("md:") or value == ":memory:":
        return value
    path = _config_path(ENV_DB, value)
    if path.exists() and path.is_dir():
        raise ValueError(f"{ENV_DB} points at a directory, not a DuckDB file: {path}")
    if path.exists() and path.resolve() == Path(source_path()).expanduser().resolve():
        raise ValueError(f"{ENV_DB} points at the transaction source ({path}); give the warehouse its own file, "
                         f"e.g. {DEFAULT_WAREHOUSE}")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            head = fh.read(12)
        if head[8:12] != DUCKDB_MAGIC:
            raise ValueError(f"{ENV_DB} points at {path}, which exists but is not a DuckDB database file; refusing "
                             "to open it as the warehouse. Point it at a new file or an existing warehouse.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def serving_dir(database: str | None = None) -> Path:
    """Folder of the read-only serving copy.

    ``$CUSTOMER_ASSETS_SERVING_DIR`` if set, else a ``serving/`` folder next to the warehouse
    file (``data/serving`` by default, and for MotherDuck).
    """
    value = os.environ.get(ENV_SERVING)
    if value:
        return _folder(ENV_SERVING, _config_path(ENV_SERVING, value))
    database = database or warehouse_path()
    if database.startswith("md:") or database == ":memory:":
        return DATA_DIR / "serving"
    return Path(database).expanduser().resolve().parent / "serving"


def reports_dir(database: str | None = None) -> Path:
    """Folder of the HTML reports: ``$CUSTOMER_ASSETS_REPORTS_DIR``, else ``reports/`` next to the warehouse."""
    value = os.environ.get(ENV_REPORTS)
    if value:
        return _folder(ENV_REPORTS, _config_path(ENV_REPORTS, value))
    database = database or warehouse_path()
    if database.startswith("md:") or database == ":memory:":
        return DATA_DIR / "reports"
    return Path(database).expanduser().resolve().parent / "reports"


def source_path() -> str:
    return os.environ.get(ENV_SOURCE) or str(DEFAULT_SOURCE)


def source_columns() -> str:
    if os.environ.get(ENV_COLUMNS):
        return os.environ[ENV_COLUMNS]
    if os.environ.get(ENV_SOURCE):
        return ""  # a user's own file needs a user's own mapping
    return CDNOW_COLUMNS


@dataclass(frozen=True)
class ColumnMapping:
    """Our field names -> the source file's column names."""

    columns: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> ColumnMapping:
        """Parse ``field=Column,field=Column``; raise a clear error on anything else."""
        if not text or not text.strip():
            raise ValueError("No column mapping was given. " + MAPPING_HELP)
        mapping: dict[str, str] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"Column mapping entry {part.strip()!r} is not field=Column. " + MAPPING_HELP)
            field, column = (s.strip() for s in part.split("=", 1))
            if field not in FIELDS:
                raise ValueError(
                    f"Unknown field {field!r} in the column mapping; known fields are {', '.join(FIELDS)}. " + MAPPING_HELP
                )
            if not column:
                raise ValueError(f"Field {field!r} is mapped to an empty column name. " + MAPPING_HELP)
            if field in mapping:
                raise ValueError(f"Field {field!r} is mapped twice in the column mapping. " + MAPPING_HELP)
            mapping[field] = column
        missing = [f for f in ("customer_id", "date") if f not in mapping]
        if missing:
            raise ValueError(f"The column mapping lacks the required field(s) {', '.join(missing)}. " + MAPPING_HELP)
        if "amount" not in mapping and not ("quantity" in mapping and "unit_price" in mapping):
            raise ValueError(
                "The column mapping needs either amount, or both quantity and unit_price. " + MAPPING_HELP
            )
        return cls(mapping)


IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sql_literal(value: str) -> str:
    """A SQL string literal. Paths and ids end up in stored view definitions, so no bound parameters."""
    if "\x00" in value:
        raise ValueError("A NUL byte cannot appear in a SQL literal")
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """Quote a column name read from a user's file for DuckDB SQL (doubling embedded quotes)."""
    if "\x00" in name:
        raise ValueError(f"Column name {name!r} contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def checked_ident(name: str) -> str:
    """A schema/table identifier of our own: letters, digits and underscores only."""
    if not IDENT_RE.match(name):
        raise ValueError(f"Invalid SQL identifier {name!r}")
    return name


DEFAULT_ALERT_REPEAT_DAYS = 7


def alert_repeat_days() -> int:
    """``CUSTOMER_ASSETS_ALERT_REPEAT_DAYS``: how many days a check that keeps warning goes without a new alert (0: an
    alert for every run in which it warns). Read when the sensor runs."""
    return _whole_env(ENV_ALERT_REPEAT_DAYS, DEFAULT_ALERT_REPEAT_DAYS,
                      "a whole number of days (0 to post every warning)")


def segment_count(value: int | None = None) -> int:
    """How many segments ``segments/customer_segments`` fits: ``value`` (its ``k`` config) wins over
    ``CUSTOMER_ASSETS_SEGMENTS``; 0, the default, chooses 3 to 8 by silhouette. Read at run time, so the nightly
    runs, which carry no config, follow the variable."""
    what = "0 (chosen by silhouette) or a whole number of segments from 2 up"
    k = _whole_env(ENV_SEGMENTS, 0, what) if value is None else value
    if k == 1 or k < 0:
        raise ValueError(f"the number of segments (k config of segments/customer_segments, or {ENV_SEGMENTS}) must be "
                         f"{what}, got {k}")
    return k
