"""The data path: registry, verified cache, mirror override, parsers, and every failure mode."""
import gzip
import hashlib
import io
import os
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

import nndl_helpers as nh
from nndl_helpers import data as D

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory and no mirror."""
    d = tmp_path / "cache"
    monkeypatch.setenv(D.DATA_DIR_ENV, str(d))
    monkeypatch.delenv(D.MIRROR_ENV, raising=False)
    return d


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """Register a one-file data set whose canonical URL is a local file."""
    payload = b"hello, verified world\n" * 100
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "toy.txt").write_bytes(payload)
    rf = D.RemoteFile("toys", "toy.txt", sha(payload), ((origin / "toy.txt").as_uri(),))
    monkeypatch.setitem(D.DATASETS, "toy", D.Dataset("toy", "a test file", (rf,), "none"))
    return rf, payload, origin


def leftovers(cache_dir: Path, rf) -> list[str]:
    """Everything in the data set's cache folder: must be empty after a failure."""
    folder = cache_dir / rf.subdir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


# ------------------------------------------------------------------ happy paths


def test_download_verifies_and_caches(cache, toy):
    rf, payload, _ = toy
    path = nh.fetch("toy")
    assert path == cache / "toys" / "toy.txt" and path.read_bytes() == payload
    assert leftovers(cache, rf) == ["toy.txt"]  # no temp files next to it


def test_cache_hit_needs_no_network(cache, toy, monkeypatch):
    nh.fetch("toy")
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    assert nh.fetch("toy").read_bytes() == toy[1]


@pytest.mark.parametrize("as_uri", [False, True], ids=["directory", "file-url"])
def test_mirror_is_tried_first(cache, toy, tmp_path, monkeypatch, as_uri):
    rf, payload, origin = toy
    (origin / "toy.txt").unlink()  # the canonical URL is now dead
    mirror = tmp_path / "mirror"
    (mirror / "toys").mkdir(parents=True)
    (mirror / "toys" / "toy.txt").write_bytes(payload)
    monkeypatch.setenv(D.MIRROR_ENV, mirror.as_uri() if as_uri else str(mirror))
    assert nh.fetch("toy").read_bytes() == payload


def test_zip_member_and_first_lines(cache, tmp_path, monkeypatch):
    lines = [f"line {i}\tligne {i}\n".encode() for i in range(50)]
    wanted = b"".join(lines[:20])
    archive = tmp_path / "pairs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pairs/all.txt", b"".join(lines))
    rf = D.RemoteFile("t", "pairs-20.txt", sha(wanted), (archive.as_uri(),), zip_member="pairs/all.txt",
                      first_lines=20)
    monkeypatch.setitem(D.DATASETS, "pairs", D.Dataset("pairs", "", (rf,), ""))
    assert nh.fetch("pairs").read_bytes() == wanted
    assert leftovers(cache, rf) == ["pairs-20.txt"]


# ------------------------------------------------------------------ failure modes


def assert_helpful(message: str, rf, cache_dir: Path):
    assert rf.relpath in message  # names the file
    for url in rf.urls:  # names every canonical URL
        assert url in message
    assert str(cache_dir / rf.subdir / rf.name) in message  # where to put a copy
    assert rf.sha256 in message


def test_no_network_and_no_cache_is_one_clear_error(cache, toy, monkeypatch):
    rf = toy[0]
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(nh.DataError) as err:
        nh.fetch("toy")
    msg = str(err.value)
    assert_helpful(msg, rf, cache)
    assert "name resolution" in msg  # the underlying reason is kept
    assert leftovers(cache, rf) == []


def test_wrong_checksum_is_rejected_and_nothing_is_kept(cache, toy, monkeypatch):
    rf, payload, origin = toy
    (origin / "toy.txt").write_bytes(payload.replace(b"hello", b"HELLO"))
    with pytest.raises(nh.DataError) as err:
        nh.fetch("toy")
    assert "checksum mismatch" in str(err.value)
    assert_helpful(str(err.value), rf, cache)
    assert leftovers(cache, rf) == []


