"""The data path: registry, verified cache, mirror override, builders, parsers, and every failure mode."""
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import tarfile
import threading
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import nndl_helpers as nh
from nndl_helpers import build_quantangshi as BQ
from nndl_helpers import data as D

# The offline copy of the data sets that the tests of the real registry and loaders read:
# $NNDL_DATA_MIRROR (a folder laid out like data/, or a file:// or http(s):// URL of one),
# else ../shared/data beside the repository. Read once, before any fixture unsets it.
DEFAULT_MIRROR = Path(__file__).resolve().parents[3] / "shared" / "data"
MIRROR = os.environ.get(D.MIRROR_ENV, "").strip() or (str(DEFAULT_MIRROR) if DEFAULT_MIRROR.is_dir() else None)
needs_mirror = pytest.mark.skipif(
    MIRROR is None,
    reason=(
        f"needs an offline copy of the data sets: set {D.MIRROR_ENV} to a folder laid out like data/ "
        f"(mnist/, fashion-mnist/, text/, poetry/, translation/) or to a file:// or http(s):// URL of one, "
        f"e.g. {D.MIRROR_ENV}=/path/to/shared/data pytest tests/unit/test_data.py ({DEFAULT_MIRROR} does not exist)"
    ),
)


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


def register(monkeypatch, rf, name="toy"):
    """Register a one-file data set ``name`` made of ``rf``."""
    monkeypatch.setitem(D.DATASETS, name, D.Dataset(name, "a test file", (rf,), "none"))
    return rf


@pytest.fixture
def opened(monkeypatch):
    """The URLs the data path opens, in order; the real opener still serves them."""
    urls = []
    real = urllib.request.urlopen

    def recording(url, *args, **kwargs):
        urls.append(url if isinstance(url, str) else url.full_url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(D.urllib.request, "urlopen", recording)
    return urls


def leftovers(cache_dir: Path, rf) -> list[str]:
    """Everything in the data set's cache folder: must be empty after a failure."""
    folder = cache_dir / rf.subdir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def corrupt_cache_file(cache_dir: Path, rf) -> Path:
    """Put a file that fails its checksum where the cache keeps ``rf``; return its path."""
    target = cache_dir / rf.relpath
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    return target


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


class _Response(io.BytesIO):
    """A fake HTTP response: ``headers``, context manager, and ``read`` that may fail."""

    def __init__(self, payload: bytes, *, length=None, fail_after=None, error=None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload) if length is None else length)}
        self.fail_after, self.error = fail_after, error

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.error
        return super().read(min(n, 1 << 14) if n and n > 0 else n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


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
def test_mirror_is_tried_first(cache, toy, tmp_path, monkeypatch, opened, as_uri):
    rf, payload, origin = toy
    canonical = rf.urls[0]
    mirror = tmp_path / "mirror"
    (mirror / "toys").mkdir(parents=True)
    (mirror / "toys" / "toy.txt").write_bytes(payload)
    mirror_file = (mirror / "toys" / "toy.txt").as_uri()
    monkeypatch.setenv(D.MIRROR_ENV, mirror.as_uri() if as_uri else str(mirror))

    # Both sources hold a good copy: only the mirror may be opened.
    assert nh.fetch("toy").read_bytes() == payload
    assert opened == [mirror_file]

    # The mirror lacks the file: it is still opened first, then the canonical URL.
    (cache / rf.relpath).unlink()
    (mirror / "toys" / "toy.txt").unlink()
    opened.clear()
    assert nh.fetch("toy").read_bytes() == payload
    assert opened == [mirror_file, canonical]


def test_zip_member_and_first_lines(cache, tmp_path, monkeypatch):
    lines = [f"line {i}\tligne {i}\n".encode() for i in range(50)]
    wanted = b"".join(lines[:20])
    archive = tmp_path / "pairs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pairs/all.txt", b"".join(lines))
    rf = D.RemoteFile("t", "pairs-20.txt", sha(wanted), (archive.as_uri(),), zip_member="pairs/all.txt",
                      first_lines=20)
    register(monkeypatch, rf, "pairs")
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


