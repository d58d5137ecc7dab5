"""Download a BRODEN release: resumable (HTTP Range on a ``.part`` file), verified, unpacked.

``python -m net2vec.data.download broden1_227 --dest DIR`` leaves the dataset in
``DIR/broden1_227`` (``index.csv`` at its top). Offline, it fails within seconds with one line
saying where to put a copy downloaded elsewhere.

Verification: every zip member's CRC, no member outside the archive's folder, and an unpacked
``index.csv``/``label.csv`` that read as BRODEN tables; the archive's SHA-256 (and size) only
where a digest is pinned in ``KNOWN_SHA256`` or given with ``--sha256``. No digest of the
published BRODEN archives is pinned here (none was available to check against), so
``--verify strict`` (demand a digest) refuses unless ``--sha256`` is given. The archive is
unpacked into ``<target>.tmp-<pid>`` beside the target and moved into place in one rename;
temporary folders of dead processes are removed. Exit status 2 on any error (one line).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from net2vec.common.cache import fingerprint_file, remove_dead_temporaries
from net2vec.common.errors import EXIT_BAD_VALUE
from net2vec.data.broden import BrodenDataset, DatasetError

log = logging.getLogger(__name__)
BASE_URL = "http://netdissect.csail.mit.edu/data/"
RELEASES = ("broden1_227", "broden1_224", "broden1_384")
# SHA-256 and size in bytes of the published archives, pinned only once checked against a trusted
# copy: none is known here yet (docs/data.md), so `--verify strict` needs `--sha256`.
KNOWN_SHA256: dict[str, str] = {}
KNOWN_SIZE: dict[str, int] = {}
VERIFY = ("zip", "strict")
CONNECT_TIMEOUT = 10.0


class DownloadError(ValueError):
    """The release could not be fetched, verified or unpacked (one-line message)."""


def _elsewhere(release: str, target: Path) -> str:
    return (
        f"download {release}.zip elsewhere and unzip it to {target} (index.csv at its top), "
        f"or set data.root=DIR to a BRODEN copy"
    )


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Fetch `url` into `part`, resuming from its current size with a Range request."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the .part already holds the whole file
            return
        raise
    with response:
        resumed = response.status == 206
        if have and not resumed:
            log.info("server ignored the Range request: downloading %s from the start", url)
        length = int(response.headers.get("Content-Length") or 0)
        total = (have if resumed else 0) + length if length else None
        with (
            open(part, "ab" if resumed else "wb") as handle,
            tqdm(
                total=total,
                initial=have if resumed else 0,
                unit="B",
                unit_scale=True,
                desc=part.name,
                disable=not progress,
                mininterval=1,
            ) as bar,
        ):
            try:
                for block in iter(lambda: response.read(1 << 20), b""):
                    handle.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(
                    f"{url}: transfer interrupted ({error!r}); run again to resume"
                ) from None
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume"
        )


def _verify(archive: Path, sha256: str | None, size: int | None = None) -> None:
    """Size and SHA-256 of the archive when known, then zip integrity (every member's CRC) and
    no member that would land outside the unpack folder."""
    if size is not None and archive.stat().st_size != size:
        raise DownloadError(
            f"{archive}: {archive.stat().st_size} bytes, expected {size}; delete it and retry"
        )
    if sha256:
        digest = fingerprint_file(archive, 64)
        if digest != sha256.lower():
            raise DownloadError(
                f"{archive}: sha256 {digest} != expected {sha256}; delete it and retry"
            )
    try:
        with zipfile.ZipFile(archive) as handle:
            bad = handle.testzip()
            names = handle.namelist()
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive}: not a valid zip ({error}); delete it and retry") from None
    if bad is not None:
        raise DownloadError(f"{archive}: member {bad} is corrupt; delete it and retry")
    escaping = [n for n in names if n.startswith("/") or ".." in Path(n).parts]
    if escaping:
        raise DownloadError(
            f"{archive}: member {escaping[0]!r} points outside the archive; not a BRODEN release"
        )


def _unpack(archive: Path, target: Path) -> None:
    """Extract into ``<target>.tmp-<pid>`` beside `target`, check the tables, then move the folder
    holding index.csv into place in one rename."""
    remove_dead_temporaries(target.parent)
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(staging)
        found = sorted(staging.rglob("index.csv"), key=lambda p: len(p.parts))
        if not found:
            raise DownloadError(f"{archive}: holds no index.csv; not a BRODEN release")
        try:
            BrodenDataset(found[0].parent)
        except DatasetError as error:
            raise DownloadError(f"{archive}: not a BRODEN release ({error})") from None
        with contextlib.suppress(OSError):
            target.rmdir()  # an empty folder left for it
        os.replace(found[0].parent, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_target(release: str, target: Path, digest: str | None, verify: str) -> None:
    if verify not in VERIFY:
        raise DownloadError(f"--verify {verify!r}: expected one of {', '.join(VERIFY)}")
    if verify == "strict" and not digest:
        raise DownloadError(
            f"--verify strict: no SHA-256 of {release}.zip is pinned in net2vec (docs/data.md); "
            "pass --sha256 HEX from a source you trust, or use --verify zip (CRC checks only)"
        )
    if target.is_dir() and any(target.iterdir()):
        raise DownloadError(
            f"{target}: exists, is not empty and holds no index.csv; move it away or choose "
            "another --dest (data.root) for the download"
        )


def download_broden(
    release: str,
    dest: str | Path,
    base_url: str = BASE_URL,
    target: str | Path | None = None,
    sha256: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
    keep_zip: bool = False,
    progress: bool = True,
    verify: str = "zip",
) -> Path:
    """Fetch `<base_url><release>.zip` into `dest`, verify it, unpack to `target` (default dest/release).

    ``verify="strict"`` refuses to run without a known SHA-256 (pinned or `sha256`)."""
    if release not in RELEASES:
        raise DownloadError(
            f"unknown BRODEN release {release!r}: choose one of {', '.join(RELEASES)}"
        )
    dest = Path(dest)
    target = Path(target) if target is not None else dest / release
    if (target / "index.csv").is_file():
        log.info("%s already present at %s", release, target)
        return target
    digest = sha256 or KNOWN_SHA256.get(release)
    _check_target(release, target, digest, verify)
    dest.mkdir(parents=True, exist_ok=True)
    archive, part = dest / f"{release}.zip", dest / f"{release}.zip.part"
    url = base_url.rstrip("/") + f"/{release}.zip"
    if not archive.is_file():
        try:
            _fetch(url, part, timeout, progress)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(
                f"cannot reach {url} ({reason}): {_elsewhere(release, target)}"
            ) from None
        _verify(part, digest, KNOWN_SIZE.get(release) if not sha256 else None)
        os.replace(part, archive)
    else:
        _verify(archive, digest, KNOWN_SIZE.get(release) if not sha256 else None)
    if not digest:
        log.warning("%s: no SHA-256 known: checked zip CRCs and the BRODEN tables only", archive)
    _unpack(archive, target)
    if not keep_zip:
        archive.unlink()
    log.info("%s unpacked to %s", release, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m net2vec.data.download RELEASE --dest DIR [--base-url URL] [--verify MODE]."""
    parser = argparse.ArgumentParser(description="Download and unpack a BRODEN release.")
    parser.add_argument("release", choices=RELEASES)
    parser.add_argument("--dest", required=True, help="folder to hold <release>/")
    parser.add_argument("--base-url", default=BASE_URL)
    parser.add_argument("--keep-zip", action="store_true")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    parser.add_argument(
        "--verify",
        choices=VERIFY,
        default="zip",
        help="zip: CRCs and tables (default); strict: also a known SHA-256",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(
            download_broden(
                args.release,
                args.dest,
                args.base_url,
                sha256=args.sha256,
                keep_zip=args.keep_zip,
                verify=args.verify,
            )
        )
    except (DownloadError, OSError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_VALUE
    return 0


if __name__ == "__main__":
    sys.exit(main())
