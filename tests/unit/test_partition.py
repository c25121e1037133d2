import numpy as np
import pytest

from fedsyft.partition import dirichlet, iid, label_counts, make_partition, pathological, powerlaw, shards, skew


@pytest.mark.parametrize("n, k", [(60000, 2), (10, 3), (7, 7)])
def test_iid_shards_are_disjoint_and_cover_everything(n, k):
    shards = iid(n, k, seed=3)
    assert len(shards) == k
    joined = np.concatenate(shards)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_iid_is_seeded():
    a, b, c = iid(1000, 2, seed=1), iid(1000, 2, seed=1), iid(1000, 2, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_dirichlet_covers_everything_and_skews_labels():
    labels = np.repeat(np.arange(10), 100)
    shards = dirichlet(labels, 3, alpha=0.1, seed=0)
    joined = np.concatenate(shards)
    assert np.array_equal(np.sort(joined), np.arange(1000))
    counts = np.array([np.bincount(labels[s], minlength=10) for s in shards])
    assert (counts.max(axis=0) > 60).mean() > 0.5  # most classes are dominated by one shard


@pytest.mark.parametrize("call", [lambda: iid(5, 0, 0), lambda: iid(2, 3, 0),
                                  lambda: dirichlet(np.zeros(10), 2, alpha=0, seed=0)])
def test_partition_rejects_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


# --- the label-aware partitions and the dispatcher ----------------------------

MNIST_LIKE = np.random.default_rng(7).permutation(np.repeat(np.arange(10), 6000))  # 60,000 shuffled labels
SORTED = np.repeat(np.arange(10), 6000)

PARTITIONS = [  # (name, params, num_shards)
    ("iid", {}, 50),
    ("dirichlet", {"alpha": 0.3}, 50),
    ("dirichlet", {"alpha": 0.5, "min_size": 20}, 200),
    ("shards", {}, 100),
    ("shards", {"shards_per_client": 3, "shard_size": 150}, 100),
    ("pathological", {"classes_per_client": 2}, 100),
    ("pathological", {"classes_per_client": 3}, 7),
    ("powerlaw", {}, 1000),
]


def assert_partition(parts, n, num_shards):
    assert len(parts) == num_shards
    assert all(p.dtype == np.int64 and len(p) > 0 and np.all(np.diff(p) > 0) for p in parts)  # sorted, non-empty
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))  # disjoint and covering


@pytest.mark.parametrize("name, params, k", PARTITIONS)
def test_every_partition_is_disjoint_covering_non_empty_and_seeded(name, params, k):
    a = make_partition(name, MNIST_LIKE, k, 3, **params)
    assert_partition(a, len(MNIST_LIKE), k)
    b = make_partition(name, MNIST_LIKE, k, 3, **params)
    c = make_partition(name, MNIST_LIKE, k, 4, **params)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("labels", [MNIST_LIKE, np.random.default_rng(0).integers(0, 10, 997)])
def test_make_partition_matches_the_functions(labels):
    assert all(np.array_equal(x, y) for x, y in
               zip(make_partition("dirichlet", labels, 5, 1, alpha=0.5), dirichlet(labels, 5, 0.5, 1)))
    assert all(np.array_equal(x, y) for x, y in zip(make_partition("iid", labels, 5, 1), iid(len(labels), 5, 1)))


def test_dirichlet_respects_min_size_and_old_call_still_works():
    labels = np.repeat(np.arange(10), 100)
    for seed in range(5):
        parts = dirichlet(labels, 10, 0.3, seed, min_size=40)
        assert_partition(parts, 1000, 10)
        assert min(map(len, parts)) >= 40
    assert min(map(len, dirichlet(labels, 3, 0.1, 0))) >= 10  # the default min_size is 10


def test_dirichlet_names_alpha_and_min_size_when_impossible():
    labels = np.repeat(np.arange(10), 100)
    with pytest.raises(ValueError, match="min_size") as info:
        dirichlet(labels, 50, 0.5, 0, min_size=30)  # 1,500 rows needed, 1,000 there
    assert "1000" in str(info.value)
    with pytest.raises(ValueError, match="alpha=0.01.*min_size=90"):
        dirichlet(labels, 10, 0.01, 0, min_size=90)  # 10 draws never give every shard 90 of 100 rows


