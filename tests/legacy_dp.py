"""The DP training function as it was before it was hardened (fedsyft before 2026-12-06): kept only so that the
security tests can show they catch what it leaked (a data-dependent float32 overflow, a label check that raises).
Never approved by a datasite.
"""


def legacy_local_train_dp(data, global_params, config):
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