def test_interrupted_download_leaves_no_partial_file(cache, toy, monkeypatch):
    rf = toy[0]

    def dying(*args, **kwargs):  # announces 1 MiB, breaks off after 64 KiB
        return _Response(b"x" * (1 << 20), fail_after=1 << 16, error=ConnectionResetError("connection reset by peer"))

    monkeypatch.setattr(D.urllib.request, "urlopen", dying)
    with pytest.raises(nh.DataError, match="connection reset"):
        nh.fetch("toy")
    assert leftovers(cache, rf) == []


# What one source can throw: each must send fetch on to the next source. ``at_open``
# errors come from urlopen itself, the others while the body is read.
SOURCE_FAILURES = {
    "IncompleteRead": (False, http.client.IncompleteRead(b"x" * 100, 900), "IncompleteRead(100 bytes read"),
    "InvalidURL": (True, http.client.InvalidURL("nonnumeric port: 'x'"), "InvalidURL: nonnumeric port"),
    "zlib.error": (False, zlib.error("Error -3 while decompressing data: invalid block type"), "invalid block type"),
    "ValueError": (True, ValueError("unknown url type: 'mirror/toy.txt'"), "unknown url type"),
    "OSError": (True, OSError(28, "No space left on device"), "No space left on device"),
    "HTTP 503": (True, urllib.error.HTTPError("x", 503, "Service Unavailable", {}, None), "HTTP 503"),
    "RuntimeError": (False, RuntimeError("something nobody expected"), "something nobody expected"),
}


@pytest.mark.parametrize("failure", list(SOURCE_FAILURES))
def test_any_failure_of_one_source_moves_on_to_the_next(cache, toy, monkeypatch, failure):
    rf, payload, _ = toy
    at_open, error, reason = SOURCE_FAILURES[failure]
    broken = "https://broken.example/toy.txt"
    rf = register(monkeypatch, D.RemoteFile("toys", "toy.txt", rf.sha256, (broken,) + rf.urls))
    real = urllib.request.urlopen
    opened = []

    def opener(url, *args, **kwargs):
        opened.append(url)
        if url != broken:
            return real(url, *args, **kwargs)
        if at_open:
            raise error
        return _Response(payload, fail_after=1 << 10, error=error)

    monkeypatch.setattr(D.urllib.request, "urlopen", opener)
    assert nh.fetch("toy").read_bytes() == payload
    assert opened == [broken, rf.urls[1]]
    assert leftovers(cache, rf) == ["toy.txt"]

    # With no good source left, the same failure is named in the one final error.
    (cache / rf.relpath).unlink()
    rf = register(monkeypatch, D.RemoteFile("toys", "toy.txt", rf.sha256, (broken,)))
    with pytest.raises(nh.DataError) as err:
        nh.fetch("toy")
    assert reason in str(err.value) and broken in str(err.value)
    assert leftovers(cache, rf) == []


