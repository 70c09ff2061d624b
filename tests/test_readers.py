"""Every data reader refuses a damaged or foreign file in one line naming the file, the line and what was expected."""

import gzip

import numpy as np
import pytest
from scipy.io import savemat

from tfrecog import data

ROW = " ".join(["0", "1"] * 392)


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    ((ROW + "\n" + ROW[:-2] + "\n").encode(), "line 2: expected 784 space-separated 0/1 values, got 783 fields"),
    ((ROW + "\n" + ROW.replace("1", "2", 1) + "\n").encode(), "line 2: expected only 0/1 values, got b'2'"),
    ((ROW + "\r\n").encode(), r"line 1: expected only 0/1 values, got b'1\\r'"),
    (ROW.encode(), "line 1: expected lines of 784 .* each ending in a newline"),
    (ROW.encode("utf-16"), "line 1: expected only 0/1 values"),
    (np.random.default_rng(0).bytes(1568 * 2), "line 1"),
], ids=["empty", "short-line", "digit-2", "crlf", "no-final-newline", "utf16", "random"])
def test_amat(tmp_path, content, expected):
    path = tmp_path / "binarized_mnist_test.amat"
    path.write_bytes(content)
    with pytest.raises(data.DatasetError, match=f"{path}.*{expected}") as err:
        data.read_amat(path)
    assert "\n" not in str(err.value)


def _idx(array):
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()


@pytest.mark.parametrize("content, expected", [
    (b"", "is not an IDX file of unsigned bytes .* got first bytes none"),
    (gzip.compress(_idx(np.zeros((2, 3), np.uint8)))[:-5], "not a complete gzip file"),
    (b"random bytes that are not gzip", "not a complete gzip file"),
    (gzip.compress(b""), "is not an IDX file of unsigned bytes"),
    (gzip.compress(bytes([0, 0, 0x0D, 1]) + b"\0\0\0\1" + b"abcd"), "first bytes 00000d01"),
    (gzip.compress(bytes([0, 0, 8, 3, 0, 0])), "truncated inside its header"),
    (gzip.compress(_idx(np.zeros((2, 3), np.uint8)) + b"x"), r"header says shape \(2, 3\), the body has 7 bytes"),
], ids=["empty", "truncated-gzip", "not-gzip", "empty-idx", "int32-idx", "short-header", "too-long"])
def test_idx(tmp_path, content, expected):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(data.DatasetError, match=expected):
        data.read_idx(path)


def test_idx_with_the_wrong_array_inside(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros((3, 28, 28), np.uint8))))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.array([1, 2, 10], np.uint8))))
    with pytest.raises(data.DatasetError, match="expected 3 digit classes 0..9"):
        data.load("mnist", "test", data_dir=tmp_path)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros((3, 20, 20), np.uint8))))
    with pytest.raises(data.DatasetError, match=r"images of shape \(3, 20, 20\).*expected \[N, 28, 28\]"):
        data.load("mnist", "test", data_dir=tmp_path)


@pytest.mark.parametrize("content, expected", [
    (b"", "holds no documents"),
    (b"1 0:3\n", "line 1: expected 'id:count' with 1 <= id <= 5 and an integer count >= 1, got '0:3'"),
    (b"1 1:1\n1 6:1\n", "line 2: .* got '6:1'"),
    (b"1 2:-1\n", "got '2:-1'"),
    (b"1 2:1.5\n", "got '2:1.5'"),
    (b"1 2:0\n", "got '2:0'"),
    (b"1 2:nan\n", "got '2:nan'"),
    (b"1 2\n", "got '2'"),
    ("1 2:\u0663\n".encode(), "got '2:\u0663'"),  # an Arabic-Indic digit: isdigit() but not a count in this format
    (b"x 2:1\n", "line 1: expected an integer label first, got 'x'"),
    (b"1 2:1\n1 3:\xff\n", "line 2: not UTF-8 text"),
], ids=["empty", "id-0", "id-too-large", "negative", "fraction", "zero", "nan", "no-count", "arabic-digit", "label",
        "latin1"])
def test_bag_of_words(tmp_path, content, expected):
    path = tmp_path / "test.feat"
    path.write_bytes(content)
    with pytest.raises(data.DatasetError, match=f"{path}.*{expected}"):
        data.read_bag_of_words(path, 5)


@pytest.mark.parametrize("write, expected", [
    (lambda p: p.write_bytes(b""), "not a readable MATLAB file"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not a readable MATLAB file"),
    (lambda p: savemat(p, {"xx": np.zeros((560, 1965), np.uint8)}), "holds no 'ff'"),
    (lambda p: savemat(p, {"ff": np.zeros((560, 10), np.uint8)}), r"'ff' of shape \(560, 10\)"),
    (lambda p: savemat(p, {"ff": np.zeros((560, 1965), np.float64) + 0.5}), "float64"),
    (lambda p: savemat(p, {"ff": np.full((560, 1965), 300, np.int32)}), "values in \\[300, 300\\]"),
])
def test_frey(tmp_path, write, expected):
    path = tmp_path / "frey_rawface.mat"
    write(path)
    with pytest.raises(data.DatasetError, match=expected):
        data.read_frey(path)
    full = tmp_path / "f.mat"
    savemat(full, {"ff": np.arange(560 * 1965).reshape(560, 1965).astype(np.uint8)})
    full.write_bytes(full.read_bytes()[:-100])  # truncated
    with pytest.raises(data.DatasetError, match="not a readable MATLAB file"):
        data.read_frey(full)
