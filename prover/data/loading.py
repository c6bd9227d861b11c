"""Problem sets: load a file, a directory, a named set or a hub dataset into validated ``Problem``s.

Every source goes through ``datasets`` (parquet, jsonl/json, or a hub id) and then through one
validation pass, so a broken row fails at load time with the file, the row and the field named,
not hours later inside the verifier.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prover.data.problem import Problem
from prover.verifier.config import DEFAULT_HEADER, HEADERS

logger = logging.getLogger(__name__)

# The header the shared files are checked under: DeepSeek-Prover-V1.5's, `set_option maxHeartbeats 0`
# as in its prompt and checked file (../shared/data/README.md; the header of the default pin
# profile, prover/verifier/config.py). A file's header column wins over this default; `header=` may
# also name one of HEADERS ("deepseek-v1.5", "v4.15.0", or "bounded" for maxHeartbeats 400000).
DEEPSEEK_HEADER = DEFAULT_HEADER

# Named sets: file names inside the data directory.
NAMED_SETS: dict[str, str] = {
    "minif2f-test": "minif2f_test.parquet",
    "minif2f-valid": "minif2f_valid.parquet",
    "lean-workbook": "lean_workbook_goedel_28k.parquet",
    "lean-workbook-holdout": "lean_workbook_goedel_holdout_800.parquet",
    # 200 theorems unseen in training (179 Lean Workbook, 21 miniF2F-valid; none in lean-workbook): the
    # release's held-out set, most likely the validation set behind the paper's pass@N up to N = 512
    "mff-lwb-unseen-200": "mff_lwb_unseen_200.parquet",
}

# Where users download the sets: the paper's release, whose data/ folder names the same files
# differently; a data directory holding either name works. Its minif2f_train.parquet is the
# miniF2F valid split (column split = "valid").
RELEASE_URL = "https://github.com/AndreHe02/rewarding-unlikely-release/tree/main/data"
RELEASE_FILES: dict[str, str] = {
    "minif2f-test": "minif2f_test.parquet",
    "minif2f-valid": "minif2f_train.parquet",
    "lean-workbook": "mff-lwb-goedel-28k.parquet",
    "lean-workbook-holdout": "mff-lwb-goedel-holdout-800.parquet",
    "mff-lwb-unseen-200": "mff-lwb-unseen-200.parquet",
}

# Named exclude lists. `minif2f-defective`: publicly reported defects of this miniF2F copy
# (../shared/data/README.md): mathd_algebra_314 lost its real-number ascription (it reads 0 = 0
# over naturals); the other five have an unparenthesised big-operator body.
NAMED_EXCLUDES: dict[str, tuple[str, ...]] = {
    "minif2f-defective": (
        "mathd_algebra_314",
        "induction_pord1p1on2powklt5on2",
        "induction_prod1p1onk3le3m1onn",
        "amc12a_2021_p9",
        "mathd_algebra_158",
        "mathd_algebra_342",
    ),
}

DATA_FILE_SUFFIXES = (".parquet", ".jsonl", ".json")
MAX_REPORTED_ERRORS = 10  # a file with thousands of bad rows shows the first few and the count


class DataError(ValueError):
    """A problem set that cannot be used as is; the message names the file, the row and the field."""


@dataclass(frozen=True)
class ColumnMap:
    """Which column holds which ``Problem`` field. ``header=None``: no header column (use the default)."""

    name: str
    statement: str
    informal: str | None = None
    split: str | None = None
    header: str | None = None

    def required(self) -> tuple[str, ...]:
        return (self.name, self.statement)


# The layout of the files in ../shared/data, and of DeepSeek-Prover-V1.5's datasets/minif2f.jsonl.
LAYOUTS: dict[str, ColumnMap] = {
    "shared": ColumnMap(
        name="theorem_full_name", statement="theorem_statement", informal="informal_statement", split="split"
    ),
    "deepseek": ColumnMap(
        name="name", statement="formal_statement", informal="informal_prefix", split="split", header="header"
    ),
}


def detect_layout(columns: Iterable[str], source: str) -> ColumnMap:
    """The first known layout whose name and statement columns are present; an error lists what is missing."""
    columns = set(columns)
    for layout in LAYOUTS.values():
        if set(layout.required()) <= columns:
            # optional columns a file lacks are simply absent (empty informal, no split, default header)
            return dataclasses.replace(
                layout, **{f: None for f in ("informal", "split", "header") if getattr(layout, f) not in columns}
            )
    expected = "; ".join(f"{key}: {', '.join(m.required())}" for key, m in LAYOUTS.items())
    raise DataError(
        f"{source}: missing columns: no known layout fits the columns {sorted(columns)} "
        f"(expected {expected}; or pass an explicit column mapping)"
    )


def column_map(spec: ColumnMap | Mapping[str, str] | str | None, columns: Iterable[str], source: str) -> ColumnMap:
    """Resolve a layout name, a {field: column} mapping or None (auto-detect) against a file's columns."""
    if spec is None:
        return detect_layout(columns, source)
    if isinstance(spec, str):
        if spec not in LAYOUTS:
            raise DataError(f"unknown column layout {spec!r}; choose one of {sorted(LAYOUTS)} or give a mapping")
        return LAYOUTS[spec]
    if isinstance(spec, ColumnMap):
        return spec
    base = detect_layout(columns, source) if not {"name", "statement"} <= set(spec) else None
    fields = {**(dataclasses.asdict(base) if base else {}), **spec}
    unknown = sorted(set(fields) - set(ColumnMap.__dataclass_fields__))
    if unknown:
        raise DataError(f"column mapping: unknown field(s) {unknown}; known: {sorted(ColumnMap.__dataclass_fields__)}")
    return ColumnMap(**fields)