def test_truncated_source_is_rejected(cache, toy):
    rf, payload, origin = toy
    (origin / "toy.txt").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(nh.DataError, match="checksum mismatch"):
        nh.fetch("toy")
    assert leftovers(cache, rf) == []


class _DyingResponse(io.BytesIO):
    """A response that announces 1 MiB and breaks off after 64 KiB."""

    headers = {"Content-Length": str(1 << 20)}

    def read(self, n=-1):
        if self.tell() >= 1 << 16:
            raise ConnectionResetError("connection reset by peer")
        return super().read(min(n, 1 << 14))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_interrupted_download_leaves_no_partial_file(cache, toy, monkeypatch):
    rf = toy[0]
    monkeypatch.setattr(D.urllib.request, "urlopen", lambda *a, **k: _DyingResponse(b"x" * (1 << 20)))
    with pytest.raises(nh.DataError, match="connection reset"):
        nh.fetch("toy")
    assert leftovers(cache, rf) == []


def test_corrupt_cached_file_is_replaced(cache, toy, capsys):
    rf, payload, _ = toy
    target = cache / rf.subdir / rf.name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    assert nh.fetch("toy").read_bytes() == payload
    assert "fails its checksum" in capsys.readouterr().out


def test_corrupt_cached_file_without_any_source_is_removed(cache, toy, monkeypatch):
    rf = toy[0]
    target = cache / rf.subdir / rf.name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(nh.DataError):
        nh.fetch("toy")
    assert leftovers(cache, rf) == []


def test_file_without_canonical_url_explains_how_to_get_it(cache):
    with pytest.raises(nh.DataError) as err:
        nh.fetch("quantangshi", "quantangshi.txt.gz")
    msg = str(err.value)
    assert "chinese-poetry" in msg and "put a copy of the file at" in msg
    assert str(cache / "poetry" / "quantangshi.txt.gz") in msg


def test_unknown_names_are_clear(cache):
    with pytest.raises(KeyError, match="unknown data set 'mnsit'"):
        nh.fetch("mnsit")
    with pytest.raises(KeyError, match="has no file"):
        nh.fetch("mnist", "train.csv")
    with pytest.raises(ValueError, match="several files"):
        nh.fetch("mnist")


# ------------------------------------------------------------------ IDX reader


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, compress):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype) if dtype != np.uint8 else \
        np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    raw = idx_bytes(arr)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    got = nh.read_idx(path)
    assert got.dtype == dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros((10, 4, 4), np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(nh.DataError, match="cut.gz.*corrupt or truncated"):
        nh.read_idx(path)


def test_read_idx_rejects_wrong_length_and_magic(tmp_path):
    raw = idx_bytes(np.zeros((10, 4, 4), np.uint8))
    (tmp_path / "short.idx").write_bytes(raw[:-3])
    with pytest.raises(nh.DataError, match="short.idx.*truncated or corrupt"):
        nh.read_idx(tmp_path / "short.idx")
    (tmp_path / "bad.idx").write_bytes(b"PK\x03\x04" + raw[4:])
    with pytest.raises(nh.DataError, match="not an IDX file"):
        nh.read_idx(tmp_path / "bad.idx")


# ------------------------------------------------------------------ the real registry, offline

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"offline data mirror not found at {SHARED}")


@needs_shared
def test_every_registered_file_matches_the_mirror(tmp_path, monkeypatch):
    """The registry's checksums are those of the published files (checked against the mirror)."""
    sums = dict(reversed(line.split()) for line in (SHARED / "SHA256SUMS").read_text().splitlines())
    for ds in D.DATASETS.values():
        for rf in ds.files:
            assert sums.get(rf.relpath) == rf.sha256, rf.relpath


