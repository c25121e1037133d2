"""The function a datasite runs: warm start, fixed split, no data rows out, errors as data."""

import inspect

import numpy as np
import pytest

from fedsyft.task import DEFAULT_TRAIN_CONFIG, evaluate, local_train, local_train_dp

CONFIG = dict(DEFAULT_TRAIN_CONFIG)


def _params(out):
    return {"coef": out["coef"], "intercept": out["intercept"]}


@pytest.fixture(scope="module")
def shard(small_shards):
    return small_shards[0].X, small_shards[0].y


@pytest.fixture(scope="module")
def trained(mnist):
    """A good global model: one default local fit on 20,000 other rows."""
    out = local_train((mnist.train.X[-20000:], mnist.train.y[-20000:]), None, CONFIG)
    return {"coef": out["coef"], "intercept": out["intercept"]}


def test_training_starts_from_the_global_parameters(shard, mnist, trained):
    # With a budget of one iteration, a warm-started fit stays near the global model
    # and keeps its accuracy; a cold start is nowhere near. The replaced project
    # ignored the global parameters, so FedAvg had no effect there.
    one_iter = {**CONFIG, "local_iters": 1}
    warm = local_train(shard, trained, one_iter)
    cold = local_train(shard, None, one_iter)
    drift = np.linalg.norm(warm["coef"] - trained["coef"]) / np.linalg.norm(trained["coef"])
    assert drift < 0.05
    acc_trained = evaluate(trained, mnist.test.X, mnist.test.y)["test_accuracy"]
    acc_warm = evaluate(warm, mnist.test.X, mnist.test.y)["test_accuracy"]
    acc_cold = evaluate(cold, mnist.test.X, mnist.test.y)["test_accuracy"]
    assert acc_warm > 0.88 and abs(acc_warm - acc_trained) < 0.02
    assert acc_cold < acc_warm - 0.1


def test_result_is_parameters_and_metrics_only(shard):
    out = local_train(shard, None, CONFIG)
    assert "error" not in out, out.get("error")
    assert out["coef"].shape == (10, 784) and out["coef"].dtype == np.float32
    assert out["intercept"].shape == (10,)
    assert out["n_train"] == 2700 and out["n_test"] == 300  # fixed 10 % hold-out
    assert np.asarray(out["confusion_matrix"]).sum() == out["n_test"]
    # nothing the size of a data row or of the data set leaves the function
    for key, value in out.items():
        if key not in ("coef", "intercept"):
            assert np.asarray(value).size <= 100, key
    assert 0.8 < out["train_accuracy"] <= 1 and 0.7 < out["test_accuracy"] <= 1


def test_local_split_is_fixed_across_rounds(shard):
    a = local_train(shard, None, {**CONFIG, "local_iters": 3})
    b = local_train(shard, _params(a), {**CONFIG, "local_iters": 3})
    # same held-out rows in both rounds: the confusion matrices cover the same labels
    assert np.array_equal(np.asarray(a["confusion_matrix"]).sum(axis=1), np.asarray(b["confusion_matrix"]).sum(axis=1))
    again = local_train(shard, None, {**CONFIG, "local_iters": 3})
    assert np.array_equal(a["coef"], again["coef"])  # deterministic


@pytest.mark.parametrize("n, seed", [(2, 0), (11, 1), (540, 7)])
def test_the_local_split_is_scikit_learns_train_test_split(shard, n, seed):
    from sklearn.model_selection import train_test_split

    X, y = shard[0][:n], shard[1][:n]
    _, _, ytr, yte = train_test_split(X, y, test_size=CONFIG["test_fraction"], random_state=seed)
    out = local_train((X, y), None, {**CONFIG, "seed": seed, "local_iters": 2})
    assert (out["n_train"], out["n_test"]) == (len(ytr), len(yte))
    # the same held-out rows: their labels (the confusion matrix's row sums) match sklearn's test part
    assert np.array_equal(np.asarray(out["confusion_matrix"]).sum(axis=1), np.bincount(yte, minlength=10))


def test_a_site_too_small_to_split_gets_one_clear_error(shard):
    out = local_train((shard[0][:1], shard[1][:1]), None, CONFIG)
    assert out == {"error": "ValueError: 1 rows leave none to train on after holding out test_fraction"}


def test_a_site_missing_classes_still_returns_ten_classes(shard):
    X, y = shard
    keep = y < 6
    out = local_train((X[keep], y[keep]), None, CONFIG)
    assert "error" not in out, out.get("error")
    assert out["coef"].shape == (10, 784)
    again = local_train((X[keep], y[keep]), _params(out), CONFIG)  # warm start with absent classes
    assert "error" not in again


