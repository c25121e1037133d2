"""A data owner's own table: CSV, Parquet or NPZ, checked and turned into numeric arrays.

:func:`load_table` reads one file into a :class:`Table`: ``X`` float32 ``[n, d]`` (the
feature columns, in file order), ``y`` int64 ``[n]`` (each row's class as an index into
``classes``), the feature names, the classes and the file it came from. Anything that
would make the data unfit for training is refused with a :class:`TableError` whose
message is one line naming the file and, where it applies, the column and the row.

Rules
-----
- One column holds the label (``label=``); every other column is a feature.
- Features must be numeric: integers, floats, or booleans (read as 0/1). In a CSV file, or a
  text column of a Parquet file, every cell must parse as a number (``3``, ``-1.5``, ``2e-3``;
  spaces around it are ignored). No cell may be empty, missing (``NA``, ``NaN``, ``null``,
  ``None``, ``N/A``, any case) or infinite, and every value must fit in float32.
- The label column may hold text or integers. Labels that are all integers, or all text
  whole numbers such as ``7``, ``-1`` or ``3.0`` (as every CSV label is text), give ``int``
  classes; otherwise the stripped text is the class (``str``); booleans become 0/1, and floats are accepted only
  when every value is a whole number. ``classes`` is the sorted tuple of distinct labels
  found. At least 2 classes and at least 1 feature are required.
- Column names must be distinct and non-empty.
- Rows are numbered from 1 in data order: row 1 is the first row after a CSV header (file
  line 2), or index 0 of a Parquet or NPZ column.

Formats, chosen by the file's extension
---------------------------------------
``.csv``
    Comma-separated, UTF-8 (a byte-order mark is allowed), a header line with the column
    names (spaces around a name are dropped), one row per line; fields may be quoted. A
    blank line inside the data is an empty row; blank lines at the end are ignored.
``.parquet``, ``.pq``
    Any Parquet file pyarrow reads; each top-level column is a column.
``.npz`` (numpy ``savez``; no pickled objects)
    Two layouts. *X/y*: if the archive holds an array named ``X``, that array (2-D,
    ``[n, d]``) is the features, the array named by ``label`` (1-D, ``[n]``; usually ``y``)
    the labels, and an optional 1-D text array ``feature_names`` of length ``d`` names the
    features (default ``x0`` .. ``x{d-1}``); no other array is allowed. *Columns*: otherwise
    every array is one 1-D column of the same length, named by its key in the archive
    (``np.savez(path, age=age, income=income, diagnosis=diagnosis)``).

:func:`write_example_tables` writes two tables from scikit-learn's bundled data sets
(breast cancer and digits) as CSV files, for tests and documentation.
"""

from __future__ import annotations

import csv
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Table", "TableError", "load_table", "write_example_tables", "ExampleFile", "SUFFIXES"]

#: Extensions :func:`load_table` understands, and the format each one means.
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}

#: Cell texts that mean "no value" (compared without case and surrounding spaces).
MISSING_TEXTS = frozenset({"na", "n/a", "nan", "null", "none", "-nan", "#n/a"})

_INT_TEXT = re.compile(r"^[+-]?\d+(?:\.0*)?$")  # "7", "-1", "3.0": whole numbers
_F32_MAX = float(np.finfo(np.float32).max)


class TableError(ValueError):
    """A data file cannot be used: the message is one line naming the file, column and row."""


