import numpy as np
import pytest

from fedsyft.aggregate import fedavg


def _p(v):
    return {"coef": np.full((2, 3), v, np.float32), "intercept": np.full(2, -v, np.float32)}


def test_fedavg_weights_by_sample_count():
    out = fedavg([(_p(1.0), 100), (_p(4.0), 300)])
    assert np.allclose(out["coef"], 0.25 * 1 + 0.75 * 4)
    assert np.allclose(out["intercept"], -(0.25 * 1 + 0.75 * 4))
    assert out["coef"].dtype == np.float32


def test_unweighted_mean_ignores_counts():
    out = fedavg([(_p(1.0), 100), (_p(4.0), 300)], weighted=False)
    assert np.allclose(out["coef"], 2.5)


def test_single_site_is_returned_unchanged():
    p = {"coef": np.random.default_rng(0).normal(size=(10, 784)).astype(np.float32), "intercept": np.ones(10, np.float32)}
    out = fedavg([(p, 7)])
    assert np.array_equal(out["coef"], p["coef"])


def test_fedavg_equals_centralized_mean_for_linear_statistics():
    # For any statistic that is a per-row mean, the weighted average of the
    # sites' means is the mean over the union: the property FedAvg relies on.
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(n, 4)) for n in (5, 17, 40)]
    updates = [({"m": r.mean(axis=0)}, len(r)) for r in rows]
    assert np.allclose(fedavg(updates)["m"], np.concatenate(rows).mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("updates, message", [
    ([], "at least one"),
    ([(_p(1), 1), ({"coef": np.zeros((2, 3))}, 1)], "keys differ"),
    ([(_p(1), 0)], "positive"),
])
def test_fedavg_rejects_bad_updates(updates, message):
    with pytest.raises(ValueError, match=message):
        fedavg(updates)