def test_shards_deal_label_sorted_pieces():
    parts = shards(SORTED, 100, 2, None, seed=0)  # McMahan et al.: 200 pieces of 300 rows
    assert_partition(parts, 60000, 100)
    assert {len(p) for p in parts} == {600}
    counts = label_counts(SORTED, parts, 10)
    assert ((counts > 0).sum(axis=1) <= 2).all()
    assert set(np.unique(counts)) <= {0, 300, 600}  # whole pieces of one label each
    assert (counts == 300).any()  # the deal mixes labels, not one label per client


def test_shards_give_leftover_rows_round_robin():
    labels = np.repeat(np.arange(10), 6000)[:59993]  # 59993 // 200 = 299, 193 rows left over
    parts = shards(labels, 100, 2, None, seed=1)
    assert_partition(parts, 59993, 100)
    assert sorted({len(p) for p in parts}) == [599, 600]  # 2 x 299, plus one or two of the 193 leftovers
    small = shards(labels, 10, 2, 100, seed=1)  # explicit shard_size leaves most rows over: still covered
    assert_partition(small, 59993, 10)


def test_shards_validate_their_sizes():
    with pytest.raises(ValueError, match="shard_size"):
        shards(SORTED, 100, 2, 301, seed=0)
    with pytest.raises(ValueError, match="shards_per_client"):
        shards(SORTED[:150], 100, 2, None, seed=0)
    with pytest.raises(ValueError, match="shards_per_client"):
        shards(SORTED, 10, 0, None, seed=0)


@pytest.mark.parametrize("k, per_client", [(10, 1), (100, 2), (1000, 3), (4, 3)])
def test_pathological_gives_exactly_k_classes_and_holds_every_class(k, per_client):
    parts = pathological(MNIST_LIKE, k, per_client, seed=2)
    assert_partition(parts, 60000, k)
    counts = label_counts(MNIST_LIKE, parts, 10)
    assert ((counts > 0).sum(axis=1) == per_client).all()
    assert (counts.sum(axis=0) == 6000).all()
    for cls in range(10):  # a class's rows are split evenly among its holders
        held = counts[:, cls][counts[:, cls] > 0]
        assert held.max() - held.min() <= 1


def test_pathological_names_the_arguments_that_cannot_cover_every_class():
    with pytest.raises(ValueError, match="classes_per_client=2 x num_shards=4"):
        pathological(MNIST_LIKE, 4, 2, seed=0)
    with pytest.raises(ValueError, match="classes_per_client=11"):
        pathological(MNIST_LIKE, 20, 11, seed=0)


def test_powerlaw_is_the_fedprox_mnist_split():
    parts = powerlaw(MNIST_LIKE, 1000, seed=0)
    assert_partition(parts, 60000, 1000)
    counts = label_counts(MNIST_LIKE, parts, 10)
    device = np.arange(1000)
    expected = np.zeros((1000, 10), dtype=bool)
    expected[device, device % 10] = expected[device, (device + 1) % 10] = True
    assert np.array_equal(counts > 0, expected)  # device i holds digits i mod 10 and (i + 1) mod 10
    assert counts[expected].min() >= 5  # FedProx's seed rows per digit
    sizes = counts.sum(axis=1)
    assert sizes.max() / np.median(sizes) > 10  # heavy tail
    assert sizes.min() >= 10


def test_powerlaw_at_ten_thousand_devices_lowers_the_seed_rows():
    parts = powerlaw(MNIST_LIKE, 10000, seed=0)
    assert_partition(parts, 60000, 10000)
    counts = label_counts(MNIST_LIKE, parts, 10)
    assert ((counts > 0).sum(axis=1) == 2).all()
    sizes = counts.sum(axis=1)
    assert sizes.min() >= 2 and sizes.max() / np.median(sizes) > 10


def test_powerlaw_options_and_errors():
    even = powerlaw(MNIST_LIKE, 100, seed=0, sigma=0.0)
    assert max(map(len, even)) - min(map(len, even)) <= 2  # sigma 0: each class shared evenly
    three = powerlaw(MNIST_LIKE, 20, 3, seed=0, min_per_class=50)
    assert ((label_counts(MNIST_LIKE, three, 10) > 0).sum(axis=1) == 3).all()
    assert min(map(len, powerlaw(MNIST_LIKE, 10000, seed=0, min_per_class=3))) == 6  # 2,000 x 3 = all 6,000
    with pytest.raises(ValueError, match="min_per_class=4"):
        powerlaw(MNIST_LIKE, 10000, seed=0, min_per_class=4)  # 2,000 devices share each digit's 6,000 rows
    with pytest.raises(ValueError, match="num_shards=5"):
        powerlaw(MNIST_LIKE, 5, seed=0)  # digits 6..9 would have no device
    with pytest.raises(ValueError, match="sigma"):
        powerlaw(MNIST_LIKE, 100, seed=0, sigma=-1)


