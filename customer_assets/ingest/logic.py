"""Reading a source file into ``raw.transactions`` and cleaning it, all in DuckDB SQL.

Pure-ish functions: each takes an open DuckDB connection and explicit arguments.
Nothing is pulled through pandas, so memory stays bounded by DuckDB.
"""

from __future__ import annotations

import glob
import gzip
import json
import math
import re
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from customer_assets.erasure import erased_ids_in
from customer_assets.settings import FIELDS, MAPPING_HELP, ColumnMapping, SettingError, quote_ident, sql_literal
from customer_assets.storage import object_type, table_columns, table_exists, transaction

SUPPORTED = (".csv", ".tsv", ".txt", ".dat", ".parquet", ".pq", ".gz", ".zst")


ENCODINGS = ("utf-8", "utf-16", "latin-1")


@dataclass(frozen=True)
class SourceSpec:
    path: str
    mapping: ColumnMapping
    fmt: str  # "whitespace", "csv" or "parquet"
    encoding: str = "utf-8"
    delimiter: str | None = None  # None: let DuckDB's sniffer decide

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"Unsupported encoding {self.encoding!r}; use one of {', '.join(ENCODINGS)}")


def last_source(conn: duckdb.DuckDBPyConnection) -> dict | None:
    """How the data now in ``clean.transactions`` were read (else the newest load in ``raw.loads``): ``load_id``,
    ``source_file`` (a file or a glob pattern), ``format``, ``encoding``, ``mapping`` (field -> column), ``stored_copy``
    and ``loaded_at``; None when nothing was loaded yet. A run with no source set reads this source again."""
    if not table_exists(conn, "raw", "loads"):
        return None
    current = None
    if object_type(conn, "clean", "transactions") == "BASE TABLE":
        found = conn.execute("SELECT load_id FROM clean.transactions LIMIT 1").fetchone()
        current = found[0] if found else None
    fields = "load_id, source_file, format, encoding, mapping, stored_copy, loaded_at"
    row = (conn.execute(f"SELECT {fields} FROM raw.loads WHERE load_id = ?", [current]).fetchone() if current else None) \
        or conn.execute(f"SELECT {fields} FROM raw.loads ORDER BY loaded_at DESC LIMIT 1").fetchone()
    if row is None:
        return None
    out = dict(zip(fields.split(", "), row, strict=True))
    out["mapping"] = json.loads(out["mapping"]) if out["mapping"] else {}
    return out


class SourceReadError(ValueError):
    """The source file could not be read; the message says why and what to change."""


def _explain(exc: Exception, path: str, fmt: str) -> SourceReadError:
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if "not utf-8 encoded" in text or "Invalid unicode" in text:
        hint = ("The file is not UTF-8: set CUSTOMER_ASSETS_ENCODING, or the `encoding` config of raw/transactions, "
                "to utf-16 or latin-1.")
    elif fmt == "parquet":
        hint = ("Is it really a Parquet file? Set CUSTOMER_ASSETS_FORMAT, or the `format` config of raw/transactions, "
                "to csv, parquet or whitespace if the extension is misleading.")
    else:
        hint = ("Check that it is a delimited text file with a header line (compressed files must end in .gz or .zst), "
                "or set CUSTOMER_ASSETS_FORMAT, or the `format` config of raw/transactions (csv, parquet or whitespace).")
    # DuckDB names the file it failed on in its details: of a pattern's files, say which one
    named = re.search(r'^\s*file = (.+)$|Failed to read file "([^"]+)"', text, flags=re.M)
    where = f"{(named.group(1) or named.group(2)).strip()} (one of the files matching {path})" \
        if named and is_pattern(path) else path
    return SourceReadError(f"Could not read the source file {where} as {fmt}: {first}. {hint}")


