"""Split a data set's row indices into disjoint shards, one per datasite.

Every partition is pure and seeded with ``np.random.default_rng(seed)``: the same
arguments always give the same shards. Each returns a list of ``num_shards``
sorted int64 index arrays that are non-empty, disjoint and together cover
``range(n)`` exactly once (no row is dropped, unlike some reference scripts).

The names and semantics follow flwr-datasets (``IidPartitioner``,
``DirichletPartitioner``, ``ShardPartitioner``, ``PathologicalPartitioner``) and
the MNIST set-up of FedProx (Li et al. 2020); :func:`make_partition` picks one by
name. :func:`label_counts` and :func:`skew` describe a partition for a figure.
"""

from __future__ import annotations

import numpy as np

from .errors import ParameterError, param
from .partition_options import PARTITIONS, default, option, options_for, whole

DIRICHLET_ATTEMPTS = 10  # as flwr-datasets' DirichletPartitioner
FEDPROX_SEED_SAMPLES = 5  # rows of each of its classes a FedProx device gets before the power law


# --- argument checks -------------------------------------------------------
# The partitions' own options (alpha, min_size, ...) are declared, with their defaults and
# ranges, in partition_options.py; each function checks its options against that declaration.

def _check(n: int, num_shards) -> int:
    num_shards = whole("num_shards", num_shards)
    if n < num_shards:
        raise ParameterError(f"{param('num_shards')}={num_shards} is more than the {n} rows: cannot make that many non-empty shards")
    return num_shards


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    return labels


# --- shared machinery --------------------------------------------------------

def _classes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(classes, inv, counts)``: the sorted distinct labels, each row's class number, rows per class."""
    classes, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64, copy=False)
    return classes, inv, np.bincount(inv, minlength=len(classes))


def _grouped(inv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All row indices sorted by class, in seeded random order within each class."""
    perm = rng.permutation(len(inv))
    return perm[np.argsort(inv[perm], kind="stable")]


def _from_owner(owner: np.ndarray, num_shards: int) -> list[np.ndarray]:
    """Turn "row i belongs to shard owner[i]" into one sorted index array per shard."""
    # A stable sort of the owners keeps each shard's indices ascending: no per-shard sort.
    order = np.argsort(owner, kind="stable").astype(np.int64, copy=False)
    return np.split(order, np.cumsum(np.bincount(owner, minlength=num_shards))[:-1])


def _holders(slot_client: np.ndarray, slot_class: np.ndarray, n_classes: int):
    """Group (client, class) slots by class: ``(client per slot in class order, slots per class)``."""
    order = np.argsort(slot_class, kind="stable")  # clients stay ascending within a class
    return slot_client[order], np.bincount(slot_class, minlength=n_classes)


# --- partitions ---------------------------------------------------------------

def iid(n: int, num_shards: int, seed: int) -> list[np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into ``num_shards`` near-equal parts.

    Returns
    -------
    list of int64 arrays, sorted within each shard, disjoint, covering ``range(n)``.
    """
    num_shards = _check(n, num_shards)
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, num_shards)]