def default_data_dir() -> Path:
    """$PROVER_DATA_DIR, else ``../shared/data`` beside the project checkout when it exists."""
    env = os.environ.get("PROVER_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataError(f"PROVER_DATA_DIR={env} is not a directory")
        return path
    beside = Path(__file__).resolve().parents[3] / "shared" / "data"
    if beside.is_dir():
        return beside
    raise DataError(
        "no data directory: set PROVER_DATA_DIR to a folder holding the named sets' parquet files "
        f"(download the data/ folder of the paper's release, 'Rewarding the Unlikely', He, Fried, Welleck 2025: "
        f"{RELEASE_URL}), or pass a file path instead of a set name"
    )


def resolve_exclude(names: Iterable[str]) -> set[str]:
    """Problem names to leave out; an entry naming an exclude list (``minif2f-defective``) expands to it."""
    out: set[str] = set()
    for name in names:
        out.update(NAMED_EXCLUDES.get(name, (name,)))
    return out


def _data_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(DATA_FILE_SUFFIXES))
    if not files:
        raise DataError(f"{path}: directory holds no {'/'.join(DATA_FILE_SUFFIXES)} files")
    return files


def _load_file(path: Path) -> Any:
    import datasets

    builder = "parquet" if path.suffix == ".parquet" else "json"
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types for unreadable files; name the file
        raise DataError(f"{path}: cannot read as {builder}: {exc}") from exc


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _rows_to_problems(
    ds: Any, source: str, columns: ColumnMap | Mapping[str, str] | str | None, header: str | None, split: str | None
) -> list[Problem]:
    cols = column_map(columns, ds.column_names, source)
    wanted = [c for c in (cols.name, cols.statement, cols.informal, cols.split, cols.header) if c]
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; the file has {ds.column_names}")
    data = ds.select_columns(wanted).to_dict()

    def values(col: str | None, default: str = "") -> list[str]:
        return [_text(v) for v in data[col]] if col else [default] * len(ds)

    names, statements, informals, splits = (values(c) for c in (cols.name, cols.statement, cols.informal, cols.split))
    header = HEADERS.get(header, header) if header is not None else None  # a name, or the header itself
    headers = [header] * len(ds) if header is not None else values(cols.header, DEEPSEEK_HEADER)
    problems = []
    for row in range(len(ds)):
        if split is not None and splits[row] != split:
            continue
        problems.append(
            Problem(
                name=names[row].strip(),
                statement=statements[row],
                header=headers[row],
                informal=informals[row],
                split=splits[row],
                extra={"source": source, "row": row},
            )
        )
    return problems