def detect_format(path: str, fmt: str | None = None) -> str:
    """Pick the reader from the file name unless ``fmt`` is given.

    ``.txt``/``.dat`` are whitespace separated with a header line (the CDNOW layout);
    ``.csv``/``.tsv`` (optionally ``.gz``/``.zst`` compressed) use DuckDB's CSV sniffer;
    ``.parquet`` is Parquet.
    """
    if fmt:
        if fmt not in ("whitespace", "csv", "parquet"):
            raise ValueError(f"Unknown source format {fmt!r}; use whitespace, csv or parquet")
        return fmt
    name = Path(path).name.lower()
    for suffix in (".gz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".txt", ".dat")):
        return "whitespace"
    return "csv"


def _check_file(p: Path) -> Path:
    if not p.exists():
        raise FileNotFoundError(f"Source file not found: {p}")
    if p.is_dir():
        raise ValueError(f"Source path is not a file but a folder: {p}. Point at one file, or at all its files with a "
                         f"pattern such as {p / '*.csv'}")
    if not p.is_file():
        raise ValueError(f"Source path is not a file: {p}")
    if p.stat().st_size == 0:
        raise ValueError(f"Source file is empty (0 bytes): {p}")
    if not p.name.lower().endswith(SUPPORTED):
        raise ValueError(f"Unsupported source file type {p.suffix!r} for {p}; supported: {', '.join(SUPPORTED)}")
    return p


def is_pattern(path: str) -> bool:
    """Whether a source path is a glob pattern (``*``, ``?`` or ``[…]``) rather than one file's name.

    A file that exists under that very name is a file: names may hold brackets."""
    return glob.has_magic(path) and not Path(path).expanduser().exists()


def source_files(path: str, fmt: str | None = None) -> list[Path]:
    """The files a source path names, in name order: the file itself, or every file a glob pattern matches.

    A pattern (``/exports/orders_*.csv``, ``/exports/**/*.parquet``) reads one file per export as one source:
    the files are read in the order of their names, every one must be readable alone and hold every mapped
    column, and all must be read the same way (CSV or Parquet). Whitespace-separated text (``.txt``/``.dat``)
    is read from one file only.
    """
    p = Path(path).expanduser()
    if not is_pattern(str(p)):
        return [_check_file(p)]
    files = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
    if not files:
        raise FileNotFoundError(f"No file matches the source pattern {p}")
    for f in files:
        _check_file(f)
    formats: dict[str, list[Path]] = {}
    for f in files:
        formats.setdefault(detect_format(str(f), fmt), []).append(f)
    if len(formats) > 1:
        kinds = "; ".join(f"{k}: {len(v)} file(s), e.g. {v[0].name}" for k, v in sorted(formats.items()))
        raise ValueError(f"The files matching {p} are not all read the same way ({kinds}). Narrow the pattern "
                         "(for example to *.csv) so that one source is one format.")
    if len(files) > 1 and "whitespace" in formats:
        raise ValueError(f"{len(files)} files match {p}, and they are whitespace-separated text (.txt/.dat), which is "
                         "read from one file only. Use one file, or CSV or Parquet files for a pattern.")
    return files


def validate_source_path(path: str, fmt: str | None = None) -> Path:
    """Check that a configured source path is an existing, readable, supported file, or a glob pattern matching
    such files (see ``source_files``). Returns the path, with ``~`` expanded."""
    if not path or not str(path).strip():
        raise ValueError("No source file is configured: set CUSTOMER_ASSETS_SOURCE or the `path` config of raw/transactions")
    if "\x00" in path:
        raise ValueError("The source path contains a NUL byte")
    files = source_files(path, fmt)
    p = Path(path).expanduser()
    return p if is_pattern(str(p)) else files[0]


def check_compressed(path: str) -> None:
    """A truncated or corrupt .gz file is refused: DuckDB would read the rows before the damage and stop quietly."""
    if not path.lower().endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise SourceReadError(
            f"The compressed source file {path} is truncated or corrupt ({exc}); nothing was loaded and the previous "
            "load is kept. Re-export or re-download the file."
        ) from exc


def _header_hint(spec: SourceSpec) -> str:
    """Why the mapped columns were not found although the first line holds them (rows of uneven width)."""
    if spec.fmt != "csv" or spec.path.lower().endswith((".gz", ".zst")):
        return ""
    try:
        with open(spec.path, encoding=spec.encoding, errors="replace") as fh:
            first = fh.readline().strip().lstrip("\ufeff")
    except OSError:
        return ""
    tokens = {t.strip().strip('"') for t in re.split(r"[,;\t|]", first)}
    if all(c in tokens for c in spec.mapping.columns.values()):
        return (f" The first line of the file ({first[:120]!r}) does hold the mapped names, but DuckDB's CSV sniffer did not take "
                "it as the header: the rows probably have different numbers of fields. Fix the ragged rows, or set "
                "`format` and check the delimiter.")
    return ""


def _files_literal(paths: str | list[str], union: bool = False) -> tuple[str, str]:
    """The SQL for one file or a list of files, and the reader options a list needs: each row's file in
    ``__source_file`` and, with ``union``, every file's own dialect and columns, matched by name.

    Without ``union`` DuckDB reads the files with the first one's dialect and columns (it still matches the columns
    by name, and ignores columns the first file lacks), and fails on a file that lacks one of them. For CSV files
    (read as text, so no value is cast) it is much faster: 0.1 s against 1.9 s to read 1,095 files of 92,568 rows
    in all, since each file's dialect is not sniffed again. So a load tries it first (see ``load_raw``)."""
    if isinstance(paths, str) or len(paths) == 1:
        return sql_literal(paths if isinstance(paths, str) else paths[0]), ""
    return ("[" + ", ".join(sql_literal(x) for x in paths) + "]",
            (", union_by_name = true" if union else "") + ", filename = '__source_file'")


def _reader_sql(path: str | list[str], fmt: str, encoding: str = "utf-8", delimiter: str | None = None,
                union: bool = False) -> str:
    """A SQL relation reading every column of the file (or files, in the order given) as text, plus its row number.

    ``row_number() OVER ()`` without ORDER BY is DuckDB's streaming window: rows are numbered in file order, and
    the files of a list one after the other.
    """
    # Parquet files always: union_by_name reads only their footers, and it gives each column a type that holds every
    # file's values (without it, a later file's 4.5 would be cast to the first file's integer type)
    (p, multi), enc = _files_literal(path, union or fmt == "parquet"), sql_literal(encoding)
    if fmt == "parquet":
        return f"SELECT *, row_number() OVER () AS __source_row FROM read_parquet({p}{multi})"
    if fmt == "csv" and delimiter:
        # explicit delimiter (the sniffer gave up, e.g. on blank lines): pad short rows, drop empty ones
        fields = "COLUMNS(* EXCLUDE (__source_file))" if multi else "COLUMNS(*)"
        return (
            f"SELECT *, row_number() OVER () AS __source_row FROM read_csv({p}, header = true, all_varchar = true, "
            f"encoding = {enc}, delim = {sql_literal(delimiter)}, null_padding = true{multi}) WHERE NOT ({fields} IS NULL)"
        )
    if fmt == "csv":
        return (f"SELECT *, row_number() OVER () AS __source_row FROM read_csv({p}, header = true, all_varchar = true, "
                f"encoding = {enc}{multi})")
    raise AssertionError(fmt)


def whitespace_reader(path: str, encoding: str = "utf-8") -> str:
    """Every line of a whitespace-separated file as one text column."""
    return (
        f"read_csv({sql_literal(path)}, columns = {{'line': 'VARCHAR'}}, header = false, delim = '\\x1f', quote = '', "
        f"escape = '', encoding = {sql_literal(encoding)})"
    )


def read_whitespace_header(conn: duckdb.DuckDBPyConnection, path: str, encoding: str = "utf-8") -> list[str]:
    row = conn.execute(f"SELECT line FROM {whitespace_reader(path, encoding)} WHERE trim(line) <> '' LIMIT 1").fetchone()
    if row is None:
        raise ValueError(f"Source file {path} has no lines")
    return row[0].split()


def source_columns(conn: duckdb.DuckDBPyConnection, path: str, fmt: str, encoding: str = "utf-8",
                   delimiter: str | None = None) -> list[str]:
    try:
        if fmt == "whitespace":
            return read_whitespace_header(conn, path, encoding)
        rows = conn.execute(f"DESCRIBE {_reader_sql(path, fmt, encoding, delimiter)}").fetchall()
    except duckdb.Error as exc:
        raise _explain(exc, path, fmt) from exc
    return [r[0] for r in rows if r[0] not in ("__source_row", "__source_file")]


def check_mapping(mapping: ColumnMapping, found: list[str], path: str) -> None:
    missing = [(f, c) for f, c in mapping.columns.items() if c not in found]
    if missing:
        desc = ", ".join(f"{f} -> {c!r}" for f, c in missing)
        hint = ""
        if len(found) == 1 and len(mapping.columns) > 1:
            hint = " Only one column was found: the file probably uses another delimiter (set `format`, or re-export it as CSV)."
        raise ValueError(
            f"The source file {path} has no column for {desc}. Columns found: {', '.join(repr(c) for c in found)}.{hint} "
            + MAPPING_HELP
        )


@dataclass(frozen=True)
class Load:
    """One row of ``raw.loads``: what a load read, and the files' sizes and times when it did."""

    load_id: str
    source_file: str
    format: str
    rows: int
    file_bytes: int
    file_modified_ns: int
    stored_copy: bool
    files: str | None = None  # JSON: each file read, its size, time and source rows; NULL in loads of older versions
    mapping: str | None = None  # JSON: field -> the source's column

    def file_list(self) -> list[dict]:
        """Each file the load read, with ``path``, ``bytes``, ``modified_ns``, ``rows`` and the ``first_row`` and
        ``last_row`` of its rows' ``source_row``. A load written before the column existed read one file."""
        if self.files:
            return json.loads(self.files)
        return [{"path": self.source_file, "bytes": self.file_bytes, "modified_ns": self.file_modified_ns,
                 "rows": self.rows, "first_row": 1, "last_row": self.rows}]


RAW_LOADS_DDL = """
CREATE TABLE IF NOT EXISTS raw.loads (
    load_id VARCHAR, source_file VARCHAR, format VARCHAR, encoding VARCHAR, delimiter VARCHAR, mapping VARCHAR,
    rows BIGINT, file_bytes BIGINT, file_modified_ns BIGINT, stored_copy BOOLEAN, loaded_at TIMESTAMP, files VARCHAR
)"""
LOADS_COLUMNS = ("load_id", "source_file", "format", "encoding", "delimiter", "mapping", "rows", "file_bytes",
                 "file_modified_ns", "stored_copy", "loaded_at", "files")


def _check_columns(conn: duckdb.DuckDBPyConnection, spec: SourceSpec, files: list[str],
                   every_file: bool = False) -> tuple[SourceSpec, list[str]]:
    """Read the first file's header (with ``every_file``, each file's) and check the mapping against it: a missing
    column names its file. Returns the spec (with the delimiter or the whitespace reader the first file turned out
    to need) and the first file's columns."""
    first = files[0]
    found = source_columns(conn, first, spec.fmt, spec.encoding, spec.delimiter)
    if spec.fmt == "csv" and len(found) == 1 and not spec.delimiter:
        # the sniffer found one column although the header holds a delimiter (blank lines confuse it): say which
        for sep in (",", ";", "\t", "|"):
            if sep in found[0] and all(c in found[0].split(sep) for c in spec.mapping.columns.values()):
                spec = replace(spec, delimiter=sep)
                found = source_columns(conn, first, spec.fmt, spec.encoding, spec.delimiter)
                break
    if spec.fmt == "csv" and len(found) == 1 and len(found[0].split()) > 1:
        # DuckDB's sniffer does not pick runs of spaces as a delimiter: read such files as whitespace separated
        spaced = read_whitespace_header(conn, first, spec.encoding)
        if all(c in spaced for c in spec.mapping.columns.values()):
            if len(files) > 1:
                raise SourceReadError(
                    f"{first} is separated by runs of spaces, which is read from one file only, and {len(files)} files "
                    f"match {spec.path}. Use one file, or CSV or Parquet files for a pattern.")
            spec, found = replace(spec, fmt="whitespace"), spaced
    for i, path in enumerate(files if every_file else files[:1]):
        cols = found if i == 0 else source_columns(conn, path, spec.fmt, spec.encoding, spec.delimiter)
        try:
            check_mapping(spec.mapping, cols, path)
        except ValueError as exc:
            hint = _header_hint(replace(spec, path=path))
            if hint:
                raise SourceReadError(str(exc) + hint) from exc
            if len(files) > 1:
                raise ValueError(f"{exc} ({len(files)} files match {spec.path}: each must hold every mapped column; "
                                 "nothing was loaded and the previous load is kept.)") from exc
            raise
    return spec, found


def _raw_body(spec: SourceSpec, files: list[str], found: list[str], load_id: str, loaded_at: str,
              union: bool = False) -> str:
    """The SELECT behind ``raw.transactions``: every mapped field as text, numbered in file order, with its file."""
    m = spec.mapping.columns
    if spec.fmt == "whitespace":
        idx = {name: i + 1 for i, name in enumerate(found)}
        src = (f"SELECT string_split_regex(trim(line), '\\s+') AS parts, row_number() OVER () AS __source_row "
               f"FROM {whitespace_reader(files[0], spec.encoding)}")
        select = ", ".join(
            f"CASE WHEN len(parts) >= {idx[m[f]]} THEN parts[{idx[m[f]]}] END AS {f}" if f in m else f"NULL::VARCHAR AS {f}"
            for f in FIELDS
        )
        rows = (f"SELECT (__source_row - 1)::BIGINT AS source_row, {select}, len(parts)::INTEGER AS n_fields, "
                f"{sql_literal(files[0])}::VARCHAR AS __file FROM ({src}) "
                "WHERE __source_row > 1 AND trim(array_to_string(parts, '')) <> ''")
    else:
        select = ", ".join(
            f"CAST({quote_ident(m[f])} AS VARCHAR) AS {f}" if f in m else f"NULL::VARCHAR AS {f}" for f in FIELDS
        )
        file_col = "__source_file" if len(files) > 1 else f"{sql_literal(files[0])}::VARCHAR"
        rows = (f"SELECT __source_row::BIGINT AS source_row, {select}, NULL::INTEGER AS n_fields, {file_col} AS __file "
                f"FROM ({_reader_sql(files, spec.fmt, spec.encoding, spec.delimiter, union)})")
    return (f"SELECT {sql_literal(load_id)}::VARCHAR AS load_id, * EXCLUDE (n_fields, __file), n_fields, "
            f"__file AS source_file, TIMESTAMP {sql_literal(loaded_at)} AS loaded_at FROM ({rows})")


def load_raw(conn: duckdb.DuckDBPyConnection, spec: SourceSpec, load_id: str, stored_copy: bool = False) -> int:
    """Point ``raw.transactions`` at the source rows, every field as read (text), and record the load in ``raw.loads``.

    By default ``raw.transactions`` is a view over the source file: the rows are parsed, counted and checked
    here, but not copied into the warehouse (the copy cost as much time and space as the clean table). With
    ``stored_copy`` it is a table holding a copy, which stays readable after the file is gone.
    The file's size and modification time are recorded, so the clean step can refuse a file that changed since.

    A glob pattern (see ``source_files``) reads the files it matches now, in name order, as one source: the view
    lists those files, so a file that arrives later waits for the next load. ``source_row`` numbers the rows
    across the files, and ``raw.loads.files`` records each file's rows and their range of ``source_row``.

    Returns the number of rows loaded.
    """
    files = [str(f.resolve()) for f in source_files(spec.path, spec.fmt)]
    for f in files:
        check_compressed(f)
    spec, found = _check_columns(conn, spec, files)
    path = str(Path(spec.path).expanduser().resolve()) if len(files) > 1 or is_pattern(spec.path) else files[0]
    stats = {f: Path(f).stat() for f in files}
    loaded_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    body = _raw_body(spec, files, found, load_id, loaded_at)
    # counting the mapped fields makes DuckDB read them (it skips the columns a query does not use), so a file
    # without one fails here, not later in the cleaning
    mapped = ", ".join(f"count({f})" for f in FIELDS if f in spec.mapping.columns)
    count = f"SELECT source_file, count(*), min(source_row), max(source_row), {mapped} FROM ({{}}) GROUP BY 1"
    try:
        try:
            per_file = {r[0]: r[1:] for r in conn.execute(count.format(body)).fetchall()}
        except duckdb.Error:
            if len(files) == 1:
                raise
            # the files differ in their columns or dialect (DuckDB says "schema mismatch", but any failure is tried
            # again, so that no wording is relied on): check each one's header, then read each in its own way
            spec, found = _check_columns(conn, spec, files, every_file=True)
            body = _raw_body(spec, files, found, load_id, loaded_at, union=True)
            per_file = {r[0]: r[1:] for r in conn.execute(count.format(body)).fetchall()}
    except duckdb.Error as exc:
        raise _explain(exc, spec.path, spec.fmt) from exc

    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
        conn.execute(RAW_LOADS_DDL)
        conn.execute("ALTER TABLE raw.loads ADD COLUMN IF NOT EXISTS files VARCHAR")  # loads of older versions: NULL
        n = sum(r[0] for r in per_file.values())
        if n == 0:
            what = f"The source file {spec.path} has" if len(files) == 1 else f"The {len(files)} files matching {spec.path} have"
            raise SourceReadError(f"{what} a header but no data rows; nothing was loaded and the previous load is kept.")
        listing = [{"path": f, "bytes": stats[f].st_size, "modified_ns": stats[f].st_mtime_ns,
                    "rows": int(per_file.get(f, (0,))[0]),
                    "first_row": int(per_file[f][1]) if f in per_file else None,
                    "last_row": int(per_file[f][2]) if f in per_file else None} for f in files]
        if len(files) == 1:
            listing[0]["first_row"] = 1  # a file's own numbering (whitespace files count blank lines too)
        kind = object_type(conn, "raw", "transactions")
        if kind == "VIEW":
            conn.execute("DROP VIEW raw.transactions")
        elif kind is not None:
            conn.execute("DROP TABLE raw.transactions")
        if stored_copy:
            conn.execute(f"CREATE TABLE raw.transactions AS {body}")
        else:
            conn.execute(f"CREATE VIEW raw.transactions AS {body}")
        conn.execute(
            f"INSERT INTO raw.loads ({', '.join(LOADS_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::TIMESTAMP, ?)",
            [load_id, path, spec.fmt, spec.encoding, spec.delimiter, json.dumps(spec.mapping.columns), n,
             sum(st.st_size for st in stats.values()), max(st.st_mtime_ns for st in stats.values()), stored_copy,
             loaded_at, json.dumps(listing)],
        )
        conn.execute("COMMIT")
    except duckdb.Error as exc:
        conn.execute("ROLLBACK")
        raise _explain(exc, spec.path, spec.fmt) from exc
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(n)


def current_load(conn: duckdb.DuckDBPyConnection) -> Load:
    """The latest load recorded in ``raw.loads``."""
    if not table_exists(conn, "raw", "loads"):
        raise ValueError("Nothing has been loaded yet: materialize raw/transactions first")
    has_files = "files" in table_columns(conn, "raw", "loads")
    row = conn.execute(
        "SELECT load_id, source_file, format, rows, file_bytes, file_modified_ns, stored_copy, "
        f"{'files' if has_files else 'NULL'}, mapping FROM raw.loads ORDER BY loaded_at DESC, rowid DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise ValueError("Nothing has been loaded yet: materialize raw/transactions first")
    return Load(*row)


def check_source_unchanged(load: Load) -> None:
    """A view reads the files again: refuse if one is not the file that was loaded (size or modification time)."""
    if load.stored_copy:
        return
    for f in load.file_list():
        p = Path(f["path"])
        if not p.exists():
            raise SourceReadError(
                f"The source file {f['path']} of load {load.load_id} is gone. raw.transactions reads it in place; "
                "put the file back or re-materialize raw/transactions. clean.transactions is unchanged."
            )
        st = p.stat()
        if (st.st_size, st.st_mtime_ns) != (f["bytes"], f["modified_ns"]):
            raise SourceReadError(
                f"The source file {f['path']} changed after load {load.load_id} read it (size {f['bytes']:,} -> "
                f"{st.st_size:,} bytes, or a new modification time). Re-materialize raw/transactions before cleaning; "
                "clean.transactions is unchanged."
            )


# Date formats tried in order; the first that parses wins. ISO first, then CDNOW's YYYYMMDD, then the
# common slash layouts (e.g. the UCI Online Retail file's "12/1/2010 8:26"), month or day first (DATE_ORDERS),
# then YYYY/MM/DD, then the dotted DD.MM.YYYY of German and other European exports (always day first).
DATE_PARSE_SQL = (
    "COALESCE("
    "TRY_CAST(TRY_CAST({d} AS TIMESTAMP) AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '%Y%m%d') AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '{a}/{b}/%Y %H:%M') AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '{a}/{b}/%Y %H:%M:%S') AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '{a}/{b}/%Y') AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '%Y/%m/%d') AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '%d.%m.%Y %H:%M') AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '%d.%m.%Y %H:%M:%S') AS DATE), "
    "TRY_CAST(TRY_STRPTIME({d}, '%d.%m.%Y') AS DATE))"
)
# How a slash date such as 03/04/2011 is read. "auto" decides from the file: day first when some dates
# only read that way (13/01/2011) and none only month first (01/13/2011), else month first; both kinds
# in one file is refused, since either choice would misdate some rows without a trace.
DATE_ORDERS = {"month_first": ("%m", "%d"), "day_first": ("%d", "%m")}
DATE_ORDER_CHOICES = ("auto", *DATE_ORDERS)
SLASH_DATE = r"^\s*(\d{1,2})/(\d{1,2})/\d{4}"


class DateOrderError(ValueError):
    """The slash dates of a file read both day first and month first; the message says how to choose."""


def detect_date_order(conn: duckdb.DuckDBPyConnection, table: str = "_raw", date_order: str = "auto") -> tuple[str, str]:
    """(the order to read slash dates in, why) for the ``date`` column of ``table``.

    Counts the dates that only read day first (first number above 12) and only month first (second above 12).
    """
    if date_order not in DATE_ORDER_CHOICES:
        raise SettingError("date_order", f"date_order {date_order!r} is not one of {', '.join(DATE_ORDER_CHOICES)}")
    d = 'CAST("date" AS VARCHAR)'
    slashed, day_only, month_only, day_eg, month_eg = conn.execute(f"""
        WITH parts AS (
            SELECT d, TRY_CAST(regexp_extract(d, '{SLASH_DATE}', 1) AS INTEGER) AS a,
                   TRY_CAST(regexp_extract(d, '{SLASH_DATE}', 2) AS INTEGER) AS b
            FROM (SELECT {d} AS d FROM {table} WHERE contains({d}, '/'))  -- the cheap test first
            WHERE regexp_matches(d, '{SLASH_DATE}')
        )
        SELECT count(*), count(*) FILTER (WHERE a > 12 AND b <= 12), count(*) FILTER (WHERE b > 12 AND a <= 12),
               min(d) FILTER (WHERE a > 12 AND b <= 12), min(d) FILTER (WHERE b > 12 AND a <= 12)
        FROM parts
    """).fetchone()
    seen = f"{day_only:,} dates read only day first{f' (e.g. {day_eg.strip()})' if day_only else ''}, " \
           f"{month_only:,} only month first{f' (e.g. {month_eg.strip()})' if month_only else ''}"
    if not slashed:
        seen = "no slash dates"
    if date_order != "auto":
        return date_order, f"{date_order} (set); {seen}"
    if day_only and month_only:
        raise DateOrderError(
            f"The source's slash dates are both day first and month first: {seen}. Either order would misdate some "
            "rows, so nothing was cleaned and clean.transactions is unchanged. Fix the file, or set the `date_order` "
            "config of clean/transactions (or CUSTOMER_ASSETS_DATE_ORDER) to day_first or month_first: the dates that "
            "do not read that way are then rejected as unparseable_date."
        )
    if day_only:
        return "day_first", f"day_first (detected): {seen}"
    if month_only:
        return "month_first", f"month_first (detected): {seen}"
    if not slashed:
        return "month_first", "month_first (the default; the file has no slash dates)"
    return "month_first", f"month_first (the default: no slash date tells the order): {seen}"


def date_parse_sql(column: str, date_order: str = "month_first") -> str:
    a, b = DATE_ORDERS[date_order]
    return DATE_PARSE_SQL.format(d=column, a=a, b=b)


# Extreme amounts are kept (a real big order is real revenue) but flagged: |amount| above
# OUTLIER_FACTOR x the 99th percentile of |amount| in the load. The threshold is recorded in
# the asset's metadata.
OUTLIER_FACTOR = 10.0
# A line amount beyond a trillion (either sign) is not a purchase; such rows are rejected with the
# reason 'amount_out_of_range'. It also keeps every sum exact in the features' DECIMAL(38, 6) arithmetic.
MAX_ABS_AMOUNT = 1e12
# Dates before this are export artefacts (Excel's 1899-12-30 and 1900-01-00 "zero" dates, two-digit years
# read as 19xx), not purchases: rejected as 'date_before_1970'.
MIN_DATE = "1970-01-01"

REJECT_REASONS = (
    "erased_customer",  # customer_assets.erasure: every value of the row is dropped, only its place is kept
    "null_customer_id",
    "unparseable_date",
    "future_date",
    "date_before_1970",
    "non_numeric_amount",
    "amount_out_of_range",
    "zero_quantity",
    "negative_price",
    "duplicate",
)


# A currency sign before or after a money value ("$12.50", "-$3", "12.50 €") is dropped: it cannot change the
# number. Thousands separators and decimal commas are not, since "1,234" and "1.234" mean different numbers in
# different countries; such values are rejected as non_numeric_amount (and the rejected-share check warns).
CURRENCY_SIGNS = "$€£¥"


def money_sql(column: str) -> str:
    signs = CURRENCY_SIGNS
    plain = f"TRY_CAST(trim({column}) AS DOUBLE)"  # first: most files have no signs, and the regex costs more
    return (f"COALESCE({plain}, TRY_CAST(regexp_replace(regexp_replace(trim({column}), '^(-?)\\s*[{signs}]\\s*', "
            f"'\\1'), '\\s*[{signs}]$', '') AS DOUBLE))")


def clean_sql(has_amount: bool, has_quantity: bool, has_unit_price: bool, date_order: str = "month_first",
              erased: str | None = None) -> str:
    """The SELECT that types, normalises and classifies every raw row.

    Each row gets either ``reject_reason = NULL`` (clean) or the first problem found,
    in the order of ``REJECT_REASONS``. Returns are rows with a negative quantity (or
    a negative amount when no quantity is mapped); their amount is kept negative.
    """
    qty = "TRY_CAST(trim(quantity) AS DOUBLE)" if has_quantity else "NULL::DOUBLE"
    price = money_sql("unit_price") if has_unit_price else "NULL::DOUBLE"
    if has_amount:
        amt_raw = money_sql("amount_raw_text")
        numeric_ok = "amt_raw IS NOT NULL" + (" AND (quantity_raw IS NULL OR trim(quantity_raw) = '' OR qty IS NOT NULL)" if has_quantity else "")
    else:
        amt_raw = "qty * price"
        numeric_ok = "qty IS NOT NULL AND price IS NOT NULL"
    is_return = "coalesce(qty < 0, false)" if has_quantity else "coalesce(amt_raw < 0, false)"
    negative_price = (
        "(price IS NOT NULL AND price < 0) OR (NOT is_return AND amt_raw < 0)"
    )
    date_expr = date_parse_sql("trim(txn_date_raw)", date_order)
    # ``erased``: a table of the normalised ids of erased customers (customer_assets.erasure.erased_ids_in)
    erased_rule = f"WHEN customer_id IN (SELECT customer_id FROM {erased}) THEN 'erased_customer'" if erased else ""
    kept = "reject_reason IS NOT NULL AND reject_reason <> 'erased_customer'"  # an erased row keeps no value
    return f"""
    WITH typed AS (
        SELECT source_row,
               upper(trim(customer_id)) AS customer_id,
               "date" AS txn_date_raw,
               {qty} AS qty, {price} AS price,
               nullif(trim(order_id), '') AS order_id,
               nullif(trim(product_id), '') AS product_id,
               customer_id AS customer_id_raw, amount AS amount_raw_text,
               quantity AS quantity_raw, unit_price AS unit_price_raw, n_fields
        FROM _raw
    ), valued AS (
        SELECT *, {amt_raw} AS amt_raw, {date_expr} AS txn_date FROM typed
    ), flagged AS (
        SELECT *, {is_return} AS is_return FROM valued
    ), classified AS (
        SELECT *,
            CASE
                {erased_rule}
                WHEN customer_id IS NULL OR customer_id = '' THEN 'null_customer_id'
                WHEN txn_date IS NULL THEN 'unparseable_date'
                WHEN txn_date > current_date THEN 'future_date'
                WHEN txn_date < DATE '{MIN_DATE}' THEN 'date_before_1970'
                WHEN NOT ({numeric_ok}) OR NOT coalesce(isfinite(amt_raw), false) THEN 'non_numeric_amount'
                WHEN abs(amt_raw) > {MAX_ABS_AMOUNT:.0f} THEN 'amount_out_of_range'
                WHEN qty = 0 THEN 'zero_quantity'
                WHEN {negative_price} THEN 'negative_price'
            END AS pre_reason
        FROM flagged
    ), keyed AS (
        SELECT *, hash(customer_id, txn_date, amt_raw, qty, price, order_id, product_id) AS dup_key FROM classified
    ), dup_groups AS (
        -- exact repeats: a hash aggregate over the valid rows, far cheaper than a sorted window at scale
        SELECT dup_key, customer_id, txn_date, amt_raw, qty, price, order_id, product_id, min(source_row) AS keep_row
        FROM keyed WHERE pre_reason IS NULL
        GROUP BY ALL HAVING count(*) > 1
    ), deduped AS (
        SELECT c.* EXCLUDE (dup_key),
            CASE WHEN c.pre_reason IS NULL AND g.keep_row IS NOT NULL AND c.source_row <> g.keep_row
                      -- the hash only finds candidates; equality of every field makes it exact
                      AND c.customer_id = g.customer_id AND c.txn_date = g.txn_date
                      AND c.amt_raw IS NOT DISTINCT FROM g.amt_raw AND c.qty IS NOT DISTINCT FROM g.qty
                      AND c.price IS NOT DISTINCT FROM g.price AND c.order_id IS NOT DISTINCT FROM g.order_id
                      AND c.product_id IS NOT DISTINCT FROM g.product_id
                 THEN 'duplicate' ELSE c.pre_reason END AS reject_reason
        FROM keyed c LEFT JOIN dup_groups g ON c.dup_key = g.dup_key
    )
    -- narrow: the text as read is only kept for rejected rows (clean rows keep their typed values)
    SELECT source_row, reject_reason, customer_id, txn_date, amt_raw, qty, is_return,
           CASE WHEN reject_reason IS NULL OR {kept} THEN order_id END AS order_id,
           CASE WHEN reject_reason IS NULL OR {kept} THEN product_id END AS product_id,
           CASE WHEN {kept} THEN customer_id_raw END AS customer_id_raw,
           CASE WHEN {kept} THEN txn_date_raw END AS txn_date_raw,
           CASE WHEN {kept} THEN amount_raw_text END AS amount_raw_text,
           CASE WHEN {kept} THEN quantity_raw END AS quantity_raw,
           CASE WHEN {kept} THEN unit_price_raw END AS unit_price_raw
    FROM deduped
    """


# What a clean row is, for telling whether a day's transactions changed between two loads: a hash of every
# field a feature or label can read (not the load id or the row number, which change with every export).
ROW_HASH = "hash(customer_id, txn_date, amount, quantity, is_return, order_id, product_id)"
def daily_sql(table: str = "clean.transactions") -> str:
    """Per day of ``table`` (clean rows): the rows, the sum of their ``ROW_HASH`` and their net amount."""
    return (f"SELECT txn_date, count(*) AS rows, sum({ROW_HASH}) AS digest, sum(amount) AS amount "
            f"FROM {table} GROUP BY txn_date")


DAILY_SQL = daily_sql()


def files_of_rows(conn: duckdb.DuckDBPyConnection, load: Load) -> tuple[str, str, list]:
    """How to name the file of a row ``c`` of ``load`` and its data row number in that file: the select expressions
    (``source_file``, ``file_row``), the join they need and its parameters. A pattern's files each have their range
    of ``source_row`` (a temp table ``_files``); one file's rows are numbered as in the file."""
    files = load.file_list()
    if len(files) == 1:
        return "?::VARCHAR AS source_file, c.source_row AS file_row", "", [files[0]["path"]]
    conn.execute("CREATE OR REPLACE TEMP TABLE _files AS SELECT * FROM (SELECT unnest(?::STRUCT(path VARCHAR, "
                 "first_row BIGINT, last_row BIGINT)[], recursive := true)) WHERE first_row IS NOT NULL",
                 [[{k: f[k] for k in ("path", "first_row", "last_row")} for f in files]])
    return ("f.path AS source_file, c.source_row - f.first_row + 1 AS file_row",
            "LEFT JOIN _files f ON c.source_row BETWEEN f.first_row AND f.last_row", [])


class NothingCleanError(ValueError):
    """Every row of a load was rejected by the cleaning rules; the message gives each reason with its first row."""


def refuse_if_nothing_clean(conn: duckdb.DuckDBPyConnection, load: Load, n_raw: int, file_of: str, file_join: str,
                            file_params: list) -> None:
    """Raise ``NothingCleanError`` when no row of ``_classified`` is clean.

    A load in which every row is rejected leaves nothing to model, and one rule rejecting every row almost always
    means a column mapping that points at the wrong column, or a file in another layout. The message names each
    reason, its count and the first row it rejected (file, row and the raw values, none for an erased customer), so
    that the cause shows without a query; ``clean.transactions`` and ``quality.rejected_transactions`` are not
    touched. It never quotes a customer id: the message goes to the run's log and to the failure alert's chat
    channel, which ``customer-assets forget`` cannot reach.
    """
    if conn.execute("SELECT count(*) FROM _classified WHERE reject_reason IS NULL").fetchone()[0]:
        return
    rows = conn.execute(
        f"""
        SELECT reject_reason, count(*) OVER (PARTITION BY reject_reason) AS n, {file_of},
               txn_date_raw, amount_raw_text, quantity_raw, unit_price_raw
        FROM _classified c {file_join}
        QUALIFY row_number() OVER (PARTITION BY reject_reason ORDER BY c.source_row) = 1
        ORDER BY n DESC, reject_reason
        """,
        file_params,
    ).fetchall()
    mapping = json.loads(load.mapping) if load.mapping else {}
    fields = ("date", "amount", "quantity", "unit_price")
    lines = []
    for reason, n, path, file_row, *values in rows:
        shown = ", ".join(f"{f}={v!r}" for f, v in zip(fields, values, strict=True) if f in mapping and v is not None)
        lines.append(f"{reason}: {n:,} (the first: {Path(path).name} row {file_row}"
                     + (f", {shown}" if shown else "") + ")")
    raise NothingCleanError(
        f"Every one of the {n_raw:,} rows of load {load.load_id} ({load.source_file}) was rejected by the cleaning "
        f"rules, so there is nothing to model: {'; '.join(lines)}. clean.transactions and "
        "quality.rejected_transactions are unchanged. When one rule rejects every row, the column mapping usually "
        f"names the wrong column (this load's: {', '.join(f'{k}={v}' for k, v in mapping.items()) or 'not recorded'}); "
        "set CUSTOMER_ASSETS_COLUMNS or the `columns` config of raw/transactions. The rules are in the README "
        "(Cleaning rules)."
    )


class HistoryLossError(ValueError):
    """A reload of the same source lost more of the previous load's history than ``max_history_loss`` allows: of its
    rows, or of its customers."""


# The customers of a history: compared by id between two loads, since a reload whose ids were rewritten (a
# spreadsheet that opened and saved the export turns 00042 into 42) keeps every row and loses every customer.
CUSTOMERS_SQL = "SELECT DISTINCT customer_id FROM clean.transactions"


@dataclass(frozen=True)
class Previous:
    """The clean load that a new cleaning replaces: its load, source file and last date."""

    load_id: str
    source_file: str | None
    last_date: object


def previous_clean(conn: duckdb.DuckDBPyConnection) -> Previous | None:
    """The load now in ``clean.transactions`` (None if there is none), with its days summarised in ``_old_daily``."""
    if object_type(conn, "clean", "transactions") != "BASE TABLE":
        return None
    row = conn.execute("SELECT any_value(load_id), max(txn_date) FROM clean.transactions").fetchone()
    if row[0] is None:
        return None
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _old_daily AS {DAILY_SQL}")
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _old_customers AS {CUSTOMERS_SQL}")
    source = None
    if table_exists(conn, "raw", "loads"):
        found = conn.execute("SELECT source_file FROM raw.loads WHERE load_id = ?", [row[0]]).fetchone()
        source = found[0] if found else None
    return Previous(row[0], source, row[1])


HISTORY_CHANGES_SQL = f"""
CREATE OR REPLACE TABLE quality.history_changes AS
WITH new AS ({DAILY_SQL})
SELECT ?::VARCHAR AS load_id, ?::VARCHAR AS previous_load_id, coalesce(o.txn_date, n.txn_date) AS txn_date,
       coalesce(o.rows, 0) AS rows_before, coalesce(n.rows, 0) AS rows_after,
       coalesce(o.amount, 0) AS amount_before, coalesce(n.amount, 0) AS amount_after
FROM _old_daily o FULL JOIN new n ON o.txn_date = n.txn_date
WHERE coalesce(o.txn_date, n.txn_date) <= ?
  AND (o.rows IS DISTINCT FROM n.rows OR o.digest IS DISTINCT FROM n.digest)
ORDER BY txn_date
"""


def compare_history(conn: duckdb.DuckDBPyConnection, previous: Previous | None, load: Load, max_loss: float) -> dict:
    """Write ``quality.history_changes`` (the days, up to the previous load's last date, whose clean rows changed)
    and refuse a reload of the same source that lost more than ``max_loss`` of those rows, or of the customers in them
    (``_old_customers``: a reload whose ids were rewritten keeps every row and loses every customer).

    Runs inside the cleaning's transaction, after the new ``clean.transactions`` is written, so a refusal rolls
    it back. A different source file is a new history, not a loss, and a new cleaning of the same load differs only
    by its settings: both are compared but never refused.
    """
    if previous is None:  # nothing to compare with: the same query on no previous days gives the empty table
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _old_daily AS {DAILY_SQL} LIMIT 0")
        conn.execute(HISTORY_CHANGES_SQL, [load.load_id, None, None])
        return {"history": "first load: nothing to compare with", "data_changed": True}
    customers, missing, new, unpadded = conn.execute(
        """
        WITH new AS (SELECT DISTINCT customer_id FROM clean.transactions WHERE txn_date <= ?),
             gone AS (SELECT customer_id FROM _old_customers ANTI JOIN new USING (customer_id)),
             came AS (SELECT customer_id FROM new ANTI JOIN _old_customers USING (customer_id))
        SELECT (SELECT count(*) FROM _old_customers), (SELECT count(*) FROM gone), (SELECT count(*) FROM came),
               (SELECT count(*) FROM gone SEMI JOIN came ON ltrim(gone.customer_id, '0') = ltrim(came.customer_id, '0'))
        """,
        [previous.last_date],
    ).fetchone()
    conn.execute(HISTORY_CHANGES_SQL, [load.load_id, previous.load_id, previous.last_date])
    before, after, days, first, last = conn.execute(
        "SELECT (SELECT sum(rows) FROM _old_daily), "
        "(SELECT count(*) FROM clean.transactions WHERE txn_date <= ?), "
        "(SELECT count(*) FROM quality.history_changes), (SELECT min(txn_date) FROM quality.history_changes), "
        "(SELECT max(txn_date) FROM clean.transactions)",
        [previous.last_date],
    ).fetchone()
    loss = (before - after) / before if before else 0.0
    same_source = previous.source_file == load.source_file
    # a new cleaning of the same load (another date_order, say) is a choice of settings, not an export cut short
    reload = same_source and previous.load_id != load.load_id
    summary = (f"{'same source' if same_source else f'new source (was {previous.source_file})'}: {days:,} day(s) "
               f"on or before {previous.last_date} changed since load {previous.load_id}"
               + (f", the first {first}" if days else "")
               + f"; rows on or before {previous.last_date}: {before:,} -> {after:,} ({(after - before) / before if before else 0.0:+.1%})"
               + f"; customers in them: {customers:,}"
               + (f", {missing:,} of them missing and {new:,} new" if missing or new else ", the same"))
    customer_loss = missing / customers if customers else 0.0
    # the share that accepts the reload (a loss of rows or of customers), rounded up: 1/3 needs 0.34, as 0.33 refuses
    needed = math.ceil(max(loss, customer_loss) * 100 - 1e-9) / 100
    accept = ("clean.transactions is unchanged. If {}, set max_history_loss in the config of clean/transactions, or "
              f"CUSTOMER_ASSETS_MAX_HISTORY_LOSS, to {needed:.2f} or more.")
    lost_customers = (f"{missing:,} of the {customers:,} customers of load {previous.load_id} of the same file "
                      f"(-{customer_loss:.1%})")
    if reload and loss > max_loss:
        rejected = conn.execute("SELECT reject_reason, count(*) AS n FROM quality.rejected_transactions "
                                "GROUP BY 1 ORDER BY n DESC, 1").fetchall()
        n_rejected = sum(n for _, n in rejected)
        rejections = (f"This load rejected {n_rejected:,} of its {load.rows:,} raw rows ("
                      + ", ".join(f"{r} {n:,}" for r, n in rejected) + "). " if n_rejected else "")
        also = f"It lost {lost_customers} too. " if customer_loss > max_loss else ""
        raise HistoryLossError(
            f"Load {load.load_id} of {load.source_file} has {before - after:,} fewer clean rows dated on or before "
            f"{previous.last_date} than load {previous.load_id} of the same file ({before:,} -> {after:,}, "
            f"-{loss:.1%}), more than max_history_loss allows ({max_loss:.1%}). {also}{rejections}Was the export cut "
            "short? " + accept.format("the history really shrank"))
    if reload and customer_loss > max_loss:
        hint = (f" {unpadded:,} of the missing ids are new ids once their leading zeros are dropped: a spreadsheet that "
                "opened and saved the export turns 00042 into 42." if unpadded else "")
        why = (f" {new:,} customer ids appeared that had none.{hint} Were the customer ids rewritten? Then every "
               "customer would start a new history, and an erased customer's rows would come back under the new id. "
               "Export the ids as before." if new else " Their rows are there under other customers' ids: were "
               "customers merged?" if after >= before else " Was the export filtered or cut short?")
        raise HistoryLossError(
            f"Load {load.load_id} of {load.source_file} lost {lost_customers}, more than max_history_loss allows "
            f"({max_loss:.1%}): none of their rows dated on or before {previous.last_date} is in it (those days' rows: "
            f"{before:,} -> {after:,}).{why} " + accept.format("the customers really changed"))
    # the data differ from the previous load's when a day changed, days were added (the last date moves) or the
    # file is another one; the nightly schedules rerun a partition only after such a load
    changed = bool(days) or last != previous.last_date or not same_source
    return {"history": summary, "history_changed_days": days, "history_rows_before": before,
            "history_rows_after": after, "history_first_changed_date": first, "history_customers_missing": missing,
            "data_changed": changed}


def clean_transactions(conn: duckdb.DuckDBPyConnection, date_order: str = "auto",
                       max_history_loss: float = 0.05) -> dict[str, int]:
    """Rebuild ``clean.transactions`` and ``quality.rejected_transactions`` from ``raw.transactions``.

    Both tables are replaced in one transaction, with ``quality.history_changes`` (see ``compare_history``).
    Returns row counts, counts per reason, how slash dates were read (``date_order``: "auto", "month_first" or
    "day_first"; see ``detect_date_order``) and how the history differs from the previous load's.
    """
    load = current_load(conn)
    check_source_unchanged(load)
    file_of, file_join, file_params = files_of_rows(conn, load)
    # one parse of the source (or one scan of the stored copy) into memory; every later pass reads this.
    # The load's constant columns stay out of it (9.4M copies of the load id cost ~0.5 GB); they are added on write.
    try:
        conn.execute("CREATE OR REPLACE TEMP TABLE _raw AS SELECT * EXCLUDE (load_id, source_file, loaded_at) FROM raw.transactions")
    except duckdb.Error as exc:
        raise _explain(exc, load.source_file, load.format) from exc
    n_raw = conn.execute("SELECT count(*) FROM _raw").fetchone()[0]
    if n_raw != load.rows:
        conn.execute("DROP TABLE _raw")
        raise SourceReadError(
            f"raw.transactions now has {n_raw:,} rows but load {load.load_id} counted {load.rows:,}: the source file "
            f"{load.source_file} changed. Re-materialize raw/transactions; clean.transactions is unchanged."
        )
    cols = ("amount", "quantity", "unit_price")
    row = conn.execute(f"SELECT {', '.join(f'count({f}) > 0' for f in cols)} FROM _raw").fetchone()
    present = dict(zip(cols, row, strict=True))
    # the classification goes to a temp table outside the transaction: scanning rows written inside the
    # same transaction is about twice as slow at 10M rows
    try:
        order, order_note = detect_date_order(conn, "_raw", date_order)
        erased = erased_ids_in(conn, "_raw")
        sql = clean_sql(present["amount"], present["quantity"], present["unit_price"], order, erased)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _classified AS {sql}")
    finally:
        conn.execute("DROP TABLE IF EXISTS _raw")
        conn.execute("DROP TABLE IF EXISTS _erased_now")
    p99 = conn.execute(
        "SELECT quantile_cont(abs(amt_raw), 0.99) FROM _classified WHERE reject_reason IS NULL"
    ).fetchone()[0]
    threshold = OUTLIER_FACTOR * float(p99) if p99 else None
    try:
        refuse_if_nothing_clean(conn, load, n_raw, file_of, file_join, file_params)
    except NothingCleanError:
        conn.execute("DROP TABLE IF EXISTS _classified")
        conn.execute("DROP TABLE IF EXISTS _files")
        raise
    previous = previous_clean(conn)
    with transaction(conn, temp_tables=("_classified", "_old_daily", "_old_customers", "_files")):
        conn.execute("CREATE SCHEMA IF NOT EXISTS clean")
        conn.execute("CREATE SCHEMA IF NOT EXISTS quality")
        conn.execute(
            """
            CREATE OR REPLACE TABLE clean.transactions AS
            SELECT customer_id, txn_date,
                   CASE WHEN is_return THEN -abs(amt_raw) ELSE amt_raw END AS amount,
                   CASE WHEN is_return THEN -abs(qty) ELSE qty END AS quantity,
                   is_return, coalesce(abs(amt_raw) > ?, false) AS is_outlier,
                   order_id, product_id, ?::VARCHAR AS load_id, source_row
            FROM _classified WHERE reject_reason IS NULL
            """,
            [threshold, load.load_id],
        )
        conn.execute(
            f"""
            CREATE OR REPLACE TABLE quality.rejected_transactions AS
            SELECT ?::VARCHAR AS load_id, c.source_row, reject_reason,
                   customer_id_raw AS customer_id, txn_date_raw AS txn_date, amount_raw_text AS amount,
                   quantity_raw AS quantity, unit_price_raw AS unit_price, order_id, product_id, {file_of}
            FROM _classified c {file_join}
            WHERE reject_reason IS NOT NULL
            ORDER BY c.source_row
            """,
            [load.load_id, *file_params],
        )
        history = compare_history(conn, previous, load, max_history_loss)
    counts = {
        "raw_rows": n_raw,
        "clean_rows": conn.execute("SELECT count(*) FROM clean.transactions").fetchone()[0],
        "rejected_rows": conn.execute("SELECT count(*) FROM quality.rejected_transactions").fetchone()[0],
    }
    counts["outlier_rows"] = conn.execute("SELECT count(*) FROM clean.transactions WHERE is_outlier").fetchone()[0]
    counts["outlier_threshold"] = threshold
    counts["date_order"] = order_note
    counts.update(history)
    for reason, n in conn.execute(
        "SELECT reject_reason, count(*) FROM quality.rejected_transactions GROUP BY 1 ORDER BY 1"
    ).fetchall():
        counts[f"rejected_{reason}"] = n
    return counts
