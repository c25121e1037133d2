"""The DP training function run on neighbouring data sets with the same randomness, across adversarial inputs.

The researcher controls every input of ``local_train_dp``: the global parameters, the scaling, every
setting within its accepted range. Whatever it sends, the answers on two data sets that differ by one
row must be of the same kind (both finite, or the same refusal), and after one noiseless step differ by
at most the sensitivity ``lr * clip / (sample_rate * rows)``. Anything else is a channel no noise covers.

The inputs include what broke the function before it was hardened (``legacy_dp.py``): a coefficient
template tuned from the extra row to sit right at float32's overflow edge, the 0/1 "brighter than 127"
scaling, settings that grow the parameters step by step, and a class count below the extra row's label.
The last test runs the same property against that function and shows it fails there.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from legacy_dp import legacy_local_train_dp

from fedsyft.task import local_train_dp

FLT_MAX = float(np.finfo(np.float32).max)
BOUND = 1e4  # local_train_dp's public bound on every parameter
ROWS, D, K = 24, 784, 10
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
                    suppress_health_check=[HealthCheck.too_slow])


def _data(seed: int, labels: int):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (ROWS, D), dtype=np.uint8)
    X[:, : D // 2] //= 2  # private rows never light the first half brighter than 127 ...
    candidate = rng.integers(128, 256, D, dtype=np.uint8)  # ... the extra row lights every pixel
    return X, rng.integers(0, labels, ROWS), candidate


@st.composite
def cases(draw):
    """One adversarial call: private rows, the extra row, and every input the researcher chooses."""
    labels = draw(st.sampled_from([3, K]))
    X, y, candidate = _data(draw(st.integers(0, 3)), labels)
    extra_label = draw(st.sampled_from([0, labels - 1, K - 1]))
    k = draw(st.sampled_from([K, labels]))
    bright = np.flatnonzero(candidate > 127)
    if draw(st.sampled_from(["bright", "bright", "dark"])) == "dark":  # far from a centre of ones
        candidate = np.zeros_like(candidate)
    # The template: a coefficient row on the extra row's bright pixels, at or around the overflow edge.
    edge = draw(st.sampled_from([FLT_MAX, FLT_MAX / 2, 1e30, BOUND * (len(bright) - 0.5), BOUND, BOUND * (1 + 1e-6),
                                 1.0, 0.0, float("inf"), float("nan")]))
    coef = np.zeros((k, D), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        coef[0, bright] = np.float32(draw(st.sampled_from([1, -1])) * edge / max(len(bright) - 0.5, 1))
    intercept = np.full(k, draw(st.sampled_from([0.0, BOUND, -BOUND, 3e38])), np.float32)
    config = {
        "noise_multiplier": draw(st.sampled_from([0.0, 1.0, 1e4])),
        "sample_rate": draw(st.sampled_from([1e-6, 0.5, 1.0])),
        "steps": draw(st.integers(1, 4)),
        "clip": draw(st.sampled_from([1e-6, 1.0, 1e4])),
        "lr": draw(st.sampled_from([1e-9, 1.0, 1e3])),
        "l2": draw(st.sampled_from([0.0, 1.0, 999.0])),
        "mu": draw(st.sampled_from([0.0, 1e3])),
        "n_classes": k,
        "rows": ROWS,
    }
    scale = draw(st.sampled_from(["none", "bit", "wide", "zero span", "too wide"]))
    if scale != "none":
        low, high = {"bit": (127.0, 128.0), "wide": (-1e12, 1e12), "zero span": (5.0, 5.0),
                     "too wide": (-1e13, 1e13)}[scale]
        config["scale"] = {"low": [low] * D, "high": [high] * D}
    center = draw(st.sampled_from(["none", "zeros", "half", "ones", "random"]))
    if center != "none":
        config["center"] = {"zeros": np.zeros(D), "half": np.full(D, 0.5), "ones": np.ones(D),
                            "random": np.random.default_rng(7).random(D)}[center].tolist()
    if draw(st.booleans()):
        config["correction"] = {"coef": np.full((k, D), draw(st.sampled_from([BOUND, -1.0])), np.float32),
                                "intercept": np.zeros(k, np.float32)}
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return (X, y), (np.vstack([X, candidate]), np.r_[y, extra_label]), {"coef": coef, "intercept": intercept}, \
        config, seed


def _kind(out: dict):
    """What an answer reveals besides its values: a refusal's text, or which keys and shapes, and finiteness."""
    if "error" in out:
        return ("error", out["error"])
    return ("answer", tuple(sorted(out)), out["coef"].shape, out["intercept"].shape, out["n_train"],
            bool(np.isfinite(out["coef"]).all() and np.isfinite(out["intercept"]).all()))


