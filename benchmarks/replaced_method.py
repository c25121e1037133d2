"""The replaced notebook project's training method, reimplemented from DESIGN.md for comparison.

What it did each round (its defects, kept on purpose):
- each site fits its own StandardScaler, so the averaged coefficients mix feature spaces;
- ``LogisticRegression.fit`` without ``warm_start``: the global parameters are ignored,
  so no round learns from another;
- the local train/test split is reseeded every round (seed + epoch), so earlier
  test rows become training rows;
- the parameters are averaged without weights, and sites run one after another.

Its global model was never evaluated. To put a number on it here, the averaged
parameters are applied to test images standardized with the mean of the sites'
scalers (one reasonable reading; any choice is arbitrary because the sites'
feature spaces differ).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits


def ml_experiment(X, y, seed):
    """One site's round, as the old project ran it (global parameters unused)."""
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed)
    scaler = StandardScaler().fit(Xtr)
    model = LogisticRegression()  # default max_iter=100, no warm start
    model.fit(scaler.transform(Xtr), ytr)
    return model, scaler, accuracy_score(ytr, model.predict(scaler.transform(Xtr))), \
        accuracy_score(yte, model.predict(scaler.transform(Xte)))


def run(shards, test_X, test_y, rounds: int, seed: int = 0) -> list[dict]:
    """Per round: each site's accuracies and seconds, the unweighted-average model's test accuracy."""
    records = []
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    with threadpool_limits(limits=1):
        for epoch in range(1, rounds + 1):
            start = time.perf_counter()
            fitted, sites = [], {}
            for i, (X, y) in enumerate(shards):
                t = time.perf_counter()
                model, scaler, train_acc, test_acc = ml_experiment(X.astype(np.float64), y, seed + epoch)
                fitted.append((model, scaler))
                sites[f"site {i + 1}"] = {"train_accuracy": train_acc, "test_accuracy": test_acc,
                                          "seconds": time.perf_counter() - t}
            coef = np.mean([m.coef_ for m, _ in fitted], axis=0)
            intercept = np.mean([m.intercept_ for m, _ in fitted], axis=0)
            mean = np.mean([s.mean_ for _, s in fitted], axis=0)
            scale = np.mean([s.scale_ for _, s in fitted], axis=0)
            logits = ((test_X - mean) / scale) @ coef.T + intercept
            records.append({"round": epoch, "seconds": time.perf_counter() - start, "sites": sites,
                            "global_test_accuracy": float(accuracy_score(test_y, logits.argmax(axis=1)))})
    return records