@pytest.mark.parametrize("params, config, message", [
    ({"coef": np.zeros((10, 5)), "intercept": np.zeros(10)}, CONFIG, "global params must be"),
    ({"coef": np.full((10, 784), np.nan), "intercept": np.zeros(10)}, CONFIG, "NaN or inf"),
    (None, {**CONFIG, "extra": 1}, "must have the keys"),
    (None, {**CONFIG, "mu": -1.0}, "out of range"),
    (None, {**CONFIG, "correction": {"coef": np.zeros((10, 3)), "intercept": np.zeros(10)}}, "correction must be"),
    ({"intercept": np.zeros(10)}, CONFIG, "exactly the keys coef and intercept"),
    ({"coef": np.zeros((10, 784)), "intercept": np.zeros(10), "x": 1}, CONFIG, "exactly the keys coef"),
    (None, {**CONFIG, "local_iters": 10**9}, "out of range"),
    (None, {**CONFIG, "test_fraction": 0.0}, "out of range"),
    (None, {**CONFIG, "l2": -1.0}, "out of range"),
    (None, {**CONFIG, "local_iters": "many"}, "ValueError"),
])
def test_bad_input_comes_back_as_an_error_message(shard, params, config, message):
    out = local_train(shard, params, config)
    assert set(out) == {"error"} and message in out["error"]


@pytest.mark.parametrize("function", [local_train, local_train_dp])
def test_training_functions_are_self_contained(function):
    source = inspect.getsource(function)
    imports = [ln.strip() for ln in source.splitlines() if ln.strip().startswith(("import ", "from "))]
    allowed = ("numpy", "scipy", "sklearn", "math", "time", "warnings")
    assert imports and all(ln.split()[1].split(".")[0] in allowed for ln in imports), imports
    assert "fedsyft" not in source.replace("fedsyft's", "")


@pytest.mark.parametrize("rows, narrow", [(300, True), (3000, False)])
def test_pixels_a_site_never_lights_keep_the_global_models_coefficients(shard, trained, rows, narrow):
    # 300 rows light under 80 % of the pixels: the products then skip the others' columns; 3,000 do not.
    X, y = shard[0][:rows], shard[1][:rows]
    n_test = int(np.ceil(CONFIG["test_fraction"] * len(y)))
    train = np.random.RandomState(CONFIG["seed"]).permutation(len(y))[n_test:]
    unlit = ~X[train].any(axis=0)
    assert 50 < unlit.sum() < 784 and (unlit.mean() > 0.2) == narrow
    out = local_train((X, y), trained, CONFIG)
    assert np.array_equal(out["coef"][:, unlit], trained["coef"][:, unlit])
    assert not np.allclose(out["coef"][:, ~unlit], trained["coef"][:, ~unlit])  # the lit ones are fitted
    # The same result as a fit over all 784 pixels, up to l2's small pull on the unlit ones.
    zero = {"coef": np.zeros((10, 784), np.float32), "intercept": np.zeros(10, np.float32)}
    every_pixel = local_train((X, y), trained, {**CONFIG, "correction": zero})
    assert not np.array_equal(every_pixel["coef"][:, unlit], trained["coef"][:, unlit])
    assert np.allclose(out["coef"], every_pixel["coef"], atol=2e-2)
    assert out["train_accuracy"] == every_pixel["train_accuracy"]


def test_fedprox_term_keeps_the_local_model_near_the_global_one(shard):
    start = _params(local_train(shard, None, {**CONFIG, "local_iters": 3}))
    free = local_train(shard, start, CONFIG)
    held = local_train(shard, start, {**CONFIG, "mu": 1.0})
    drift = lambda out: np.linalg.norm(out["coef"] - start["coef"])  # noqa: E731
    assert drift(held) < 0.5 * drift(free)
    assert "control_variate" not in held


def test_scaffold_correction_shifts_the_gradient_and_returns_the_gradient_at_the_global_model(shard):
    start = _params(local_train(shard, None, {**CONFIG, "local_iters": 3}))
    zero = {"coef": np.zeros((10, 784), np.float32), "intercept": np.zeros(10, np.float32)}
    plain = local_train(shard, start, CONFIG)
    corrected = local_train(shard, start, {**CONFIG, "correction": zero})
    # A zero correction changes nothing but that every pixel is fitted, also those this site never
    # lights, where only l2 acts (it moves them by about 2 %).
    assert np.allclose(plain["coef"], corrected["coef"], atol=2e-2)
    assert plain["test_accuracy"] == corrected["test_accuracy"]
    # c_i = the gradient of the local objective at the global model: stepping against it lowers the loss.
    c = corrected["control_variate"]
    assert c["coef"].shape == (10, 784) and np.abs(c["coef"]).sum() > 0
    push = {"coef": np.full((10, 784), 0.05, np.float32), "intercept": np.zeros(10, np.float32)}
    pushed = local_train(shard, start, {**CONFIG, "correction": push})
    assert pushed["coef"].mean() < plain["coef"].mean()  # a positive linear term drives coefficients down