def test_when_every_source_fails_the_error_lists_each_and_why(cache, toy, tmp_path, monkeypatch):
    rf, payload, origin = toy
    (origin / "toy.txt").write_bytes(b"not the right bytes")
    incomplete = "https://cut-off.example/toy.txt"
    urls = (
        incomplete,                         # http.client.IncompleteRead while reading
        "http://localhost:notaport/toy.txt",  # a real http.client.InvalidURL, raised before any connection
        "no-scheme/toy.txt",                # a real ValueError: unknown url type
        rf.urls[0],                         # serves the wrong bytes: checksum mismatch
    )
    tarball = tmp_path / "input.tgz"
    tarball.write_bytes(b"whatever")
    builder = D.Builder(tarball.as_uri(), "sha512-" + "A" * 86 + "==", "nndl_helpers.build_quantangshi:build",
                        "python -m nndl_helpers.build_quantangshi")
    rf = register(monkeypatch, D.RemoteFile("toys", "toy.txt", rf.sha256, urls, builder=builder))
    monkeypatch.setenv(D.MIRROR_ENV, str(tmp_path / "empty-mirror"))
    real = urllib.request.urlopen

    def opener(url, *args, **kwargs):
        if url == incomplete:
            return _Response(payload, fail_after=100, error=http.client.IncompleteRead(b"x" * 100, 2100))
        return real(url, *args, **kwargs)

    monkeypatch.setattr(D.urllib.request, "urlopen", opener)
    with pytest.raises(nh.DataError) as err:
        nh.fetch("toy")
    msg = str(err.value)
    assert_helpful(msg, rf, cache)
    tried = msg.split("  tried:\n", 1)[1].split("\n  file:", 1)[0]
    expected = [
        ("mirror " + (tmp_path / "empty-mirror" / "toys" / "toy.txt").as_uri(), "No such file or directory"),
        (urls[0], "IncompleteRead(100 bytes read, 2100 more expected)"),
        (urls[1], "InvalidURL: nonnumeric port"),
        (urls[2], "unknown url type"),
        (urls[3], "checksum mismatch"),
        ("build from " + tarball.as_uri(), "integrity mismatch"),
    ]
    positions = []
    for source, reason in expected:
        assert source in tried, source
        block = tried.split(source, 1)[1].split("\n    ", 2)[1]  # the "-> reason" line under it
        assert reason in block, (source, block)
        positions.append(tried.index(source))
    assert positions == sorted(positions)  # listed in the order tried
    assert "python -m nndl_helpers.build_quantangshi" in msg  # how to run the builder by hand
    assert leftovers(cache, rf) == []


def test_a_file_with_no_source_at_all_says_so(cache, monkeypatch):
    rf = register(monkeypatch, D.RemoteFile("toys", "orphan.txt", "0" * 64))
    with pytest.raises(nh.DataError) as err:
        nh.fetch("toy")
    assert "nowhere: no mirror set, no canonical URL and no builder" in str(err.value)
    assert str(cache / rf.relpath) in str(err.value)