def dirichlet(labels: np.ndarray, num_shards: int, alpha: float, seed: int,
              min_size: int = default("min_size")) -> list[np.ndarray]:
    """Label-skewed shards: each class is spread over the shards in Dirichlet(alpha) proportions.

    As flwr-datasets' ``DirichletPartitioner``: small ``alpha`` (0.1) gives each
    shard a few dominant classes, large ``alpha`` (100) approaches :func:`iid`. A
    shard may lack some classes entirely.

    Parameters
    ----------
    labels : 1-D array
        One label per row.
    num_shards : int
        Number of shards.
    alpha : float
        Dirichlet concentration, positive.
    seed : int
        Seeds every draw.
    min_size : int, default 10
        Fewest rows a shard may have. A draw that leaves a smaller shard is
        redrawn from the same generator, at most ``DIRICHLET_ATTEMPTS`` (10)
        times in all. When the first draw already meets ``min_size`` the shards
        are exactly those of the earlier version of this function (which had no
        ``min_size``), so old runs are reproduced.

    Returns
    -------
    list of ``num_shards`` sorted int64 arrays, disjoint, covering ``range(len(labels))``.

    Raises
    ------
    ValueError
        If an argument is invalid, if ``num_shards * min_size`` exceeds the rows,
        or if no draw met ``min_size`` (the message names ``alpha`` and ``min_size``).
    """
    labels = _labels(labels)
    n = len(labels)
    num_shards = _check(n, num_shards)
    alpha = option("alpha").validate(alpha)
    min_size = option("min_size").validate(min_size)
    if num_shards * min_size > n:
        raise ParameterError(f"{param('min_size')}={min_size} needs {num_shards * min_size} rows for {num_shards} shards but there "
                         f"are only {n}: lower {param('min_size')} or use fewer shards")
    rng = np.random.default_rng(seed)
    _, inv, counts = _classes(labels)
    # Each class's rows in index order, as the first version drew them (same draws, same shards).
    by_class = np.split(np.argsort(inv, kind="stable"), np.cumsum(counts)[:-1])
    owner = np.empty(n, dtype=np.int64)
    for _ in range(DIRICHLET_ATTEMPTS):
        for rows in by_class:
            rows = rng.permutation(rows)
            cuts = (np.cumsum(rng.dirichlet(np.full(num_shards, alpha))) * len(rows)).astype(int)[:-1]
            # Row at position p goes to the piece np.split(rows, cuts) would put it in.
            owner[rows] = np.searchsorted(cuts, np.arange(len(rows)), side="right")
        smallest = int(np.bincount(owner, minlength=num_shards).min())
        if smallest >= min_size:
            return _from_owner(owner, num_shards)
    raise ParameterError(f"{param('alpha')}={alpha} with {param('min_size')}={min_size}: none of {DIRICHLET_ATTEMPTS} draws (seed {seed}) gave "
                     f"all {num_shards} shards at least {param('min_size')} rows (the last one's smallest had {smallest}); "
                     f"use a larger {param('alpha')}, a smaller {param('min_size')} or fewer shards")


def shards(labels: np.ndarray, num_shards: int, shards_per_client: int, shard_size: int | None,
           seed: int) -> list[np.ndarray]:
    """The "pathological non-IID" split of McMahan et al. 2017 (flwr-datasets' ``ShardPartitioner``).

    Rows are sorted by label (ties in seeded random order) and cut into
    ``num_shards * shards_per_client`` consecutive pieces of ``shard_size`` rows;
    each client is dealt ``shards_per_client`` pieces at random. On MNIST with
    100 clients, 2 pieces of 300 rows each, most clients see only two digits.

    Parameters
    ----------
    labels : 1-D array
        One label per row.
    num_shards : int
        Number of clients (returned shards).
    shards_per_client : int
        Label-sorted pieces dealt to each client.
    shard_size : int or None
        Rows per piece; ``None`` means ``n // (num_shards * shards_per_client)``.
    seed : int
        Seeds the tie order, the deal and the leftover rows.

    Returns
    -------
    list of ``num_shards`` sorted int64 arrays, disjoint, covering ``range(len(labels))``.

    Notes
    -----
    Coverage: the ``n - num_shards * shards_per_client * shard_size`` rows after
    the last piece (the top of the label order; with the default ``shard_size``
    fewer than one row per piece) are not dropped but dealt one at a time,
    round-robin, to the clients in seeded random order. With the default
    ``shard_size`` a client thus gains at most ``shards_per_client`` rows.
    """
    labels = _labels(labels)
    n = len(labels)
    num_shards = _check(n, num_shards)
    per_client = option("shards_per_client").validate(shards_per_client)
    pieces = num_shards * per_client
    if shard_size is None:
        shard_size = n // pieces
        if shard_size == 0:
            raise ParameterError(f"{param('shards_per_client')}={per_client} for {num_shards} shards makes {pieces} pieces, more than "
                             f"the {n} rows: lower {param('shards_per_client')} or use fewer shards")
    else:
        shard_size = option("shard_size").validate(shard_size)
        if pieces * shard_size > n:
            raise ParameterError(f"{param('shard_size')}={shard_size} x {param('shards_per_client')}={per_client} x {param('num_shards')}={num_shards} = "
                             f"{pieces * shard_size} rows, more than the {n} there are: lower {param('shard_size')}")
    rng = np.random.default_rng(seed)
    _, inv, _ = _classes(labels)
    order = _grouped(inv, rng)
    client_of_piece = np.empty(pieces, dtype=np.int64)
    client_of_piece[rng.permutation(pieces)] = np.arange(pieces) // per_client
    owner = np.empty(n, dtype=np.int64)
    dealt = pieces * shard_size
    owner[order[:dealt]] = np.repeat(client_of_piece, shard_size)
    leftover = order[dealt:]
    # Random client order so the top label's leftovers do not always go to client 0.
    owner[leftover] = rng.permutation(num_shards)[np.arange(len(leftover)) % num_shards]
    return _from_owner(owner, num_shards)


