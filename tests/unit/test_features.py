"""fedsyft.features: the public feature maps (wavelet scattering), their declaration, bounds and pipeline."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

import fedsyft.features as features
from fedsyft.features import FeatureMap, pipeline

SCATTER = FeatureMap("scatter", J=2, L=8)


@pytest.fixture(scope="module")
def images(mnist):
    return mnist.test.X[:64]


@pytest.fixture(scope="module")
def mapped(images):
    return SCATTER.transform(images)


def test_scattering_width_is_81_channels_of_7_by_7(mapped, images):
    assert SCATTER.output_width((28, 28)) == 81 * 7 * 7 == 3969
    assert mapped.shape == (len(images), 3969)
    assert FeatureMap("none").output_width() == 784
    for J, L in ((1, 4), (3, 8)):
        m = FeatureMap(J=J, L=L)
        assert m.transform(images[:3]).shape == (3, m.output_width()) == (3, len(m.ranges()))


def test_output_is_uint8_on_the_grid_and_uses_it(mapped):
    assert mapped.dtype == np.uint8
    assert 0 <= mapped.min() and mapped.max() <= 255
    assert len(np.unique(mapped)) > 100  # the public range leaves the digits many levels


def test_bounds_hold_for_any_image_in_the_box(images):
    # Unquantized coefficients of digits, random binary images and constant images stay within the public bounds.
    rng = np.random.default_rng(0)
    X = np.vstack([images, rng.integers(0, 2, (32, 784)) * 255, np.zeros((1, 784)), np.full((1, 784), 255)])
    scattering, bounds = features._scattering(2, 8, (28, 28))
    S = scattering.scattering(X.reshape(-1, 28, 28).astype(np.float32) / 255)
    assert (S.max(axis=(0, 2, 3)) <= bounds * (1 + 1e-6)).all()
    assert S[:, 0].max() >= 0.99 * bounds[0]  # order 0 is tight: a white image reaches it


def test_public_range_is_fixed_by_the_definition():
    # Read from the filters alone: the same numbers every time, whatever data was transformed before.
    r = SCATTER.ranges()
    assert r.shape == (3969,) and r.dtype == np.float32
    assert r[0] == np.float32(1.001) and r[49] == np.float32(0.3193)  # order 0 (a lowpass), first order
    assert np.array_equal(r, FeatureMap().ranges())
    assert (FeatureMap("none").ranges() == 255).all()


def test_rows_depend_on_their_own_image_only(images, mapped, monkeypatch):
    assert np.array_equal(SCATTER.transform(images[10:20]), mapped[10:20])
    assert np.array_equal(SCATTER.transform(images[5:6]), mapped[5:6])
    monkeypatch.setattr(features, "BATCH", 7)  # other batch boundaries, two threads
    assert np.array_equal(SCATTER.transform(images, workers=2), mapped)
    assert np.array_equal(SCATTER.transform(images.reshape(-1, 28, 28)), mapped)


def test_progress_is_reported_per_batch(images, monkeypatch):
    monkeypatch.setattr(features, "BATCH", 25)
    calls = []
    SCATTER.transform(images, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(25, 64), (50, 64), (64, 64)]


def test_none_is_the_identity(images):
    assert np.array_equal(FeatureMap("none").transform(images), images)
    assert np.allclose(FeatureMap("none").scaled(images), images / 255)


def test_declaration_round_trips():
    for m in (SCATTER, FeatureMap(J=3, L=4), FeatureMap("none")):
        assert FeatureMap.from_dict(m.to_dict()) == m
    assert SCATTER.to_dict() == {"name": "scatter", "J": 2, "L": 8, "version": 1}
    assert FeatureMap("none").to_dict() == {"name": "none", "version": 1}


@pytest.mark.parametrize("doc, words", [
    ({"name": "wavelets", "version": 1}, "unknown name 'wavelets'"),
    ({"name": "scatter", "J": 2, "L": 8, "version": 1, "scale": 1}, "unknown key 'scale'"),
    ({"name": "none", "J": 2, "version": 1}, "unknown key 'J'"),
    ({"name": "scatter", "J": 9, "L": 8, "version": 1}, "J must be an integer in 1-4"),
    ({"name": "scatter", "J": 2, "L": 2.5, "version": 1}, "L must be an integer"),
    ({"name": "scatter", "J": 2, "L": 8, "version": 2}, "version must be 1"),
    ({"name": "scatter", "J": 2, "L": 8}, "missing key 'version'"),
    ({"J": 2}, "missing key 'name'"),
    ("scatter", "is an object"),
])
def test_bad_declarations_are_refused_by_name(doc, words):
    with pytest.raises(ValueError, match=words):
        FeatureMap.from_dict(doc)


def test_non_image_input_is_refused(images):
    with pytest.raises(ValueError, match=r"shape \[n, 784\].*got \[2, 783\]"):
        SCATTER.transform(images[:2, :783])
    with pytest.raises(ValueError, match="uint8"):
        SCATTER.transform(images[:2].astype(np.float32) / 255)
    with pytest.raises(ValueError, match="too small"):
        FeatureMap(J=4).transform(np.zeros((1, 64), np.uint8), input_shape=(8, 8))
    assert FeatureMap(J=1).transform(np.zeros((1, 64), np.uint8), input_shape=(8, 8)).shape == (1, 9 * 16)


def test_pipeline_takes_raw_images(images, mapped):
    from fedsyft.task import evaluate, model_from_params

    rng = np.random.default_rng(1)
    params = {"coef": rng.normal(size=(10, 3969)).astype(np.float32), "intercept": rng.normal(size=10).astype(np.float32)}
    model = pipeline(params, SCATTER)
    expected = model_from_params(params).predict(mapped.astype(np.float32) / 255)
    assert np.array_equal(model.predict(images), expected)
    assert np.allclose(model.predict_proba(images).sum(axis=1), 1)
    assert np.array_equal(pickle.loads(pickle.dumps(model)).predict(images), expected)
    # evaluate() on the uint8 features (it divides by 255) scores the same predictions
    y = expected.copy()
    assert evaluate(params, mapped, y)["test_accuracy"] == 1.0


def test_importing_fedsyft_does_not_import_kymatio():
    code = "import sys, fedsyft, fedsyft.features; print('kymatio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# ---- what a private run on mapped features sends its sites -----------------------------------------------

def test_the_dp_step_is_the_maps_factor_times_the_pixels_default():
    from fedsyft.experiment import RunConfig

    pixels = RunConfig(rounds=20, epsilon=1.0)
    scatter = RunConfig(rounds=20, epsilon=1.0, features=FeatureMap().to_dict())
    assert scatter.plan.step_size == pytest.approx(4 * pixels.plan.step_size)
    assert RunConfig(rounds=20, epsilon=1.0, dp_lr=3.0, features=FeatureMap().to_dict()).plan.step_size == 3.0


def test_a_run_on_mapped_features_is_centred_on_the_researchers_test_set():
    from fedsyft.data import Images
    from fedsyft.experiment import RunConfig, feature_center

    rng = np.random.default_rng(0)
    test = Images(rng.integers(0, 40, (50, 3969), dtype=np.uint8), rng.integers(0, 10, 50))
    scatter = FeatureMap().to_dict()
    center = feature_center(test, RunConfig(epsilon=1.0, features=scatter))
    assert len(center) == 3969 and np.allclose(center, test.X.mean(axis=0) / 255, atol=0.5 / 255)
    assert np.array_equal(np.rint(np.array(center) * 255), np.array(center) * 255)  # on the sites' grid
    assert feature_center(test, RunConfig(epsilon=1.0)) is None  # raw pixels: off unless asked for
    assert feature_center(test, RunConfig(epsilon=1.0, center=True)) is not None
    assert feature_center(test, RunConfig(epsilon=1.0, features=scatter, center=False)) is None
    assert feature_center(test, RunConfig(features=scatter)) == center  # non-private runs too
    assert feature_center(test, RunConfig(features=scatter, strategy="fedadam")) == center  # steps centred too
    assert feature_center(test, RunConfig(features=scatter, strategy="fedyogi", center=True)) == center
    assert feature_center(None, RunConfig(epsilon=1.0, features=scatter)) is None
    with pytest.raises(ValueError, match="center.*test set"):
        feature_center(None, RunConfig(epsilon=1.0, center=True))


def test_mapped_features_cap_the_default_local_iterations_not_a_given_count():
    from fedsyft.experiment import RunConfig

    scatter = FeatureMap().to_dict()
    assert RunConfig().setting("local_iters") == 25
    assert RunConfig(features=scatter).setting("local_iters") == FeatureMap().max_default_local_iters == 8
    assert RunConfig(features=scatter, strategy="fedadam").setting("local_iters") == 2  # already below the cap
    assert RunConfig(features=scatter, local_iters=25).setting("local_iters") == 25
    assert RunConfig(features=scatter, center=False).setting("local_iters") == 25  # uncentred: no cap
    assert RunConfig(features=scatter).train_config()["local_iters"] == 8


def test_a_run_recorded_before_centring_resumes_uncentred():
    from fedsyft.experiment import RunConfig

    recorded = RunConfig(rounds=2, epsilon=1.0, features=FeatureMap().to_dict()).to_dict()
    del recorded["center"]
    assert RunConfig.from_dict(recorded).center is False
    assert RunConfig.from_dict({**recorded, "center": True}).center is True