def zip_with(member: str, payload: bytes, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr(member, payload)
    return buf.getvalue()


def damage_member_data(archive: bytes, fill: bytes = None) -> bytes:
    """Overwrite the (compressed) data of the archive's only member; headers stay intact."""
    info = zipfile.ZipFile(io.BytesIO(archive)).infolist()[0]
    start = info.header_offset
    name_len, extra_len = int.from_bytes(archive[start + 26:start + 28], "little"), \
        int.from_bytes(archive[start + 28:start + 30], "little")
    data_at = start + 30 + name_len + extra_len
    size = info.compress_size
    if fill is None:  # flip one byte in the middle: the CRC no longer matches
        mid = data_at + size // 2
        return archive[:mid] + bytes([archive[mid] ^ 0xFF]) + archive[mid + 1:]
    return archive[:data_at] + (fill * size)[:size] + archive[data_at + size:]


PAIRS = b"".join(f"sentence {i}\tphrase {i}\n".encode() for i in range(200))


@pytest.mark.parametrize("damage, cause", [
    # a stored member with one byte flipped: zipfile's CRC check fails
    (lambda: damage_member_data(zip_with("pairs.txt", PAIRS, zipfile.ZIP_STORED)), "Bad CRC-32"),
    # deflate data overwritten with 0xFF (an invalid block type): zlib fails
    (lambda: damage_member_data(zip_with("pairs.txt", PAIRS), fill=b"\xff"), "zlib.error: Error -3"),
    # a cut-off download: the central directory is gone
    (lambda: zip_with("pairs.txt", PAIRS)[:-30], "not a readable zip file"),
], ids=["crc", "deflate-data", "truncated"])
def test_a_corrupt_archive_is_named_as_corrupt_and_the_next_url_is_tried(
        cache, tmp_path, monkeypatch, damage, cause):
    bad, good = tmp_path / "bad" / "pairs.zip", tmp_path / "good" / "pairs.zip"
    for path, content in ((bad, damage()), (good, zip_with("pairs.txt", PAIRS))):
        path.parent.mkdir()
        path.write_bytes(content)
    rf = register(monkeypatch, D.RemoteFile("t", "pairs.txt", sha(PAIRS), (bad.as_uri(), good.as_uri()),
                                            zip_member="pairs.txt"), "pairs")
    assert nh.fetch("pairs").read_bytes() == PAIRS

    (cache / rf.relpath).unlink()
    register(monkeypatch, D.RemoteFile("t", "pairs.txt", sha(PAIRS), (bad.as_uri(),), zip_member="pairs.txt"),
             "pairs")
    with pytest.raises(nh.DataError) as err:
        nh.fetch("pairs")
    msg = str(err.value)
    assert "the archive pairs.zip is corrupt" in msg and cause in msg
    assert "does not hold" not in msg
    assert leftovers(cache, rf) == []


def test_a_missing_archive_member_is_named_as_missing(cache, tmp_path, monkeypatch):
    archive = tmp_path / "pairs.zip"
    archive.write_bytes(zip_with("other.txt", PAIRS))
    register(monkeypatch, D.RemoteFile("t", "pairs.txt", sha(PAIRS), (archive.as_uri(),), zip_member="pairs.txt"),
             "pairs")
    with pytest.raises(nh.DataError, match=r"the archive pairs.zip does not hold 'pairs.txt' \(it holds: other.txt\)"):
        nh.fetch("pairs")


def test_corrupt_cached_file_is_replaced(cache, toy, capsys):
    rf, payload, _ = toy
    corrupt_cache_file(cache, rf)
    assert nh.fetch("toy").read_bytes() == payload
    assert "fails its checksum" in capsys.readouterr().out


def test_corrupt_cached_file_without_any_source_is_removed(cache, toy, monkeypatch):
    rf = toy[0]
    corrupt_cache_file(cache, rf)
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(nh.DataError):
        nh.fetch("toy")
    assert leftovers(cache, rf) == []


def test_the_cache_only_ever_holds_the_old_file_or_the_verified_new_one(cache, toy, monkeypatch):
    """The download goes to a temp file beside the cache and is renamed over the old one."""
    rf, payload, _ = toy
    target = corrupt_cache_file(cache, rf)
    seen_during_download = []
    renames = []
    real_replace = os.replace

    class Watching(_Response):
        def read(self, n=-1):
            seen_during_download.append(target.read_bytes())
            return super().read(n)

    def replace(src, dst):
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(D.urllib.request, "urlopen", lambda *a, **k: Watching(payload))
    monkeypatch.setattr(D.os, "replace", replace)
    assert nh.fetch("toy").read_bytes() == payload
    assert seen_during_download and set(seen_during_download) == {b"garbage"}
    ((src, dst),) = renames
    assert dst == target and src.parent.parent == target.parent  # same folder, so same file system
    assert leftovers(cache, rf) == ["toy.txt"]


# ------------------------------------------------------------------ two processes, one cache


def test_a_bad_cached_file_deleted_by_someone_else_is_no_error(cache, toy, monkeypatch):
    """Another kernel removes the corrupt file right after we checked it: no FileNotFoundError."""
    rf = toy[0]
    corrupt_cache_file(cache, rf)
    real_check = D._check_cached

    def check_then_lose_it(path, entry):
        result = real_check(path, entry)
        path.unlink(missing_ok=True)  # the other kernel's clean-up
        return result

    monkeypatch.setattr(D, "_check_cached", check_then_lose_it)
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(nh.DataError, match="name resolution"):
        nh.fetch("toy")
    assert leftovers(cache, rf) == []


def test_removing_a_bad_file_tolerates_it_vanishing_first(cache, toy, monkeypatch):
    """The unlink itself loses the race: the file is gone by the time we delete it."""
    rf = toy[0]
    target = corrupt_cache_file(cache, rf)
    real_unlink = Path.unlink
    unlinked = []

    def unlink_after_someone_else(self, missing_ok=False):
        if self == target:
            unlinked.append(missing_ok)
            os.remove(self)  # the other kernel gets there first
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink_after_someone_else)
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(nh.DataError, match="name resolution"):
        nh.fetch("toy")
    assert unlinked == [True] and not target.exists()


