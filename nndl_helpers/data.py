"""The course's data sets: a registry, a verified download cache, and parsers.

Loading a file always goes the same way:

    cache hit (checksum ok)  ->  use it
    otherwise                ->  download from the mirror (if set), then each
                                 canonical URL: into a temp file, verify the
                                 SHA-256, then rename atomically into the cache

Nothing half-written is ever left in the cache: a failed or corrupt download
is deleted, and a cached file whose checksum no longer matches is replaced.

Environment variables
---------------------
``NNDL_DATA_DIR``     where the cache lives (default: ``data/`` in the repository,
                      or ``~/.cache/nndl`` for a non-editable install).
``NNDL_DATA_MIRROR``  a directory, ``file://`` URL or ``http(s)://`` URL laid out
                      like the cache (``mnist/train-images-idx3-ubyte.gz``, ...);
                      tried before the canonical URLs. Tests and CI point it at
                      an offline copy so they exercise this same code path.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

DATA_DIR_ENV = "NNDL_DATA_DIR"
MIRROR_ENV = "NNDL_DATA_MIRROR"
_TIMEOUT_S = 30


class DataError(RuntimeError):
    """A data file could not be obtained or parsed. The message says what to do."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a data set, as it is stored in the cache.

    ``urls`` are the canonical sources. When a source is a zip archive,
    ``zip_member`` names the file inside it, and ``first_lines`` (if set) keeps
    only that many lines of it: the checksum is always that of the final file.
    """

    subdir: str
    name: str
    sha256: str
    urls: tuple[str, ...] = ()
    zip_member: str | None = None
    first_lines: int | None = None
    note: str = ""

    @property
    def relpath(self) -> str:
        return f"{self.subdir}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    license: str

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"data set {self.name!r} has no file {name!r}; it has {[f.name for f in self.files]}")


def _idx_files(subdir: str, sums: dict[str, str], bases: Sequence[str]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(subdir, name, sha, tuple(base + name for base in bases))
        for name, sha in sums.items()
    )


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        "mnist",
        "MNIST handwritten digits: 60,000 train + 10,000 test 28x28 grey images (IDX, gzip)",
        _idx_files(
            "mnist",
            {
                "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            },
            (
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
        ),
        "LeCun, Cortes & Burges; commonly cited as CC BY-SA 3.0",
    ),
    "fashion-mnist": Dataset(
        "fashion-mnist",
        "Fashion-MNIST (Zalando): 10 clothing classes, same format as MNIST",
        _idx_files(
            "fashion-mnist",
            {
                "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            },
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
            ),
        ),
        "MIT, Zalando SE",
    ),
    "tinyshakespeare": Dataset(
        "tinyshakespeare",
        "Tiny Shakespeare (char-rnn): 1,115,394 characters",
        (
            RemoteFile(
                "text",
                "tinyshakespeare.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
            ),
        ),
        "public domain",
    ),
    "timemachine": Dataset(
        "timemachine",
        "H. G. Wells, The Time Machine (the copy Dive into Deep Learning uses)",
        (
            RemoteFile(
                "text",
                "timemachine.txt",
                "8424dbd9532ac81f7e5f0b6add90e6952baea29158309d7d1bf3884f4e12c516",
                ("http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",),
            ),
        ),
        "public domain",
    ),
    "tangshi": Dataset(
        "tangshi",
        "168 Tang poems, simplified Chinese, blank-line separated (NNDL ch6 exercise)",
        (
            RemoteFile(
                "poetry",
                "tangshi.txt",
                "56a5adbd9b60acdf1b712cb7761aaf85688c29c38cefa5b5f0b0be643a6c01eb",
                ("https://raw.githubusercontent.com/nndl/exercise/master/chap6_RNN/tangshi.txt",),
            ),
        ),
        "poems public domain",
    ),
    "quantangshi": Dataset(
        "quantangshi",
        "57,603 poems of the Complete Tang Poems (全唐诗), traditional characters, one 'title:content' a line",
        (
            RemoteFile(
                "poetry",
                "quantangshi.txt.gz",
                "fb0ab5bd06046b7e72fa23010a7631166368a42829e28b0b58b540cdacf244b8",
                (),
                note=(
                    "This file is built from the `chinese-poetry` npm package 2.0.1 "
                    "(dist/quantangshi/poet.tang.*.json, one 'title:content' a line, gzip); "
                    "there is no single canonical download of these exact bytes."
                ),
            ),
            RemoteFile(
                "poetry",
                "LICENSE-chinese-poetry",
                "89c627fc3f9f65efdf438701cc9cc2b5fbf1abf79793c9ec15c05475bd7882cc",
                (),
                note="The MIT licence of the `chinese-poetry` package, shipped beside the corpus.",
            ),
        ),
        "MIT (chinese-poetry); poems public domain",
    ),
    "cmn-eng": Dataset(
        "cmn-eng",
        "29,155 English-Chinese sentence pairs (Tatoeba via manythings.org): en<TAB>zh<TAB>attribution",
        (
            RemoteFile(
                "translation",
                "cmn-eng.txt",
                "aa264a2447b26ab7c9d413f8321f9e2a779fd134b5118306b6e26a3499b3926e",
                ("http://www.manythings.org/anki/cmn-eng.zip",),
                zip_member="cmn.txt",
            ),
        ),
        "CC BY 2.0 FR (keep the attribution column)",
    ),
    "fra-eng": Dataset(
        "fra-eng",
        "The first 10,000 English-French pairs of the set Dive into Deep Learning uses",
        (
            RemoteFile(
                "translation",
                "fra-eng-10k.txt",
                "dbb14af55d48d24f94f1b06dd2be3f66a64248e56a5b62ef89fe16d7635143aa",
                ("http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip",),
                zip_member="fra-eng/fra.txt",
                first_lines=10_000,
            ),
        ),
        "CC BY 2.0 FR",
    ),
}


# --------------------------------------------------------------------------- cache


def data_dir() -> Path:
    """The cache directory (created on first use)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        root = Path(env).expanduser()
    else:
        repo = Path(__file__).resolve().parents[1]
        root = repo / "data" if (repo / "pyproject.toml").exists() else Path.home() / ".cache" / "nndl"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _mirror_url(rf: RemoteFile) -> str | None:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return None
    if "://" not in mirror:  # a plain directory
        return Path(mirror).expanduser().resolve().joinpath(rf.subdir, rf.name).as_uri()
    return mirror.rstrip("/") + "/" + urllib.parse.quote(rf.relpath)