@dataclass(frozen=True, eq=False)
class Table:
    """A data owner's table, ready for training.

    Attributes
    ----------
    X : numpy.ndarray
        float32 ``[n, d]``, the feature columns in file order; finite. Read-only.
    y : numpy.ndarray
        int64 ``[n]``, each row's class as an index into ``classes``. Read-only.
    feature_names : tuple of str
        The ``d`` feature column names, in file order.
    classes : tuple
        The sorted distinct label values found in the file, all ``str`` or all ``int``.
    source : str
        The file the table was read from (as given to :func:`load_table`).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    classes: tuple
    source: str = "<array>"

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        y = np.asarray(self.y)
        if X.dtype != np.float32 or X.ndim != 2:
            raise TableError(f"{self.source}: X must be a 2-D float32 array, got {X.dtype} {X.shape}")
        if y.dtype != np.int64 or y.shape != (X.shape[0],):
            raise TableError(f"{self.source}: y must be int64 with one entry per row of X, got {y.dtype} {y.shape}")
        names = tuple(str(n) for n in self.feature_names)
        if len(names) != X.shape[1]:
            raise TableError(f"{self.source}: {len(names)} feature names for {X.shape[1]} columns")
        classes = tuple(self.classes)
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise TableError(f"{self.source}: y holds indices outside 0..{len(classes) - 1}")
        X, y = X.view(), y.view()  # read-only views: the caller's own arrays stay writable
        X.flags.writeable = y.flags.writeable = False
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns, ``d``."""
        return int(self.X.shape[1])

    @property
    def labels(self) -> np.ndarray:
        """Each row's label value (``classes[y]``), as an object array."""
        return np.array(self.classes, dtype=object)[self.y]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        return (self.feature_names == other.feature_names and self.classes == other.classes
                and np.array_equal(self.X, other.X) and np.array_equal(self.y, other.y))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(repr(c) for c in self.classes[:5]) + (", ..." if len(self.classes) > 5 else "")
        return (f"Table(source={self.source!r}, rows={len(self)}, features={self.n_features}, "
                f"classes=({shown}))")


# ---------------------------------------------------------------------------------------------
# loading


def load_table(path: str | Path, label: str) -> Table:
    """Read a data owner's table from a CSV, Parquet or NPZ file.

    Parameters
    ----------
    path : str or Path
        The file; its extension picks the format (``.csv``, ``.parquet``/``.pq``, ``.npz``).
    label : str
        Name of the column (or NPZ array) that holds each row's class.

    Returns
    -------
    Table
        ``X`` float32 ``[n, d]`` with every other column, in file order; ``y`` int64 class
        indices into ``classes``; ``source`` is ``str(path)``.

    Raises
    ------
    TableError
        One line naming the file and, where it applies, the column and the 1-based data row:
        the file is missing, empty, of an unknown type or cannot be parsed; the label column
        is absent; a column name is repeated or empty; a feature column is not numeric; a
        value is empty, missing, infinite or too large for float32; there is no feature
        column or only one class. See the module docstring for the exact rules.

    Examples
    --------
    >>> table = load_table("breast_cancer.csv", label="diagnosis")   # doctest: +SKIP
    >>> table.X.shape, table.classes                                 # doctest: +SKIP
    ((569, 30), ('benign', 'malignant'))
    """
    src = str(path)
    path = Path(path)
    suffix = path.suffix.lower()
    kind = SUFFIXES.get(suffix)
    if kind is None:
        known = ", ".join(SUFFIXES)
        raise TableError(f"{src}: unknown file type {suffix or '(no extension)'!r}; use one of {known}")
    if not path.is_file():
        raise TableError(f"{src}: no such file" if not path.exists() else f"{src}: not a file")
    if path.stat().st_size == 0:
        raise TableError(f"{src}: file is empty")
    reader = {"csv": _read_csv, "parquet": _read_parquet, "npz": _read_npz}[kind]
    names, columns = reader(path, src, label)
    return _build(src, label, names, columns)


class _Column(NamedTuple):
    """One column as read: ``values`` (a numpy array), which rows held no value, and how to say so."""

    values: np.ndarray
    null: np.ndarray | None = None
    null_says: str = "empty (null)"


