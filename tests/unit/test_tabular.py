"""fedsyft.tabular: a data owner's CSV, Parquet or NPZ table, and every way it can be refused."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedsyft.tabular import ExampleFile, Table, TableError, load_table, write_example_tables


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return write_example_tables(tmp_path_factory.mktemp("examples"))


def refused(path, label="y") -> str:
    """Load ``path`` expecting a TableError; return its message after checking it is one line naming the file."""
    with pytest.raises(TableError) as info:
        load_table(path, label)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: "):]


def csv_file(tmp_path, text: str | bytes, name: str = "data.csv"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------
# the example tables


def test_breast_cancer_example_matches_scikit_learn(examples):
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    f = examples["breast_cancer"]
    assert isinstance(f, ExampleFile) and f.path.name == "breast_cancer.csv" and f.label == "diagnosis"
    t = load_table(*f)
    assert t.X.shape == (569, 30) and t.X.dtype == np.float32
    assert t.y.shape == (569,) and t.y.dtype == np.int64
    assert t.feature_names == tuple(bc.feature_names) and t.feature_names[0] == "mean radius"
    assert t.classes == ("benign", "malignant")
    np.testing.assert_array_equal(t.X, bc.data.astype(np.float32))  # the CSV round-trips every float
    assert list(t.labels) == list(np.asarray(bc.target_names)[bc.target])
    assert np.bincount(t.y).tolist() == [357, 212]
    assert t.source == str(f.path) and len(t) == 569 and t.n_features == 30


def test_digits_example_matches_scikit_learn(examples):
    from sklearn.datasets import load_digits

    dg = load_digits()
    t = load_table(*examples["digits"])
    assert examples["digits"].label == "digit"
    assert t.X.shape == (1797, 64) and t.classes == tuple(range(10))
    assert all(type(c) is int for c in t.classes)
    np.testing.assert_array_equal(t.X, dg.data.astype(np.float32))
    np.testing.assert_array_equal(t.y, dg.target)
    assert t.feature_names[0] == "pixel_0_0" and t.feature_names[-1] == "pixel_7_7"


def test_example_files_are_plain_csv(examples):
    header = examples["breast_cancer"].path.read_text().splitlines()[0]
    assert header.startswith("mean radius,mean texture,") and header.endswith(",diagnosis")
    assert examples["digits"].path.read_text().splitlines()[1].endswith(",0")


# ---------------------------------------------------------------------------------------------
# one table, every format


def _reference() -> Table:
    X = np.array([[1.5, -2.0, 0.0], [3.25, 4.0, 1.0], [1e-3, 5.0, 0.0], [7.0, -8.5, 1.0]], dtype=np.float32)
    return X, ["b", "a", "b", "c"]


def test_csv_parquet_and_both_npz_layouts_give_the_same_table(tmp_path):
    X, labels = _reference()
    names = ["age", "weight (kg)", "smoker, yes/no"]
    p_csv = tmp_path / "t.csv"
    rows = ['age,weight (kg),"smoker, yes/no",y']
    rows += [",".join(repr(float(v)) for v in x) + f",{lab}" for x, lab in zip(X, labels)]
    p_csv.write_text("\n".join(rows) + "\n")
    p_pq = tmp_path / "t.parquet"
    pq.write_table(pa.table({**{n: X[:, j] for j, n in enumerate(names)}, "y": labels}), p_pq)
    p_cols = tmp_path / "cols.npz"
    np.savez(p_cols, **{n: X[:, j] for j, n in enumerate(names)}, y=np.array(labels))
    p_xy = tmp_path / "xy.npz"
    np.savez(p_xy, X=X, y=np.array(labels), feature_names=np.array(names))
    p_pq2 = tmp_path / "t.pq"
    p_pq2.write_bytes(p_pq.read_bytes())

    tables = [load_table(p, "y") for p in (p_csv, p_pq, p_cols, p_xy, p_pq2)]
    for t in tables:
        assert t == tables[0]
        assert t.feature_names == tuple(names)
        assert t.classes == ("a", "b", "c")
        np.testing.assert_array_equal(t.X, X)
        np.testing.assert_array_equal(t.y, [1, 0, 1, 2])
    assert [t.source for t in tables] == [str(p) for p in (p_csv, p_pq, p_cols, p_xy, p_pq2)]


def test_npz_xy_without_feature_names_names_them_x0_to_xd(tmp_path):
    p = tmp_path / "xy.npz"
    np.savez(p, X=np.arange(6, dtype=np.uint8).reshape(3, 2), label=np.array([0, 1, 1]))
    t = load_table(p, "label")
    assert t.feature_names == ("x0", "x1") and t.classes == (0, 1)
    assert t.X.dtype == np.float32


def test_integer_labels_become_int_classes_sorted_numerically(tmp_path):
    t = load_table(csv_file(tmp_path, "a,y\n1,10\n2,-1\n3,9\n4,10\n"), "y")
    assert t.classes == (-1, 9, 10) and all(type(c) is int for c in t.classes)
    np.testing.assert_array_equal(t.y, [2, 0, 1, 2])
    t = load_table(csv_file(tmp_path, "a,y\n1,1.0\n2,0\n3,+1\n"), "y")  # whole numbers, however written
    assert t.classes == (0, 1) and t.y.tolist() == [1, 0, 1]
    # one label that is not a whole number makes every label text, sorted as text
    t = load_table(csv_file(tmp_path, "a,y\n1,10\n2,9\n3,x\n"), "y")
    assert t.classes == ("10", "9", "x")
    t = load_table(csv_file(tmp_path, "a,y\n1,0.5\n2,1\n"), "y")
    assert t.classes == ("0.5", "1")


def test_label_types_in_parquet_and_npz(tmp_path):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3], "y": [2.0, 0.0, 2.0]}), p)
    assert load_table(p, "y").classes == (0, 2)
    pq.write_table(pa.table({"a": [1, 2, 3], "y": [True, False, True]}), p)
    assert load_table(p, "y").classes == (0, 1)
    pq.write_table(pa.table({"a": [1, 2, 3], "y": pa.array(["u", "v", "u"]).dictionary_encode()}), p)
    assert load_table(p, "y").classes == ("u", "v")
    n = tmp_path / "t.npz"
    np.savez(n, a=np.array([1.0, 2.0]), y=np.array([b"no", b"yes"]))
    assert load_table(n, "y").classes == ("no", "yes")


def test_csv_details_bom_spaces_booleans_blank_trailing_lines(tmp_path):
    text = "\ufeff age , flag ,y\n 1.5 ,True, x \n2,False,z\n\n\n"
    t = load_table(csv_file(tmp_path, text), "y")
    assert t.feature_names == ("age", "flag") and t.classes == ("x", "z")
    np.testing.assert_array_equal(t.X, [[1.5, 1.0], [2.0, 0.0]])


def test_table_is_frozen_read_only_and_validated():
    X = np.zeros((2, 1), dtype=np.float32)
    t = Table(X=X, y=np.array([0, 1]), feature_names=("a",), classes=("n", "p"))
    assert not t.X.flags.writeable and not t.y.flags.writeable
    X[0, 0] = 5  # the caller's array stays its own
    with pytest.raises(AttributeError):
        t.source = "x"  # type: ignore[misc]
    assert repr(t) == "Table(source='<array>', rows=2, features=1, classes=('n', 'p'))"
    assert list(t.labels) == ["n", "p"]
    with pytest.raises(TableError, match="float32"):
        Table(X=np.zeros((2, 1)), y=np.array([0, 1]), feature_names=("a",), classes=(0, 1))
    with pytest.raises(TableError, match="feature names"):
        Table(X=np.zeros((2, 1), np.float32), y=np.array([0, 1]), feature_names=("a", "b"), classes=(0, 1))
    with pytest.raises(TableError, match="indices"):
        Table(X=np.zeros((2, 1), np.float32), y=np.array([0, 2]), feature_names=("a",), classes=(0, 1))


# ---------------------------------------------------------------------------------------------
# refusals: CSV


@pytest.mark.parametrize("text, label, expected", [
    ("age,y\n1,a\n,b\n", "y", "column 'age' row 2 is empty"),
    ("age,y\n1,a\n2,b\n3,a\n4,b\n5,a\n6,b\n7,a\n8,b\n9,a\n10,b\n11,a\n12,b\n13,a\n14,b\n15,a\n16,b\n,a\n",
     "y", "column 'age' row 17 is empty"),
    ("age,y\n1,a\nNA,b\n", "y", "column 'age' row 2 is missing ('NA')"),
    ("age,y\n1,a\nnan,b\n", "y", "column 'age' row 2 is missing ('nan')"),
    ("age,y\n1,a\n+nan,b\n", "y", "column 'age' row 2 is missing ('+nan')"),
    ("age,sex,y\n1,1,a\n2,male,b\n3,female,a\n", "y", "column 'sex' is not numeric: row 2 is 'male'"),
    ("age,y\n1,a\n0x1F,b\n", "y", "column 'age' is not numeric: row 2 is '0x1F'"),
    ("age,y\n1,a\ninf,b\n", "y", "column 'age' row 2 is infinite (inf)"),
    ("age,y\n1,a\n-Infinity,b\n", "y", "column 'age' row 2 is infinite (-inf)"),
    ("age,y\n1,a\n1e400,b\n", "y", "column 'age' row 2 is infinite ('1e400')"),
    ("age,y\n1,a\n1_000,b\n", "y", "column 'age' is not numeric: row 2 is '1_000'"),
    ("age,y\n1,a\n1e39,b\n", "y", "column 'age' row 2 is 1e+39, too large for float32"),
    ("age,y\n1,a\n\n2,b\n", "y", "column 'age' row 2 is empty"),
    ("age,y\n1,a\n2\n", "y", "label column 'y' row 2 is empty"),
    ("age,y\n1,a\n2, \n", "y", "label column 'y' row 2 is empty"),
    ("age,y\n1,a\n2,N/A\n", "y", "label column 'y' row 2 is missing ('N/A')"),
    ("age,y\n1,a\n2,a\n", "y", "label column 'y' has only one class ('a'); at least 2 are needed"),
    ("age,y\n1,a\n2,b\n", "label", "label column 'label' not found; columns are 'age', 'y'"),
    ("y\na\nb\n", "y", "no feature column besides the label 'y'"),
    ("age,y,age\n1,a,2\n2,b,3\n", "y", "duplicate column name 'age' (columns 1 and 3)"),
    ("age, age,y\n1,2,a\n2,3,b\n", "y", "duplicate column name 'age' (columns 1 and 2)"),
    ("age,,y\n1,2,a\n2,3,b\n", "y", "column 2 has no name"),
    ("age,y\n", "y", "no data rows below the header"),
    ("age,y\n1,a,9\n2,b\n", "y", "cannot be parsed as CSV: row 1 has more fields than the header"),
    ("age,y\n1,a\n2,b\n3,a,7\n", "y", "cannot be parsed as CSV: row 3 (line 4) has 3 fields, the header has 2"),
    ('age,y\n1,a\n"2,b\n3,a\n', "y", "cannot be parsed as CSV: a quote opened in row 2 is never closed"),
    ("\n\n", "y", "the first line (the header) is blank"),
])
def test_csv_refusals_name_file_column_and_row(tmp_path, text, label, expected):
    assert refused(csv_file(tmp_path, text), label) == expected


def test_label_column_absent_lists_a_few_columns(tmp_path):
    header = ",".join(f"c{i}" for i in range(12)) + ",target"
    row = ",".join("1" for _ in range(12)) + ",a"
    message = refused(csv_file(tmp_path, f"{header}\n{row}\n"), "y")
    assert message == ("label column 'y' not found; columns are 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', "
                       "'c7', ... (13 in all)")


def test_unreadable_files(tmp_path):
    assert refused(csv_file(tmp_path, b""), "y") == "file is empty"
    assert refused(csv_file(tmp_path, b"age,y\n1,\xff\n"), "y") == "not UTF-8 text (byte 8 cannot be decoded)"
    assert refused(csv_file(tmp_path, "a,y\n1,2\n", name="data.xlsx")).startswith(
        "unknown file type '.xlsx'; use one of .csv, .parquet, .pq, .npz")
    assert refused(csv_file(tmp_path, "a,y\n1,2\n", name="data")).startswith("unknown file type '(no extension)'")
    assert refused(tmp_path / "missing.csv") == "no such file"
    for name in ("empty.parquet", "empty.npz"):
        assert refused(csv_file(tmp_path, b"", name=name)) == "file is empty"


# ---------------------------------------------------------------------------------------------
# refusals: Parquet


def parquet_file(tmp_path, table):
    p = tmp_path / "data.parquet"
    pq.write_table(table, p)
    return p


@pytest.mark.parametrize("columns, expected", [
    ({"age": [1.0, None, 3.0], "y": ["a", "b", "a"]}, "column 'age' row 2 is empty (null)"),
    ({"age": [1, None, 3], "y": ["a", "b", "a"]}, "column 'age' row 2 is empty (null)"),
    ({"age": [1.0, 2.0, float("nan")], "y": ["a", "b", "a"]}, "column 'age' row 3 is missing (NaN)"),
    ({"age": [1.0, float("inf"), 2.0], "y": ["a", "b", "a"]}, "column 'age' row 2 is infinite (inf)"),
    ({"age": ["1", "2", "old"], "y": ["a", "b", "a"]}, "column 'age' is not numeric: row 3 is 'old'"),
    ({"age": [1, 2, 3], "y": ["a", None, "a"]}, "label column 'y' row 2 is empty (null)"),
    ({"age": [1, 2, 3], "y": [0.0, 0.5, 1.0]},
     "label column 'y' row 2 is 0.5: labels must be class names or whole numbers"),
    ({"age": [1, 2, 3], "y": [1, 1, 1]}, "label column 'y' has only one class (1); at least 2 are needed"),
])
def test_parquet_refusals(tmp_path, columns, expected):
    assert refused(parquet_file(tmp_path, pa.table(columns))) == expected


def test_parquet_refusals_of_types_names_and_bytes(tmp_path):
    t = pa.table({"when": pa.array([0, 1], pa.timestamp("s")), "y": [0, 1]})
    assert re.fullmatch(r"column 'when' is not numeric \(timestamp\[\w+\]\): row 1 is 1970-01-01 00:00:00",
                        refused(parquet_file(tmp_path, t)))
    t = pa.table([pa.array([1, 2]), pa.array([3, 4]), pa.array([0, 1])], names=["a", "a", "y"])
    assert refused(parquet_file(tmp_path, t)) == "duplicate column name 'a' (columns 1 and 2)"
    assert refused(parquet_file(tmp_path, pa.table({"a": [1, 2], "b": [0, 1]}))) == (
        "label column 'y' not found; columns are 'a', 'b'")
    p = parquet_file(tmp_path, pa.table({"a": list(range(500)), "y": [0, 1] * 250}))
    p.write_bytes(p.read_bytes()[:300])  # truncated
    assert refused(p).startswith("cannot be read as Parquet: ")
    p.write_text("a,y\n1,2\n")
    assert refused(p).startswith("cannot be read as Parquet: ")


# ---------------------------------------------------------------------------------------------
# refusals: NPZ


def npz_file(tmp_path, **arrays):
    p = tmp_path / "data.npz"
    np.savez(p, **arrays)
    return p


def test_npz_refusals(tmp_path):
    X = np.arange(6, dtype=np.float64).reshape(3, 2)
    y = np.array([0, 1, 0])
    assert refused(npz_file(tmp_path, X=X, labels=y)) == (
        "label array 'y' not found next to 'X'; arrays are 'X', 'labels'")
    assert refused(npz_file(tmp_path, X=X, y=y, w=y)) == (
        "unexpected array 'w' next to 'X' and 'y' (only 'feature_names' may be added)")
    assert refused(npz_file(tmp_path, X=X.reshape(3, 2, 1), y=y)) == (
        "array 'X' must be 2-D [rows, features], got shape (3, 2, 1)")
    assert refused(npz_file(tmp_path, X=X, y=y[:2])).startswith("label array 'y' must be 1-D with one entry per row")
    assert refused(npz_file(tmp_path, X=X, y=y, feature_names=np.array(["a"]))).startswith(
        "'feature_names' must be a 1-D text array of 2 names")
    assert refused(npz_file(tmp_path, X=X, y=y, feature_names=np.array(["a", "a"]))) == (
        "duplicate column name 'a' (columns 1 and 2)")
    bad = X.copy()
    bad[2, 1] = np.nan
    assert refused(npz_file(tmp_path, X=bad, y=y, feature_names=np.array(["a", "b"]))) == (
        "column 'b' row 3 is missing (NaN)")
    bad[2, 1] = -np.inf
    assert refused(npz_file(tmp_path, X=bad, y=y)) == "column 'x1' row 3 is infinite (-inf)"
    assert refused(npz_file(tmp_path, age=np.array([1, 2, 3]), y=np.array([0, 1]))) == (
        "array 'y' has 2 rows, array 'age' has 3")
    assert refused(npz_file(tmp_path, age=X, y=y)).startswith("array 'age' has shape (3, 2); in the column layout")
    assert refused(npz_file(tmp_path, age=np.array([1, 2]), y=np.array([0.5, 1.0]))) == (
        "label column 'y' row 1 is 0.5: labels must be class names or whole numbers")
    assert refused(npz_file(tmp_path, age=np.array(["1", "x"]), y=np.array([0, 1]))) == (
        "column 'age' is not numeric: row 2 is 'x'")
    assert refused(npz_file(tmp_path, age=np.array([1, 2], dtype=object), y=np.array([0, 1]))) == (
        "holds object (pickled) arrays; store text as str arrays")
    p = tmp_path / "data.npz"
    p.write_bytes(b"not a zip archive")
    assert refused(p) == "cannot be read as NPZ: not a zip archive (write it with numpy.savez)"


def test_every_message_is_one_line_with_the_path(tmp_path):
    # the refused() helper checks both; make sure it also holds for a path with spaces
    d = tmp_path / "my data"
    d.mkdir()
    message = refused(csv_file(d, "age,y\n1,a\n,b\n"), "y")
    assert re.fullmatch(r"column 'age' row 2 is empty", message)
