"""The code that runs on a datasite, and the researcher's evaluation of a model.

``local_train`` is what a data owner approves: PySyft sends its source text to the
datasite, which executes it against the private asset. It is therefore
self-contained (it imports numpy, scikit-learn and threadpoolctl, a scikit-learn
dependency, inside its body and nothing from fedsyft) and short enough to read
before approving. The datasite's approval policy allows exactly this source text:
change one character and every datasite denies it.

Parameters cross the wire as a dict ``{"coef": float32 [10, 784], "intercept": float32 [10]}``.
"""

from __future__ import annotations

import numpy as np

from .data import N_CLASSES

#: Training settings sent with every call; ``local_train`` refuses other keys.
DEFAULT_TRAIN_CONFIG = {
    "seed": 0,            # seeds the local train/test split (fixed for the whole run)
    "test_fraction": 0.1, # share of each site's rows held out for its local test metrics
    "local_iters": 25,    # L-BFGS iterations per round, starting from the global model
    "l2": 1e-5,           # L2 strength per mean sample loss; see local_train
}


def local_train(data, global_params, config):
    """Train multinomial logistic regression on this datasite's private data.

    Starts from ``global_params`` (None or ``{}`` in round 1) and returns the new parameters,
    the number of training rows and aggregate metrics: never a data row. Errors are
    returned as ``{"error": "..."}`` because PySyft hides exception text.

    ``data`` is the private asset ``(X uint8 [n, 784], y int [n])``. The local
    train/test split is seeded by ``config["seed"]`` and is the same every round.
    Pixels are scaled by 1/255 (no fitted scaler, so all sites share one feature
    space). The objective is mean log-loss + l2/2 * |coef|^2 with the same ``l2`` on
    every site, so FedAvg weighted by n_train approximates one centralized fit with
    that ``l2`` (scikit-learn's C = 1 / (l2 * n_train)).
    """
    import time
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    # The iteration budget per round is deliberate. (A process-wide filter: catch_warnings
    # is not thread-safe when several sites train in one process.)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    started = time.perf_counter()
    try:
        expected = {"seed", "test_fraction", "local_iters", "l2"}
        if not isinstance(config, dict) or set(config) != expected:
            raise ValueError(f"config must have exactly the keys {sorted(expected)}")
        if not (1 <= int(config["local_iters"]) <= 1000 and 0 < float(config["test_fraction"]) <= 0.5
                and 0 < float(config["l2"]) < 1e3):  # bounds keep one call from tying up the datasite
            raise ValueError("config out of range: local_iters 1-1000, test_fraction (0, 0.5], l2 (0, 1000)")
        X, y = data
        classes = np.arange(10)
        if global_params:  # None or {} in round 1: start from scratch
            if set(global_params) != {"coef", "intercept"}:
                raise ValueError("global params must have exactly the keys coef and intercept")
            coef = np.asarray(global_params["coef"], dtype=np.float32)
            intercept = np.asarray(global_params["intercept"], dtype=np.float32)
            if coef.shape != (10, X.shape[1]) or intercept.shape != (10,):
                raise ValueError(f"global params must be coef (10, {X.shape[1]}) and intercept (10,)")
            if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
                raise ValueError("global params contain NaN or inf")
        Xtr, Xte, ytr, yte = train_test_split(
            X, y, test_size=float(config["test_fraction"]), random_state=int(config["seed"]))
        Xtr = Xtr.astype(np.float32) / np.float32(255)
        Xte = Xte.astype(np.float32) / np.float32(255)
        n_train = len(ytr)
        # Zero-weight rows for classes this site lacks keep the model at 10 classes
        # (warm start needs it) without changing the objective.
        missing = np.setdiff1d(classes, ytr)
        Xfit, yfit, weights = Xtr, ytr, None
        if missing.size:
            Xfit = np.vstack([Xtr, np.zeros((len(missing), Xtr.shape[1]), np.float32)])
            yfit, weights = np.r_[ytr, missing], np.r_[np.ones(n_train), np.zeros(len(missing))]
        model = LogisticRegression(C=1.0 / (float(config["l2"]) * n_train),
                                   max_iter=int(config["local_iters"]), warm_start=True)
        if global_params:
            model.coef_, model.intercept_ = coef, intercept
        with threadpool_limits(limits=1):
            model.fit(Xfit, yfit, sample_weight=weights)

        def metrics(Xs, ys):
            proba = model.predict_proba(Xs)
            pred = classes[proba.argmax(axis=1)]
            return (float(accuracy_score(ys, pred)), float(log_loss(ys, proba, labels=classes)),
                    confusion_matrix(ys, pred, labels=classes))

        train_acc, train_loss, _ = metrics(Xtr, ytr)
        test_acc, test_loss, cm = (metrics(Xte, yte) if len(yte) else (float("nan"),) * 2 + (None,))
        return {
            "coef": model.coef_.astype(np.float32), "intercept": model.intercept_.astype(np.float32),
            "n_train": int(n_train), "n_test": int(len(yte)),
            "train_accuracy": train_acc, "train_loss": train_loss,
            "test_accuracy": test_acc, "test_loss": test_loss,
            "confusion_matrix": cm, "compute_seconds": time.perf_counter() - started,
        }
    except Exception as e:  # report, do not raise: PySyft would drop the message
        return {"error": f"{type(e).__name__}: {e}"}