def check_neighbours(function, case) -> None:
    """Assert the property on one case: same kind on both neighbours; one noiseless step moves by <= sensitivity."""
    without, with_row, params, config, seed = case
    a = function((*without, np.random.SeedSequence(seed)), params, dict(config))
    b = function((*with_row, np.random.SeedSequence(seed)), params, dict(config))
    assert _kind(a) == _kind(b), (_kind(a), _kind(b))
    if "error" in a:
        return
    assert _kind(a)[-1], "an accepted call must answer with finite parameters"
    if config["steps"] == 1 and config["noise_multiplier"] == 0:
        # The step is taken on the centred intercept b + W c (the function's coordinates); c = 0 without a centre.
        c = np.rint(np.asarray(config.get("center", np.zeros(D))) * 255) / 255
        centred = [out["intercept"].astype(np.float64) + out["coef"].astype(np.float64) @ c for out in (a, b)]
        moved = np.sqrt(((a["coef"].astype(np.float64) - b["coef"]) ** 2).sum()
                        + ((centred[0] - centred[1]) ** 2).sum())
        bound = config["lr"] * config["clip"] / (config["sample_rate"] * config["rows"])
        # The answer is float32: each entry may be rounded by half an ulp of the largest parameter; with a
        # centre, the intercept (up to (1 + D) * BOUND once uncentred) and the D coefficients it is re-centred
        # with add their rounding too.
        rounding = np.sqrt(a["coef"].size + a["intercept"].size) * np.spacing(np.float32(BOUND))
        if "center" in config:
            largest = [max(np.abs(out[key]).max() for out in (a, b)) for key in ("intercept", "coef")]
            rounding += np.sqrt(K) * (np.spacing(largest[0]) + D * np.spacing(largest[1]))
        assert moved <= bound * (1 + 1e-6) + rounding, (moved, bound)


@SETTINGS
@given(case=cases())
def test_neighbouring_data_sets_give_answers_of_the_same_kind_within_the_sensitivity(case):
    check_neighbours(local_train_dp, case)


def _legacy(data, params, config):
    """The old function, given the public row count's treatment: its arithmetic is what is under test."""
    out = legacy_local_train_dp(data, params, {k: v for k, v in config.items() if k != "rows"})
    return {**out, "n_train": config["rows"]} if "n_train" in out else out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the old function overflows: that is what is caught
def test_the_property_catches_the_function_before_hardening():
    """The same property, run against the unhardened function, finds its leaks (overflow to NaN, the label check)."""
    check = SETTINGS(given(case=cases())(lambda case: check_neighbours(_legacy, case)))
    with pytest.raises(AssertionError):
        check()


def test_the_property_catches_an_exact_row_count():
    """Answers that carry the exact count differ in kind between neighbours: the relation ε must not break."""
    exact = lambda data, params, config: {**local_train_dp(data, params, config), "n_train": len(data[1])}  # noqa: E731
    with pytest.raises(AssertionError):
        SETTINGS(given(case=cases())(lambda case: check_neighbours(exact, case)))()


