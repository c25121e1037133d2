"""The code that runs on a datasite, and the researcher's evaluation of a model.

``local_train`` is what a data owner approves: PySyft sends its source text to the
datasite, which executes it against the private asset. It is therefore
self-contained (it imports numpy and scipy inside its body and nothing from fedsyft)
and short enough to read before approving. The datasite's approval policy allows exactly this source text:
change one character and every datasite denies it.

Parameters cross the wire as a dict ``{"coef": float32 [k, d], "intercept": float32 [k]}``:
10 classes x 784 pixels for MNIST, the schema's classes x features for a tabular federation.
"""

from __future__ import annotations

import numpy as np


#: Training settings sent with every call; ``local_train`` refuses other keys.
DEFAULT_TRAIN_CONFIG = {
    "seed": 0,            # seeds the local train/test split (fixed for the whole run)
    "test_fraction": 0.1, # share of each site's rows held out for its local test metrics
    "local_iters": 25,    # L-BFGS iterations per round, starting from the global model
    "l2": 1e-5,           # L2 strength per mean sample loss; see local_train
}


def local_train(data, global_params, config):
    """Train multinomial logistic regression on this datasite's private data.

    Starts from ``global_params`` (None or ``{}`` in round 1: zeros) and returns the new
    parameters, the number of training rows and aggregate metrics: never a data row.
    Errors are returned as ``{"error": "..."}`` because PySyft hides exception text.

    ``data`` is the private asset ``(X [n, d], y int [n])``: MNIST's uint8 pixels by
    default. The local train/test split is seeded by ``config["seed"]`` and is the same
    every round. Features are scaled the same way on every site (no fitted scaler, so
    all sites share one feature space): by 1/255, or with the federation's public schema,
    ``scale`` = {"low": [d], "high": [d]} -> (x - low) / (high - low) clipped to [0, 1];
    ``n_classes`` (default 10) is the schema's class count. The objective, minimised by
    L-BFGS for ``local_iters`` iterations, is::

        mean log-loss + l2/2 |coef|^2 + mu/2 |w - w_global|^2 + <correction, w>

    Coefficients of features that are 0 on every training row are not fitted: they keep
    the global model's values (unless a ``correction`` is given). With the same ``l2`` on
    every site, FedAvg weighted by n_train approximates one centralized fit with that
    ``l2`` (scikit-learn's C = 1 / (l2 * n_train)). The two optional keys serve the
    researcher's strategy: ``mu`` is FedProx's proximal term (default 0), and
    ``correction`` ({"coef", "intercept"}, SCAFFOLD's c - c_i) shifts the gradient; with
    it the answer also carries ``control_variate``, this site's gradient at the global
    model (SCAFFOLD's option I).
    """
    import math
    import time

    import numpy as np
    from scipy.optimize import minimize

    started = time.perf_counter()
    try:
        required = {"seed", "test_fraction", "local_iters", "l2"}
        optional = {"mu", "correction", "n_classes", "scale"}
        if not isinstance(config, dict) or not required <= set(config) <= required | optional:
            raise ValueError(f"config must have the keys {sorted(required)} and may have {sorted(optional)}")
        mu, k = float(config.get("mu", 0.0)), int(config.get("n_classes", 10))
        if not (1 <= int(config["local_iters"]) <= 1000 and 0 < float(config["test_fraction"]) <= 0.5
                and 0 < float(config["l2"]) < 1e3 and 0 <= mu <= 1e3):  # bounds keep one call from tying up the site
            raise ValueError("config out of range: local_iters 1-1000, test_fraction (0, 0.5], l2 (0, 1000), "
                             "mu [0, 1000]")
        X, y = data[0], np.asarray(data[1], dtype=np.int64)
        n_features = X.shape[1]
        if not (2 <= k <= 1000 and y.min() >= 0 and y.max() < k):
            raise ValueError(f"labels must be class indices below n_classes={k} (2-1000)")

        def scaled(rows):  # the federation's public scaling: the same on every site
            if "scale" not in config:
                return rows.astype(np.float32) / np.float32(255)
            low = np.asarray(config["scale"]["low"], np.float32)
            span = np.asarray(config["scale"]["high"], np.float32) - low
            if low.shape != (n_features,) or span.shape != (n_features,) or not np.isfinite(span).all():
                raise ValueError(f"scale must give low and high for the {n_features} features")
            return np.clip((rows.astype(np.float32) - low) / np.where(span > 0, span, 1), 0, 1) * (span > 0)

        def as_vector(params, what):  # {"coef" (k, d), "intercept" (k,)} -> one float64 vector
            if set(params) != {"coef", "intercept"}:
                raise ValueError(f"{what} must have exactly the keys coef and intercept")
            coef, intercept = np.asarray(params["coef"], np.float64), np.asarray(params["intercept"], np.float64)
            if coef.shape != (k, n_features) or intercept.shape != (k,):
                raise ValueError(f"{what} must be coef ({k}, {n_features}) and intercept ({k},)")
            if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
                raise ValueError(f"{what} contains NaN or inf")
            return np.r_[coef.ravel(), intercept]

        start = as_vector(global_params, "global params") if global_params else np.zeros(k * n_features + k)
        shift = as_vector(config["correction"], "correction") if "correction" in config else None
        # The split of scikit-learn's train_test_split(test_size, random_state=seed), without its
        # per-call validation (a millisecond, a tenth of a small site's fit): same rows, same order.
        n_test = math.ceil(float(config["test_fraction"]) * len(y))
        if n_test >= len(y):
            raise ValueError(f"{len(y)} rows leave none to train on after holding out test_fraction")
        order = np.random.RandomState(int(config["seed"])).permutation(len(y))
        Xtr, Xte, ytr, yte = X[order[n_test:]], X[order[:n_test]], y[order[n_test:]], y[order[:n_test]]
        Xtr, Xte = scaled(Xtr), scaled(Xte)
        n_train, l2, rows = len(ytr), float(config["l2"]), np.arange(len(ytr))
        # Features that are 0 on every training row (a small MNIST site lights ~580 of 784 pixels):
        # the data says nothing about their coefficients, which keep the global model's values and
        # stay out of the optimisation (only l2 would move them, by about 2 % in 25 steps). With many
        # of them, the products also skip their columns (worth the copy): a small site's fit is ~10 %
        # faster. SCAFFOLD's correction moves every coefficient: with it, all features are fitted.
        used = np.flatnonzero(Xtr.any(axis=0)) if shift is None else np.arange(n_features)
        narrow = len(used) < 0.8 * n_features
        Xfit = Xtr[:, used] if narrow else Xtr
        coef = start[:-k].reshape(k, n_features).copy()  # the fitted coefficients are written into it
        first = np.r_[coef[:, used].ravel(), start[-k:]]

        def log_loss_and_gradient(coef, intercept, X):  # mean log-loss + l2/2 |coef|^2 (not the intercept)
            logits = X @ coef.T.astype(np.float32) + intercept.astype(np.float32)
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            total = p.sum(axis=1)
            loss = np.mean(np.log(total) - logits[rows, ytr]) + l2 / 2 * (coef ** 2).sum()
            p /= total[:, None]
            p[rows, ytr] -= 1  # softmax - onehot
            p /= n_train
            return loss, p.T @ X + l2 * coef, p.sum(axis=0)

        def objective(w):  # over the fitted coefficients, plus the strategy's terms
            fitted = coef[:, used] = w[:-k].reshape(k, -1)  # narrow: exactly Xfit's columns
            loss, grad_coef, grad_intercept = log_loss_and_gradient(fitted if narrow else coef, w[-k:], Xfit)
            grad = np.r_[(grad_coef if narrow else grad_coef[:, used]).ravel(), grad_intercept]
            if mu:
                loss, grad = loss + mu / 2 * ((w - first) ** 2).sum(), grad + mu * (w - first)
            if shift is not None:
                loss, grad = loss + shift @ w, grad + shift
            return loss, grad

        # One BLAS thread is fastest here; the caller sets it (a datasite's environment, LocalSite's limit),
        # since asking threadpoolctl from in here costs ~3 ms a call, a third of a small site's fit.
        w = minimize(objective, first, jac=True, method="L-BFGS-B",
                     options={"maxiter": int(config["local_iters"]), "gtol": 1e-4}).x
        control = None
        if shift is not None:  # SCAFFOLD (option I): this site's gradient at the global model
            _, grad_coef, grad_intercept = log_loss_and_gradient(start[:-k].reshape(k, n_features), start[-k:], Xtr)
            control = np.r_[grad_coef.ravel(), grad_intercept]
        coef[:, used] = w[:-k].reshape(k, -1)
        coef, intercept = coef.astype(np.float32), w[-k:].astype(np.float32)

        def metrics(Xs, ys):  # accuracy, mean log-loss, confusion matrix (rows: true class)
            logits = (Xs @ coef.T + intercept).astype(np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            pred = log_p.argmax(axis=1)
            return (float((pred == ys).mean()), float(-log_p[np.arange(len(ys)), ys].mean()),
                    np.bincount(ys * k + pred, minlength=k * k).reshape(k, k))

        train_acc, train_loss, _ = metrics(Xtr, ytr)
        test_acc, test_loss, cm = (metrics(Xte, yte) if len(yte) else (float("nan"),) * 2 + (None,))
        out = {"coef": coef, "intercept": intercept, "n_train": int(n_train), "n_test": int(len(yte)),
               "train_accuracy": train_acc, "train_loss": train_loss, "test_accuracy": test_acc,
               "test_loss": test_loss, "confusion_matrix": cm, "compute_seconds": time.perf_counter() - started}
        if control is not None:
            out["control_variate"] = {"coef": control[:-k].reshape(k, n_features).astype(np.float32),
                                      "intercept": control[-k:].astype(np.float32)}
        return out
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

    Optional ``mu`` (FedProx's proximal term) and ``correction`` (SCAFFOLD's c - c_i) add
    data-independent terms to each step; they cost no privacy.
    """
    import numpy as np

    try:
        required = {"noise_multiplier", "sample_rate", "steps", "clip", "lr", "l2"}
        optional = {"mu", "correction", "n_classes", "scale"}
        if not isinstance(config, dict) or not required <= set(config) <= required | optional:
            raise ValueError(f"config must have the keys {sorted(required)} and may have {sorted(optional)}")
        sigma, q, clip = float(config["noise_multiplier"]), float(config["sample_rate"]), float(config["clip"])
        steps, lr, l2, mu = int(config["steps"]), float(config["lr"]), float(config["l2"]), float(config.get("mu", 0))
        if not (0 <= sigma <= 1e4 and 0 < q <= 1 and 1 <= steps <= 10000 and 0 < clip <= 1e4
                and 0 < lr <= 1e3 and 0 <= l2 < 1e3 and 0 <= mu <= 1e3):
            raise ValueError("config out of range: noise_multiplier [0, 1e4], sample_rate (0, 1], steps 1-10000, "
                             "clip (0, 1e4], lr (0, 1e3], l2 [0, 1e3), mu [0, 1e3]")
        X, y = data[0], np.asarray(data[1])
        rng = np.random.default_rng(data[2] if len(data) > 2 else None)
        (n, d), k = X.shape, int(config.get("n_classes", 10))
        if not (2 <= k <= 1000 and y.min() >= 0 and y.max() < k):
            raise ValueError(f"labels must be class indices below n_classes={k} (2-1000)")
        low, span = np.zeros(d, np.float32), np.full(d, 255, np.float32)  # MNIST: pixels / 255
        if "scale" in config:  # the federation's public schema: (x - low) / (high - low), clipped to [0, 1]
            low = np.asarray(config["scale"]["low"], np.float32)
            span = np.asarray(config["scale"]["high"], np.float32) - low
            if low.shape != (d,) or span.shape != (d,) or not np.isfinite(span).all():
                raise ValueError(f"scale must give low and high for the {d} features")

        def arrays(params, what):  # {"coef" (k, d), "intercept" (k,)}, checked
            if set(params) != {"coef", "intercept"}:
                raise ValueError(f"{what} must have exactly the keys coef and intercept")
            coef, intercept = np.array(params["coef"], np.float32), np.array(params["intercept"], np.float32)
            if coef.shape != (k, d) or intercept.shape != (k,):
                raise ValueError(f"{what} must be coef ({k}, {d}) and intercept ({k},)")
            if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
                raise ValueError(f"{what} contains NaN or inf")
            return coef, intercept

        zeros = (np.zeros((k, d), np.float32), np.zeros(k, np.float32))
        W, b = arrays(global_params, "global params") if global_params else zeros  # None or {}: from zeros
        W0, b0 = W.copy(), b.copy()
        # FedProx's proximal term and SCAFFOLD's correction c - c_i: data-independent, so free of privacy cost.
        shift_W, shift_b = arrays(config["correction"], "correction") if "correction" in config else zeros
        for _ in range(steps):
            batch = np.flatnonzero(rng.random(n) < q)
            Xb = np.clip((X[batch].astype(np.float32) - low) / np.where(span > 0, span, 1), 0, 1) * (span > 0)
            logits = Xb @ W.T + b
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            e /= e.sum(axis=1, keepdims=True)
            e[np.arange(len(batch)), y[batch]] -= 1  # e = softmax - onehot: the per-row gradient is e (x, 1)
            norms = np.sqrt((e * e).sum(axis=1) * ((Xb * Xb).sum(axis=1) + 1))
            e *= np.minimum(1, clip / np.maximum(norms, 1e-12))[:, None].astype(np.float32)
            grad_W = e.T @ Xb + rng.normal(0, sigma * clip, W.shape)
            grad_b = e.sum(axis=0) + rng.normal(0, sigma * clip, b.shape)
            # Divide by the expected batch size q*n (public), not the sampled one (private).
            W = (W - lr * (grad_W / (q * n) + l2 * W + mu * (W - W0) + shift_W)).astype(np.float32)
            b = (b - lr * (grad_b / (q * n) + mu * (b - b0) + shift_b)).astype(np.float32)
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

    Use it like any estimator on scaled features: ``model.predict(X / 255)`` for MNIST,
    ``model.predict(schema.scale(X))`` for a tabular federation (class indices into
    ``schema.classes``).
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression()
    model.coef_ = np.asarray(params["coef"], dtype=np.float64)
    model.intercept_ = np.asarray(params["intercept"], dtype=np.float64)
    model.classes_ = np.arange(model.coef_.shape[0])
    model.n_features_in_ = model.coef_.shape[1]
    model.n_iter_ = np.zeros(1, dtype=np.int32)
    return model


def evaluate(params: dict, X: np.ndarray, y: np.ndarray, scaled: bool = False) -> dict:
    """Accuracy, mean log-loss and confusion matrix of ``params`` on ``X`` and class indices ``y``.

    ``X`` is MNIST's uint8 pixels (divided by 255 here) unless ``scaled``: features
    already scaled as the sites scale them (the researcher scales its test set once).
    """
    Xs = X if scaled else np.asarray(X, dtype=np.float32) / np.float32(255)
    y = np.asarray(y)
    k = np.asarray(params["intercept"]).shape[0]
    logits = Xs @ np.asarray(params["coef"], np.float32).T + np.asarray(params["intercept"], np.float32)
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # log-softmax: exact, no clipping
    pred = log_p.argmax(axis=1)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    return {
        "test_accuracy": float((pred == y).mean()),
        "test_loss": float(-log_p[np.arange(len(y)), y].mean()),
        "confusion_matrix": cm.tolist(),
    }