def local_train_dp(data, global_params, config):
    """Train multinomial logistic regression with DP-SGD on this datasite's private data.

    What a private datasite approves. Starts from ``global_params`` (None or ``{}``: zeros)
    and runs ``config["steps"]`` steps of gradient descent, each on a Poisson sample of
    the rows (each row joins with probability ``sample_rate``), with every row's
    gradient clipped to norm ``clip`` and Gaussian noise of standard deviation
    ``noise_multiplier * clip`` added to the batch's sum (Abadi et al. 2016). Only the
    noised parameters leave, with ``n_train`` (the row count, public by design): no
    accuracy, loss, label count or timing, which would need a privacy budget of their own.

    Randomness (sampling and noise) is the site's own: fresh OS entropy on a datasite,
    or ``data[2]`` when an in-process simulation passes a seed. Nothing the researcher
    sends seeds it. The site's privacy guard charges the budget for (noise_multiplier,
    sample_rate, steps) before this function runs.

    For softmax regression a row's gradient is ``e (x, 1)`` with ``e = p - onehot(y)``, so
    its norm is ``|e| * sqrt(|x|^2 + 1)`` in closed form: clipping needs no per-row loop.
    """
    import numpy as np

    try:
        expected = {"noise_multiplier", "sample_rate", "steps", "clip", "lr", "l2"}
        if not isinstance(config, dict) or set(config) != expected:
            raise ValueError(f"config must have exactly the keys {sorted(expected)}")
        sigma, q, clip = float(config["noise_multiplier"]), float(config["sample_rate"]), float(config["clip"])
        steps, lr, l2 = int(config["steps"]), float(config["lr"]), float(config["l2"])
        if not (0 <= sigma <= 1e4 and 0 < q <= 1 and 1 <= steps <= 10000 and 0 < clip <= 1e4
                and 0 < lr <= 1e3 and 0 <= l2 < 1e3):
            raise ValueError("config out of range: noise_multiplier [0, 1e4], sample_rate (0, 1], steps 1-10000, "
                             "clip (0, 1e4], lr (0, 1e3], l2 [0, 1e3)")
        X, y = data[0], np.asarray(data[1])
        rng = np.random.default_rng(data[2] if len(data) > 2 else None)
        n, d = X.shape
        W, b = np.zeros((10, d), np.float32), np.zeros(10, np.float32)
        if global_params:  # None or {} in round 1: start from zeros
            if set(global_params) != {"coef", "intercept"}:
                raise ValueError("global params must have exactly the keys coef and intercept")
            W = np.array(global_params["coef"], dtype=np.float32)
            b = np.array(global_params["intercept"], dtype=np.float32)
            if W.shape != (10, d) or b.shape != (10,):
                raise ValueError(f"global params must be coef (10, {d}) and intercept (10,)")
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ValueError("global params contain NaN or inf")
        for _ in range(steps):
            batch = np.flatnonzero(rng.random(n) < q)
            Xb = X[batch].astype(np.float32) / np.float32(255)
            logits = Xb @ W.T + b
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            e /= e.sum(axis=1, keepdims=True)
            e[np.arange(len(batch)), y[batch]] -= 1  # e = softmax - onehot: the per-row gradient is e (x, 1)
            norms = np.sqrt((e * e).sum(axis=1) * ((Xb * Xb).sum(axis=1) + 1))
            e *= np.minimum(1, clip / np.maximum(norms, 1e-12))[:, None].astype(np.float32)
            grad_W = e.T @ Xb + rng.normal(0, sigma * clip, W.shape)
            grad_b = e.sum(axis=0) + rng.normal(0, sigma * clip, b.shape)
            # Divide by the expected batch size q*n (public), not the sampled one (private).
            W = (W - lr * (grad_W / (q * n) + l2 * W)).astype(np.float32)
            b = (b - lr * grad_b / (q * n)).astype(np.float32)
        return {"coef": W, "intercept": b, "n_train": int(n)}
    except Exception as e:  # report, do not raise: PySyft would drop the message
        return {"error": f"{type(e).__name__}: {e}"}


#: The approved training functions by name: the non-private one and the DP one.
TRAINING_FUNCTIONS = {"local_train": local_train, "local_train_dp": local_train_dp}


def is_private_config(config: dict) -> bool:
    """Whether ``config`` is for :func:`local_train_dp` (it carries a noise multiplier)."""
    return "noise_multiplier" in config


def training_function_name(config: dict) -> str:
    """The name of the training function a config is meant for."""
    return "local_train_dp" if is_private_config(config) else "local_train"


def model_from_params(params: dict) -> "LogisticRegression":  # noqa: F821
    """A fitted scikit-learn ``LogisticRegression`` holding ``params``.

    Use it like any estimator: ``model.predict(X / 255)``.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression()
    model.classes_ = np.arange(N_CLASSES)
    model.coef_ = np.asarray(params["coef"], dtype=np.float64)
    model.intercept_ = np.asarray(params["intercept"], dtype=np.float64)
    model.n_features_in_ = model.coef_.shape[1]
    model.n_iter_ = np.zeros(1, dtype=np.int32)
    return model


def evaluate(params: dict, X: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, mean log-loss and confusion matrix of ``params`` on images ``X`` (uint8) and labels ``y``."""
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss

    classes = np.arange(N_CLASSES)
    proba = model_from_params(params).predict_proba(np.asarray(X, dtype=np.float32) / np.float32(255))
    pred = classes[proba.argmax(axis=1)]
    return {
        "test_accuracy": float(accuracy_score(y, pred)),
        "test_loss": float(log_loss(y, proba, labels=classes)),
        "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist(),
    }
