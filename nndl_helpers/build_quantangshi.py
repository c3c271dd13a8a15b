"""Build ``poetry/quantangshi.txt.gz`` (and its licence) from the ``chinese-poetry`` npm package.

No server publishes the course's Complete Tang Poems file itself, so it is
derived from the ``chinese-poetry`` package, version 2.0.1, whose tarball the
registry pins by its npm integrity hash (``nndl_helpers.data``, entry
``quantangshi``):

- the poems are those of ``package/dist/quantangshi/poet.tang.<N>.json``, files
  in increasing ``N`` (numerically: 0, 1000, 2000, ..., not as text), poems in
  file order; the ``error/`` folder and the other JSON files are not used;
- each poem becomes one line ``title:content\\n``, content being its
  ``paragraphs`` joined without separator; the 4 poems with no text are left
  out, which gives 57,603 lines;
- the text is UTF-8, gzip-compressed with a fixed header (no timestamp), so
  that two builds are byte-identical;
- ``package/LICENSE`` (MIT) is copied as ``LICENSE-chinese-poetry``.

The published copy of the file was compressed by GNU gzip, whose compressed
bytes Python's zlib does not reproduce; the registry therefore pins the SHA-256
of the gunzipped text, which a build here matches exactly.

``fetch("quantangshi", ...)`` runs this build by itself when neither the mirror
nor the cache has the file. By hand (for instance to build offline from a
tarball downloaded elsewhere with ``npm pack chinese-poetry@2.0.1``)::

    python -m nndl_helpers.build_quantangshi [--tarball chinese-poetry-2.0.1.tgz] [--out DIR]

The files are verified against the registry before they are written into the
data cache (or into ``--out``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

from . import data

CORPUS_NAME = "quantangshi.txt.gz"
LICENSE_NAME = "LICENSE-chinese-poetry"
_POEMS = re.compile(r"package/dist/quantangshi/poet\.tang\.(\d+)\.json")
_LICENSE = "package/LICENSE"


def corpus_text(tarball: str | os.PathLike) -> tuple[bytes, bytes]:
    """The corpus (UTF-8, one ``title:content`` poem a line) and the licence, from the tarball.

    The tarball is read once, front to back: a ``.tgz`` is one gzip stream, and
    jumping back to an earlier member would decompress it again from the start.
    """
    chunks: dict[int, list] = {}
    licence = None
    with tarfile.open(tarball, mode="r|gz") as tar:
        for member in tar:
            match = _POEMS.fullmatch(member.name)
            if member.isfile() and (match or member.name == _LICENSE):
                payload = tar.extractfile(member).read()
                if match:
                    chunks[int(match.group(1))] = json.loads(payload.decode("utf-8"))
                else:
                    licence = payload
    if not chunks:
        raise data.DataError(f"{tarball}: no {_POEMS.pattern} in it; is it the chinese-poetry package?")
    if licence is None:
        raise data.DataError(f"{tarball}: no {_LICENSE} in it")
    lines = []
    for index in sorted(chunks):
        for poem in chunks[index]:
            content = "".join(poem["paragraphs"])
            if content:  # a few entries have a title and no text
                lines.append(f"{poem['title']}:{content}\n")
    return "".join(lines).encode("utf-8"), licence


def write_gzip(payload: bytes, path: Path, inner_name: str) -> None:
    """gzip ``payload`` into ``path`` reproducibly: fixed level and no timestamp (mtime 0)."""
    with open(path, "wb") as raw, gzip.GzipFile(filename=inner_name, mode="wb", fileobj=raw,
                                                compresslevel=9, mtime=0) as gz:
        gz.write(payload)


def build(tarball: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``quantangshi.txt.gz`` and ``LICENSE-chinese-poetry`` into ``out_dir``.

    This is the registry's builder: ``fetch`` has already checked the tarball's
    integrity and verifies what is written here against the registry.
    """
    out_dir = Path(out_dir)
    text, licence = corpus_text(tarball)
    corpus = out_dir / CORPUS_NAME
    write_gzip(text, corpus, inner_name=CORPUS_NAME[: -len(".gz")])
    (out_dir / LICENSE_NAME).write_bytes(licence)
    return [corpus, out_dir / LICENSE_NAME]


def build_into(tarball: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Check the tarball, build, verify every file against the registry, then move them into place.

    ``out_dir`` defaults to the data cache (``poetry/``). The files are built in a
    temp folder beside their destination and renamed only once all of them verify.
    """
    entry = data.DATASETS["quantangshi"]
    builder = entry.files[0].builder
    dests = {rf: (Path(out_dir) if out_dir is not None else data.data_dir() / rf.subdir) / rf.name
             for rf in entry.files}
    workdir_parent = next(iter(dests.values())).parent
    workdir_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build.", dir=workdir_parent) as tmp:
        data._run_builder(builder, Path(tarball), Path(tmp))
        for rf in entry.files:
            got = data.checksum(Path(tmp) / rf.name, rf)
            if got != rf.sha256:
                raise data.DataError(f"built {rf.name} does not match the registry: "
                                     f"expected {rf.sha256}, got {got}")
        for rf, dest in dests.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / rf.name, dest)
    return list(dests.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nndl_helpers.build_quantangshi",
        description="Build poetry/quantangshi.txt.gz and its licence from the chinese-poetry 2.0.1 npm tarball.",
    )
    parser.add_argument("--tarball", type=Path,
                        help="a local chinese-poetry-2.0.1.tgz (e.g. from `npm pack chinese-poetry@2.0.1`); "
                             "without it, the tarball is downloaded from the npm registry")
    parser.add_argument("--out", type=Path, help="write the files here instead of the data cache")
    args = parser.parse_args(argv)
    builder = data.DATASETS["quantangshi"].files[0].builder
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tarball = args.tarball
            if tarball is None:
                tarball = Path(tmp) / Path(builder.input_url).name
                print(f"downloading {builder.input_url}")
                data._download(builder.input_url, tarball, desc=tarball.name)
            for path in build_into(tarball, args.out):
                print(f"built and verified {path}")
    except (OSError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
