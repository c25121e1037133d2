"""A curious researcher's reconstruction attack on a small site, using only the approved training functions.

The researcher chooses the global parameters and every setting it may send. An
intercept of 30 on class k makes every softmax output one-hot, so one gradient step's
change in class j != k is proportional to the sum of the training rows labelled j, and
the intercept's change gives the scale. Against the non-private ``local_train`` the
researcher also controls which rows train (the split ``seed``) and learns the test
rows' label counts (the confusion matrix), so many calls form a linear system whose
solution is every row and its label. Against ``local_train_dp`` it does the best it
can: full batches, no clipping to speak of, as little noise as the site's budget
allows, as many calls as the site admits.

Success is measured the same way for both: a private row counts as *recovered* when
some reconstructed image is within RMSE 0.1 of it (pixels in [0, 1]) and carries its label.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RECOVERED_RMSE = 0.1
FORCE = 30.0  # softmax(30 - 0) = 1 - 1e-12: the forced class takes all the probability


def _forced(k: int, d: int = 784) -> dict:
    intercept = np.zeros(10, np.float32)
    intercept[k] = FORCE
    return {"coef": np.zeros((10, d), np.float32), "intercept": intercept}


def attack_non_private(call: Callable[[dict, dict], dict], n_calls: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruct every row of a site running ``task.local_train``; returns (images in [0, 1], labels)."""
    from sklearn.model_selection import train_test_split

    outputs = []
    for s in range(n_calls):
        config = {"seed": s, "test_fraction": 0.5, "local_iters": 1, "l2": 1e-5}
        outputs.append((s, call(_forced(s % 10), config)))
    n = outputs[0][1]["n_train"] + outputs[0][1]["n_test"]  # both are released
    splits = [train_test_split(np.arange(n), test_size=0.5, random_state=s) for s, _ in outputs]
    # Labels: each call's confusion matrix gives its test rows' label counts (row sums).
    A = np.array([np.isin(np.arange(n), test) for _, test in splits], float)
    counts = np.array([np.asarray(out["confusion_matrix"]).sum(axis=1) for _, out in outputs], float)
    labels = np.linalg.lstsq(A, counts, rcond=None)[0].argmax(axis=1)
    # Images: per call and class j != k, the sum of class-j training rows = dW_j * count_j / db_j.
    images = np.zeros((n, 784))
    for j in range(10):
        rows = np.flatnonzero(labels == j)
        eqs, rhs = [], []
        for (s, out), (train, _) in zip(outputs, splits):
            members = np.isin(rows, train)
            if s % 10 == j or not members.any():
                continue
            db = out["intercept"][j] - _forced(s % 10)["intercept"][j]
            eqs.append(members.astype(float))
            rhs.append(np.asarray(out["coef"][j], float) * members.sum() / db)
        if rows.size and eqs:
            images[rows] = np.linalg.lstsq(np.array(eqs), np.array(rhs), rcond=None)[0]
    return np.clip(images, 0, 1), labels


def attack_private(call: Callable[[dict, dict], dict], noise_multiplier: float, clip: float = 20.0,
                   max_calls: int = 1000) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The same idea against ``task.local_train_dp``: calls until the site refuses.

    Returns the reconstructed images (one per class: the estimated class mean), their
    labels, and every answer (the last ones are the site's refusals).
    """
    answers, sums, counts = [], np.zeros((10, 784)), np.zeros((10, 2))
    for c in range(max_calls):
        k = c % 10
        out = call(_forced(k), {"noise_multiplier": noise_multiplier, "sample_rate": 1.0, "steps": 1,
                                "clip": clip, "lr": 1.0, "l2": 0.0})
        answers.append(out)
        if "error" in out:
            break
        n = out["n_train"]
        for j in range(10):
            if j != k:  # one step from zero: W_j = (sum of class-j rows + noise) / n, b_j = (count_j + noise) / n
                sums[j] += np.asarray(out["coef"][j], float) * n
                counts[j] += (out["intercept"][j] * n, 1)
    used = np.maximum(counts[:, 1], 1)
    means = sums / used[:, None] / np.maximum(counts[:, 0] / used, 1)[:, None]
    return np.clip(means, 0, 1), np.arange(10), answers


def recovered(images: np.ndarray, labels: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(share of private rows recovered, share whose nearest reconstruction carries their label)."""
    private = np.asarray(X, float) / 255
    rmse = np.sqrt(((private[:, None, :] - images[None, :, :]) ** 2).mean(axis=2))  # [rows, candidates]
    nearest = rmse.argmin(axis=1)
    label_ok = labels[nearest] == np.asarray(y)
    return float(((rmse.min(axis=1) <= RECOVERED_RMSE) & label_ok).mean()), float(label_ok.mean())
