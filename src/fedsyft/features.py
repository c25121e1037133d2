"""Public feature maps: fixed, data-independent transforms of images that every party applies alike.

A logistic regression on raw MNIST pixels stops near 0.926. The wavelet scattering transform
(Bruna and Mallat 2013; kymatio's numpy backend) followed by the same linear model reaches
0.99, and 0.975 or more under DP-SGD at ε = 1 (Tramèr and Boneh, ICLR 2021). The map costs no
privacy because nothing about it is learned from data: it is fixed by its name and parameters,
declared in the federation's public schema, and a row's features depend on that row alone.
Data owners transform their private images once; the researcher transforms its own test set
with the same map; the approved training functions only see more columns.

The output is uint8 on the public grid 0..255 (the grid ``local_train_dp`` puts features on):
each scattering coefficient is divided by a *public upper bound* of the values it can take for
any image with pixels in [0, 1] (:meth:`FeatureMap.ranges`, derived from the filters alone, see
:func:`_scatter_bounds`), clipped to [0, 1] and rounded to 255 levels. 30,000 rows then take
119 MB instead of 476 MB in float32, and the training functions' default scaling (/ 255) applies
unchanged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["FeatureMap", "MAP_NAMES", "pipeline"]

#: The maps a federation may declare: raw pixels (identity) or wavelet scattering.
MAP_NAMES = ("none", "scatter")
#: The definition's version: kymatio 0.3.0's Scattering2D, the bounds below, round(255 x).
VERSION = 1
#: Images per batch: bounds memory (a batch of 2,000 holds ~60 MB of intermediates).
BATCH = 2000
_LIMITS = {"J": (1, 4), "L": (1, 16)}
_DEFAULT_J, _DEFAULT_L = 2, 8


@dataclass(frozen=True)
class FeatureMap:
    """A public feature map, as the federation's schema declares it.

    Parameters
    ----------
    name : "scatter" (wavelet scattering) or "none" (the raw pixels).
    J : scattering scales (1-4): output resolution is the image's divided by 2**J.
    L : wavelet orientations per scale (1-16).
    version : the definition's version; only 1 exists.

    ``FeatureMap("scatter", J=2, L=8)`` on 28 x 28 images gives 81 channels x 7 x 7 = 3,969
    features, in kymatio's order (channel-major: feature ``c * 49 + p``).
    """

    name: str = "scatter"
    J: int = _DEFAULT_J
    L: int = _DEFAULT_L
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.name not in MAP_NAMES:
            raise ValueError(f"feature map: unknown name {self.name!r} (known: {', '.join(MAP_NAMES)})")
        if isinstance(self.version, bool) or self.version != VERSION:
            raise ValueError(f"feature map: version must be {VERSION}, got {self.version!r}")
        for key, (low, high) in _LIMITS.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"feature map: {key} must be an integer in {low}-{high}, got {value!r}")
        if self.name == "none" and (self.J, self.L) != (_DEFAULT_J, _DEFAULT_L):
            raise ValueError("feature map: J and L apply only to the scatter map, not to 'none'")

    # ---- the public declaration -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The map as the schema declares it: ``{"name", "J", "L", "version"}`` (``none``: name, version)."""
        if self.name == "none":
            return {"name": "none", "version": self.version}
        return {"name": self.name, "J": self.J, "L": self.L, "version": self.version}

    @classmethod
    def from_dict(cls, doc: Any) -> FeatureMap:
        """Read a declaration; unknown names or keys raise a ValueError that names them."""
        if not isinstance(doc, dict):
            raise ValueError(f"feature map: a declaration is an object, got {type(doc).__name__}")
        if "name" not in doc:
            raise ValueError("feature map: missing key 'name'")
        name = doc["name"]
        if name not in MAP_NAMES:
            raise ValueError(f"feature map: unknown name {name!r} (known: {', '.join(MAP_NAMES)})")
        allowed = {"name", "version"} | ({"J", "L"} if name == "scatter" else set())
        unknown = sorted(set(doc) - allowed, key=str)
        if unknown:
            raise ValueError(f"feature map: unknown key {unknown[0]!r} for {name!r} "
                             f"(allowed: {', '.join(sorted(allowed))})")
        if "version" not in doc:
            raise ValueError("feature map: missing key 'version'")
        return cls(**doc)

    def output_width(self, input_shape: tuple[int, int] = (28, 28)) -> int:
        """Features per image of shape ``input_shape`` (height, width)."""
        h, w = _check_shape(input_shape, self)
        if self.name == "none":
            return h * w
        channels = 1 + self.J * self.L + self.L ** 2 * self.J * (self.J - 1) // 2
        (ph, pw), k = _padded(h, w, self.J), 2 ** self.J
        return channels * (ph // k - 2) * (pw // k - 2)

    def ranges(self, input_shape: tuple[int, int] = (28, 28)) -> np.ndarray:
        """Each output feature's public upper bound before quantization (float32 ``[width]``; lower bounds are 0).

        Computed from the map's definition alone (no data): 255 for raw pixels, and for
        scattering the bound of :func:`_scatter_bounds`, per channel, repeated over positions.
        """
        h, w = _check_shape(input_shape, self)
        if self.name == "none":
            return np.full(h * w, 255, dtype=np.float32)
        _, bounds = _scattering(self.J, self.L, (h, w))
        return np.repeat(bounds, self.output_width((h, w)) // len(bounds))

    @property
    def dp_step_factor(self) -> float:
        """How much longer DP-SGD's default step is on these features than on raw pixels (a public choice).

        Scattering coefficients are small (most lie well below their public bound), so their
        gradients are too: with centred features, the best constant steps on MNIST (2 sites x
        30,000 rows, 20 rounds) were about 4 times the pixels' 10/σ at ε = 1, 3 and 8
        (benchmarks/scatter.py). The factor is the map's, not the data's.
        """
        return 1.0 if self.name == "none" else 4.0

    @property
    def max_default_local_iters(self) -> int | None:
        """The most L-BFGS iterations a non-private site runs per round by default on these features (None: no cap).

        On centred scattering features L-BFGS converges in few iterations: 2 sites x 30,000 rows reached
        0.9915 after 5 rounds with 8 (0.9897 with 6, 0.9923 with 10, uncentred 25: 0.9916), and each
        iteration costs a pass over 3,969 columns. A given ``local_iters`` is never capped.
        """
        return None if self.name == "none" else 8

    # ---- applying it ----------------------------------------------------------------------------

    def transform(self, X: np.ndarray, progress: Callable[[int, int], None] | None = None,
                  input_shape: tuple[int, int] = (28, 28), workers: int | None = None) -> np.ndarray:
        """Map uint8 images to uint8 features on the public grid 0..255.

        Parameters
        ----------
        X : uint8 ``[n, h * w]`` (or ``[n, h, w]``), pixels 0-255; images of ``input_shape``.
        progress : called as ``progress(done, total)`` after each batch of images.
        input_shape : the images' (height, width); MNIST's 28 x 28 by default.
        workers : threads over batches (None: up to 2). kymatio's FFTs and numpy's array
            arithmetic release the GIL, so two threads use both cores of a 2-core machine.

        Returns
        -------
        uint8 ``[n, output_width(input_shape)]``: ``round(255 * clip(S / ranges, 0, 1))``.
        Row *i* depends on image *i* only, so the map reads nothing but the row it maps.
        """
        h, w = _check_shape(input_shape, self)
        X = np.asarray(X)
        if X.ndim == 3 and X.shape[1:] == (h, w):
            X = X.reshape(len(X), h * w)
        if X.ndim != 2 or X.shape[1] != h * w:
            raise ValueError(f"feature map {self.name!r}: X must be images of shape [n, {h * w}] or [n, {h}, {w}] "
                             f"({h} x {w} pixels), got {list(X.shape)}")
        if X.dtype != np.uint8:
            raise ValueError(f"feature map {self.name!r}: X must be uint8 pixels 0-255, got dtype {X.dtype}")
        n = len(X)
        if self.name == "none":
            if progress is not None:
                progress(n, n)
            return X.copy()
        out = np.empty((n, self.output_width((h, w))), dtype=np.uint8)
        starts = range(0, n, BATCH)
        if not starts:
            return out
        scattering, bounds = _scattering(self.J, self.L, (h, w))
        scale = (np.float32(1) / bounds)[:, None, None]

        def one_batch(start: int) -> int:
            images = X[start:start + BATCH].reshape(-1, h, w).astype(np.float32) / np.float32(255)
            S = scattering.scattering(images)  # (b, channels, h', w') float32
            np.multiply(S, scale, out=S)
            np.clip(S, 0, 1, out=S)
            out[start:start + len(images)] = np.rint(S * np.float32(255)).reshape(len(images), -1)
            return len(images)

        workers = min(2, os.cpu_count() or 1) if workers is None else workers
        done = 0
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(starts)))) as pool:
            for count in pool.map(one_batch, starts):
                done += count
                if progress is not None:
                    progress(done, n)
        return out

    def scaled(self, X: np.ndarray) -> np.ndarray:
        """The features as the sites train on them: ``transform(X) / 255``, float32 in [0, 1]."""
        return self.transform(X).astype(np.float32) / np.float32(255)