@pytest.mark.parametrize("call, fragments", [
    (lambda: make_partition("stripes", MNIST_LIKE, 2, 0),
     ["unknown partition 'stripes'", "iid, dirichlet, shards, pathological, powerlaw"]),
    (lambda: make_partition("dirichlet", MNIST_LIKE, 2, 0, alpha=0), ["alpha must be positive, got 0"]),
    (lambda: make_partition("dirichlet", MNIST_LIKE, 2, 0), ["needs alpha"]),
    (lambda: make_partition("dirichlet", MNIST_LIKE, 2, 0, alpha=1, min_size=0), ["min_size must be at least 1"]),
    (lambda: make_partition("iid", MNIST_LIKE[:3000], 5000, 0), ["num_shards=5000", "3000 rows"]),
    (lambda: make_partition("iid", MNIST_LIKE, 0, 0), ["num_shards", "at least 1"]),
    (lambda: make_partition("shards", MNIST_LIKE, 2, 0, alpha=0.5), ["'alpha'", "shards_per_client, shard_size"]),
    (lambda: make_partition("pathological", MNIST_LIKE, 2, 0, classes_per_client=2.5), ["classes_per_client"]),
    (lambda: make_partition("powerlaw", MNIST_LIKE, 2, 0, classes_per_client=0), ["classes_per_client"]),
])
def test_make_partition_errors_name_the_argument(call, fragments):
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_make_partition_accepts_a_str_enum():
    import enum

    class Kind(str, enum.Enum):
        shards = "shards"

    assert_partition(make_partition(Kind.shards, MNIST_LIKE, 10, 0), 60000, 10)


