"""fedsyft.schema: the federation's public data contract, its file format, checks and scaling."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from fedsyft.schema import MNIST_SCHEMA, Schema, SchemaError
from fedsyft.tabular import Table, load_table, write_example_tables


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return write_example_tables(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def cancer(examples):
    return load_table(*examples["breast_cancer"])


def table(X, y_labels, names=("a", "b"), source="site.csv") -> Table:
    classes = tuple(sorted(set(y_labels)))
    return Table(X=np.asarray(X, dtype=np.float32), y=np.array([classes.index(v) for v in y_labels]),
                 feature_names=tuple(names), classes=classes, source=source)


SMALL = Schema(features=("a", "b"), classes=("no", "yes"), ranges=((0.0, 10.0), (-1.0, 1.0)), name="small")


def one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


# ---------------------------------------------------------------------------------------------
# derive, file format, fingerprint


def test_derive_publishes_observed_ranges_and_says_so(cancer):
    schema, notice = Schema.derive(cancer, name="breast cancer")
    assert schema.features == cancer.feature_names and schema.classes == ("benign", "malignant")
    lo, hi = np.array(schema.ranges).T
    np.testing.assert_array_equal(lo.astype(np.float32), cancer.X.min(axis=0))
    np.testing.assert_array_equal(hi.astype(np.float32), cancer.X.max(axis=0))
    assert schema.ranges[0] == (6.981, 28.11)  # the shortest decimals, as in the file
    assert "observed minimum and maximum" in notice and "become public" in notice
    assert cancer.source in notice and "\n" not in notice
    schema.check(cancer)  # a table always fits the schema derived from it


def test_json_round_trip_and_file_format(cancer, tmp_path):
    schema, _ = Schema.derive(cancer, name="bc")
    doc = json.loads(schema.to_json())
    assert list(doc) == ["name", "features", "classes", "ranges"]
    assert doc["ranges"]["mean radius"] == [6.981, 28.11]
    assert Schema.from_json(schema.to_json()) == schema
    assert Schema.from_json(schema.to_json(pretty=False)) == schema
    path = schema.write(tmp_path / "schema.json")
    assert Schema.read(path) == schema
    text = SMALL.to_json()
    assert '"a": [0.0, 10.0]' in text and text.startswith('{\n "name": "small",')


def test_int_classes_survive_json_and_differ_from_text_classes():
    s = Schema(features=("x",), classes=(0, 1, 2), ranges=((0, 1),))
    back = Schema.from_json(s.to_json())
    assert back.classes == (0, 1, 2) and all(type(c) is int for c in back.classes)
    text = Schema(features=("x",), classes=("0", "1", "2"), ranges=((0, 1),))
    assert s.fingerprint() != text.fingerprint()
    assert s.difference(text) == "class 1 is 0 in this schema and '0' in the other"


def test_fingerprint_is_sha256_of_canonical_json_without_name():
    canon = json.dumps({"classes": ["no", "yes"], "features": ["a", "b"],
                        "ranges": {"a": [0.0, 10.0], "b": [-1.0, 1.0]}}, sort_keys=True, separators=(",", ":"))
    assert SMALL.fingerprint() == hashlib.sha256(canon.encode()).hexdigest()
    renamed = Schema(SMALL.features, SMALL.classes, SMALL.ranges, name="another name")
    assert renamed.fingerprint() == SMALL.fingerprint() and renamed.difference(SMALL) is None
    wider = Schema(SMALL.features, SMALL.classes, ((0.0, 11.0), (-1.0, 1.0)))
    assert wider.fingerprint() != SMALL.fingerprint()


@pytest.mark.parametrize("doc, expected", [
    ("{", "site.json: not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ("[]", "site.json: a schema is a JSON object, got list"),
    ({"features": ["a"], "classes": [0, 1], "ranges": {"a": [0, 1]}, "feature": []},
     "site.json: unknown key 'feature' (allowed: classes, features, name, ranges)"),
    ({"features": ["a"], "classes": [0, 1]}, "site.json: missing key 'ranges'"),
    ({"features": ["a", "b"], "classes": [0, 1], "ranges": {"a": [0, 1]}},
     "site.json: feature 'b' has no range in 'ranges'"),
    ({"features": ["a"], "classes": [0, 1], "ranges": {"a": [0, 1], "z": [0, 1]}},
     "site.json: 'ranges' names 'z', which is not in 'features'"),
    ({"features": ["a"], "classes": [0, 1], "ranges": {"a": [2, 1]}},
     "site.json: range of feature 'a' has min 2 above max 1"),
    ({"features": ["a"], "classes": [0, 1], "ranges": {"a": [0]}},
     "site.json: range of feature 'a' must be [min, max] numbers, got [0]"),
    ({"features": ["a"], "classes": [0, 1], "ranges": {"a": [0, True]}},
     "site.json: range of feature 'a' must be [min, max] numbers, got [0, True]"),
    ({"features": ["a"], "classes": [0, "1"], "ranges": {"a": [0, 1]}},
     "site.json: classes must be all text or all integers, got 0, '1'"),
    ({"features": ["a"], "classes": [0], "ranges": {"a": [0, 1]}},
     "site.json: at least 2 classes are needed, got 1"),
    ({"features": ["a", "a"], "classes": [0, 1], "ranges": {"a": [0, 1]}},
     "site.json: feature 'a' is listed twice"),
    ({"features": [], "classes": [0, 1], "ranges": {}}, "site.json: no features"),
    ({"features": ["a"], "classes": [0, 1, 1], "ranges": {"a": [0, 1]}}, "site.json: class 1 is listed twice"),
    ({"features": ["a"], "classes": [0.5, 1], "ranges": {"a": [0, 1]}},
     "site.json: classes must be text or integers, got 0.5"),
])
def test_malformed_schema_files_are_refused_in_one_line(doc, expected):
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(SchemaError) as e:
        Schema.from_json(text, source="site.json")
    assert one_line(e) == expected


def test_unknown_keys_are_refused_naming_the_key_and_the_file(tmp_path):
    path = tmp_path / "schema.json"
    # a misspelt key is also a missing one: the unknown key is what to fix, the first by name when several
    path.write_text(json.dumps({"features": ["a"], "classes": [0, 1], "range": {"a": [0, 1]}, "colour": 1}))
    with pytest.raises(SchemaError) as e:
        Schema.read(path)
    assert one_line(e) == f"{path}: unknown key 'colour' (allowed: classes, features, name, ranges)"
    # ranges is the one nested object; its keys are feature names, so an unknown one is a feature it lacks
    doc = {"features": ["a"], "classes": [0, 1], "ranges": {"a": [0, 1], "b": [0, 1]}}
    with pytest.raises(SchemaError) as e:
        Schema.from_dict(doc, source="sites file s.json: site 1 schema")
    assert one_line(e) == "sites file s.json: site 1 schema: 'ranges' names 'b', which is not in 'features'"


@pytest.mark.parametrize("change, expected", [
    ({"features": "a"}, "'features' and 'classes' must be JSON lists"),
    ({"classes": {"0": 0}}, "'features' and 'classes' must be JSON lists"),
    ({"ranges": [[0, 1]]}, "'ranges' must be an object {feature: [min, max]}"),
    ({"features": ["a", 2]}, "feature names must be text, got 2"),
    ({"classes": [0, None]}, "classes must be text or integers, got None"),
    ({"classes": [0, True]}, "classes must be text or integers, got True"),
    ({"ranges": {"a": ["0", 1]}}, "range of feature 'a' must be [min, max] numbers, got ['0', 1]"),
    ({"ranges": {"a": [0, 1, 2]}}, "range of feature 'a' must be [min, max] numbers, got [0, 1, 2]"),
    ({"ranges": {"a": {"min": 0, "max": 1}}},
     "range of feature 'a' must be [min, max] numbers, got {'min': 0, 'max': 1}"),
    ({"ranges": {"a": [0, 10 ** 400]}}, f"range of feature 'a' must be [min, max] numbers, got [0, {10 ** 400}]"),
    ({"name": 5}, "'name' must be text"),
    ({"name": None}, "'name' must be text"),
])
def test_wrong_types_are_one_plain_line(change, expected):
    doc = {"features": ["a"], "classes": [0, 1], "ranges": {"a": [0, 1]}, **change}
    with pytest.raises(SchemaError) as e:
        Schema.from_dict(doc, source="site.json")
    text = one_line(e)
    assert text == f"site.json: {expected}"
    assert "validation error" not in text and "Input should" not in text and "pydantic" not in text
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no pydantic traceback behind it


def test_a_valid_file_round_trips(tmp_path):
    doc = {"name": "clinic", "features": ["age", "dose (mg)"], "classes": ["benign", "malignant"],
           "ranges": {"age": [0, 120], "dose (mg)": [0.5, 12.25]}}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(doc))
    schema = Schema.read(path)
    assert schema.ranges == ((0.0, 120.0), (0.5, 12.25)) and all(type(v) is float for r in schema.ranges for v in r)
    assert schema.to_dict() == doc and Schema.from_dict(schema.to_dict()) == schema
    assert Schema.read(schema.write(tmp_path / "again.json")) == schema
    unnamed = {k: v for k, v in doc.items() if k != "name"}
    assert Schema.from_dict(unnamed).to_dict() == unnamed  # name is optional, and left out when empty


def test_pydantic_is_imported_with_the_first_schema_file_not_with_fedsyft():
    code = "import sys, fedsyft.schema; print('pydantic' in sys.modules)"  # ~0.1 s of every command's start
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_nonfinite_range_and_missing_file(tmp_path):
    with pytest.raises(SchemaError, match=r"^s: range of feature 'a' must be finite, got \[0.0, nan\]$"):
        Schema.from_json('{"features": ["a"], "classes": [0, 1], "ranges": {"a": [0, NaN]}}', source="s")
    with pytest.raises(SchemaError, match="no such schema file"):
        Schema.read(tmp_path / "nope.json")


# ---------------------------------------------------------------------------------------------
# check: a data owner's table against the schema


def test_check_accepts_a_site_that_lacks_some_classes():
    t = table([[1, 0], [2, 0.5]], ["no", "no"])
    SMALL.check(t)
    np.testing.assert_array_equal(SMALL.encode_labels(t), [0, 0])
    t = table([[1, 0], [2, 0.5]], ["yes", "no"])
    np.testing.assert_array_equal(t.y, [1, 0])
    np.testing.assert_array_equal(SMALL.encode_labels(t), [1, 0])


@pytest.mark.parametrize("names, expected", [
    (("a",), "site.csv: feature 'b' of the schema is missing"),
    (("a", "c"), "site.csv: feature 'b' of the schema is missing"),
    (("a", "b", "c"), "site.csv: column 'c' is not a feature of the schema"),
    (("c", "a", "b"), "site.csv: column 'c' is not a feature of the schema"),
    (("b", "a"), "site.csv: features are out of order: feature 1 is 'b', the schema has 'a' there"),
])
def test_check_names_the_first_feature_difference(names, expected):
    t = table(np.zeros((2, len(names))), ["no", "yes"], names=names)
    with pytest.raises(SchemaError) as e:
        SMALL.check(t)
    assert one_line(e) == expected


def test_check_names_a_class_the_schema_does_not_have_and_its_row():
    t = table(np.zeros((3, 2)), ["no", "maybe", "yes"])
    with pytest.raises(SchemaError) as e:
        SMALL.check(t)
    assert one_line(e) == "site.csv: class 'maybe' (row 2) is not one of the schema's classes 'no', 'yes'"
    with pytest.raises(SchemaError, match="class 'maybe' \\(row 2\\)"):
        SMALL.encode_labels(t)
    ints = Table(X=np.zeros((2, 2), np.float32), y=np.array([0, 1]), feature_names=("a", "b"), classes=(0, 1))
    with pytest.raises(SchemaError, match="class 0 \\(row 1\\) is not one of the schema's classes 'no', 'yes'"):
        SMALL.check(ints)


def test_check_names_file_column_and_row_of_a_value_out_of_range():
    t = table([[1, 0], [5, 0.5], [10.5, 2.0]], ["no", "yes", "no"])
    with pytest.raises(SchemaError) as e:
        SMALL.check(t)
    assert one_line(e) == "site.csv: column 'a' row 3 is 10.5, outside the declared range [0, 10]"
    t = table([[1, 0], [5, -1.25]], ["no", "yes"])
    with pytest.raises(SchemaError) as e:
        SMALL.check(t)
    assert one_line(e) == "site.csv: column 'b' row 2 is -1.25, outside the declared range [-1, 1]"


def test_bounds_are_compared_in_float32_like_the_data(tmp_path):
    # 6.981 as float32 is 6.98099994...; a bound written "6.981" must still admit it
    p = tmp_path / "t.csv"
    p.write_text("r,y\n6.981,a\n28.11,b\n")
    t = load_table(p, "y")
    s = Schema(features=("r",), classes=("a", "b"), ranges=((6.981, 28.11),))
    s.check(t)
    np.testing.assert_array_equal(s.scale(t.X), [[0.0], [1.0]])


def test_example_tables_fit_their_derived_schemas_and_not_each_other(cancer, examples):
    digits = load_table(*examples["digits"])
    s_cancer, _ = Schema.derive(cancer)
    s_digits, _ = Schema.derive(digits)
    s_digits.check(digits)
    with pytest.raises(SchemaError, match="feature 'pixel_0_0' of the schema is missing"):
        s_digits.check(cancer)
    assert s_cancer.difference(s_digits) == "feature 1 is 'mean radius' in this schema and 'pixel_0_0' in the other"


# ---------------------------------------------------------------------------------------------
# difference between two sites' schemas


def test_difference_names_the_first_difference():
    names = ("site A", "site B")
    assert SMALL.difference(SMALL) is None
    fewer = Schema(("a",), SMALL.classes, ((0, 10),))
    assert SMALL.difference(fewer, names) == "site A has 2 features, site B 1: site B lacks feature 'b'"
    assert fewer.difference(SMALL, names) == "site A has 1 features, site B 2: site A lacks feature 'b'"
    swapped = Schema(("b", "a"), SMALL.classes, SMALL.ranges[::-1])
    assert SMALL.difference(swapped, names) == "feature 1 is 'a' in site A and 'b' in site B"
    reordered = Schema(SMALL.features, ("yes", "no"), SMALL.ranges)
    assert SMALL.difference(reordered, names) == "class 1 is 'no' in site A and 'yes' in site B"
    more = Schema(SMALL.features, ("no", "yes", "maybe"), SMALL.ranges)
    assert SMALL.difference(more, names) == "site A has 2 classes, site B 3: site A lacks class 'maybe'"
    wider = Schema(SMALL.features, SMALL.classes, ((0, 10), (-2, 1)))
    assert SMALL.difference(wider, names) == "feature 'b' has range [-1, 1] in site A and [-2, 1] in site B"


# ---------------------------------------------------------------------------------------------
# scaling


def test_scale_uses_declared_ranges_clips_and_maps_constant_ranges_to_zero():
    s = Schema(features=("a", "b", "c"), classes=(0, 1), ranges=((0, 10), (-1, 1), (3, 3)))
    X = np.array([[0, -1, 3], [5, 0, 3], [10, 1, 7], [20, -5, -1]], dtype=np.float64)
    out = s.scale(X)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 0], [0.5, 0.5, 0], [1, 1, 0], [1, 0, 0]])
    with pytest.raises(SchemaError, match="cannot scale an array of shape \\(4, 2\\): the schema has 3 features"):
        s.scale(X[:, :2])


def test_mnist_schema_scaling_is_exactly_x_over_255():
    assert len(MNIST_SCHEMA.features) == 784
    assert MNIST_SCHEMA.features[0] == "pixel0" and MNIST_SCHEMA.features[-1] == "pixel783"
    assert MNIST_SCHEMA.classes == tuple(range(10))
    assert set(MNIST_SCHEMA.ranges) == {(0.0, 255.0)}
    every_value = np.arange(784, dtype=np.int64) % 256
    rng = np.random.default_rng(0)
    X = np.vstack([every_value, rng.integers(0, 256, (300, 784))]).astype(np.uint8)
    out = MNIST_SCHEMA.scale(X)
    assert out.dtype == np.float32
    assert np.array_equal(out, X.astype(np.float32) / 255)  # bit for bit
    assert Schema.from_json(MNIST_SCHEMA.to_json()).fingerprint() == MNIST_SCHEMA.fingerprint()


def test_schema_is_frozen_and_validates_itself():
    with pytest.raises(AttributeError):
        SMALL.name = "x"  # type: ignore[misc]
    with pytest.raises(SchemaError, match="2 ranges for 1 features"):
        Schema(("a",), (0, 1), ((0, 1), (0, 1)))
    with pytest.raises(SchemaError, match="must be finite"):
        Schema(("a",), (0, 1), ((0, float("inf")),))
    assert Schema(("a",), (np.int64(0), True), ((0, 1),)).classes == (0, 1)
    assert repr(SMALL) == "Schema(name='small', features=2 ('a', 'b'), classes=('no', 'yes'))"
