"""A federation's public data contract: the features, the classes and each feature's range.

Every site of a federation trains one model, so every site must mean the same thing by
column *j* and by class *k*, and must scale its features the same way. A :class:`Schema`
says so, publicly: the feature names in order, the classes in order (class *k* of the
model is ``classes[k]`` on every site), and a declared ``[min, max]`` per feature that
fixes the scaling to ``[0, 1]``. A data owner checks its table against the schema before
its datasite starts (:meth:`Schema.check`); the researcher refuses a federation whose
sites publish different schemas (:meth:`Schema.difference`).

File format (``--schema FILE``)
-------------------------------
UTF-8 JSON, one object::

    {"name": "breast cancer",                       (optional, free text)
     "features": ["mean radius", "mean texture"],   (column order; at least one; distinct)
     "classes": ["benign", "malignant"],            (model order; at least two; all text or all integers)
     "ranges": {"mean radius": [6.981, 28.11],      (one [min, max] per feature, min <= max, finite)
                "mean texture": [9.71, 39.28]}}

No other key is allowed, so a misspelt key is an error rather than a silent default.
The shape (keys, JSON types) is checked by a pydantic model, strictly: ``"1"`` is not a
number and ``true`` is not a class; the rules of the contract by :class:`Schema` itself.
Ranges are compared with the data in float32, the precision a :class:`~fedsyft.tabular.Table`
holds, so a bound written as ``6.981`` matches a value read as ``6.981``.

Scaling: ``(x - min) / (max - min)`` clipped to ``[0, 1]``, computed in float32; a feature
whose range is one value scales to 0. For :data:`MNIST_SCHEMA` (every pixel in
``[0, 255]``) that is exactly ``x / 255``, the scaling :func:`fedsyft.task.local_train` uses.

Public means public: a schema is shared with every site and researcher. A schema *derived*
from a table (:meth:`Schema.derive`) publishes that table's observed minimum and maximum
of every feature, which are values of individual rows; declare ranges yourself (for
example the valid range of a measurement) to avoid it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .tabular import Table

__all__ = ["Schema", "SchemaError", "MNIST_SCHEMA"]


class SchemaError(ValueError):
    """A schema is malformed, or a table or another schema does not match it (one line)."""


@functools.cache
def _file_model() -> type:
    """The file format (module docstring) as a pydantic model; built on first use, not on import,
    because pydantic and the model's build cost about 0.2 s and most commands read no schema."""
    from pydantic import BaseModel, ConfigDict, conlist, model_validator

    class SchemaFile(BaseModel):
        # strict: JSON types as written, no coercion; forbid: a misspelt key is an error
        model_config = ConfigDict(extra="forbid", strict=True)

        name: str = ""
        features: list[str]
        classes: list[str | int]
        ranges: dict[str, conlist(float, min_length=2, max_length=2)]

        @model_validator(mode="after")
        def _one_range_per_feature(self):
            features = set(self.features)
            for f in self.ranges:
                if f not in features:
                    raise ValueError(f"'ranges' names {f!r}, which is not in 'features'")
            for f in self.features:
                if f not in self.ranges:
                    raise ValueError(f"feature {f!r} has no range in 'ranges'")
            return self

    return SchemaFile


# Pydantic reports every problem, over several lines; a person gets one line, about the problem to
# fix first: not an object, then an unknown key (a misspelt key is also a missing one), then a
# missing key, then a wrong value, then a wrong item inside a value.
_FIRST = {"model_type": 0, "extra_forbidden": 1, "missing": 2}


def _first_problem(errors: list[dict], doc: Any) -> str:
    """The first of pydantic's errors (``ValidationError.errors()``) as one line, without ``source``."""
    def rank(e: dict) -> tuple:
        kind, loc = e["type"], e["loc"]
        order = _FIRST.get(kind, 3) if len(loc) <= 1 else 4
        return order, str(loc[0]) if kind == "extra_forbidden" else ""

    e = min(errors, key=rank)  # min is stable: pydantic's own order breaks ties
    kind, loc = e["type"], e["loc"]
    key = loc[0] if loc else None
    if kind == "model_type":
        return f"a schema is a JSON object, got {type(doc).__name__}"
    if kind == "extra_forbidden":
        return f"unknown key {key!r} (allowed: {', '.join(sorted(_file_model().model_fields))})"
    if kind == "missing" and len(loc) == 1:
        return f"missing key {key!r}"
    if kind == "value_error":  # raised by the model's own rules, already in words
        return str(e["ctx"]["error"])
    if key in ("features", "classes") and len(loc) == 1:
        return "'features' and 'classes' must be JSON lists"
    if key == "features":
        return f"feature names must be text, got {e['input']!r}"
    if key == "classes":
        return f"classes must be text or integers, got {e['input']!r}"
    if key == "ranges" and len(loc) >= 2 and loc[-1] != "[key]":
        return f"range of feature {loc[1]!r} must be [min, max] numbers, got {doc['ranges'][loc[1]]!r}"
    if key == "ranges":
        return "'ranges' must be an object {feature: [min, max]}"
    if key == "name":
        return "'name' must be text"
    return f"{'.'.join(map(str, loc)) or 'the schema'}: {e['msg']}"  # not expected; pydantic's msg is one line