def pipeline(params: dict, feature_map: FeatureMap) -> Any:
    """A scikit-learn Pipeline that takes raw uint8 images: the map, then a LogisticRegression holding ``params``.

    ``pipeline(params, m).predict(images)`` equals the logistic regression's prediction on
    ``m.scaled(images)``: the researcher needs no separate transform step.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from .task import model_from_params

    return Pipeline([("features", FunctionTransformer(feature_map.scaled)), ("model", model_from_params(params))])


def _check_shape(input_shape: Any, feature_map: FeatureMap) -> tuple[int, int]:
    """``input_shape`` as (h, w), large enough for the map's 2**J subsampling."""
    try:
        h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"feature map: input_shape must be (height, width), got {input_shape!r}") from None
    smallest = 2 ** feature_map.J if feature_map.name == "scatter" else 1
    if min(h, w) < smallest:
        raise ValueError(f"feature map {feature_map.name!r}: images of {h} x {w} are too small "
                         f"(at least {smallest} x {smallest} for J={feature_map.J})")
    return h, w


def _padded(h: int, w: int, J: int) -> tuple[int, int]:
    """kymatio's padded size (``kymatio.scattering2d.utils.compute_padding``), without importing it."""
    return ((h + 2 ** J) // 2 ** J + 1) * 2 ** J, ((w + 2 ** J) // 2 ** J + 1) * 2 ** J


@lru_cache(maxsize=4)
def _scattering(J: int, L: int, shape: tuple[int, int]) -> tuple[Any, np.ndarray]:
    """kymatio's numpy Scattering2D for these parameters and its per-channel public bounds (built once)."""
    from kymatio.numpy import Scattering2D

    scattering = Scattering2D(J=J, shape=shape, L=L, backend=_fast_backend())
    return scattering, _scatter_bounds(scattering)


def _fast_backend() -> Any:
    """kymatio's numpy backend with a faster ``subsample_fourier`` (same values, bit for bit in our checks).

    kymatio takes the mean over a reshaped complex array, a strided reduction that is 40 % of
    the transform's time; adding the k * k strided views elementwise computes the same sums
    about 3 times faster. Every other operation is kymatio's own.
    """
    from kymatio.scattering2d.backend.numpy_backend import NumpyBackend2D

    class FastNumpyBackend2D(NumpyBackend2D):
        @classmethod
        def subsample_fourier(cls, x, k):
            cls.complex_check(x)
            y = x.reshape(-1, k, x.shape[1] // k, k, x.shape[2] // k)
            out = y[:, 0, :, 0].copy()
            for i in range(k):
                for j in range(k):
                    if i or j:
                        out += y[:, i, :, j]
            out *= 1 / (k * k)
            return out

    return FastNumpyBackend2D


def _scatter_bounds(scattering: Any) -> np.ndarray:
    """Per channel, an upper bound of the scattering coefficient over all images with pixels in [0, 1].

    Derived from the filters alone, so it is public and the same for every party. With x in
    [0, 1] (reflection padding keeps it there) and kymatio's filters on the padded grid:

    - order 0, ``x * phi``: at most P(phi), the sum of phi's positive taps;
    - ``|x * psi|`` at any point: at most B(psi), the largest |<x, psi>| over the box, computed
      exactly: the best x is the indicator of the taps in an open half-plane through 0 (the
      ones with Re(e^{-it} psi_k) > 0 for the optimal direction t), so B is the largest |sum|
      over the 2n half-planes between consecutive boundary crossings (sorted angles, O(n log n));
    - order 1, ``|x * psi1| * phi``: at most B(psi1) P(phi);
    - order 2, ``||x * psi1| * psi2| * phi``: at most B(psi1) B(psi2) P(phi), since
      |x * psi1| lies in [0, B(psi1)].

    Order 0 and the inner modulus are tight; the outer products assume every point at its
    maximum at once, so they are upper bounds. Measured on MNIST's (public) test set, the
    largest coefficient of each channel reaches 11-99 % of its bound: the uint8 grid keeps
    30-250 levels of the range the digits use. Each bound is rounded up to 4 significant
    digits, so the declared numbers are short and do not depend on the last bits of a
    platform's FFT; a value above its bound (float rounding) is clipped.
    """
    def spatial(fourier: np.ndarray) -> np.ndarray:  # a filter's taps on its grid, complex128, flat
        return np.fft.ifft2(np.asarray(fourier, dtype=np.complex128)).ravel()

    def positive(f: np.ndarray) -> float:  # P: the largest <x, f> over x in [0, 1], f real
        return float(np.clip(f.real, 0, None).sum())

    @lru_cache(maxsize=None)
    def modulus(n: int, level: int) -> float:  # B: the largest |<x, f>| over x in [0, 1], f = psi[n] at level
        f = spatial(psi[n]["levels"][level])
        f = f[f != 0]
        f = f[np.argsort(np.angle(f))]
        a, pi = np.angle(f), np.pi
        crossings = np.sort(np.r_[a - pi / 2, a + pi / 2] % (2 * pi))  # where a tap enters or leaves
        mids = (crossings + np.diff(crossings, append=crossings[0] + 2 * pi) / 2) % (2 * pi)
        angles, sums = np.r_[a - 2 * pi, a, a + 2 * pi], np.r_[0, np.cumsum(np.r_[f, f, f])]
        first = np.searchsorted(angles, mids - pi / 2, side="right")
        last = np.searchsorted(angles, mids + pi / 2, side="left")
        return float(np.abs(sums[last] - sums[first]).max())

    phi = [positive(spatial(level)) for level in scattering.phi["levels"]]
    psi = scattering.psi
    bounds = [phi[0]]
    bounds += [modulus(n, 0) * phi[p["j"]] for n, p in enumerate(psi)]
    for n1, p1 in enumerate(psi):
        for n2, p2 in enumerate(psi):
            if p2["j"] > p1["j"]:
                bounds.append(modulus(n1, 0) * modulus(n2, p1["j"]) * phi[p2["j"]])
    return np.array([_round_up(b) for b in bounds], dtype=np.float32)


def _round_up(value: float, digits: int = 4) -> float:
    """``value`` rounded up to ``digits`` significant digits (a bound stays a bound)."""
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return float(f"{math.ceil(value / step) * step:.{digits}g}")