def test_label_counts_and_skew():
    labels = np.array([0, 0, 1, 1, 2, 2])
    counts = label_counts(labels, [np.array([0, 1]), np.array([2, 4]), np.array([3, 5])], 4)
    assert counts.dtype == np.int64 and counts.tolist() == [[2, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    # global mix (1/3, 1/3, 1/3): TV 2/3 for the one-class shard, 1/3 for each mixed one
    assert skew(counts) == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    iid_skew = skew(label_counts(MNIST_LIKE, iid(60000, 10, 0), 10))
    one_class = skew(label_counts(SORTED, np.split(np.arange(60000), 10), 10))  # shard i = digit i
    assert iid_skew < 0.05 and one_class == pytest.approx(0.9)
    assert skew(label_counts(MNIST_LIKE, pathological(MNIST_LIKE, 100, 2, 0), 10)) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="n_classes"):
        label_counts(labels, [np.arange(6)], 2)


# --- the one declaration of the partition options ------------------------------

def _commands():
    import typer

    from fedsyft.cli.app import app

    root = typer.main.get_command(app)
    return {name: root.get_command(None, name) for name in ("simulate", "launch")}


def test_the_cli_options_come_from_the_one_declaration():
    import click

    from fedsyft.partition_options import OPTIONS, PARTITIONS

    for name, command in _commands().items():
        params = {p.name: p for p in command.params}
        assert list(params["partition"].type.choices) == list(PARTITIONS), name
        for o in OPTIONS:
            if not o.command_line:
                assert o.name not in params, (name, o.name)
                continue
            p = params[o.name]
            assert p.opts == [o.flag] and p.default == o.default and p.help == o.help_text(), (name, o.name)
            assert p.rich_help_panel == "Partition"
            assert isinstance(p.type, click.IntRange if o.type is int else click.FloatRange), (name, o.name)
            assert p.type.min == o.low and p.type.min_open == o.low_open, (name, o.name)
    shown = {p.name: p.default for p in _commands()["simulate"].params}  # the defaults the command line has always had
    assert (shown["alpha"], shown["min_size"], shown["shards_per_client"], shown["shard_size"],
            shown["classes_per_client"]) == (0.5, 10, 2, None, 2)


def test_the_library_takes_its_defaults_and_keywords_from_the_one_declaration():
    import inspect

    from fedsyft.partition_options import OPTIONS, PARTITIONS, default, options_for

    signatures = {"dirichlet": dirichlet, "shards": shards, "pathological": pathological, "powerlaw": powerlaw}
    for o in OPTIONS:
        for p in o.partitions:
            parameter = inspect.signature(signatures[p]).parameters[o.name]  # each function takes its options
            if parameter.default is not inspect.Parameter.empty:
                assert parameter.default == default(o.name), (p, o.name)
    assert inspect.signature(dirichlet).parameters["alpha"].default is inspect.Parameter.empty  # required
    for p in PARTITIONS[1:]:  # make_partition's defaults are the declared ones
        given = {o.name: o.default for o in options_for(p)}
        plain = make_partition(p, MNIST_LIKE, 20, 1, **({"alpha": given["alpha"]} if "alpha" in given else {}))
        assert all(np.array_equal(x, y) for x, y in zip(plain, make_partition(p, MNIST_LIKE, 20, 1, **given))), p
    with pytest.raises(ValueError, match="it takes classes_per_client, sigma, min_per_class$"):
        make_partition("powerlaw", MNIST_LIKE, 20, 0, alpha=1)


def test_cli_settings_are_the_declared_options_of_the_partition():
    from fedsyft.cli.options import Partition, partition_settings

    values = {"alpha": 0.3, "min_size": 5, "shards_per_client": 3, "shard_size": None, "classes_per_client": 4}
    # The format run files keep (and --resume reads back): unchanged.
    assert partition_settings(Partition.iid, **values) == {}
    assert partition_settings(Partition.dirichlet, **values) == {"alpha": 0.3, "min_size": 5}
    assert partition_settings(Partition.shards, **values) == {"shards_per_client": 3, "shard_size": None}
    assert partition_settings(Partition.pathological, **values) == {"classes_per_client": 4}
    assert partition_settings(Partition.powerlaw, **values) == {"classes_per_client": 4}


@pytest.mark.parametrize("partition, name, bad, says", [
    ("dirichlet", "alpha", -1, "must be positive, got -1"),
    ("dirichlet", "alpha", float("nan"), "must be positive, got nan"),
    ("dirichlet", "alpha", "lots", "must be a number, got 'lots'"),
    ("dirichlet", "min_size", 0, "must be at least 1, got 0"),
    ("shards", "shards_per_client", 0, "must be at least 1, got 0"),
    ("shards", "shard_size", -5, "must be at least 1, got -5"),
    ("pathological", "classes_per_client", True, "must be an integer, got True"),
    ("powerlaw", "classes_per_client", 2.0, "must be an integer, got 2.0"),
    ("powerlaw", "sigma", -0.5, "must be non-negative, got -0.5"),
    ("powerlaw", "min_per_class", 0, "must be at least 1, got 0"),
])
def test_an_out_of_range_value_is_refused_in_one_line_naming_the_parameter(partition, name, bad, says):
    from fedsyft.cli.app import FLAGS
    from fedsyft.errors import ParameterError

    params = {"alpha": 0.5} if partition == "dirichlet" else {}
    with pytest.raises(ParameterError) as info:
        make_partition(partition, MNIST_LIKE, 20, 0, **{**params, name: bad})
    assert str(info.value) == f"{name} {says}" and info.value.parameters == (name,)
    flag = FLAGS.get(name, name)  # the command line spells it as its flag (sigma, min_per_class have none)
    assert info.value.render(FLAGS) == f"{flag} {says}"


@pytest.mark.parametrize("args, flag", [(["--partition", "dirichlet", "--alpha", "-1"], "--alpha"),
                                        (["--alpha", "0"], "--alpha"),
                                        (["--min-size", "0"], "--min-size"),
                                        (["--classes-per-client", "11"], "--classes-per-client")])
def test_the_command_line_refuses_an_out_of_range_value_in_one_line_before_running(monkeypatch, capsys, args, flag):
    from fedsyft.cli.app import main

    monkeypatch.setattr("sys.argv", ["fedsyft", "simulate", *args, "--rounds", "1"])
    with pytest.raises(SystemExit) as info:
        main()  # a click range check: refused before any data is loaded
    assert info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and f"'{flag}'" in err, err
