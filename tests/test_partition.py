import numpy as np
import pytest

from fedsyft.partition import dirichlet, iid


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