@needs_shared
def test_mnist_and_fashion_mnist_load_through_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(D.MIRROR_ENV, str(SHARED))
    X, y = nh.load_mnist("mnist", "test", limit=500)
    assert X.shape == (500, 28, 28) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    Xf, yf = nh.load_mnist("fashion-mnist", "train", flatten=True)
    assert Xf.shape == (60000, 784) and np.bincount(yf).tolist() == [6000] * 10
    assert len(nh.FASHION_MNIST_CLASSES) == 10
    with pytest.raises(ValueError, match="split"):
        nh.load_mnist("mnist", "valid")


@needs_shared
def test_text_corpora_load_through_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(D.MIRROR_ENV, str(SHARED))
    assert len(nh.load_text("tinyshakespeare")) == 1_115_394
    assert "time traveller" in nh.load_text("timemachine").lower()
    poems = nh.load_tang_poems("tangshi")
    assert len(poems) == 168 and all("\n" not in p for p in poems)
    assert len(nh.load_tang_poems("quantangshi")) == 57_603
    zh = nh.load_translation_pairs("cmn-eng")
    assert len(zh) == 29_155 and zh[0][0] == "Hi."  # the byte-order mark is stripped
    fr = nh.load_translation_pairs("fra-eng")
    assert len(fr) == 10_000 and fr[0] == ("Go.", "Va !")


# ------------------------------------------------------------------ synthetic data and batching


@pytest.mark.parametrize("kind", ["moons", "circles", "xor", "spiral", "gaussians", "blobs"])
def test_toy_sets_are_balanced_and_reproducible(kind):
    X, y = nh.make_toy_2d(kind, n=300, rng=np.random.default_rng(5))
    X2, y2 = nh.make_toy_2d(kind, n=300, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(X, X2)
    assert X.shape == (300, 2) and y.shape == (300,)
    counts = np.bincount(y)
    assert counts.min() >= 0.3 * counts.max()


def test_toy_unknown_kind():
    with pytest.raises(ValueError, match="unknown toy data set 'swirl'"):
        nh.make_toy_2d("swirl")


def test_regression_generators():
    X, y = nh.make_linear_regression(n=2000, w=(2.0, -3.4), b=4.2, noise=0.01)
    w_hat = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]
    np.testing.assert_allclose(w_hat, [2.0, -3.4, 4.2], atol=1e-2)
    x, t = nh.make_sine_regression(n=25)
    assert x.shape == t.shape == (25,) and np.all(np.diff(x) >= 0)
    Xd, yd, names = nh.load_diabetes()
    assert Xd.shape == (442, 10) and yd.shape == (442,) and len(names) == 10


def test_train_test_split_keeps_rows_together():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    Xtr, Xte, ytr, yte = nh.train_test_split(X, y, test_size=0.3)
    assert len(Xte) == 3 and len(Xtr) == 7
    np.testing.assert_array_equal(Xtr[:, 0] // 2, ytr)
    assert sorted(np.r_[ytr, yte].tolist()) == list(range(10))
    with pytest.raises(ValueError, match="differ in length"):
        nh.train_test_split(X, y[:5])


def test_minibatches_cover_each_row_once():
    X, y = np.arange(23)[:, None], np.arange(23)
    batches = list(nh.minibatches(X, y, batch_size=5, rng=np.random.default_rng(0)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23)) and not np.array_equal(seen, np.arange(23))
    assert all(np.array_equal(bx[:, 0], by) for bx, by in batches)
    assert len(list(nh.minibatches(X, y, 5, drop_last=True))) == 4
    assert np.array_equal(next(nh.minibatches(X, batch_size=4, shuffle=False))[:, 0], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="batch_size"):
        next(nh.minibatches(X, y, 0))
    with pytest.raises(ValueError, match="y has 3"):
        next(nh.minibatches(X, y[:3], 4))


def test_to_tensors_types_and_device():
    import torch

    X = np.zeros((4, 3), dtype=np.float64)
    y = np.arange(4, dtype=np.int32)
    tX, ty = nh.to_tensors(X, y, device="cpu")
    assert tX.dtype == torch.float32 and ty.dtype == torch.int64 and tX.device.type == "cpu"
    assert nh.to_tensors(X).shape == (4, 3)
