"""A public feature map on real datasites: the owner maps its images once at launch, the researcher's run follows.

One --no-dp datasite of 300 MNIST rows launched with wavelet scattering; a one-round run as
the researcher; a relaunch from its state (no new mapping; another map refused in one line).
"""

from __future__ import annotations

import json

import pytest
from conftest import free_port_base

from fedsyft.features import FeatureMap

pytestmark = pytest.mark.integration

SCATTER = FeatureMap("scatter")


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("features-state")


@pytest.fixture(scope="module")
def owner(mnist, state):
    from fedsyft.datasite.launch import Datasites

    seen = []
    ds = Datasites([mnist.train.subset(slice(3000, 3300))], port_base=free_port_base(1), names=["Scattered"],
                   state_dir=state, private=False, features=SCATTER, progress=lambda *a: seen.append(a))
    ds.start()
    ds.progress_calls = seen
    yield ds
    ds.stop()


def test_the_owner_maps_its_images_once_and_declares_the_map(owner):
    site = owner.sites[0]
    assert site.credentials.features == SCATTER.to_dict()  # in the connection file, for researchers
    assert owner.progress_calls and owner.progress_calls[-1] == ("Scattered", 300, 300)
    assert not (site.state / "shard.npz").exists() and not (site.state / "mock.npz").exists()


def test_a_run_on_scattered_sites_maps_the_test_set_the_same_way(owner, tmp_path):
    from fedsyft.experiment import RunConfig
    from fedsyft.workflows import run_on_datasites

    result = run_on_datasites([owner.sites[0].credentials], RunConfig(rounds=1), out=tmp_path / "run",
                              approval_timeout=60)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["config"]["features"] == SCATTER.to_dict()
    assert result.params["coef"].shape == (10, SCATTER.output_width())
    assert result.history.final_accuracy > 0.8  # 300 scattered rows, one round


def test_a_relaunch_keeps_the_map_and_another_map_is_refused_in_one_line(owner, mnist, state):
    from fedsyft.datasite.launch import Datasites, LaunchError

    owner.stop()
    again = Datasites(None, n_sites=1, port_base=free_port_base(1), names=["Scattered"], state_dir=state,
                      private=False, progress=lambda *a: pytest.fail("mapped again on a relaunch"))
    again.start()
    try:
        assert again.sites[0].credentials.features == SCATTER.to_dict()
    finally:
        again.stop()
    other = Datasites(None, n_sites=1, port_base=free_port_base(1), names=["Scattered"], state_dir=state,
                      private=False, features=FeatureMap("scatter", J=1))
    with pytest.raises(LaunchError, match="provisioned with the 'scatter' feature map"):
        other.start()


def test_a_table_that_is_not_images_is_refused_in_one_line(tmp_path):
    import numpy as np

    from fedsyft.data import Images
    from fedsyft.datasite.launch import Datasites, LaunchError

    table = Images(np.zeros((50, 30), np.float32), np.arange(50) % 2)
    schema = {"features": [f"f{i}" for i in range(30)], "classes": [0, 1], "ranges": {f"f{i}": [0, 1] for i in range(30)}}
    ds = Datasites([table], port_base=free_port_base(1), state_dir=tmp_path / "s", private=False, schema=schema,
                   features=SCATTER)
    with pytest.raises(LaunchError, match=r"X must be images of shape \[n, 784\]"):
        ds.start()
    assert not ds.sites  # nothing started