def test_an_empty_batch_and_a_tiny_site_answer_like_any_other():
    X, y, _ = _data(0, K)
    config = {"noise_multiplier": 1.0, "sample_rate": 1e-6, "steps": 3, "clip": 1.0, "lr": 1.0, "l2": 0.0,
              "rows": 1}
    for data in [(X[:0], y[:0]), (X[:1], y[:1]), (X, y)]:
        out = local_train_dp((*data, 0), None, config)
        assert _kind(out)[0] == "answer" and _kind(out)[-1] and out["n_train"] == 1


def test_a_rows_clipped_gradient_is_an_integer_vector_of_norm_at_most_the_sensitivity():
    """The bound behind the exact sum, read off the function's own answer and checked in exact integers.

    With one row, no noise, q = 1 and lr * clip = sensitivity / 64, the answer is -(E (x) Xh) / 64: the
    row's grid gradient, exactly (a power-of-two scaling of integers below 2**24 fits float32).
    """
    grid, levels = 2 ** 16, 255
    rng = np.random.default_rng(1)
    for _ in range(60):
        d, k = int(rng.integers(1, 300)), int(rng.integers(2, 12))
        X = (rng.integers(0, 256, (1, d)) * rng.integers(0, 2)).astype(np.uint8)
        # Integer parameters (so that start + step is exact in float32) that saturate or balance the softmax.
        params = {"coef": rng.integers(-8, 9, (k, d)).astype(np.float32) * rng.integers(0, 2),
                  "intercept": rng.integers(-100, 101, k).astype(np.float32)}
        config = {"noise_multiplier": 0.0, "sample_rate": 1.0, "steps": 1, "clip": 2.0 ** 13,
                  "lr": levels * 2.0 ** (16 - 6 - 13), "l2": 0.0, "n_classes": k, "rows": 1}
        out = local_train_dp((X, rng.integers(0, k, 1), 0), params, config)
        moved = np.c_[out["coef"] - params["coef"], out["intercept"] - params["intercept"]].astype(np.float64)
        step = -moved * 64
        assert np.array_equal(step, np.rint(step))  # on the integer grid
        assert int((step.astype(np.int64) ** 2).sum()) <= (grid * levels) ** 2


def _far_from_the_centre(center: float, extra: int):
    """A noiseless one-step call whose extra row is all ``extra`` and whose centre is all ``center``."""
    X, y, _ = _data(0, K)
    config = {"noise_multiplier": 0.0, "sample_rate": 1.0, "steps": 1, "clip": 1.0, "lr": 1.0, "l2": 0.0,
              "n_classes": K, "rows": ROWS, "center": [center] * D}
    params = {"coef": np.zeros((K, D), np.float32), "intercept": np.zeros(K, np.float32)}
    return (X, y), (np.vstack([X, np.full(D, extra, np.uint8)]), np.r_[y, 3]), params, config, 5


@pytest.mark.parametrize("center, extra", [(1.0, 0), (0.0, 255), (0.5, 0), (1.0, 255)])
def test_a_centre_far_from_the_extra_row_keeps_the_sensitivity(center, extra):
    """The clip is on the centred row's norm: a dark row under a centre of ones is as long as a bright one."""
    check_neighbours(local_train_dp, _far_from_the_centre(center, extra))


def test_the_property_catches_clipping_on_the_uncentred_norm():
    """The same check fails on a function that clips with the norm of the row before centring."""
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(local_train_dp))
    exact = 'norms = np.sqrt(np.einsum("ij,ij->i", Xh, Xh) + float(LEVELS) ** 2)'
    assert exact in source
    namespace: dict = {}
    exec(source.replace(exact, exact.replace("Xh, Xh", "Xh + C, Xh + C")), namespace)  # noqa: S102
    with pytest.raises(AssertionError):
        check_neighbours(namespace["local_train_dp"], _far_from_the_centre(1.0, 0))