def _check_names(src: str, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name.strip() == "":
            raise TableError(f"{src}: column {i} has no name")
        if name in seen:
            raise TableError(f"{src}: duplicate column name {name!r} (columns {seen[name]} and {i})")
        seen[name] = i


def _missing_label(src: str, label: str, names: list[str]) -> TableError:
    shown = ", ".join(repr(n) for n in names[:8])
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return TableError(f"{src}: label column {label!r} not found; columns are {shown}{more}")


def _read_csv(path: Path, src: str, label: str) -> tuple[list[str], dict[str, _Column]]:
    import pandas as pd

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, strict=True), None)
    except UnicodeDecodeError as e:
        raise TableError(f"{src}: not UTF-8 text (byte {e.start} cannot be decoded)") from None
    except csv.Error as e:
        raise TableError(f"{src}: cannot be parsed as CSV: header line: {e}") from None
    if header is None or not any(h.strip() for h in header):
        raise TableError(f"{src}: file is empty" if header is None else f"{src}: the first line (the header) is blank")
    raw_header, header = header, [h.strip() for h in header]  # " age" is column "age"
    _check_names(src, header)
    if label not in header:
        raise _missing_label(src, label, header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, encoding="utf-8-sig", header=0, index_col=False, skip_blank_lines=False,
                             keep_default_na=False, na_values=[""], low_memory=False,
                             dtype={raw_header[header.index(label)]: str})
    except pd.errors.ParserWarning:
        raise TableError(f"{src}: cannot be parsed as CSV: row 1 has more fields than the header") from None
    except pd.errors.ParserError as e:
        raise TableError(f"{src}: cannot be parsed as CSV: {_csv_parser_message(str(e))}") from None
    except UnicodeDecodeError as e:
        raise TableError(f"{src}: not UTF-8 text (byte {e.start} cannot be decoded)") from None
    except (ValueError, OSError) as e:  # pragma: no cover - pandas' other refusals
        raise TableError(f"{src}: cannot be parsed as CSV: {_first_line(e)}") from None
    if list(df.columns) != raw_header:  # pragma: no cover - guarded by _check_names
        raise TableError(f"{src}: cannot be parsed as CSV: unexpected header {list(df.columns)!r}")
    df.columns = header
    # Blank lines at the end of a file are an artefact, not rows; blank lines inside are empty rows.
    blank = df.isna().all(axis=1).to_numpy()
    n = len(blank)
    while n and blank[n - 1]:
        n -= 1
    if n == 0:
        raise TableError(f"{src}: no data rows below the header")
    df = df.iloc[:n]
    columns = {}
    for name in header:
        values = df[name].to_numpy()
        # An empty cell (or a short row) is the only thing pandas reads as NaN here: "nan" stays text.
        null = np.isnan(values) if values.dtype.kind == "f" else None
        columns[name] = _Column(values, null, "empty")
    return header, columns


def _csv_parser_message(text: str) -> str:
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if m:
        expected, line, saw = (int(g) for g in m.groups())
        return f"row {line - 1} (line {line}) has {saw} fields, the header has {expected}"
    m = re.search(r"EOF inside string starting at row (\d+)", text)
    if m:
        return f"a quote opened in row {int(m.group(1))} is never closed"
    return _first_line(text)