def test_a_good_copy_put_there_meanwhile_is_kept_and_used(cache, toy, monkeypatch):
    """Our sources fail, but another kernel has just renamed a verified copy into place."""
    rf, payload, _ = toy
    corrupt_cache_file(cache, rf)
    real_check = D._check_cached
    calls = []

    def check(path, entry):
        result = real_check(path, entry)
        if not calls:  # after our first look, the other kernel replaces the file
            fresh = path.with_name(".other-kernel")
            fresh.write_bytes(payload)
            os.replace(fresh, path)
        calls.append(result[0])
        return result

    monkeypatch.setattr(D, "_check_cached", check)
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    assert nh.fetch("toy").read_bytes() == payload
    assert calls == [False, True] and leftovers(cache, rf) == ["toy.txt"]


@pytest.mark.parametrize("network", [True, False], ids=["sources-work", "no-source"])
def test_two_fetches_of_the_same_corrupt_file_at_once(cache, toy, monkeypatch, network):
    """Two threads find the same corrupt cache file at the same moment, then both recover."""
    rf, payload, _ = toy
    corrupt_cache_file(cache, rf)
    both_checked = threading.Barrier(2, timeout=10)
    real_check = D._check_cached
    first_look = set()

    def check(path, entry):
        result = real_check(path, entry)
        if threading.get_ident() not in first_look:  # meet only after the first look
            first_look.add(threading.get_ident())
            both_checked.wait()
        return result

    monkeypatch.setattr(D, "_check_cached", check)
    if not network:
        monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    outcomes = []

    def run():
        try:
            outcomes.append(nh.fetch("toy", verbose=False).read_bytes())
        except Exception as e:  # noqa: BLE001 - the test looks at what was raised
            outcomes.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if network:
        assert outcomes == [payload, payload]
        assert leftovers(cache, rf) == ["toy.txt"]
    else:
        assert len(outcomes) == 2 and all(isinstance(e, nh.DataError) for e in outcomes), outcomes
        assert leftovers(cache, rf) == []


def test_unknown_names_are_clear(cache):
    with pytest.raises(KeyError, match="unknown data set 'mnsit'"):
        nh.fetch("mnsit")
    with pytest.raises(KeyError, match="has no file"):
        nh.fetch("mnist", "train.csv")
    with pytest.raises(ValueError, match="several files"):
        nh.fetch("mnist")


def test_files_requested_matches_what_the_loaders_fetch(cache, monkeypatch):
    """``files_requested`` answers without fetching, and agrees with the loaders' real fetches."""
    asked = []

    def recording_fetch(dataset, filename=None, **_):
        asked.append((dataset, filename))
        raise nh.DataError("stop here")

    monkeypatch.setattr(D, "fetch", recording_fetch)
    calls = [
        ("load_text", ("timemachine",), {}),
        ("load_tang_poems", (), {"corpus": "quantangshi"}),
        ("load_translation_pairs", ("fra-eng",), {}),
        ("load_mnist", ("fashion-mnist",), {"split": "test", "limit": 5}),
    ]
    for loader, args, kwargs in calls:
        asked.clear()
        with pytest.raises(nh.DataError, match="stop here"):
            getattr(D, loader)(*args, **kwargs)
        assert asked[0] == D.files_requested(loader, *args, **kwargs)[0]
    assert D.files_requested("load_mnist", split="test") == [
        ("mnist", "t10k-images-idx3-ubyte.gz"), ("mnist", "t10k-labels-idx1-ubyte.gz")]
    assert D.files_requested("fetch_all", "quantangshi") == [
        ("quantangshi", "quantangshi.txt.gz"), ("quantangshi", "LICENSE-chinese-poetry")]
    with pytest.raises(ValueError, match="corpus must be"):
        D.files_requested("load_tang_poems", "songci")
    with pytest.raises(KeyError, match="not a loader"):
        D.files_requested("load_diabetes")