def test_scaffolds_control_variate_is_the_exact_gradient_at_the_global_model(shard):
    # Option I's c_i: the gradient of the site's objective at the global model, over all 784 pixels,
    # also where the global model is nonzero on pixels this site never lights (only l2 acts there).
    rng = np.random.default_rng(0)
    start = {"coef": rng.normal(0, 0.1, (10, 784)).astype(np.float32),
             "intercept": rng.normal(0, 0.1, 10).astype(np.float32)}
    zero = {"coef": np.zeros((10, 784), np.float32), "intercept": np.zeros(10, np.float32)}
    config = {**CONFIG, "l2": 0.5, "local_iters": 1, "correction": zero}
    got = local_train(shard, start, config)["control_variate"]
    X, y = shard
    n_test = int(np.ceil(config["test_fraction"] * len(y)))
    train = np.random.RandomState(config["seed"]).permutation(len(y))[n_test:]
    Xtr, ytr = X[train].astype(np.float64) / 255, y[train]
    assert (Xtr.max(axis=0) == 0).sum() > 50  # MNIST's borders: many unlit pixels on a small site
    logits = Xtr @ start["coef"].T.astype(np.float64) + start["intercept"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(ytr)), ytr] -= 1
    p /= len(ytr)
    assert np.allclose(got["coef"], p.T @ Xtr + config["l2"] * start["coef"], rtol=1e-4, atol=1e-6)
    assert np.allclose(got["intercept"], p.sum(axis=0), rtol=1e-4, atol=1e-6)


def test_any_number_of_features_and_classes_with_the_schemas_scaling():
    rng = np.random.default_rng(0)
    X = rng.normal(50, 10, (300, 5)).astype(np.float32)
    y = (X[:, 0] > 50).astype(np.int64) + (X[:, 1] > 50)  # 3 classes
    config = {**CONFIG, "n_classes": 3, "scale": {"low": [20.0] * 5, "high": [80.0] * 5}}
    out = local_train((X, y), None, config)
    assert "error" not in out, out.get("error")
    assert out["coef"].shape == (3, 5) and out["intercept"].shape == (3,) and out["train_accuracy"] > 0.7
    assert np.asarray(out["confusion_matrix"]).shape == (3, 3)
    dp = local_train_dp((X, y, 1), None, {"noise_multiplier": 1.0, "sample_rate": 0.5, "steps": 5, "clip": 1.0,
                                          "lr": 1.0, "l2": 0.0, "n_classes": 3, "scale": config["scale"],
                                              "rows": 300})
    assert "error" not in dp and dp["coef"].shape == (3, 5)
    assert "n_classes=3" in local_train((X, y + 1), None, config)["error"]  # a label beyond the schema's classes
    assert "scale must give" in local_train((X, y), None, {**config, "scale": {"low": [0.0], "high": [1.0]}})["error"]
    assert evaluate(out, (X - 20) / 60, y, scaled=True)["test_accuracy"] > 0.7


def test_a_centre_keeps_the_model_form_and_scaffolds_control_variate(shard, trained):
    """With a public centre the fit runs on x - c; the answer is still logits = W x + b, in the same coordinates."""
    X, y = shard
    c = list(np.rint(X.mean(axis=0)) / 255)
    out = local_train((X, y), None, {**CONFIG, "local_iters": 10, "center": c})
    own = evaluate(_params(out), X, y)["test_accuracy"]  # all rows: 90 % train, 10 % local test
    assert own == pytest.approx(0.9 * out["train_accuracy"] + 0.1 * out["test_accuracy"], abs=0.01)
    # SCAFFOLD's control variate is the gradient at the global model in its own coordinates: the same either way.
    zero = {"coef": np.zeros_like(trained["coef"]), "intercept": np.zeros_like(trained["intercept"])}
    plain = local_train((X, y), trained, {**CONFIG, "local_iters": 2, "correction": zero})["control_variate"]
    centred = local_train((X, y), trained, {**CONFIG, "local_iters": 2, "correction": zero, "center": c})
    assert np.allclose(plain["coef"], centred["control_variate"]["coef"], atol=1e-6)
    assert np.allclose(plain["intercept"], centred["control_variate"]["intercept"], atol=1e-6)
    assert "center must be" in local_train((X, y), None, {**CONFIG, "center": [1.5] * X.shape[1]})["error"]
