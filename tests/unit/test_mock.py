import numpy as np

from fedsyft.data import Images
from fedsyft.mock import synthetic_mock


def test_mock_has_the_shapes_dtypes_and_labels_but_no_real_row(small_shards):
    real = small_shards[0]
    mock = synthetic_mock(real, seed=0, rows=None)
    assert mock.X.shape == real.X.shape and mock.X.dtype == real.X.dtype and mock.y.dtype == real.y.dtype
    assert set(np.unique(mock.y)) == set(np.unique(real.y))
    real_rows = {row.tobytes() for row in real.X}
    assert not any(row.tobytes() in real_rows for row in mock.X)


def test_mock_row_count_and_label_set_when_smaller():
    real = Images(np.zeros((50, 784), np.uint8), np.array([3, 5, 7] * 16 + [3, 3]))
    mock = synthetic_mock(real, seed=1, rows=7)
    assert mock.X.shape == (7, 784)
    assert set(mock.y) == {3, 5, 7}


def test_mock_is_seeded():
    real = Images(np.zeros((20, 784), np.uint8), np.arange(20) % 10)
    assert np.array_equal(synthetic_mock(real, 4).X, synthetic_mock(real, 4).X)
    assert not np.array_equal(synthetic_mock(real, 4).X, synthetic_mock(real, 5).X)