# ------------------------------------------------------------------ builders (chinese-poetry -> quantangshi)


def tarball_bytes(members: dict) -> bytes:
    """A .tgz laid out like an npm package: {path inside: bytes or JSON-able object}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            raw = content if isinstance(content, bytes) else json.dumps(content, ensure_ascii=False).encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def poem(title, *lines):
    return {"author": "某", "title": title, "paragraphs": list(lines), "id": title}


SMALL_PACKAGE = {
    "package/package.json": {"name": "chinese-poetry", "version": "2.0.1"},
    "package/LICENSE": b"\nThe MIT License (MIT)\n\nCopyright (c) 2016 JackeyGao\n",
    # numeric order is 0, 200, 1000; as text it would be 0, 1000, 200
    "package/dist/quantangshi/poet.tang.1000.json": [poem("丙", "床前明月光，", "疑是地上霜。")],
    "package/dist/quantangshi/poet.tang.0.json": [poem("甲 一", "春眠不覺曉，"), poem("無文"), poem("甲 二", "處處聞啼鳥。")],
    "package/dist/quantangshi/poet.tang.200.json": [poem("乙", "白日依山盡，", "黃河入海流。")],
    "package/dist/quantangshi/error/poet.tang.0.json": [poem("錯", "不要我。")],
    "package/dist/quantangshi/唐诗三百首.json": [poem("選", "也不要我。")],
    "package/dist/songci/ci.song.0.json": [poem("詞", "更不要我。")],
}
SMALL_CORPUS = "甲 一:春眠不覺曉，\n甲 二:處處聞啼鳥。\n乙:白日依山盡，黃河入海流。\n丙:床前明月光，疑是地上霜。\n".encode()


@pytest.fixture
def small_package(tmp_path, monkeypatch):
    """A synthetic chinese-poetry tarball, and a 'quantangshi' registry entry built from it."""
    tgz = tmp_path / "npm" / "chinese-poetry-2.0.1.tgz"
    tgz.parent.mkdir()
    tgz.write_bytes(tarball_bytes(SMALL_PACKAGE))
    real = D.DATASETS["quantangshi"].files
    builder = D.Builder(tgz.as_uri(), "sha512-" + base64.b64encode(
        hashlib.sha512(tgz.read_bytes()).digest()).decode(), real[0].builder.function, real[0].builder.command)
    files = (
        D.RemoteFile("poetry", "quantangshi.txt.gz", sha(SMALL_CORPUS), builder=builder, sha256_of_gunzipped=True),
        D.RemoteFile("poetry", "LICENSE-chinese-poetry", sha(SMALL_PACKAGE["package/LICENSE"]), builder=builder),
    )
    monkeypatch.setitem(D.DATASETS, "quantangshi", D.Dataset("quantangshi", "small", files, "MIT"))
    return tgz, files


def test_builder_layout(tmp_path):
    tgz = tmp_path / "p.tgz"
    tgz.write_bytes(tarball_bytes(SMALL_PACKAGE))
    text, licence = BQ.corpus_text(tgz)
    assert text == SMALL_CORPUS and licence == SMALL_PACKAGE["package/LICENSE"]


def test_builder_is_reproducible(tmp_path):
    tgz = tmp_path / "p.tgz"
    tgz.write_bytes(tarball_bytes(SMALL_PACKAGE))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = BQ.build(tgz, tmp_path / "a"), BQ.build(tgz, tmp_path / "b")
    assert [p.name for p in a] == ["quantangshi.txt.gz", "LICENSE-chinese-poetry"]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    gz = a[0].read_bytes()
    assert gz[4:8] == b"\0\0\0\0" and b"quantangshi.txt\0" in gz[:32]  # no timestamp; the inner name
    assert gzip.decompress(gz) == SMALL_CORPUS


def test_builder_rejects_a_tarball_without_poems(tmp_path):
    tgz = tmp_path / "p.tgz"
    tgz.write_bytes(tarball_bytes({"package/LICENSE": b"MIT"}))
    with pytest.raises(nh.DataError, match="no .*poet.*in it"):
        BQ.corpus_text(tgz)


def test_fetch_builds_the_corpus_when_no_copy_exists(cache, small_package, opened, capsys):
    tgz, files = small_package
    assert nh.load_tang_poems("quantangshi") == ["春眠不覺曉，", "處處聞啼鳥。", "白日依山盡，黃河入海流。",
                                                 "床前明月光，疑是地上霜。"]
    # the licence came from the same build: fetching it downloads nothing more
    assert nh.fetch("quantangshi", "LICENSE-chinese-poetry").read_bytes() == SMALL_PACKAGE["package/LICENSE"]
    assert opened == [tgz.as_uri()]
    assert f"built poetry/quantangshi.txt.gz from {tgz.as_uri()}" in capsys.readouterr().out
    assert leftovers(cache, files[0]) == ["LICENSE-chinese-poetry", "quantangshi.txt.gz"]


def test_a_built_corpus_is_checked_by_its_gunzipped_text(cache, small_package):
    """Different .gz bytes of the same text are accepted; a different text is not."""
    _, files = small_package
    target = cache / files[0].relpath
    target.parent.mkdir(parents=True)
    target.write_bytes(gzip.compress(SMALL_CORPUS, compresslevel=1, mtime=12345))
    assert nh.fetch("quantangshi", "quantangshi.txt.gz") == target
    assert D.checksum(target, files[0]) == files[0].sha256
    (cache / "bad.gz").write_bytes(gzip.compress(SMALL_CORPUS + b"x"))
    assert D.checksum(cache / "bad.gz", files[0]) != files[0].sha256
    (cache / "cut.gz").write_bytes(target.read_bytes()[:-20])
    with pytest.raises(nh.DataError, match="not a valid gzip file"):
        D.checksum(cache / "cut.gz", files[0])


def test_the_mirror_comes_before_the_builder(cache, small_package, tmp_path, monkeypatch, opened):
    tgz, files = small_package
    mirror = tmp_path / "mirror"
    (mirror / "poetry").mkdir(parents=True)
    (mirror / "poetry" / "quantangshi.txt.gz").write_bytes(gzip.compress(SMALL_CORPUS))
    monkeypatch.setenv(D.MIRROR_ENV, str(mirror))
    nh.fetch("quantangshi", "quantangshi.txt.gz")
    assert opened == [(mirror / "poetry" / "quantangshi.txt.gz").as_uri()]
    # the mirror has no licence: the builder is the next source
    nh.fetch("quantangshi", "LICENSE-chinese-poetry")
    assert opened[1:] == [(mirror / "poetry" / "LICENSE-chinese-poetry").as_uri(), tgz.as_uri()]


def test_a_tarball_that_fails_its_integrity_hash_is_not_built(cache, small_package, monkeypatch):
    tgz, files = small_package
    tgz.write_bytes(tarball_bytes({**SMALL_PACKAGE, "package/extra.txt": b"tampered"}))
    with pytest.raises(nh.DataError) as err:
        nh.load_tang_poems("quantangshi")
    assert "integrity mismatch: expected sha512-" in str(err.value)
    assert leftovers(cache, files[0]) == []


def test_build_command_offline_from_a_local_tarball(cache, small_package, tmp_path, capsys):
    tgz, files = small_package
    assert BQ.main(["--tarball", str(tgz)]) == 0
    assert nh.load_tang_poems("quantangshi")[0] == "春眠不覺曉，"
    assert "built and verified" in capsys.readouterr().out
    # into another folder; a tarball other than the pinned one writes nothing
    assert BQ.main(["--tarball", str(tgz), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["LICENSE-chinese-poetry", "quantangshi.txt.gz"]
    other = tmp_path / "other.tgz"
    other.write_bytes(tarball_bytes({**SMALL_PACKAGE, "package/dist/quantangshi/poet.tang.0.json": []}))
    assert BQ.main(["--tarball", str(other), "--out", str(tmp_path / "out2")]) == 1
    assert "integrity mismatch" in capsys.readouterr().err
    assert list((tmp_path / "out2").iterdir()) == []


def test_no_copy_and_no_network_explains_the_builder(cache, monkeypatch):
    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(nh.DataError) as err:
        nh.fetch("quantangshi", "quantangshi.txt.gz")
    msg = str(err.value)
    assert "build from https://registry.npmjs.org/chinese-poetry/-/chinese-poetry-2.0.1.tgz" in msg
    assert "python -m nndl_helpers.build_quantangshi" in msg and "name resolution" in msg
    assert "put a copy of the file at" in msg and str(cache / "poetry" / "quantangshi.txt.gz") in msg


@pytest.mark.skipif(not os.environ.get("NNDL_TEST_CHINESE_POETRY_TGZ"),
                    reason="set NNDL_TEST_CHINESE_POETRY_TGZ to a copy of chinese-poetry-2.0.1.tgz "
                           "(`npm pack chinese-poetry@2.0.1`) to build the real corpus")
def test_the_real_tarball_builds_the_registered_corpus(tmp_path):
    paths = BQ.build_into(os.environ["NNDL_TEST_CHINESE_POETRY_TGZ"], tmp_path)  # verifies every file
    with gzip.open(paths[0], "rt", encoding="utf-8") as fh:
        assert sum(1 for _ in fh) == 57_603


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


def mirror_bytes(rf) -> bytes:
    """The mirror's copy of ``rf``, read through its URL (a folder, file:// or http(s)://)."""
    url = (Path(MIRROR).expanduser().resolve() / rf.relpath).as_uri() if "://" not in MIRROR \
        else MIRROR.rstrip("/") + "/" + rf.relpath
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