def pathological(labels: np.ndarray, num_shards: int, classes_per_client: int, seed: int) -> list[np.ndarray]:
    """Each client holds exactly ``classes_per_client`` classes (flwr-datasets' ``PathologicalPartitioner``).

    Classes are assigned at random (``class_assignment_mode="random"``) but so
    that every class has at least one holder: the classes, shuffled, are first
    dealt round-robin over the shuffled clients (each gets at most
    ``ceil(n_classes / num_shards) <= classes_per_client`` this way), then each
    client's remaining slots are filled with distinct random classes. The rows of
    a class are then split evenly and at random among the clients holding it.

    Parameters
    ----------
    labels : 1-D array
        One label per row.
    num_shards : int
        Number of clients.
    classes_per_client : int
        Distinct classes per client, at most the number of classes.
    seed : int
        Seeds the class assignment and the row split.

    Returns
    -------
    list of ``num_shards`` sorted int64 arrays, disjoint, covering ``range(len(labels))``;
    shard ``i`` holds rows of exactly ``classes_per_client`` classes.

    Raises
    ------
    ValueError
        If ``num_shards * classes_per_client`` is below the number of classes
        (some class would have no holder, so its rows could not be covered), or
        if a class has fewer rows than clients holding it.
    """
    labels = _labels(labels)
    n = len(labels)
    num_shards = _check(n, num_shards)
    k = option("classes_per_client").validate(classes_per_client)
    classes, inv, counts = _classes(labels)
    n_classes = len(classes)
    if k > n_classes:
        raise ParameterError(f"{param('classes_per_client')}={k} is more than the {n_classes} classes in labels")
    if num_shards * k < n_classes:
        raise ParameterError(f"{param('classes_per_client')}={k} x {param('num_shards')}={num_shards} = {num_shards * k} class slots for "
                         f"{n_classes} classes: some class would have no client and its rows could not be covered; "
                         f"raise {param('classes_per_client')} or {param('num_shards')}")
    rng = np.random.default_rng(seed)
    keys = rng.random((num_shards, n_classes))
    # Forced slots sort first, so every class is held and each client's classes stay distinct.
    keys[rng.permutation(num_shards)[np.arange(n_classes) % num_shards], rng.permutation(n_classes)] = -1.0
    held = np.argsort(keys, axis=1)[:, :k]
    slot_client, holders = _holders(np.repeat(np.arange(num_shards), k), held.ravel(), n_classes)
    short = np.flatnonzero(counts < holders)
    if len(short):
        c = short[0]
        raise ParameterError(f"class {classes[c]!r} has {counts[c]} rows but {holders[c]} clients hold it ({param('num_shards')}="
                         f"{num_shards}, {param('classes_per_client')}={k}): use fewer shards or fewer classes per client")
    # Even split: the p-th row (of m) of a class with h holders goes to holder floor(p * h / m).
    cls = np.repeat(np.arange(n_classes), counts)
    within = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    first_slot = np.cumsum(holders) - holders
    owner = np.empty(n, dtype=np.int64)
    owner[_grouped(inv, rng)] = slot_client[first_slot[cls] + within * holders[cls] // counts[cls]]
    return _from_owner(owner, num_shards)


def powerlaw(labels: np.ndarray, num_shards: int, classes_per_client: int = default("classes_per_client"), *,
             seed: int, sigma: float = default("sigma"),
             min_per_class: int | None = default("min_per_class")) -> list[np.ndarray]:
    """The FedProx MNIST split (Li et al. 2020): few classes per device, device sizes from a power law.

    As in FedProx's ``generate_niid.py`` (1,000 devices, 2 digits each), device
    ``i`` holds classes ``(i + j) mod n_classes`` for ``j < classes_per_client``
    (class numbers in sorted label order, so digits for MNIST). Each device
    first gets ``min_per_class`` rows of each of its classes; the rest of each
    class is shared among its (device, class) slots in proportion to
    lognormal(0, ``sigma``) draws, which makes device sizes heavy-tailed.

    Parameters
    ----------
    labels : 1-D array
        One label per row.
    num_shards : int
        Number of devices; at least ``n_classes - classes_per_client + 1`` so that
        every class has a device.
    classes_per_client : int, default 2
        Classes per device.
    seed : int, keyword-only
        Seeds the lognormal draws and which rows of a class each device gets.
    sigma : float, default 2.0
        Lognormal shape, non-negative; 0 shares each class evenly.
    min_per_class : int or None, default None
        Seed rows per (device, class). ``None`` means FedProx's 5, lowered
        automatically when there are many devices so that seed rows take at most
        half of any class (the power law needs rows to share out), but never
        below 1: 5 for 1,000 devices on MNIST's 60,000 training labels, 1 for
        10,000. An explicit value is never lowered: too few rows raise.

    Returns
    -------
    list of ``num_shards`` sorted int64 arrays, disjoint, covering ``range(len(labels))``;
    each holds at least ``min_per_class`` rows of each of its classes.

    Notes
    -----
    FedProx truncates each slot's share with ``int`` and drops the rows that are
    left (and any that would overrun a class). Here a slot's share is rounded by
    cumulative flooring within its class, so the shares add up exactly to the
    class's rows and every row is covered.
    """
    labels = _labels(labels)
    n = len(labels)
    num_shards = _check(n, num_shards)
    k = option("classes_per_client").validate(classes_per_client)
    sigma = option("sigma").validate(sigma)
    classes, inv, counts = _classes(labels)
    n_classes = len(classes)
    if k > n_classes:
        raise ParameterError(f"{param('classes_per_client')}={k} is more than the {n_classes} classes in labels")
    if num_shards + k - 1 < n_classes:
        raise ParameterError(f"{param('num_shards')}={num_shards} devices with {param('classes_per_client')}={k} leave classes without a "
                         f"device, so their rows could not be covered: powerlaw needs {param('num_shards')} >= "
                         f"{n_classes - k + 1} for {n_classes} classes")
    device = np.repeat(np.arange(num_shards), k)
    slot_client, holders = _holders(device, (device + np.tile(np.arange(k), num_shards)) % n_classes, n_classes)
    supply = counts // holders  # rows per holder of the scarcest class bound the seed rows
    if min_per_class is None:
        # Seed rows take at most half of any class, so the power law still has rows to share out.
        per = max(min(FEDPROX_SEED_SAMPLES, int((counts // (2 * holders)).min())), 1)
        if supply.min() < 1:
            c = int(np.argmin(supply))
            raise ParameterError(f"{param('num_shards')}={num_shards}: class {classes[c]!r} has {counts[c]} rows for {holders[c]} "
                             f"devices holding it, fewer than one each; use fewer shards")
    else:
        per = option("min_per_class").validate(min_per_class)
        if per > supply.min():
            c = int(np.argmin(supply))
            raise ParameterError(f"{param('min_per_class')}={per}: class {classes[c]!r} has {counts[c]} rows for {holders[c]} "
                             f"devices holding it, at most {supply[c]} each; lower {param('min_per_class')} (None picks it) "
                             f"or use fewer shards")
    rng = np.random.default_rng(seed)
    draws = rng.lognormal(0.0, sigma, size=len(slot_client))  # one per (device, class) slot, in class order
    if not np.isfinite(draws.sum()):
        raise ParameterError(f"{param('sigma')}={sigma} is too large: the lognormal draws overflow")
    slot_rows = np.full(len(slot_client), per, dtype=np.int64)
    ends = np.cumsum(holders)
    for c in range(n_classes):
        part = slice(ends[c] - holders[c], ends[c])
        rest = counts[c] - per * holders[c]
        cum = np.cumsum(draws[part])
        bounds = np.floor(cum / cum[-1] * rest).astype(np.int64)
        bounds[-1] = rest  # exact total despite rounding
        slot_rows[part] += np.diff(bounds, prepend=0)
    owner = np.empty(n, dtype=np.int64)
    owner[_grouped(inv, rng)] = np.repeat(slot_client, slot_rows)  # class by class, slots take consecutive runs
    return _from_owner(owner, num_shards)


# --- one entry point -----------------------------------------------------------

def make_partition(name: str, labels: np.ndarray, num_shards: int, seed: int, **params) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into ``num_shards`` shards with the partition called ``name``.

    Parameters
    ----------
    name : {"iid", "dirichlet", "shards", "pathological", "powerlaw"}
        The partition (a ``str`` enum member works too).
    labels : 1-D array
        One label per row (``iid`` uses only its length).
    num_shards : int
        Number of shards (the CLI's ``--sites``), between 1 and the number of rows.
    seed : int
        Seeds the partition.
    **params
        The partition's own parameters, as :data:`fedsyft.partition_options.OPTIONS`
        declares them; any not given take these defaults:

{params}

    Returns
    -------
    list of ``num_shards`` sorted int64 arrays: non-empty, disjoint, covering every row.

    Raises
    ------
    ValueError
        With a message naming the bad argument: an unknown ``name`` or parameter,
        a missing ``alpha``, too many shards, or a value the partition rejects.
    """
    key = getattr(name, "value", name)
    if key not in PARTITIONS:
        raise ValueError(f"unknown partition {key!r}: choose {', '.join(PARTITIONS)}")
    labels = _labels(labels)
    n = len(labels)
    num_shards = whole("num_shards", num_shards)
    if num_shards > n:
        raise ParameterError(f"{param('num_shards')}={num_shards} is more than the {n} rows to split")
    accepted = options_for(key)
    unknown = sorted(set(params) - {o.name for o in accepted})
    if unknown:
        takes = f"it takes {', '.join(o.name for o in accepted)}" if accepted else "it takes none"
        raise ValueError(f"partition {key!r} has no parameter {unknown[0]!r}: {takes}")
    missing = [o.name for o in accepted if o.required and o.name not in params]
    if missing:
        raise ParameterError(f"partition {key!r} needs {param(missing[0])}")
    if key == "iid":
        return iid(n, num_shards, seed)
    kw = {o.name: params.get(o.name, o.default) for o in accepted}  # each function checks its own
    return _PARTITION_FUNCTIONS[key](labels, num_shards, seed=seed, **kw)


_PARTITION_FUNCTIONS = {"dirichlet": dirichlet, "shards": shards, "pathological": pathological, "powerlaw": powerlaw}


def _defaults_text() -> str:
    """The bullet list of each partition's parameters and defaults, for :func:`make_partition`'s docstring."""
    def shown(o):
        return f"``{o.name}`` (required)" if o.required else f"``{o.name}={o.default!r}``"

    return "\n".join(f"        - ``{p}``: {', '.join(map(shown, options_for(p))) or 'none'}" for p in PARTITIONS)


if make_partition.__doc__:  # None under python -OO
    make_partition.__doc__ = make_partition.__doc__.replace("{params}", _defaults_text())


# --- describing a partition ----------------------------------------------------

def label_counts(labels: np.ndarray, shards: list[np.ndarray], n_classes: int | None = None) -> np.ndarray:
    """How many rows of each class every shard holds.

    Parameters
    ----------
    labels : 1-D array of int
        Class ids ``0 .. n_classes - 1`` (integer-valued floats are accepted).
    shards : list of index arrays
        As returned by a partition.
    n_classes : int, optional
        Number of classes; default ``labels.max() + 1``.

    Returns
    -------
    int64 array of shape ``[len(shards), n_classes]``.
    """
    labels = _labels(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        as_int = labels.astype(np.int64)
        if not np.array_equal(as_int, labels):
            raise ValueError("labels must be integer class ids for label_counts")
        labels = as_int
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if len(labels) else 0
    n_classes = whole("n_classes", n_classes, low=0)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1} for n_classes={n_classes}, "
                         f"got {labels.min()}..{labels.max()}")
    parts = [np.asarray(s, dtype=np.int64).reshape(-1) for s in shards]
    if not parts:
        return np.zeros((0, n_classes), dtype=np.int64)
    shard_of = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    flat = shard_of * n_classes + labels[np.concatenate(parts)]
    return np.bincount(flat, minlength=len(parts) * n_classes).reshape(len(parts), n_classes).astype(np.int64)


def skew(label_counts: np.ndarray) -> float:
    """Label skew of a partition in one number: the mean total-variation distance to the global label mix.

    For each shard, ``0.5 * sum(|p_shard - p_global|)`` where ``p_shard`` is its
    label distribution and ``p_global`` that of all shards together; the result
    is the unweighted mean over the non-empty shards (each site counts once,
    whatever its size). 0 means every shard mirrors the global mix (``iid`` comes
    close); a shard of a single class ``c`` scores ``1 - p_global[c]``, so on
    balanced 10-class data one-class shards give 0.9 and two even classes 0.8.
    Tiny shards read as skewed even when drawn iid (6-row iid shards of MNIST
    score about 0.5), so compare partitions at the same number of shards.

    Parameters
    ----------
    label_counts : array of shape ``[num_shards, n_classes]``
        As returned by :func:`label_counts`.

    Returns
    -------
    float in ``[0, 1)``.
    """
    distances = shard_skews(label_counts)
    if not np.isfinite(distances).any():
        raise ValueError("label_counts holds no rows")
    return float(np.nanmean(distances))


def shard_skews(label_counts: np.ndarray) -> np.ndarray:
    """Each shard's total-variation distance to the global label mix (NaN for an empty shard).

    The per-shard terms of :func:`skew`; figures use them to order sites by skew.
    """
    counts = np.asarray(label_counts, dtype=float)
    if counts.ndim != 2:
        raise ValueError(f"label_counts must be 2-D [num_shards, n_classes], got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("label_counts must be non-negative")
    totals = counts.sum(axis=1)
    distances = np.full(len(counts), np.nan)
    used = totals > 0
    if used.any():
        global_mix = counts[used].sum(axis=0) / totals[used].sum()
        distances[used] = 0.5 * np.abs(counts[used] / totals[used, None] - global_mix).sum(axis=1)
    return distances
