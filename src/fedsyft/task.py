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
    model (SCAFFOLD's option I). ``center`` (a public vector in [0, 1], the researcher's mean of
    its own test features) centres the features the fit sees; the answer keeps its form.
    """
    import math
    import time

    import numpy as np
    from scipy.optimize import minimize

    started = time.perf_counter()
    try:
        # 1. Check the settings the researcher sent.
        required = {"seed", "test_fraction", "local_iters", "l2"}
        optional = {"mu", "correction", "n_classes", "scale", "center"}
        if not isinstance(config, dict) or not required <= set(config) <= required | optional:
            raise ValueError(f"config must have the keys {sorted(required)} and may have {sorted(optional)}")
        mu, k = float(config.get("mu", 0.0)), int(config.get("n_classes", 10))
        if not (1 <= int(config["local_iters"]) <= 1000 and 0 < float(config["test_fraction"]) <= 0.5
                and 0 < float(config["l2"]) < 1e3 and 0 <= mu <= 1e3):
            raise ValueError("config out of range: local_iters 1-1000, test_fraction (0, 0.5], l2 (0, 1000), "
                             "mu [0, 1000]")
        X, y = data[0], np.asarray(data[1], dtype=np.int64)
        n_features = X.shape[1]
        if not (2 <= k <= 1000 and y.min() >= 0 and y.max() < k):
            raise ValueError(f"labels must be class indices below n_classes={k} (2-1000)")

        # 2. Scale the features the same way on every site (the federation's public scaling).
        if "scale" in config:
            low = np.asarray(config["scale"]["low"], np.float32)
            span = np.asarray(config["scale"]["high"], np.float32) - low
            if low.shape != (n_features,) or span.shape != (n_features,) or not np.isfinite(span).all():
                raise ValueError(f"scale must give low and high for the {n_features} features")
            ranged, span = span > 0, np.where(span > 0, span, 1)

        def scaled(rows):
            if "scale" not in config:
                return rows.astype(np.float32) / np.float32(255)
            return np.clip((rows.astype(np.float32) - low) / span, 0, 1) * ranged

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
        # The optional public centre c: the fit runs on x - c with the intercept b + W c (L-BFGS converges
        # faster on centred features) and answers in the usual logits = W x + b.
        center = np.asarray(config.get("center", np.zeros(n_features)), np.float64)
        if center.shape != (n_features,) or not (np.isfinite(center).all()
                                                 and 0 <= center.min() <= center.max() <= 1):
            raise ValueError(f"center must be {n_features} numbers in [0, 1]")
        centred = "center" in config
        if centred:
            start = np.r_[start[:-k], start[-k:] + start[:-k].reshape(k, n_features) @ center]
            if shift is not None:  # SCAFFOLD's intercept shift, on the centred coordinates
                shift_coef = shift[:-k].reshape(k, n_features) - np.outer(shift[-k:], center)
                shift = np.r_[shift_coef.ravel(), shift[-k:]]
        center32 = center.astype(np.float32)
        # 3. Split the rows into local train and test, the same way every round: the split of
        # scikit-learn's train_test_split(test_size, random_state=seed), same rows, same order.
        n_test = math.ceil(float(config["test_fraction"]) * len(y))
        if n_test >= len(y):
            raise ValueError(f"{len(y)} rows leave none to train on after holding out test_fraction")
        order = np.random.RandomState(int(config["seed"])).permutation(len(y))
        Xtr, Xte, ytr, yte = X[order[n_test:]], X[order[:n_test]], y[order[n_test:]], y[order[:n_test]]
        n_train, l2 = len(ytr), float(config["l2"])

        # The rows are scaled block by block as every pass reads them: a block stays in the CPU's
        # cache for both matrix products, and no float copy of the whole asset is made.
        # Without a schema's scaling the fit's rows are x / 255 - c, an affine map of the uint8 rows: the
        # passes of the fit fold it into the weights (W / 255, b - W c) and only convert the rows to float.
        affine = "scale" not in config

        def blocks(raw, labels, columns=None, as_read=False):  # (scaled rows [, columns], their labels)
            for start in range(0, len(labels), 256):
                rows = raw[start:start + 256]
                rows = rows.astype(np.float32) if as_read else scaled(rows) - center32  # c = 0 when not centred
                yield (rows if columns is None else rows[:, columns]), labels[start:start + 256]

        # 4. Fit from the global model. Features that are 0 on every training row say nothing about
        # their coefficients, which keep the global model's values and stay out of the optimisation;
        # with many of them the products skip their columns too. SCAFFOLD's correction moves every
        # coefficient, and with a centre no feature is 0: with either, all features are fitted.
        if shift is None and not centred:
            seen = np.zeros(n_features, dtype=bool)
            for rows, _ in blocks(Xtr, ytr):
                seen |= rows.any(axis=0)
            used = np.flatnonzero(seen)
        else:
            used = np.arange(n_features)
        narrow = len(used) < 0.8 * n_features
        coef = start[:-k].reshape(k, n_features).copy()  # the fitted coefficients are written into it
        first = np.r_[coef[:, used].ravel(), start[-k:]]

        def log_loss_and_gradient(coef, intercept, columns):  # mean log-loss + l2/2 |coef|^2 (not the intercept)
            loss, grad_coef, grad_intercept = 0.0, np.zeros(coef.shape), np.zeros(k)
            c = center if columns is None else center[columns]
            weights, bias = ((coef.T / 255, intercept - coef @ c) if affine else (coef.T, intercept))
            weights, bias = weights.astype(np.float32), bias.astype(np.float32)
            for rows, labels in blocks(Xtr, ytr, columns, as_read=affine):
                logits = rows @ weights + bias
                logits -= logits.max(axis=1, keepdims=True)
                p = np.exp(logits)
                total = p.sum(axis=1)
                loss += float(np.sum(np.log(total) - logits[np.arange(len(labels)), labels]))
                p /= total[:, None]
                p[np.arange(len(labels)), labels] -= 1  # softmax - onehot
                grad_coef += p.T @ rows
                grad_intercept += p.sum(axis=0)
            if affine:  # the gradient on the rows as read, back to the fit's rows x / 255 - c
                grad_coef = grad_coef / 255 - np.outer(grad_intercept, c)
            return (loss / n_train + l2 / 2 * (coef ** 2).sum(), grad_coef / n_train + l2 * coef,
                    grad_intercept / n_train)

        def objective(w):  # over the fitted coefficients, plus the strategy's terms
            fitted = coef[:, used] = w[:-k].reshape(k, -1)  # narrow: exactly the fitted columns
            loss, grad_coef, grad_intercept = log_loss_and_gradient(fitted if narrow else coef, w[-k:],
                                                                    used if narrow else None)
            grad = np.r_[(grad_coef if narrow else grad_coef[:, used]).ravel(), grad_intercept]
            if mu:
                loss, grad = loss + mu / 2 * ((w - first) ** 2).sum(), grad + mu * (w - first)
            if shift is not None:
                loss, grad = loss + shift @ w, grad + shift
            return loss, grad

        # The caller sets one BLAS thread (a datasite's environment, LocalSite's limit).
        w = minimize(objective, first, jac=True, method="L-BFGS-B",
                     options={"maxiter": int(config["local_iters"]), "gtol": 1e-4}).x
        control = None
        if shift is not None:  # SCAFFOLD (option I): this site's gradient at the global model
            _, grad_coef, grad_intercept = log_loss_and_gradient(start[:-k].reshape(k, n_features), start[-k:], None)
            if centred:  # in the model's own coordinates: d/dW of L(W, b + W c) adds (dL/db) c
                grad_coef = grad_coef + np.outer(grad_intercept, center)
            control = np.r_[grad_coef.ravel(), grad_intercept]
        coef[:, used] = w[:-k].reshape(k, -1)
        coef, intercept = coef.astype(np.float32), w[-k:].astype(np.float32)

        # 5. Report the new parameters and aggregate metrics: never a row.
        def metrics(raw, labels):  # accuracy, mean log-loss, confusion matrix (rows: true class)
            right, loss, cm = 0, 0.0, np.zeros((k, k), dtype=np.int64)
            for rows, ys in blocks(raw, labels):
                logits = (rows @ coef.T + intercept).astype(np.float64)
                logits -= logits.max(axis=1, keepdims=True)
                log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
                pred = log_p.argmax(axis=1)
                right, loss = right + int((pred == ys).sum()), loss - float(log_p[np.arange(len(ys)), ys].sum())
                cm += np.bincount(ys * k + pred, minlength=k * k).reshape(k, k)
            return right / len(labels), loss / len(labels), cm

        train_acc, train_loss, _ = metrics(Xtr, ytr)
        test_acc, test_loss, cm = (metrics(Xte, yte) if len(yte) else (float("nan"),) * 2 + (None,))
        if centred:  # back to logits = W x + b
            intercept = (w[-k:] - coef.astype(np.float64) @ center).astype(np.float32)
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
    and runs ``config["steps"]`` steps of projected gradient descent, each on a Poisson
    sample of the rows (each row joins with probability ``sample_rate``). Every row's
    gradient is clipped to norm ``clip`` and put on a fixed integer grid, the batch's sum
    is taken exactly in integers, and Gaussian noise of standard deviation
    ``noise_multiplier * clip``, rounded to the same grid, is added (Abadi et al. 2016).
    Only the noised parameters leave, with ``n_train``: the site's *public* row count
    ``config["rows"]``, which the site's guard fills in (the exact count never leaves).

    Privacy rests on four rules the code below keeps; a data owner can check each:

    1. Every number the researcher sends is checked against a public bound before a row
       is read, and a refusal's text depends only on what was sent (section 1).
    2. The arithmetic on private rows is total: float64 with bounded inputs (features in
       [0, 1], parameters within +-BOUND), so it ends with finite values for every
       accepted input; no branch, exception or NaN depends on the rows (sections 2-3).
    3. A row's clipped gradient is an integer vector of norm at most GRID * 255, so the
       batch's sum is exact (float64 holds integers below 2**53 exactly) and adding or
       removing one row moves it by at most that: the sensitivity, exactly (section 3).
    4. The noise is a Gaussian sample rounded to the integer grid, so the released sum
       is an integer: rounding is post-processing of the Gaussian mechanism, and no low-order
       floating-point bits of the sample carry information about the rows (Mironov 2012).
       Everything after the noise (the step, the projection) is post-processing too.

    Randomness (sampling and noise) is the site's own: fresh OS entropy on a datasite,
    or ``data[2]`` when an in-process simulation passes a seed. Nothing the researcher
    sends seeds it. The site's privacy guard charges the budget for (noise_multiplier,
    sample_rate, steps) before this function runs. Optional ``mu`` (FedProx's proximal
    term) and ``correction`` (SCAFFOLD's c - c_i) add data-independent terms to each step;
    ``center`` (a public vector in [0, 1], the researcher's guess of the features' mean on its
    own data) centres the features the steps see. None of the three changes the sensitivity:
    it is enforced on each row's own gradient, whatever the inputs.
    """
    import numpy as np

    BOUND = 1e4     # public bound on every parameter: inputs beyond it are refused, steps are projected onto it
    GRID = 2 ** 16  # resolution of a row's clipped gradient: its norm is at most GRID * 255 grid units
    LEVELS = 255    # features enter on the public grid 0, 1/255, ..., 1 (MNIST's pixels exactly)

    # 1. Check every input against public bounds, before any row is read.
    required = {"noise_multiplier", "sample_rate", "steps", "clip", "lr", "l2", "rows"}
    optional = {"mu", "correction", "n_classes", "scale", "center"}
    if not isinstance(config, dict) or not required <= set(config) <= required | optional:
        return {"error": f"refused: config must have the keys {sorted(required)} and may have {sorted(optional)}"}

    def number(key, low, high, default=None, integer=False):
        value = config.get(key, default)
        kind = int if integer else (int, float)
        if (isinstance(value, bool) or not isinstance(value, kind) or not np.isfinite(value)
                or not low <= value <= high):
            raise ValueError(f"config[{key!r}] must be {'an integer' if integer else 'a number'} in [{low:g}, {high:g}]")
        return value

    def array(value, shape, what, bound):  # finite, of this shape, within +-bound
        a = np.asarray(value, dtype=np.float64) if isinstance(value, (list, tuple, np.ndarray)) else None
        if a is None or a.shape != shape or not np.isfinite(a).all() or np.abs(a).max(initial=0) > bound:
            raise ValueError(f"{what} must be a finite array of shape {shape} within +-{bound:g}")
        return a

    def params(value, what):  # {"coef" (k, d), "intercept" (k,)}
        if not isinstance(value, dict) or set(value) != {"coef", "intercept"}:
            raise ValueError(f"{what} must have exactly the keys coef and intercept")
        return array(value["coef"], (k, d), f"{what} coef", BOUND), array(value["intercept"], (k,), f"{what} intercept", BOUND)

    try:
        sigma, q = number("noise_multiplier", 0, 1e4), number("sample_rate", 1e-6, 1)
        steps, rows = number("steps", 1, 10_000, integer=True), number("rows", 1, 10 ** 8, integer=True)
        clip, lr = number("clip", 1e-6, 1e4), number("lr", 1e-9, 1e3)
        l2, mu, k = number("l2", 0, 1e3), number("mu", 0, 1e3, default=0), number("n_classes", 2, 1000, 10, True)
        d = int(data[0].shape[1])  # the feature count: public (the federation's schema)
        low, high = np.zeros(d), np.full(d, float(LEVELS))  # default: MNIST's pixels / 255
        if "scale" in config:  # the federation's public schema: (x - low) / (high - low), clipped to [0, 1]
            scale = config["scale"]
            if not isinstance(scale, dict) or set(scale) != {"low", "high"}:
                raise ValueError("scale must have exactly the keys low and high")
            low, high = (array(scale[key], (d,), f"scale {key}", 1e12) for key in ("low", "high"))
            if (high < low).any():
                raise ValueError("scale high must be at least scale low")
        W, b = params(global_params, "global params") if global_params else (np.zeros((k, d)), np.zeros(k))
        shift_W, shift_b = params(config["correction"], "correction") if "correction" in config else (0.0, 0.0)
        center = array(config.get("center", np.zeros(d)), (d,), "center", 1)
        if (center < 0).any():
            raise ValueError("center must lie in [0, 1]")
    except (ValueError, TypeError, AttributeError, IndexError) as e:
        return {"error": f"refused: {e}"}

    # 2. Features on the public grid: integers 0..255 (a row's gradient is e (x, 1) = e (Xh / 255), the
    # intercept's feature being 1 = 255 / 255). uint8 features under the default scale are the grid already.
    # The optional public centre (on the grid too) is subtracted: gradient descent converges faster on
    # centred features. The model keeps its usual form, logits = W x + b; the steps run on the centred
    # intercept b + W center, converted back at the end.
    span = high - low
    used, safe_span = span > 0, np.where(span > 0, span, 1.0)
    as_is = "scale" not in config and data[0].dtype == np.uint8
    C = np.rint(center * LEVELS)

    def on_grid(rows_X):  # (b, d) -> (b, d) float64 integers in [-255, 255]
        if as_is:
            return rows_X.astype(np.float64) - C
        x = np.clip((rows_X.astype(np.float64) - low) / safe_span, 0.0, 1.0) * used
        return np.rint(x * LEVELS) - C

    # 3. DP-SGD steps: clipped integer gradients, exact sum, rounded Gaussian noise, projection.
    try:
        with np.errstate(all="ignore"):  # nothing below can overflow; warnings would print to the site's log
            X, y = data[0], np.asarray(data[1])
            rng = np.random.default_rng(data[2] if len(data) > 2 else None)
            n, classes = len(y), np.arange(k)
            b = np.clip(b + W @ C / LEVELS, -BOUND, BOUND)  # the centred intercept
            if "correction" in config:  # SCAFFOLD's shift of the intercept, on the centred coordinates
                shift_W = shift_W - np.outer(shift_b, C / LEVELS)
            W0, b0 = W.copy(), b.copy()
            sensitivity = float(GRID * LEVELS)      # one row's largest gradient norm, in grid units
            slack = np.sqrt(k) / 2                  # rounding e's k entries moves its norm by at most this
            for _ in range(steps):
                batch = np.flatnonzero(rng.random(n) < q)
                Xh = on_grid(X[batch])
                logits = Xh @ (W.T / LEVELS) + b  # |logits| <= (d + 1) * BOUND: finite
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                e = p / p.sum(axis=1, keepdims=True) - (y[batch, None] == classes)  # softmax - onehot, in [-1, 1]
                # Row i's gradient is (clip / sensitivity) * E_i (x) (Xh_i, 255) with E_i = rint(GRID e_i / clip),
                # shrunk first so that after rounding |E_i| |(Xh_i, 255)| <= sensitivity holds exactly.
                norms = np.sqrt(np.einsum("ij,ij->i", Xh, Xh) + float(LEVELS) ** 2)  # >= 255
                allowed = np.maximum(sensitivity / norms * (1 - 1e-9) - slack, 0)
                E = e * (GRID / clip)
                E = np.rint(E * np.minimum(1, allowed / np.maximum(np.sqrt((E * E).sum(axis=1)), 1e-300))[:, None])
                # The batch's sum, weights then intercept: integers below 2**53, exact in any summation order.
                total = np.hstack([E.T @ Xh, E.sum(axis=0)[:, None] * LEVELS])
                noisy = total + np.rint(rng.normal(0, sigma * sensitivity, total.shape))
                grad = noisy * (clip / sensitivity) / (q * rows)  # post-processing of an integer from here on
                W = np.clip(W - lr * (grad[:, :d] + l2 * W + mu * (W - W0) + shift_W), -BOUND, BOUND)
                b = np.clip(b - lr * (grad[:, d] + mu * (b - b0) + shift_b), -BOUND, BOUND)
            b = b - W @ C / LEVELS  # back to logits = W x + b (finite: |W C| <= d * BOUND * 255)
            return {"coef": W.astype(np.float32), "intercept": b.astype(np.float32), "n_train": int(rows)}
    except Exception:  # unreachable for accepted inputs; a fixed text, never the rows' doing
        return {"error": "local_train_dp failed"}


#: The approved training functions by name: the non-private one and the DP one.
TRAINING_FUNCTIONS = {"local_train": local_train, "local_train_dp": local_train_dp}


def is_private_config(config: dict) -> bool:
    """Whether ``config`` is for :func:`local_train_dp` (it carries a noise multiplier)."""
    return "noise_multiplier" in config


def training_function_name(config: dict) -> str:
    """The name of the training function a config is meant for."""
    return "local_train_dp" if is_private_config(config) else "local_train"


def model_from_params(params: dict, features: dict | None = None) -> "LogisticRegression":  # noqa: F821
    """A fitted scikit-learn ``LogisticRegression`` holding ``params``.

    Use it like any estimator on scaled features: ``model.predict(X / 255)`` for MNIST,
    ``model.predict(schema.scale(X))`` for a tabular federation (class indices into
    ``schema.classes``). With ``features``, the run's public feature map (``RunConfig.features``),
    it is a scikit-learn Pipeline that takes raw uint8 images: the map, then the regression.
    """
    if features is not None and features.get("name") != "none":
        from .features import FeatureMap, pipeline

        return pipeline(params, FeatureMap.from_dict(features))
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