ALL_FILES = [rf for ds in D.DATASETS.values() for rf in ds.files]


@needs_mirror
@pytest.mark.parametrize("rf", ALL_FILES, ids=[rf.relpath for rf in ALL_FILES])
def test_every_registered_file_matches_the_mirror(rf):
    """The registry's checksums are those of the published files (checked against the mirror)."""
    raw = mirror_bytes(rf)
    # computed here, independently of D.checksum
    assert sha(gzip.decompress(raw) if rf.sha256_of_gunzipped else raw) == rf.sha256
    sums_file = Path(MIRROR) / "SHA256SUMS"
    if "://" not in MIRROR and sums_file.is_file() and not rf.sha256_of_gunzipped:
        sums = dict(reversed(line.split()) for line in sums_file.read_text().splitlines() if line.strip())
        assert sums.get(rf.relpath) == rf.sha256


@needs_mirror
def test_mnist_and_fashion_mnist_load_through_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(D.MIRROR_ENV, MIRROR)
    X, y = nh.load_mnist("mnist", "test", limit=500)
    assert X.shape == (500, 28, 28) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    Xf, yf = nh.load_mnist("fashion-mnist", "train", flatten=True)
    assert Xf.shape == (60000, 784) and np.bincount(yf).tolist() == [6000] * 10
    assert len(nh.FASHION_MNIST_CLASSES) == 10
    with pytest.raises(ValueError, match="split"):
        nh.load_mnist("mnist", "valid")


@needs_mirror
def test_text_corpora_load_through_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(D.MIRROR_ENV, MIRROR)
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
