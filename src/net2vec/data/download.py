"""Download a BRODEN release: resumable (HTTP Range on a ``.part`` file), verified, unpacked.

``python -m net2vec.data.download broden1_227 --dest DIR`` leaves the dataset in
``DIR/broden1_227`` (``index.csv`` at its top). Offline, it fails within seconds with one line
saying where to put a copy downloaded elsewhere.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import shutil
import socket
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)
BASE_URL = "http://netdissect.csail.mit.edu/data/"
RELEASES = ("broden1_227", "broden1_224", "broden1_384")
KNOWN_SHA256: dict[str, str] = {}   # filled in when a release's digest is known; size is checked always
CONNECT_TIMEOUT = 10.0


class DownloadError(ValueError):
    """The release could not be fetched, verified or unpacked (one-line message)."""


def _elsewhere(release: str, target: Path) -> str:
    return (f"download {release}.zip elsewhere and unzip it to {target} (index.csv at its top), "
            f"or set data.root=DIR to a BRODEN copy")


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Fetch `url` into `part`, resuming from its current size with a Range request."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:      # the .part already holds the whole file
            return
        raise
    with response:
        resumed = response.status == 206
        if have and not resumed:
            log.info("server ignored the Range request: downloading %s from the start", url)
        length = int(response.headers.get("Content-Length") or 0)
        total = (have if resumed else 0) + length if length else None
        with open(part, "ab" if resumed else "wb") as handle, tqdm(
                total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                desc=part.name, disable=not progress, mininterval=1) as bar:
            try:
                for block in iter(lambda: response.read(1 << 20), b""):
                    handle.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(f"{url}: transfer interrupted ({error!r}); run again to resume") from None
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume")


def _verify(archive: Path, sha256: str | None) -> None:
    """Zip integrity (every member's CRC) and, when known, the SHA-256 of the archive."""
    if sha256:
        digest = hashlib.sha256()
        with open(archive, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            raise DownloadError(f"{archive}: sha256 {digest.hexdigest()} != expected {sha256}; delete it and retry")
    try:
        with zipfile.ZipFile(archive) as handle:
            bad = handle.testzip()
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive}: not a valid zip ({error}); delete it and retry") from None
    if bad is not None:
        raise DownloadError(f"{archive}: member {bad} is corrupt; delete it and retry")


def _unpack(archive: Path, release: str, target: Path) -> None:
    """Extract beside `target`, then move the folder holding index.csv into place."""
    staging = target.with_name(f".{target.name}.unpack-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(staging)
        found = sorted(staging.rglob("index.csv"), key=lambda p: len(p.parts))
        if not found:
            raise DownloadError(f"{archive}: holds no index.csv; not a BRODEN release")
        os.replace(found[0].parent, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_broden(release: str, dest: str | Path, base_url: str = BASE_URL, target: str | Path | None = None,
                    sha256: str | None = None, timeout: float = CONNECT_TIMEOUT, keep_zip: bool = False,
                    progress: bool = True) -> Path:
    """Fetch `<base_url><release>.zip` into `dest`, verify it, unpack to `target` (default dest/release)."""
    if release not in RELEASES:
        raise DownloadError(f"unknown BRODEN release {release!r}: choose one of {', '.join(RELEASES)}")
    dest = Path(dest)
    target = Path(target) if target is not None else dest / release
    if (target / "index.csv").is_file():
        log.info("%s already present at %s", release, target)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    archive, part = dest / f"{release}.zip", dest / f"{release}.zip.part"
    url = base_url.rstrip("/") + f"/{release}.zip"
    if not archive.is_file():
        try:
            _fetch(url, part, timeout, progress)
        except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(f"cannot reach {url} ({reason}): {_elsewhere(release, target)}") from None
        _verify(part, sha256 or KNOWN_SHA256.get(release))
        os.replace(part, archive)
    else:
        _verify(archive, sha256 or KNOWN_SHA256.get(release))
    _unpack(archive, release, target)
    if not keep_zip:
        archive.unlink()
    log.info("%s unpacked to %s", release, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m net2vec.data.download RELEASE --dest DIR [--base-url URL]."""
    parser = argparse.ArgumentParser(description="Download and unpack a BRODEN release.")
    parser.add_argument("release", choices=RELEASES)
    parser.add_argument("--dest", required=True, help="folder to hold <release>/")
    parser.add_argument("--base-url", default=BASE_URL)
    parser.add_argument("--keep-zip", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(download_broden(args.release, args.dest, args.base_url, keep_zip=args.keep_zip))
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
