"""The course's data sets: a registry, a verified download cache, and parsers.

Loading a file always goes the same way:

    cache hit (checksum ok)  ->  use it
    otherwise                ->  try each source in turn: the mirror (if set),
                                 each canonical URL, then a builder (if the
                                 registry has one). Each source writes into a
                                 temp folder beside the cache; the result is
                                 verified against the registry's SHA-256 and
                                 only then renamed atomically into the cache.

Any failure of one source (network, HTTP, a cut-off or corrupt download, a
checksum mismatch, a bad URL) moves on to the next; only when all have failed
does ``fetch`` raise one ``DataError`` listing every source and why it failed.
Nothing half-written is ever left in the cache, and a cached file whose checksum
no longer matches is replaced.

A *builder* makes a file that no server publishes byte for byte: it downloads a
pinned input (a package tarball, checked against its published integrity hash)
and derives the file from it, e.g. ``quantangshi.txt.gz`` from the
``chinese-poetry`` npm package (see ``nndl_helpers.build_quantangshi``).

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

import base64
import dataclasses
import gzip
import hashlib
import importlib
import inspect
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np

DATA_DIR_ENV = "NNDL_DATA_DIR"
MIRROR_ENV = "NNDL_DATA_MIRROR"
_TIMEOUT_S = 30


class DataError(RuntimeError):
    """A data file could not be obtained or parsed. The message says what to do."""


@dataclasses.dataclass(frozen=True)
class Builder:
    """How to make files that no server publishes byte for byte.

    ``input_url`` is downloaded and checked against ``input_integrity``, a
    Subresource Integrity string such as npm publishes (``sha512-<base64>``);
    then ``function`` (``"module:function"``) is called as
    ``function(input_path, out_dir)`` and writes the data set's files into
    ``out_dir`` under their registry names. ``command`` is how a person runs the
    same build by hand (printed in error messages).
    """

    input_url: str
    input_integrity: str
    function: str
    command: str

    def resolve(self) -> Callable[[Path, Path], object]:
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a data set, as it is stored in the cache.

    ``urls`` are the canonical sources. When a source is a zip archive,
    ``zip_member`` names the file inside it, and ``first_lines`` (if set) keeps
    only that many lines of it: the checksum is always that of the final file.
    ``builder`` (if set) is tried after the URLs. ``sha256_of_gunzipped`` makes
    ``sha256`` the checksum of the gunzipped content rather than of the
    ``.gz`` file itself: needed where a builder cannot reproduce the published
    compressed bytes (see the ``quantangshi`` entry).
    """

    subdir: str
    name: str
    sha256: str
    urls: tuple[str, ...] = ()
    zip_member: str | None = None
    first_lines: int | None = None
    note: str = ""
    builder: Builder | None = None
    sha256_of_gunzipped: bool = False

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