def _sources(rf: RemoteFile) -> list[tuple[str, bool]]:
    """(url, is_final_file) pairs to try, mirror first. A mirror holds final files."""
    out = []
    mirror = _mirror_url(rf)
    if mirror:
        out.append((mirror, True))
    out.extend((u, rf.zip_member is None) for u in rf.urls)
    return out


def _help_text(rf: RemoteFile, target: Path) -> str:
    urls = "\n".join(f"    {u}" for u in rf.urls) or "    (no canonical URL)"
    lines = [
        f"  file:     {rf.relpath}",
        f"  URLs:\n{urls}",
    ]
    mirror = _mirror_url(rf)
    if mirror:
        lines.append(f"  mirror:   {mirror}  (from ${MIRROR_ENV})")
    if rf.note:
        lines.append(f"  note:     {rf.note}")
    lines.append(
        f"  To fix it by hand, put a copy of the file at\n    {target}\n"
        f"  (expected SHA-256 {rf.sha256}), or set ${MIRROR_ENV} to a folder holding {rf.relpath}."
    )
    return "\n".join(lines)


def _download(url: str, dest: Path, desc: str) -> None:
    """Stream ``url`` into ``dest`` with a progress bar. Raises on any failure."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False,
                  disable=total is not None and total < (1 << 20)) as bar:
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise DataError(f"truncated download: got {received} of {total} bytes")


def _unpack(archive: Path, rf: RemoteFile, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(rf.zip_member) as src, open(dest, "wb") as out:
            if rf.first_lines is None:
                shutil.copyfileobj(src, out)
            else:
                for i, line in enumerate(src):
                    if i >= rf.first_lines:
                        break
                    out.write(line)
    except (zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"the archive does not hold {rf.zip_member!r}: {e}") from e


def fetch(dataset: str, filename: str | None = None, *, verbose: bool = True) -> Path:
    """Return the local path of one verified file of ``dataset``, downloading it if needed.

    ``filename`` may be left out for single-file data sets. Raises ``DataError``
    naming the file, the URLs tried and where to put a copy by hand.
    """
    if dataset not in DATASETS:
        raise KeyError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
    ds = DATASETS[dataset]
    if filename is None:
        if len(ds.files) != 1:
            raise ValueError(f"data set {dataset!r} has several files; name one of {[f.name for f in ds.files]}")
        rf = ds.files[0]
    else:
        rf = ds.file(filename)

    target = data_dir() / rf.subdir / rf.name
    if target.exists():
        if sha256_of(target) == rf.sha256:
            return target
        if verbose:
            print(f"{target} fails its checksum (corrupt or truncated); fetching it again")
        target.unlink()

    target.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url, is_final in _sources(rf):
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{rf.name}.", dir=target.parent))
        try:
            raw = tmpdir / "download"
            _download(url, raw, desc=rf.name)
            final = raw
            if not is_final:
                final = tmpdir / "unpacked"
                _unpack(raw, rf, final)
            got = sha256_of(final)
            if got != rf.sha256:
                raise DataError(f"checksum mismatch: expected {rf.sha256}, got {got}")
            os.replace(final, target)  # atomic on one file system
            if verbose:
                print(f"fetched {rf.relpath} from {url}")
            return target
        except (OSError, urllib.error.URLError, DataError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            failures.append(f"    {url}: {reason}")
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    tried = "\n".join(failures) or "    (nowhere: no mirror set and no canonical URL)"
    raise DataError(
        f"could not obtain {rf.relpath} (no usable cached copy; every source failed).\n"
        f"  tried:\n{tried}\n{_help_text(rf, target)}"
    )


def fetch_all(dataset: str) -> list[Path]:
    return [fetch(dataset, f.name) for f in DATASETS[dataset].files]


# --------------------------------------------------------------------------- parsers

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a NumPy array.

    The format is a 4-byte magic number ``0 0 <dtype> <ndim>``, ``ndim`` big-endian
    uint32 dimension sizes, then the raw values in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as e:  # gzip raises these on corrupt or cut-off data
        raise DataError(f"{path}: cannot read it ({e}); the file is corrupt or truncated — delete it and fetch again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header cut off")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: IDX data has {len(raw)} bytes, the header {shape} implies {expected}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def load_mnist(name: str = "mnist", split: str = "train", *, flatten: bool = False,
               normalize: bool = True, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST as ``(X, y)``.

    ``X`` is float32 in [0, 1] (``normalize``) of shape (N, 28, 28), or (N, 784)
    with ``flatten``; ``y`` is int64 of shape (N,). ``limit`` keeps the first N.
    """
    if name not in ("mnist", "fashion-mnist"):
        raise ValueError(f"name must be 'mnist' or 'fashion-mnist', not {name!r}")
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    images = read_idx(fetch(name, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(fetch(name, f"{prefix}-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
        raise DataError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    X = images.astype(np.float32) / 255.0 if normalize else images
    if flatten:
        X = X.reshape(len(X), -1)
    return X, labels.astype(np.int64)


def load_text(name: str) -> str:
    """A whole text corpus as one string: 'tinyshakespeare', 'timemachine' or 'tangshi'."""
    if name not in ("tinyshakespeare", "timemachine", "tangshi"):
        raise ValueError(f"unknown text corpus {name!r}")
    return fetch(name).read_text(encoding="utf-8")


def load_tang_poems(corpus: str = "tangshi") -> list[str]:
    """Tang poems as a list of strings.

    ``'tangshi'``: NNDL's 168 simplified-Chinese poems (blank-line separated).
    ``'quantangshi'``: 57,603 poems, traditional characters; the title is dropped.
    """
    if corpus == "tangshi":
        text = load_text("tangshi")
        return [p.replace("\n", "").strip() for p in text.split("\n\n") if p.strip()]
    if corpus == "quantangshi":
        with gzip.open(fetch("quantangshi", "quantangshi.txt.gz"), "rt", encoding="utf-8") as fh:
            return [line.split(":", 1)[-1].strip() for line in fh if line.strip()]
    raise ValueError(f"corpus must be 'tangshi' or 'quantangshi', not {corpus!r}")


def load_translation_pairs(pair: str = "cmn-eng") -> list[tuple[str, str]]:
    """(source, target) sentence pairs: 'cmn-eng' (English, Chinese) or 'fra-eng' (English, French)."""
    if pair not in ("cmn-eng", "fra-eng"):
        raise ValueError(f"pair must be 'cmn-eng' or 'fra-eng', not {pair!r}")
    text = fetch(pair).read_text(encoding="utf-8-sig")
    pairs = []
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) >= 2:
            pairs.append((cols[0].strip(), cols[1].strip()))
    return pairs


# --------------------------------------------------------------------------- synthetic / bundled


def make_linear_regression(n: int = 100, w=(2.0, -3.4), b: float = 4.2, noise: float = 0.1,
                           rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """y = X w + b + Gaussian noise, X ~ N(0, I). Returns float64 (X: (n, d), y: (n,))."""
    rng = rng or np.random.default_rng(0)
    w = np.asarray(w, dtype=np.float64)
    X = rng.normal(size=(n, len(w)))
    y = X @ w + b + noise * rng.normal(size=n)
    return X, y


def make_sine_regression(n: int = 30, noise: float = 0.2, rng: np.random.Generator | None = None,
                         x_range=(0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """The textbook's curve-fitting example: y = sin(2πx) + noise, x uniform on ``x_range``."""
    rng = rng or np.random.default_rng(0)
    x = np.sort(rng.uniform(*x_range, size=n))
    return x, np.sin(2 * np.pi * x) + noise * rng.normal(size=n)


def make_toy_2d(kind: str = "moons", n: int = 200, noise: float = 0.1,
                rng: np.random.Generator | None = None, n_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """2-D classification toys: 'moons', 'circles', 'xor', 'spiral', 'gaussians', 'blobs'.

    Returns ``X`` float64 (n, 2) and ``y`` int64 (n,). ``blobs`` and ``spiral``
    honour ``n_classes``; the others are binary.
    """
    rng = rng or np.random.default_rng(0)
    if kind == "moons":
        t = rng.uniform(0, np.pi, size=n)
        y = (np.arange(n) % 2).astype(np.int64)
        X = np.where(y[:, None] == 0,
                     np.c_[np.cos(t), np.sin(t)],
                     np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
        X = X + noise * rng.normal(size=X.shape)
    elif kind == "circles":
        y = (np.arange(n) % 2).astype(np.int64)
        t = rng.uniform(0, 2 * np.pi, size=n)
        r = np.where(y == 0, 1.0, 0.5)
        X = np.c_[r * np.cos(t), r * np.sin(t)] + noise * rng.normal(size=(n, 2))
    elif kind == "xor":
        X = rng.uniform(-1, 1, size=(n, 2))
        y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
        X = X + noise * rng.normal(size=X.shape)
    elif kind == "spiral":
        y = (np.arange(n) % n_classes).astype(np.int64)
        r = rng.uniform(0.05, 1.0, size=n)
        t = y * (2 * np.pi / n_classes) + 3.0 * r + noise * rng.normal(size=n)
        X = np.c_[r * np.sin(t), r * np.cos(t)]
    elif kind in ("gaussians", "blobs"):
        k = 2 if kind == "gaussians" else n_classes
        y = (np.arange(n) % k).astype(np.int64)
        centres = np.c_[np.cos(2 * np.pi * np.arange(k) / k), np.sin(2 * np.pi * np.arange(k) / k)] * 1.5
        X = centres[y] + (0.35 + noise) * rng.normal(size=(n, 2))
    else:
        raise ValueError(f"unknown toy data set {kind!r}; use moons, circles, xor, spiral, gaussians or blobs")
    perm = rng.permutation(n)
    return X[perm], y[perm]


def load_diabetes() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled diabetes regression set (442 patients, 10 features); no download."""
    from sklearn.datasets import load_diabetes as _load

    d = _load()
    return d.data.astype(np.float64), d.target.astype(np.float64), list(d.feature_names)


def train_test_split(*arrays: np.ndarray, test_size: float = 0.25,
                     rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Shuffle once and split every array the same way: a_train, a_test, b_train, b_test, ..."""
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays differ in length: {[len(a) for a in arrays]}")
    rng = rng or np.random.default_rng(0)
    perm = rng.permutation(n)
    n_test = int(round(n * test_size))
    test, train = perm[:n_test], perm[n_test:]
    out = []
    for a in arrays:
        out += [a[train], a[test]]
    return out


# --------------------------------------------------------------------------- batching


def minibatches(X: np.ndarray, y: np.ndarray | None = None, batch_size: int = 64, *,
                shuffle: bool = True, rng: np.random.Generator | None = None,
                drop_last: bool = False) -> Iterator:
    """Yield mini-batches ``(X_b, y_b)`` (or ``X_b`` alone if ``y`` is None) over one epoch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(X)
    if y is not None and len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    idx = (rng or np.random.default_rng()).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        b = idx[start:start + batch_size]
        yield (X[b], y[b]) if y is not None else X[b]


def to_tensors(*arrays: np.ndarray, device=None, float_dtype=None):
    """NumPy arrays -> torch tensors on ``device``; floats become ``float_dtype`` (default float32).

    Integer arrays (labels) become int64. Returns one tensor for one array, else a tuple.
    """
    import torch

    float_dtype = float_dtype or torch.float32
    out = []
    for a in arrays:
        t = torch.as_tensor(np.ascontiguousarray(a))
        t = t.to(float_dtype) if t.is_floating_point() else t.long()
        out.append(t.to(device) if device is not None else t)
    return out[0] if len(out) == 1 else tuple(out)