def _num(v: float) -> str:
    """A bound or value as short text: the shortest decimal that is the same float32."""
    f = np.float32(v)
    if not np.isfinite(f):
        return str(float(v))
    text = np.format_float_positional(f, unique=True, trim="-")
    if len(text) > 16:
        text = np.format_float_scientific(f, unique=True, trim="-")
    return text


def _short_float(v: float) -> float:
    """``v`` rounded to the shortest decimal that is still the same float32 (for readable JSON)."""
    return float(_num(v))


def _show(values: tuple, limit: int = 6) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


@dataclass(frozen=True)
class Schema:
    """The public data contract of a federation.

    Parameters
    ----------
    features : tuple of str
        The feature names, in column order. At least one; distinct.
    classes : tuple
        The classes in the model's order (class *k* is ``classes[k]``). At least two;
        distinct; all ``str`` or all ``int``.
    ranges : tuple of (float, float)
        One declared ``(min, max)`` per feature, finite, ``min <= max``.
    name : str, optional
        A label for people; not part of the contract (ignored by :meth:`difference` and
        :meth:`fingerprint`).

    Raises
    ------
    SchemaError
        If any of the rules above is broken.
    """

    features: tuple[str, ...]
    classes: tuple
    ranges: tuple[tuple[float, float], ...]
    name: str = ""

    def __post_init__(self) -> None:
        features = tuple(self.features)
        if not features:
            raise SchemaError("schema: no features")
        for f in features:
            if not isinstance(f, str) or not f.strip():
                raise SchemaError(f"schema: feature names must be non-empty text, got {f!r}")
        if len(set(features)) != len(features):
            dup = next(f for i, f in enumerate(features) if f in features[:i])
            raise SchemaError(f"schema: feature {dup!r} is listed twice")
        classes = tuple(int(c) if isinstance(c, (bool, np.integer)) else
                        str(c) if isinstance(c, np.str_) else c for c in self.classes)
        if len(classes) < 2:
            raise SchemaError(f"schema: at least 2 classes are needed, got {len(classes)}")
        if not (all(isinstance(c, str) for c in classes) or all(isinstance(c, int) for c in classes)):
            raise SchemaError(f"schema: classes must be all text or all integers, got {_show(classes)}")
        if len(set(classes)) != len(classes):
            dup = next(c for i, c in enumerate(classes) if c in classes[:i])
            raise SchemaError(f"schema: class {dup!r} is listed twice")
        raw_ranges = tuple(self.ranges)
        if len(raw_ranges) != len(features):
            raise SchemaError(f"schema: {len(raw_ranges)} ranges for {len(features)} features")
        ranges = []
        for f, r in zip(features, raw_ranges):
            try:
                lo, hi = (float(v) for v in r)
            except (TypeError, ValueError):
                raise SchemaError(f"schema: range of feature {f!r} must be [min, max], got {r!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise SchemaError(f"schema: range of feature {f!r} must be finite, got [{lo}, {hi}]")
            if lo > hi:
                raise SchemaError(f"schema: range of feature {f!r} has min {_num(lo)} above max {_num(hi)}")
            ranges.append((lo, hi))
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "ranges", tuple(ranges))
        object.__setattr__(self, "name", str(self.name or ""))

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def derive(cls, table: Table, name: str = "") -> tuple[Schema, str]:
        """Derive a schema from a data owner's table, publishing its observed ranges.

        Parameters
        ----------
        table : fedsyft.tabular.Table
            The data owner's table.
        name : str, optional
            The schema's name.

        Returns
        -------
        schema : Schema
            The table's features and classes, and for each feature its observed minimum
            and maximum (as the shortest decimal with the same float32 value).
        notice : str
            One line for the data owner saying exactly what becomes public.
        """
        X = table.X
        lo, hi = X.min(axis=0), X.max(axis=0)
        ranges = tuple((_short_float(a), _short_float(b)) for a, b in zip(lo.tolist(), hi.tolist()))
        schema = cls(features=table.feature_names, classes=table.classes, ranges=ranges, name=name)
        notice = (f"Schema derived from {table.source}: the observed minimum and maximum of each of its "
                  f"{len(schema.features)} features become public, as do the feature names and the "
                  f"{len(schema.classes)} classes; these minima and maxima are values of individual rows "
                  f"and no privacy budget covers them. To publish other bounds, write a schema file "
                  f"with declared ranges and pass it with --schema.")
        return schema, notice

    @classmethod
    def from_dict(cls, doc: Any, source: str = "schema") -> Schema:
        """Build a schema from the JSON document described in the module docstring.

        Raises
        ------
        SchemaError
            One line naming ``source`` and the offending key or feature.
        """
        from pydantic import ValidationError

        try:
            file = _file_model().model_validate(doc)
        except ValidationError as e:
            raise SchemaError(f"{source}: {_first_problem(e.errors(), doc)}") from None
        # The file has the shape; the contract's rules (distinct names, two classes, finite, min <= max)
        # are the dataclass's, the same for a schema built in Python.
        try:
            return cls(features=tuple(file.features), classes=tuple(file.classes),
                       ranges=tuple(tuple(file.ranges[f]) for f in file.features), name=file.name)
        except SchemaError as e:
            raise SchemaError(str(e).replace("schema:", f"{source}:", 1)) from None

    @classmethod
    def from_json(cls, text: str, source: str = "schema") -> Schema:
        """Parse a schema from JSON text (see the module docstring for the format).

        Parameters
        ----------
        text : str
            The JSON document.
        source : str, optional
            Where it came from, for error messages (e.g. the file name).
        """
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"{source}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return cls.from_dict(doc, source)

    @classmethod
    def read(cls, path: str | Path) -> Schema:
        """Read a schema file (``--schema FILE``); :class:`SchemaError` names the file on any problem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SchemaError(f"{path}: no such schema file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SchemaError(f"{path}: cannot be read: {e}") from None
        return cls.from_json(text, source=str(path))

    # ---- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The JSON document of this schema, as Python objects."""
        doc: dict[str, Any] = {"name": self.name} if self.name else {}
        doc["features"] = list(self.features)
        doc["classes"] = list(self.classes)
        doc["ranges"] = {f: [lo, hi] for f, (lo, hi) in zip(self.features, self.ranges)}
        return doc

    def to_json(self, pretty: bool = True) -> str:
        """This schema as JSON text in the documented file format (``from_json`` reads it back).

        ``pretty`` puts each key, and each feature's range, on its own line; otherwise one line.
        """
        doc = self.to_dict()
        if not pretty:
            return json.dumps(doc, ensure_ascii=False)

        def dump(v: Any) -> str:
            return json.dumps(v, ensure_ascii=False)

        items = [f" {dump(k)}: {dump(v)}" for k, v in doc.items() if k != "ranges"]
        ranges = ",\n".join(f"  {dump(f)}: {dump(r)}" for f, r in doc["ranges"].items())
        items.append(f' "ranges": {{\n{ranges}\n }}')
        return "{\n" + ",\n".join(items) + "\n}"

    def write(self, path: str | Path) -> Path:
        """Write this schema to ``path`` as JSON (UTF-8) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the contract: features, classes and ranges.

        Canonical JSON: the document without ``name``, keys sorted, no spaces, UTF-8. Two
        schemas have the same fingerprint exactly when :meth:`difference` finds nothing.
        """
        doc = self.to_dict()
        doc.pop("name", None)
        canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    # ---- comparing --------------------------------------------------------------------------

    def difference(self, other: Schema, names: tuple[str, str] = ("this schema", "the other")) -> str | None:
        """The first difference between two schemas, in one line, or None if they agree.

        Features are compared in order, then classes in order (the model's class order
        matters), then ranges. ``name`` is ignored.

        Parameters
        ----------
        other : Schema
            The schema to compare with.
        names : (str, str), optional
            How to call the two schemas in the message (e.g. two site names).
        """
        a, b = names
        fa, fb = self.features, other.features
        for j in range(max(len(fa), len(fb))):
            x = fa[j] if j < len(fa) else None
            y = fb[j] if j < len(fb) else None
            if x != y:
                if y is None:
                    return f"{a} has {len(fa)} features, {b} {len(fb)}: {b} lacks feature {x!r}"
                if x is None:
                    return f"{a} has {len(fa)} features, {b} {len(fb)}: {a} lacks feature {y!r}"
                return f"feature {j + 1} is {x!r} in {a} and {y!r} in {b}"
        ca, cb = self.classes, other.classes
        for k in range(max(len(ca), len(cb))):
            x = ca[k] if k < len(ca) else None
            y = cb[k] if k < len(cb) else None
            if x != y or type(x) is not type(y):
                if y is None:
                    return f"{a} has {len(ca)} classes, {b} {len(cb)}: {b} lacks class {x!r}"
                if x is None:
                    return f"{a} has {len(ca)} classes, {b} {len(cb)}: {a} lacks class {y!r}"
                return f"class {k + 1} is {x!r} in {a} and {y!r} in {b}"
        for f, (lo1, hi1), (lo2, hi2) in zip(fa, self.ranges, other.ranges):
            if (lo1, hi1) != (lo2, hi2):
                return (f"feature {f!r} has range [{_num(lo1)}, {_num(hi1)}] in {a} "
                        f"and [{_num(lo2)}, {_num(hi2)}] in {b}")
        return None

    def check(self, table: Table) -> None:
        """Check that a data owner's table fits this schema; raise on the first difference.

        In order: the feature columns (same names, same order), the classes (every class of
        the table is a class of the schema; a site may lack some), the values (each within
        its feature's declared range, compared in float32).

        Raises
        ------
        SchemaError
            One line naming the table's file and the first difference: a feature missing,
            extra or out of order; a class not in the schema (with the first row holding it);
            a value outside its declared range (with its column and 1-based row).
        """
        src = table.source
        fs, ft = self.features, tuple(table.feature_names)
        for j in range(max(len(fs), len(ft))):
            want = fs[j] if j < len(fs) else None
            have = ft[j] if j < len(ft) else None
            if want == have:
                continue
            if want is not None and want not in ft:
                raise SchemaError(f"{src}: feature {want!r} of the schema is missing")
            if have is not None and have not in fs:
                raise SchemaError(f"{src}: column {have!r} is not a feature of the schema")
            raise SchemaError(f"{src}: features are out of order: feature {j + 1} is {have!r}, "
                              f"the schema has {want!r} there")
        known = set(self.classes)
        for k, c in enumerate(table.classes):
            if c not in known:
                row = int(np.argmax(table.y == k)) + 1
                raise SchemaError(f"{src}: class {c!r} (row {row}) is not one of the schema's classes "
                                  f"{_show(self.classes)}")
        lo, hi = self._bounds()
        X = table.X
        bad = (X < lo) | (X > hi)
        rows = np.flatnonzero(bad.any(axis=1))
        if len(rows):
            r = int(rows[0])
            j = int(np.flatnonzero(bad[r])[0])
            raise SchemaError(f"{src}: column {fs[j]!r} row {r + 1} is {_num(X[r, j])}, outside the declared "
                              f"range [{_num(self.ranges[j][0])}, {_num(self.ranges[j][1])}]")

    # ---- using ------------------------------------------------------------------------------

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = np.array(self.ranges, dtype=np.float64).reshape(-1, 2)
        return r[:, 0].astype(np.float32), r[:, 1].astype(np.float32)

    def scale(self, X: np.ndarray) -> np.ndarray:
        """Scale features to ``[0, 1]`` with the declared ranges, the same on every site.

        ``(x - min) / (max - min)`` in float32, clipped to ``[0, 1]``; a feature whose range
        is a single value scales to 0.

        Parameters
        ----------
        X : array_like
            ``[n, d]`` with ``d == len(features)``, any real dtype.

        Returns
        -------
        numpy.ndarray
            float32 ``[n, d]`` in ``[0, 1]``.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise SchemaError(f"cannot scale an array of shape {X.shape}: the schema has "
                              f"{len(self.features)} features")
        lo, hi = self._bounds()
        width = hi - lo
        out = np.zeros(X.shape, dtype=np.float32)
        np.divide(X.astype(np.float32, copy=False) - lo, width, out=out, where=width > 0)
        return np.clip(out, 0.0, 1.0, out=out)

    def encode_labels(self, table: Table) -> np.ndarray:
        """Each row's class as an index into this schema's ``classes`` (int64 ``[n]``).

        A table's own ``y`` indexes the table's classes, which differ between sites that
        lack some classes; the model needs the schema's order.

        Raises
        ------
        SchemaError
            If the table has a class the schema does not (as :meth:`check`).
        """
        index = {c: i for i, c in enumerate(self.classes)}
        mapping = np.empty(len(table.classes), dtype=np.int64)
        for k, c in enumerate(table.classes):
            if c not in index:
                row = int(np.argmax(table.y == k)) + 1
                raise SchemaError(f"{table.source}: class {c!r} (row {row}) is not one of the schema's "
                                  f"classes {_show(self.classes)}")
            mapping[k] = index[c]
        return mapping[table.y]

    def __repr__(self) -> str:
        name = f"name={self.name!r}, " if self.name else ""
        return (f"Schema({name}features={len(self.features)} ({_show(self.features, 3)}), "
                f"classes=({_show(self.classes, 10)}))")


#: MNIST as fedsyft ships it: 784 pixels ``pixel0`` .. ``pixel783`` in [0, 255], classes 0-9;
#: its scaling is exactly ``X.astype(float32) / 255``.
MNIST_SCHEMA = Schema(
    features=tuple(f"pixel{i}" for i in range(784)),
    classes=tuple(range(10)),
    ranges=((0.0, 255.0),) * 784,
    name="MNIST",
)


def derive_common(tables: list[Table], name: str = "") -> tuple[Schema, str]:
    """One schema for several owners' tables: the same features, every class seen, each range widened to cover all.

    Returns the schema and one line saying what becomes public. Raises :class:`SchemaError`
    when the tables' feature columns differ.
    """
    derived = [Schema.derive(t)[0] for t in tables]
    for t, other in zip(tables[1:], derived[1:]):
        if other.features != derived[0].features:
            raise SchemaError(f"{t.source}: its feature columns differ from {tables[0].source}'s")
    ranges = tuple((min(d.ranges[j][0] for d in derived), max(d.ranges[j][1] for d in derived))
                   for j in range(len(derived[0].features)))
    classes = tuple(sorted({c for d in derived for c in d.classes}))
    schema = Schema(derived[0].features, classes, ranges, name=name)
    notice = (f"Schema derived from {', '.join(str(t.source) for t in tables)}: the observed minimum and maximum of "
              f"each of its {len(schema.features)} features become public (they are values of single rows, not "
              "covered by any privacy budget), as do the feature names and the classes. Make a schema with declared "
              "ranges to publish other bounds (fedsyft schema derive, then edit it).")
    return schema, notice


def agreed_schema(schemas: dict[str, dict | None]) -> dict | None:
    """The public schema every site (name -> its schema, None for MNIST) agrees on; None when all hold MNIST.

    Raises :class:`SchemaError` naming the first difference and what to do about it.
    """
    with_schema = {n: s for n, s in schemas.items() if s is not None}
    if not with_schema:
        return None
    if len(with_schema) != len(schemas):
        mnist = next(n for n, s in schemas.items() if s is None)
        raise SchemaError(f"{mnist} holds MNIST but {next(iter(with_schema))} holds a table: they cannot train "
                          "one model")
    (first_name, first), *others = with_schema.items()
    reference = Schema.from_dict(first)
    for name, doc in others:
        why = reference.difference(Schema.from_dict(doc), names=(first_name, name))
        if why:
            raise SchemaError(f"the sites' schemas differ: {why}. The owners must launch with one shared schema "
                              "file: one of them runs 'fedsyft schema derive THEIR_FILE --label COLUMN --out "
                              "schema.json', widens its ranges to cover every owner's data, shares it, and each "
                              "relaunches with --schema schema.json ('fedsyft schema check FILE --schema "
                              "schema.json' tells whether a table fits)")
    return first


def in_schema(table: Table, schema: Schema) -> "Images":  # noqa: F821
    """The researcher's own test table in the federation's schema: same columns, known classes, class indices.

    Values beyond the schema's ranges are allowed: they are clipped, as on a site.
    """
    from .data import Images

    if table.feature_names != schema.features:
        raise SchemaError(f"{table.source}: its feature columns differ from the federation's schema")
    unknown = set(table.classes) - set(schema.classes)
    if unknown:
        raise SchemaError(f"{table.source}: class {sorted(map(str, unknown))[0]!r} is not in the schema")
    return Images(table.X, schema.encode_labels(table))