# The Complete Tang Poems are derived from this npm tarball. The integrity string is the
# one the npm registry publishes (`npm view chinese-poetry@2.0.1 dist.integrity`; its
# SHA-1 `dist.shasum` is b6e7e60d0accac7c723d066a5c360549aab8299d).
_CHINESE_POETRY = Builder(
    input_url="https://registry.npmjs.org/chinese-poetry/-/chinese-poetry-2.0.1.tgz",
    input_integrity=(
        "sha512-KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/EQ3lfJ//25K8p3uHNg=="
    ),
    function="nndl_helpers.build_quantangshi:build",
    command="python -m nndl_helpers.build_quantangshi [--tarball chinese-poetry-2.0.1.tgz]",
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
                # SHA-256 of the gunzipped text. The published copy was compressed by GNU
                # gzip -9, whose deflate output Python's zlib cannot reproduce; a file built
                # here holds the same text in different .gz bytes, so only the text can be
                # pinned (the published .gz itself is fb0ab5bd...f244b8).
                "d1b4694e6a41c321ede0711f9c7bd014b7b14c0c7963a0a9b88a11f99ccd3717",
                (),
                builder=_CHINESE_POETRY,
                sha256_of_gunzipped=True,
                note=(
                    "Built from the `chinese-poetry` npm package 2.0.1 "
                    "(dist/quantangshi/poet.tang.*.json, one 'title:content' a line, gzip): "
                    "no server publishes this file itself."
                ),
            ),
            RemoteFile(
                "poetry",
                "LICENSE-chinese-poetry",
                "89c627fc3f9f65efdf438701cc9cc2b5fbf1abf79793c9ec15c05475bd7882cc",
                (),
                builder=_CHINESE_POETRY,
                note="The MIT licence of the `chinese-poetry` package (its LICENSE), kept beside the corpus.",
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


# --------------------------------------------------------------------------- course checkpoints

CHECKPOINT_DIR_ENV = "NNDL_CHECKPOINT_DIR"


class CheckpointError(DataError):
    """A course checkpoint is missing, damaged or not what the registry lists. The message says how to rebuild it."""


@dataclasses.dataclass(frozen=True)
class CourseCheckpoint:
    """A model the course trained for longer than a quick run can, stored in the repository's ``checkpoints/``.

    ``sha256`` is checked before every load (``nndl_helpers.pretrained``); ``python course.py checkpoint NAME``
    rebuilds the file with the recipe in ``nndl_helpers/pretrained.py`` and writes its new hash here.
    """

    name: str
    file: str
    notebook: str
    build_note: str            # how long a rebuild takes, for the error message
    sha256: str


CHECKPOINTS: dict[str, CourseCheckpoint] = {
    "digit_judge": CourseCheckpoint(
        "digit_judge", "digit_judge.pt", "scores the 13b and 13c checkpoints (tests, builds)",
        build_note="about 1 min on one CPU core",
        sha256="9cdffcc86b16ac4df44e8d56f108b3b14aa34645d6047c4b8964095d9a09d8cd"),
    "08b_tang_gpt": CourseCheckpoint(
        "08b_tang_gpt", "08b_tang_gpt.pt", "08b_transformer",
        build_note="about 25 min on one CPU core",
        sha256="55f6453b93f5e1a19adf43468c7679ea3b5262a3dd8a4067afeaa90ccde9a23e"),
    "13b_dcgan": CourseCheckpoint(
        "13b_dcgan", "13b_dcgan.pt", "13b_gan",
        build_note="about 25 min on one CPU core; needs the digit_judge checkpoint to score it",
        sha256="f9c311d46f82d1cb680bbd49e8aa3bdb740c1f72378616d369c9085a2047afb5"),
    "13c_ddpm_unet": CourseCheckpoint(
        "13c_ddpm_unet", "13c_ddpm_unet.pt", "13c_diffusion",
        build_note="about 45 min on one CPU core; needs the digit_judge checkpoint to score it",
        sha256="6e3b68bbd6ad4074da678199c4b7cecbe530d5edfab870f8a02ee21fd43ccce7"),
}


def checkpoint_dir() -> Path:
    """Where the course checkpoints live: ``checkpoints/`` in the repository, or ``$NNDL_CHECKPOINT_DIR``."""
    env = os.environ.get(CHECKPOINT_DIR_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / "checkpoints"


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
    with open(path, "rb") as fh:
        return _sha256_of_stream(fh, chunk)


def _sha256_of_stream(stream: BinaryIO, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: stream.read(chunk), b""):
        h.update(block)
    return h.hexdigest()


def _registry_hash_of_stream(stream: BinaryIO, rf: RemoteFile) -> str:
    """What ``checksum`` computes, from an open binary stream."""
    if not rf.sha256_of_gunzipped:
        return _sha256_of_stream(stream)
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as gz:
            return _sha256_of_stream(gz)
    except (OSError, EOFError, zlib.error) as e:  # what gzip raises on a corrupt or cut-off file
        raise DataError(f"not a valid gzip file ({_error_name(e)}: {e})") from e


def checksum(path: str | os.PathLike, rf: RemoteFile) -> str:
    """The SHA-256 that the registry's ``rf.sha256`` is compared with.

    That of the file itself, or of its gunzipped content when
    ``rf.sha256_of_gunzipped``; a ``.gz`` that cannot be decompressed raises
    ``DataError``.
    """
    with open(path, "rb") as fh:
        return _registry_hash_of_stream(fh, rf)


def check_integrity(path: str | os.PathLike, integrity: str) -> None:
    """Raise ``DataError`` unless ``path`` matches a Subresource Integrity string
    (``sha512-<base64 digest>``, as the npm registry publishes for each tarball)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in ("sha256", "sha384", "sha512") or not expected:
        raise ValueError(f"not an integrity string: {integrity!r}")
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    got = base64.b64encode(h.digest()).decode("ascii")
    if got != expected:
        raise DataError(f"integrity mismatch: expected {integrity}, got {algorithm}-{got}")


def _check_cached(target: Path, rf: RemoteFile) -> tuple[bool, os.stat_result | None]:
    """Whether ``target`` holds a verified copy, and the identity (stat) of the file checked.

    The stat comes from the open file, so it names exactly the file whose bytes
    were hashed even if another process replaces ``target`` meanwhile. A file
    that is missing (possibly deleted by another process a moment ago) gives
    ``(False, None)``; one that is present but wrong gives ``(False, stat)``.
    """
    try:
        with open(target, "rb") as fh:
            seen = os.fstat(fh.fileno())
            try:
                return _registry_hash_of_stream(fh, rf) == rf.sha256, seen
            except DataError:  # an undecompressable .gz is simply a bad copy
                return False, seen
    except FileNotFoundError:
        return False, None


def _remove_if_same_file(path: Path, seen: os.stat_result) -> None:
    """Delete ``path`` if it is still the file described by ``seen``.

    Another process may have deleted it already (fine), or replaced it with a
    good copy: ``os.replace`` gives that copy a new inode, so comparing inodes
    keeps us from deleting it.
    """
    try:
        now = path.stat()
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (seen.st_dev, seen.st_ino):
        path.unlink(missing_ok=True)  # it may vanish between the stat and here


def _mirror_url(rf: RemoteFile) -> str | None:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return None
    if "://" not in mirror:  # a plain directory
        return Path(mirror).expanduser().resolve().joinpath(rf.subdir, rf.name).as_uri()
    return mirror.rstrip("/") + "/" + urllib.parse.quote(rf.relpath)


@dataclasses.dataclass(frozen=True)
class _Source:
    """One place to try: ``kind`` says what the download at ``url`` is.

    ``"file"``: the final file itself; ``"zip"``: an archive holding it
    (``rf.zip_member``); ``"build"``: the input of ``rf.builder``.
    """

    label: str  # how messages name it
    url: str
    kind: str


def _sources(rf: RemoteFile) -> list[_Source]:
    """The sources to try, in order: mirror, canonical URLs, builder."""
    out = []
    mirror = _mirror_url(rf)
    if mirror:  # a mirror holds final files, laid out like the cache
        out.append(_Source(f"mirror {mirror}", mirror, "file"))
    kind = "file" if rf.zip_member is None else "zip"
    out.extend(_Source(url, url, kind) for url in rf.urls)
    if rf.builder is not None:
        b = rf.builder
        out.append(_Source(f"build from {b.input_url} ({b.function})", b.input_url, "build"))
    return out


def _help_text(rf: RemoteFile, target: Path) -> str:
    urls = "\n".join(f"    {u}" for u in rf.urls) or "    (no canonical URL)"
    lines = [
        f"  file:     {rf.relpath}",
        f"  URLs:\n{urls}",
    ]
    if rf.builder is not None:
        lines.append(f"  builder:  {rf.builder.command}\n"
                     f"            (downloads {rf.builder.input_url})")
    mirror = _mirror_url(rf)
    if mirror:
        lines.append(f"  mirror:   {mirror}  (from ${MIRROR_ENV})")
    if rf.note:
        lines.append(f"  note:     {rf.note}")
    what = "SHA-256 of its gunzipped content" if rf.sha256_of_gunzipped else "SHA-256"
    lines.append(
        f"  To fix it by hand, put a copy of the file at\n    {target}\n"
        f"  (expected {what} {rf.sha256}), or set ${MIRROR_ENV} to a folder holding {rf.relpath}."
    )
    return "\n".join(lines)


def _error_name(e: BaseException) -> str:
    """The exception's class name, with its module unless it is a built-in one
    (``zlib.error``, ``http.client.InvalidURL``): a bare ``error`` would say nothing."""
    cls = type(e)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _reason(e: BaseException) -> str:
    """One line saying why a source failed, keeping the underlying cause."""
    if isinstance(e, DataError):
        return str(e)
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):  # no connection, unknown host, missing file:// file
        return str(e.reason)
    text = str(e)
    return text if text.startswith(type(e).__name__) else f"{_error_name(e)}: {text}"


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


def _unpack(archive: Path, archive_name: str, rf: RemoteFile, dest: Path) -> None:
    """Copy ``rf.zip_member`` (its first ``rf.first_lines`` lines, if set) out of a zip archive.

    A member that is absent and an archive that is damaged are different faults
    with different fixes, so the messages keep them apart.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise DataError(f"the archive {archive_name} is corrupt or truncated (not a readable zip file: {e})") from e
    with zf:
        try:
            zf.getinfo(rf.zip_member)
        except KeyError:
            held = ", ".join(zf.namelist()[:10])
            raise DataError(f"the archive {archive_name} does not hold {rf.zip_member!r} (it holds: {held})") from None
        try:
            with zf.open(rf.zip_member) as src, open(dest, "wb") as out:
                if rf.first_lines is None:
                    shutil.copyfileobj(src, out)
                else:
                    for i, line in enumerate(src):
                        if i >= rf.first_lines:
                            break
                        out.write(line)
        # zipfile reports a CRC mismatch as BadZipFile; damaged deflate data surfaces as
        # zlib.error, a cut-off stream as EOFError.
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise DataError(
                f"the archive {archive_name} is corrupt: reading {rf.zip_member!r} from it failed "
                f"({_error_name(e)}: {e})"
            ) from e


def _run_builder(builder: Builder, input_path: Path, out_dir: Path) -> None:
    """Check the builder's input against its pinned integrity hash, then build into ``out_dir``."""
    check_integrity(input_path, builder.input_integrity)
    builder.resolve()(input_path, out_dir)


def _obtain(source: _Source, rf: RemoteFile, workdir: Path) -> Path:
    """Produce ``rf`` from ``source`` inside ``workdir``; return the (unverified) file."""
    raw = workdir / "download"
    _download(source.url, raw, desc=rf.name if source.kind != "build" else Path(source.url).name)
    if source.kind == "file":
        return raw
    if source.kind == "zip":
        unpacked = workdir / "unpacked"
        _unpack(raw, Path(urllib.parse.urlparse(source.url).path).name, rf, unpacked)
        return unpacked
    built = workdir / "built"
    built.mkdir()
    _run_builder(rf.builder, raw, built)
    if not (built / rf.name).is_file():
        raise DataError(f"{rf.builder.function} did not write {rf.name}")
    return built / rf.name


def _keep_siblings(ds: Dataset, rf: RemoteFile, built: Path, verbose: bool) -> None:
    """A builder writes every file of its data set from one (large) download: keep the
    others that verify, so that fetching them later needs no second download."""
    for other in ds.files:
        if other is rf or other.builder != rf.builder or not (built / other.name).is_file():
            continue
        target = data_dir() / other.subdir / other.name
        if _check_cached(target, other)[0]:
            continue
        try:
            if checksum(built / other.name, other) == other.sha256:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(built / other.name, target)
                if verbose:
                    print(f"built {other.relpath} too")
        except (OSError, DataError):  # a bonus only: fetch(other) will build it again if needed
            pass


def _lookup(dataset: str, filename: str | None) -> tuple[Dataset, RemoteFile]:
    if dataset not in DATASETS:
        raise KeyError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
    ds = DATASETS[dataset]
    if filename is None:
        if len(ds.files) != 1:
            raise ValueError(f"data set {dataset!r} has several files; name one of {[f.name for f in ds.files]}")
        return ds, ds.files[0]
    return ds, ds.file(filename)


def _make_workdir(folder: Path, rf: RemoteFile) -> Path:
    """A fresh temp folder beside the cache file, so the final rename stays on one file system."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{rf.name}.", dir=folder))
    except OSError as e:
        raise DataError(
            f"cannot write into the data cache {folder} ({e}); set ${DATA_DIR_ENV} to a writable folder"
        ) from e


def fetch(dataset: str, filename: str | None = None, *, verbose: bool = True) -> Path:
    """Return the local path of one verified file of ``dataset``, downloading it if needed.

    ``filename`` may be left out for single-file data sets. Raises ``DataError``
    naming the file, every source tried and why it failed, and where to put a
    copy by hand.
    """
    ds, rf = _lookup(dataset, filename)
    target = data_dir() / rf.subdir / rf.name
    ok, seen = _check_cached(target, rf)
    if ok:
        return target
    if seen is not None and verbose:
        print(f"{target} fails its checksum (corrupt or truncated); fetching it again")
    # The bad copy stays until a verified one replaces it by an atomic rename: other
    # processes that find it meanwhile reject it too, and none of them can delete a good
    # copy that another has just put in its place.

    failures = []
    for source in _sources(rf):
        workdir = _make_workdir(target.parent, rf)
        try:
            candidate = _obtain(source, rf, workdir)
            got = checksum(candidate, rf)
            if got != rf.sha256:
                raise DataError(f"checksum mismatch: expected {rf.sha256}, got {got}")
            os.replace(candidate, target)  # atomic on one file system
            if verbose:
                done = f"built {rf.relpath} from {source.url}" if source.kind == "build" else \
                    f"fetched {rf.relpath} from {source.label}"
                print(done)
            if source.kind == "build":
                _keep_siblings(ds, rf, candidate.parent, verbose)
            return target
        # Whatever goes wrong with one source (network, HTTP, http.client's IncompleteRead
        # or InvalidURL, zlib.error, a bad URL, a checksum mismatch, a failing builder),
        # the next source may still work: note why and go on.
        except Exception as e:  # noqa: BLE001
            failures.append(f"    {source.label}\n      -> {_reason(e)}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # Every source failed; another process may have put a good copy in place meanwhile.
    ok, seen = _check_cached(target, rf)
    if ok:
        return target
    if seen is not None:
        _remove_if_same_file(target, seen)
    tried = "\n".join(failures) or "    (nowhere: no mirror set, no canonical URL and no builder)"
    raise DataError(
        f"could not obtain {rf.relpath} (no usable cached copy; every source failed).\n"
        f"  tried:\n{tried}\n{_help_text(rf, target)}"
    )


def fetch_all(dataset: str) -> list[Path]:
    """Every file of ``dataset``, as ``fetch`` gives them."""
    return [fetch(*request) for request in _dataset_files(dataset)]


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

# Which registry files each loader reads. The loaders themselves call these, so a
# test can ask what a call in a notebook would fetch without fetching anything.


def _mnist_files(name: str, split: str) -> list[tuple[str, str]]:
    """(data set, file) of the images, then of the labels."""
    if name not in ("mnist", "fashion-mnist"):
        raise ValueError(f"name must be 'mnist' or 'fashion-mnist', not {name!r}")
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return [(name, f"{prefix}-images-idx3-ubyte.gz"), (name, f"{prefix}-labels-idx1-ubyte.gz")]


def _text_files(name: str) -> list[tuple[str, str]]:
    if name not in ("tinyshakespeare", "timemachine", "tangshi"):
        raise ValueError(f"unknown text corpus {name!r}")
    return [(name, _lookup(name, None)[1].name)]


def _tang_files(corpus: str) -> list[tuple[str, str]]:
    if corpus == "tangshi":
        return _text_files("tangshi")
    if corpus == "quantangshi":
        return [("quantangshi", "quantangshi.txt.gz")]
    raise ValueError(f"corpus must be 'tangshi' or 'quantangshi', not {corpus!r}")


def _pair_files(pair: str) -> list[tuple[str, str]]:
    if pair not in ("cmn-eng", "fra-eng"):
        raise ValueError(f"pair must be 'cmn-eng' or 'fra-eng', not {pair!r}")
    return [(pair, _lookup(pair, None)[1].name)]


def _fetch_files(dataset: str, filename: str | None) -> list[tuple[str, str]]:
    return [(dataset, _lookup(dataset, filename)[1].name)]


def _dataset_files(dataset: str) -> list[tuple[str, str]]:
    if dataset not in DATASETS:
        raise KeyError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
    return [(dataset, f.name) for f in DATASETS[dataset].files]


# loader name -> function of the loader's arguments (by name) giving the files it reads
_FILE_SELECTORS: dict[str, Callable[..., list[tuple[str, str]]]] = {
    "load_mnist": lambda name, split, **_: _mnist_files(name, split),
    "load_text": lambda name, **_: _text_files(name),
    "load_tang_poems": lambda corpus, **_: _tang_files(corpus),
    "load_translation_pairs": lambda pair, **_: _pair_files(pair),
    "fetch": lambda dataset, filename, **_: _fetch_files(dataset, filename),
    "fetch_all": lambda dataset: _dataset_files(dataset),
}
FILE_LOADERS = tuple(_FILE_SELECTORS)


def files_requested(loader: str, *args, **kwargs) -> list[tuple[str, str]]:
    """The (data set, file name) pairs that ``loader(*args, **kwargs)`` would fetch.

    ``loader`` is one of ``FILE_LOADERS``. Arguments are bound as the loader
    binds them (defaults included); invalid ones raise what the loader raises
    (``ValueError``, ``KeyError``). Nothing is read or downloaded.
    """
    if loader not in _FILE_SELECTORS:
        raise KeyError(f"{loader!r} is not a loader of registry files; those are {', '.join(FILE_LOADERS)}")
    bound = inspect.signature(globals()[loader]).bind(*args, **kwargs)
    bound.apply_defaults()
    return _FILE_SELECTORS[loader](**bound.arguments)


def load_mnist(name: str = "mnist", split: str = "train", *, flatten: bool = False,
               normalize: bool = True, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST as ``(X, y)``.

    ``X`` is float32 in [0, 1] (``normalize``) of shape (N, 28, 28), or (N, 784)
    with ``flatten``; ``y`` is int64 of shape (N,). ``limit`` keeps the first N.
    """
    images_file, labels_file = _mnist_files(name, split)
    images = read_idx(fetch(*images_file))
    labels = read_idx(fetch(*labels_file))
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
    ((dataset, filename),) = _text_files(name)
    return fetch(dataset, filename).read_text(encoding="utf-8")


def load_tang_poems(corpus: str = "tangshi") -> list[str]:
    """Tang poems as a list of strings.

    ``'tangshi'``: NNDL's 168 simplified-Chinese poems (blank-line separated).
    ``'quantangshi'``: 57,603 poems, traditional characters; the title is dropped.
    """
    ((dataset, filename),) = _tang_files(corpus)
    if corpus == "tangshi":
        text = fetch(dataset, filename).read_text(encoding="utf-8")
        return [p.replace("\n", "").strip() for p in text.split("\n\n") if p.strip()]
    with gzip.open(fetch(dataset, filename), "rt", encoding="utf-8") as fh:
        return [line.split(":", 1)[-1].strip() for line in fh if line.strip()]


def load_translation_pairs(pair: str = "cmn-eng") -> list[tuple[str, str]]:
    """(source, target) sentence pairs: 'cmn-eng' (English, Chinese) or 'fra-eng' (English, French)."""
    ((dataset, filename),) = _pair_files(pair)
    text = fetch(dataset, filename).read_text(encoding="utf-8-sig")
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


def _resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square (h, h) image to (size, size), pixel centres aligned (no dependency)."""
    h = img.shape[0]
    pos = (np.arange(size) + 0.5) * h / size - 0.5
    pos = np.clip(pos, 0, h - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, h - 1)
    frac = (pos - lo).astype(np.float32)
    rows = img[lo] * (1 - frac)[:, None] + img[hi] * frac[:, None]
    return rows[:, lo] * (1 - frac)[None, :] + rows[:, hi] * frac[None, :]


def make_digit_canvases(images: np.ndarray, labels: np.ndarray, n: int, *, size: int = 48,
                        digits: tuple[int, int] = (1, 3), scale: tuple[float, float] = (0.5, 1.0),
                        ink: float = 0.3, max_tries: int = 50,
                        rng: np.random.Generator | None = None) -> dict[str, object]:
    """Digits pasted on a blank canvas, with pixel masks and boxes: a segmentation and detection set.

    Each of the ``n`` canvases (``size`` x ``size``, black background) receives between
    ``digits[0]`` and ``digits[1]`` MNIST digits drawn from ``images`` ((N, 28, 28) in [0, 1])
    and ``labels``, each resized to ``scale`` x 28 pixels (bilinear) and placed at a random
    position where its tight box does not overlap an earlier digit's box. No download: the
    digits come from the course's verified MNIST files.

    Returns a dict:
      ``images``  float32 (n, size, size) in [0, 1];
      ``masks``   int64 (n, size, size): 0 for background, ``1 + class`` where the digit's
                  resized ink exceeds ``ink``;
      ``boxes``   list of n float32 arrays (k, 4), ``[x1, y1, x2, y2]`` in pixels, tight
                  around the ink (x2, y2 exclusive), so a box's area is (x2-x1)*(y2-y1);
      ``labels``  list of n int64 arrays (k,), the digit classes in the same order.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    lo_k, hi_k = digits
    if not 1 <= lo_k <= hi_k:
        raise ValueError(f"digits must be (min, max) with 1 <= min <= max, got {digits}")
    if not 0 < scale[0] <= scale[1] or round(scale[1] * 28) > size:
        raise ValueError(f"scale {scale} must be positive, increasing and fit a {size}-pixel canvas")
    rng = rng or np.random.default_rng(0)
    out = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    all_boxes, all_labels = [], []
    for i in range(n):
        boxes, cls = [], []
        for _ in range(int(rng.integers(lo_k, hi_k + 1))):
            j = int(rng.integers(len(images)))
            side = int(round(28 * rng.uniform(*scale)))
            digit = np.clip(_resize_bilinear(images[j].astype(np.float32), side), 0.0, 1.0)
            on = digit > ink
            if not on.any():
                continue
            ys, xs = np.nonzero(on)
            for _try in range(max_tries):
                oy, ox = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                box = np.array([ox + xs.min(), oy + ys.min(), ox + xs.max() + 1, oy + ys.max() + 1],
                               np.float32)
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                       for b in boxes):
                    break
            else:
                continue  # no free place for this digit
            window = out[i, oy:oy + side, ox:ox + side]
            np.maximum(window, digit, out=window)
            masks[i, oy:oy + side, ox:ox + side][on] = 1 + int(labels[j])
            boxes.append(box)
            cls.append(int(labels[j]))
        all_boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
        all_labels.append(np.array(cls, np.int64))
    return {"images": out, "masks": masks, "boxes": all_boxes, "labels": all_labels}


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