def _first_line(e: object) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _read_parquet(path: Path, src: str, label: str) -> tuple[list[str], dict[str, _Column]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
        if not names:
            raise TableError(f"{src}: no columns")
        _check_names(src, names)
        if label not in names:
            raise _missing_label(src, label, names)
        table = pf.read()
    except (pa.ArrowException, OSError, ValueError) as e:
        if isinstance(e, TableError):
            raise
        raise TableError(f"{src}: cannot be read as Parquet: {_first_line(e)}") from None
    if table.num_rows == 0:
        raise TableError(f"{src}: no data rows")
    columns = {}
    for name, col in zip(names, table.columns):
        t = col.type
        if pa.types.is_dictionary(t):
            col, t = col.cast(t.value_type), t.value_type
        null = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
        if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            filler = False if pa.types.is_boolean(t) else 0
            filled = col.fill_null(pa.scalar(filler, type=t)) if col.null_count else col
            values = filled.to_numpy() if not pa.types.is_decimal(t) else np.array(
                [float(v) for v in filled.to_pylist()], dtype=np.float64)
        elif pa.types.is_string(t) or pa.types.is_large_string(t):  # checked like CSV cells
            values = col.to_numpy(zero_copy_only=False)
        else:  # dates, binary, lists, structs, ...: never a feature nor a label
            first = col[0].as_py()
            if name == label:
                raise TableError(f"{src}: label column {label!r} holds {t} values: labels must be text or integers")
            raise TableError(f"{src}: column {name!r} is not numeric ({t}): row 1 is {first}")
        columns[name] = _Column(np.asarray(values), null)
    return names, columns


def _read_npz(path: Path, src: str, label: str) -> tuple[list[str], dict[str, _Column]]:
    if not zipfile.is_zipfile(path):
        raise TableError(f"{src}: cannot be read as NPZ: not a zip archive (write it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise TableError(f"{src}: holds object (pickled) arrays; store text as str arrays") from None
        raise TableError(f"{src}: cannot be read as NPZ: {_first_line(e)}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise TableError(f"{src}: cannot be read as NPZ: {_first_line(e)}") from None
    if not arrays:
        raise TableError(f"{src}: the archive holds no arrays")
    if "X" in arrays:
        return _npz_xy(src, label, arrays)
    names = list(arrays)
    if label not in arrays:
        raise _missing_label(src, label, names)
    n = None
    for name, a in arrays.items():
        if a.ndim != 1:
            raise TableError(f"{src}: array {name!r} has shape {a.shape}; in the column layout every array "
                             f"is one 1-D column (or store features as 'X' [rows, features])")
        if n is None:
            n = len(a)
        elif len(a) != n:
            raise TableError(f"{src}: array {name!r} has {len(a)} rows, array {names[0]!r} has {n}")
    if not n:
        raise TableError(f"{src}: no data rows")
    _check_names(src, names)
    return names, {k: _Column(v) for k, v in arrays.items()}


def _npz_xy(src: str, label: str, arrays: dict[str, np.ndarray]) -> tuple[list[str], dict[str, _Column]]:
    X = arrays["X"]
    if label not in arrays or label == "X":
        raise TableError(f"{src}: label array {label!r} not found next to 'X'; arrays are "
                         + ", ".join(repr(k) for k in arrays))
    extra = sorted(set(arrays) - {"X", label, "feature_names"})
    if extra:
        raise TableError(f"{src}: unexpected array {extra[0]!r} next to 'X' and {label!r} "
                         f"(only 'feature_names' may be added)")
    if X.ndim != 2:
        raise TableError(f"{src}: array 'X' must be 2-D [rows, features], got shape {X.shape}")
    y = arrays[label]
    if y.ndim != 1 or len(y) != X.shape[0]:
        raise TableError(f"{src}: label array {label!r} must be 1-D with one entry per row of 'X' "
                         f"({X.shape[0]}), got shape {y.shape}")
    if X.shape[0] == 0:
        raise TableError(f"{src}: no data rows")
    if "feature_names" in arrays:
        fn = arrays["feature_names"]
        if fn.dtype.kind not in "US" or fn.ndim != 1 or len(fn) != X.shape[1]:
            raise TableError(f"{src}: 'feature_names' must be a 1-D text array of {X.shape[1]} names, "
                             f"got {fn.dtype} {fn.shape}")
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in fn.tolist()]
    else:
        names = [f"x{j}" for j in range(X.shape[1])]
    if label in names:
        raise TableError(f"{src}: duplicate column name {label!r} (a feature name and the label)")
    _check_names(src, names + [label])
    columns = {name: _Column(X[:, j]) for j, name in enumerate(names)}
    columns[label] = _Column(y)
    return names + [label], columns


# ---------------------------------------------------------------------------------------------
# checking and converting columns


def _build(src: str, label: str, names: list[str], columns: dict[str, _Column]) -> Table:
    features = [n for n in names if n != label]
    if not features:
        raise TableError(f"{src}: no feature column besides the label {label!r}")
    n = len(columns[label].values)
    X = np.empty((n, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        X[:, j] = _feature(src, name, columns[name])
    values = _label_values(src, label, columns[label])
    classes = sorted(set(values.tolist()))
    if len(classes) < 2:
        only = f" ({classes[0]!r})" if classes else ""
        raise TableError(f"{src}: label column {label!r} has only one class{only}; at least 2 are needed")
    index = {c: i for i, c in enumerate(classes)}
    y = np.fromiter((index[v] for v in values.tolist()), dtype=np.int64, count=n)
    return Table(X=X, y=y, feature_names=tuple(features), classes=tuple(classes), source=src)


def _cell(v: Any) -> str:
    return repr(v.item() if isinstance(v, np.generic) else v)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _parse_text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Text cells → (float64 numbers, empty mask, missing-text mask, not-a-number mask)."""
    import pandas as pd

    s = pd.Series(values, dtype=object)
    null = s.isna().to_numpy()
    if any(isinstance(v, (bool, np.bool_)) for v in s.tolist()):  # True/False mixed with blanks
        s = s.map(lambda v: int(v) if isinstance(v, (bool, np.bool_)) else v)
    text = s.where(~null, "").astype(str).str.strip()
    empty = (text == "").to_numpy() | null
    missing = text.str.lower().isin(MISSING_TEXTS).to_numpy()
    numbers = pd.to_numeric(text.where(~(empty | missing), "nan"), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(numbers) & ~empty & ~missing
    for i in np.flatnonzero(bad):  # what pandas leaves but Python reads: "1e400" (inf), "Infinity"
        t = text.iat[i]
        try:
            if "_" not in t:
                v = float(t)
                bad[i] = False
                if v != v:  # "+nan", "NAN(123)": a spelling of NaN
                    missing[i] = True
                else:
                    numbers[i] = v
        except ValueError:
            break  # the first bad cell is reported; no need to look further
    return numbers, empty, missing, bad


def _feature(src: str, name: str, col: _Column) -> np.ndarray:
    values, null, null_says = col
    where = f"{src}: column {name!r}"
    kind = values.dtype.kind
    if kind in "biuf":
        numbers = values.astype(np.float64)
        r = _first(null) if null is not None else None
        if r is not None:
            raise TableError(f"{where} row {r + 1} is {null_says}")
        r = _first(np.isnan(numbers))
        if r is not None:
            raise TableError(f"{where} row {r + 1} is missing (NaN)")
    elif kind in "OUS":
        if kind == "S":
            values = np.char.decode(values, "utf-8", errors="replace")
        numbers, empty, missing, bad = _parse_text(values)
        r = _first(bad)
        if r is not None:
            raise TableError(f"{where} is not numeric: row {r + 1} is {_cell(values[r])}")
        r = _first(empty | missing)
        if r is not None:
            if empty[r]:
                raise TableError(f"{where} row {r + 1} is empty")
            raise TableError(f"{where} row {r + 1} is missing ({str(values[r]).strip()!r})")
    else:
        raise TableError(f"{where} is not numeric ({values.dtype}): row 1 is {_cell(values[0])}")
    r = _first(np.isinf(numbers))
    if r is not None:
        raise TableError(f"{where} row {r + 1} is infinite ({_cell(values[r])})")
    r = _first(np.abs(numbers) > _F32_MAX)
    if r is not None:
        raise TableError(f"{where} row {r + 1} is {_cell(values[r])}, too large for float32")
    return numbers.astype(np.float32)


def _label_values(src: str, name: str, col: _Column) -> np.ndarray:
    """The label of every row as Python ``int`` or ``str`` values (an object array)."""
    values, null, null_says = col
    where = f"{src}: label column {name!r}"
    kind = values.dtype.kind
    if null is not None and null.any():
        raise TableError(f"{where} row {_first(null) + 1} is {null_says}")
    if kind in "biu":
        return np.array([int(v) for v in values.tolist()], dtype=object)
    if kind == "f":
        r = _first(np.isnan(values))
        if r is not None:
            raise TableError(f"{where} row {r + 1} is missing (NaN)")
        r = _first(~np.isfinite(values) | (values != np.round(values)))
        if r is not None:
            raise TableError(f"{where} row {r + 1} is {_cell(values[r])}: labels must be class names "
                             f"or whole numbers")
        return np.array([int(v) for v in values.tolist()], dtype=object)
    if kind in "OUS":
        if kind == "S":
            values = np.char.decode(values, "utf-8", errors="replace")
        out = np.empty(len(values), dtype=object)
        all_int = True
        for i, v in enumerate(values.tolist()):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                raise TableError(f"{where} row {i + 1} is empty")
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, (int, np.integer)):
                v = int(v)
            elif isinstance(v, str):
                v = v.strip()
                if v == "":
                    raise TableError(f"{where} row {i + 1} is empty")
                if v.lower() in MISSING_TEXTS:
                    raise TableError(f"{where} row {i + 1} is missing ({v!r})")
                all_int = all_int and bool(_INT_TEXT.match(v))
            else:
                raise TableError(f"{where} row {i + 1} is {v!r}: labels must be text or integers")
            out[i] = v
        if all_int:
            return np.array([v if isinstance(v, int) else int(v.split(".")[0]) for v in out.tolist()], dtype=object)
        return np.array([str(v) for v in out.tolist()], dtype=object)
    raise TableError(f"{where} has values of type {values.dtype}: labels must be text or integers")


# ---------------------------------------------------------------------------------------------
# example files


class ExampleFile(NamedTuple):
    """An example table written by :func:`write_example_tables`: its file and label column."""

    path: Path
    label: str


def write_example_tables(folder: str | Path) -> dict[str, ExampleFile]:
    """Write two example data-owner tables as CSV files, from data bundled with scikit-learn.

    No network is needed (``sklearn.datasets.load_breast_cancer`` and ``load_digits`` ship
    with scikit-learn).

    Parameters
    ----------
    folder : str or Path
        Where to write; created if missing. Existing files of the same names are replaced.

    Returns
    -------
    dict of str to ExampleFile
        ``"breast_cancer"``: ``breast_cancer.csv``, 569 rows, 30 float features (scikit-learn's
        names, e.g. ``mean radius``) and the label column ``diagnosis`` with values
        ``malignant``/``benign``. ``"digits"``: ``digits.csv``, 1,797 rows, 64 integer
        features 0-16 (``pixel_0_0`` .. ``pixel_7_7``) and the label column ``digit`` (0-9).
        Each value is an :class:`ExampleFile` ``(path, label)``, ready for
        ``load_table(*files["digits"])``.
    """
    import pandas as pd
    from sklearn.datasets import load_breast_cancer, load_digits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}

    bc = load_breast_cancer()
    df = pd.DataFrame(bc.data, columns=[str(n) for n in bc.feature_names])
    df["diagnosis"] = np.asarray(bc.target_names)[bc.target]
    out["breast_cancer"] = ExampleFile(folder / "breast_cancer.csv", "diagnosis")
    df.to_csv(out["breast_cancer"].path, index=False)

    dg = load_digits()
    names = [str(n) for n in getattr(dg, "feature_names", [f"pixel_{i // 8}_{i % 8}" for i in range(64)])]
    df = pd.DataFrame(dg.data.astype(np.int64), columns=names)
    df["digit"] = dg.target.astype(np.int64)
    out["digits"] = ExampleFile(folder / "digits.csv", "digit")
    df.to_csv(out["digits"].path, index=False)
    return out


def column_names(path: str | Path) -> list[str]:
    """The columns of a CSV or Parquet table (its header), or an NPZ file's arrays, without reading the rows."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        raise TableError(f"{path}: not a CSV, Parquet or NPZ file")
    if kind == "csv":
        import csv

        with path.open(newline="") as f:
            return next(csv.reader(f), [])
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with np.load(path, allow_pickle=False) as arrays:
        return list(arrays.files)