def validate_problems(problems: Sequence[Problem]) -> None:
    """Raise ``DataError`` listing every bad row: empty name or statement, a statement that does not
    end in ``:= by`` (trailing whitespace allowed), a name used twice."""
    errors: list[str] = []
    first_seen: dict[str, Problem] = {}
    for p in problems:
        where = f"{p.extra.get('source', '?')}, row {p.extra.get('row', '?')}"
        if not p.name:
            errors.append(f"{where}: empty name")
        if not p.statement.strip():
            errors.append(f"{where} ({p.name!r}): empty statement")
        elif not p.statement.rstrip().endswith(":= by"):
            tail = p.statement.rstrip()[-40:]
            errors.append(
                f"{where} ({p.name!r}): statement must end with ':= by' (the proof follows it); it ends with {tail!r}"
            )
        if p.name and p.name in first_seen:
            prev = first_seen[p.name].extra
            errors.append(
                f"{where}: duplicate name {p.name!r} (first at {prev.get('source', '?')}, row {prev.get('row', '?')})"
            )
        first_seen.setdefault(p.name, p)
    if errors:
        more = f"\n  ... and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
        raise DataError(f"{len(errors)} invalid row(s):\n  " + "\n  ".join(errors[:MAX_REPORTED_ERRORS]) + more)


def resolve_source(source: str, data_dir: str | Path | None = None) -> Path | str:
    """A named set -> its file in the data directory; an existing path -> itself; else a hub id."""
    if source in NAMED_SETS:
        root = Path(data_dir) if data_dir else default_data_dir()
        for name in dict.fromkeys((NAMED_SETS[source], RELEASE_FILES[source])):
            if (root / name).is_file():
                return root / name
        raise DataError(
            f"named set {source!r}: {root / NAMED_SETS[source]} does not exist, nor the release's "
            f"{RELEASE_FILES[source]} (is {root} the right data directory? the files: {RELEASE_URL})"
        )
    path = Path(source).expanduser()
    if path.exists():
        return path
    if path.suffix in DATA_FILE_SUFFIXES or source.startswith((".", "/", "~")):
        raise DataError(f"{source}: no such file or directory (named sets: {', '.join(NAMED_SETS)})")
    if source.count("/") != 1:
        # Not owner/name: no hub id, so no hub lookup (offline, datasets retries for ~25 s first)
        close = difflib.get_close_matches(source, list(NAMED_SETS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise DataError(
            f"unknown dataset {source!r}: {hint}named sets: {', '.join(NAMED_SETS)}; "
            "or a parquet/jsonl/json file, a directory of them, or a hub id (owner/name)"
        )
    return source  # owner/name on the hub


def load_problems(
    source: str,
    *,
    columns: ColumnMap | Mapping[str, str] | str | None = None,
    split: str | None = None,
    header: str | None = None,
    exclude: Iterable[str] = (),
    limit: int | None = None,
    data_dir: str | Path | None = None,
) -> list[Problem]:
    """Validated problems from a named set, a parquet/jsonl/json file, a directory of them, or a hub id.

    ``columns``: a layout name (``shared``, ``deepseek``), a ``{field: column}`` mapping, or None to
    detect. ``split``: keep rows whose split column equals it (hub ids: the dataset split, default
    ``train``). ``header``: overrides the file's header; a name in ``HEADERS`` (``deepseek-v1.5``,
    ``v4.15.0``, ``bounded``) stands for that header. ``exclude`` names problems or exclude lists
    (``minif2f-defective``); ``limit`` keeps the first N after exclusion.
    """
    resolved = resolve_source(source, data_dir)
    if isinstance(resolved, Path):
        files = _data_files(resolved) if resolved.is_dir() else [resolved]
        problems = []
        for path in files:
            problems += _rows_to_problems(_load_file(path), str(path), columns, header, split)
    else:
        import datasets

        try:
            ds = datasets.load_dataset(resolved, split=split or "train")
        except Exception as exc:
            raise DataError(f"{source}: not a named set, a local path or a loadable hub dataset: {exc}") from exc
        problems = _rows_to_problems(ds, f"hub:{resolved}", columns, header, None)
    validate_problems(problems)
    if split is not None and not problems:
        raise DataError(f"{source}: no rows with split {split!r}")
    dropped = resolve_exclude(exclude)
    kept = [p for p in problems if p.name not in dropped]
    if dropped:
        logger.info("%s: excluded %d of %d problems", source, len(problems) - len(kept), len(problems))
    if limit is not None:
        kept = kept[:limit]
    return kept
