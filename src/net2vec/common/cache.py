"""Disk caches that are never trusted half-written, stale or mixed (docs/architecture.md).

Every cached artifact (concept store, activation store, trained SynthNet, all-filter probe) goes
through :func:`cached_build`. Its :class:`Artifact` names it by a content key: the fingerprint of
every input that changes its content (``inputs``: data fingerprint, weights digest, settings),
at ``<folder>/<stem>-<key><suffix>``. The artifact records its key and inputs inside itself
(HDF5 attribute or safetensors metadata ``net2vec_record``); a reader checks the record and
loads the file before trusting it, and a missing, corrupt or mismatched artifact is rebuilt
(logged, naming the inputs that differ from the nearest earlier build). A build runs under an
exclusive file lock (several processes build it once), into ``<name>.tmp-<pid>`` beside the
final path, renamed into place only when complete; temporary files of dead processes are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import h5py

log = logging.getLogger(__name__)
COMPLETE_ATTR = "net2vec_complete"
RECORD = "net2vec_record"
T = TypeVar("T")


def fingerprint_file(path: str | os.PathLike, length: int = 16) -> str:
    """SHA-256 of a file's bytes, shortened: keys a cache to the exact input it came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def fingerprint_json(obj: object, length: int = 16) -> str:
    """Stable short hash of a JSON-serialisable object (a cache key from settings)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def remove_dead_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete ``*.tmp-<pid>*`` files and folders in `folder` whose writing process no longer runs
    (pids are of this machine: a cache shared by several machines keeps others' files)."""
    removed = []
    for path in Path(folder).glob("*.tmp-*"):
        match = re.search(r"\.tmp-(\d+)", path.name)
        if match and int(match[1]) != os.getpid() and not _alive(int(match[1])):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of dead processes in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(final.parent)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def file_lock(target: str | os.PathLike) -> Iterator[None]:
    """Exclusive inter-process lock on ``<target>.lock`` (released when the process dies)."""
    lock_path = Path(f"{target}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the record an artifact carries: {"key": ..., "inputs": {...}} -------------------------


def read_record(path: str | os.PathLike, suffix: str | None = None) -> dict | None:
    """The record inside an HDF5 or safetensors artifact (None: none, or not marked complete);
    the format follows `suffix` (default: the path's)."""
    path = Path(path)
    if (suffix or path.suffix) == ".safetensors":
        from safetensors import safe_open  # local: keeps torch out of `import net2vec.common.cache`

        with safe_open(str(path), "pt") as handle:
            text = (handle.metadata() or {}).get(RECORD)
    else:
        with h5py.File(path, "r") as handle:
            complete = bool(handle.attrs.get(COMPLETE_ATTR, False))
            text = handle.attrs.get(RECORD) if complete else None
    return json.loads(text) if text else None


def write_record(path: str | os.PathLike, record: dict, suffix: str | None = None) -> None:
    """Stamp `record` into the artifact at `path` (HDF5 attributes / safetensors metadata)."""
    path, text = Path(path), json.dumps(record, sort_keys=True, default=str)
    if (suffix or path.suffix) == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
        save_file(load_file(str(path)), str(path), metadata={**metadata, RECORD: text})
    else:
        with h5py.File(path, "r+") as handle:
            handle.attrs.update({RECORD: text, "key": record["key"], COMPLETE_ATTR: True})


# --- the cached-build helper ----------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """A cached artifact: ``<folder>/<stem>-<key><suffix>``, key = fingerprint of `inputs`."""

    folder: Path
    stem: str
    suffix: str
    inputs: dict

    @property
    def key(self) -> str:
        return fingerprint_json(self.inputs)

    @property
    def path(self) -> Path:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.stem)
        return Path(self.folder) / f"{stem}-{self.key}{self.suffix}"

    @property
    def record(self) -> dict:
        return {"key": self.key, "inputs": self.inputs}


def changed_inputs(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Names of the inputs (dotted for nested ones) whose values differ between two records."""
    names = []
    for name in sorted(set(old) | set(new), key=str):
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            names += changed_inputs(a, b, f"{prefix}{name}.")
        elif a != b:
            names.append(f"{prefix}{name}")
    return names


def _nearest_earlier(artifact: Artifact) -> tuple[Path, list[str]] | None:
    """The earlier build of the same stem whose inputs differ least, and what differs."""
    best = None
    for path in artifact.path.parent.glob(
        f"{artifact.path.name.rsplit('-', 1)[0]}-*{artifact.suffix}"
    ):
        with contextlib.suppress(Exception):
            record = read_record(path)
            changed = changed_inputs(record["inputs"], artifact.inputs) if record else None
            if changed and (best is None or len(changed) < len(best[1])):
                best = (path, changed)
    return best


def _trusted(artifact: Artifact, path: Path, load: Callable[[Path], T], what: str) -> T | None:
    """`load(path)` when `path` holds a complete artifact whose record matches; else None."""
    if not path.is_file():
        return None
    try:
        record = read_record(path)
        if record is None:
            log.warning("%s: %s is incomplete (no record); rebuilding", what, path)
            return None
        if record.get("key") != artifact.key:
            changed = ", ".join(changed_inputs(record.get("inputs") or {}, artifact.inputs))
            log.warning(
                "%s: %s holds key %s, not %s (inputs differ: %s); rebuilding",
                *(what, path, record.get("key"), artifact.key, changed or "none"),
            )
            return None
        return load(path)
    except Exception as error:  # any unreadable artifact is rebuilt, never fatal
        log.warning(
            "%s: %s is unreadable (%s: %s); rebuilding",
            what,
            path,
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
        )
        return None


def _build(artifact: Artifact, build: Callable[[Path], None], what: str, final: Path) -> None:
    earlier = _nearest_earlier(artifact)
    since = f" (changed since {earlier[0].name}: {', '.join(earlier[1])})" if earlier else ""
    log.info("%s: building %s%s", what, artifact.path, since)
    with atomic_path(final) as tmp:
        build(tmp)
        write_record(tmp, artifact.record, artifact.suffix)
    log.info("%s: built %s", what, final)


def cached_build(
    artifact: Artifact,
    build: Callable[[Path], None],
    load: Callable[[Path], T],
    what: str,
    publish: bool = True,
) -> T:
    """The artifact loaded from the cache, or built first (locked, atomic, record stamped).

    ``build(tmp)`` writes the artifact's content to `tmp`; ``load(path)`` reads it (any error
    means corrupt: rebuilt). ``publish=False`` (DDP ranks other than 0) reuses a trusted
    artifact but neither locks nor writes the cache: a missing one is built privately."""
    path = artifact.path
    value = _trusted(artifact, path, load, what)
    if value is not None:
        log.info("%s: reusing %s", what, path)
        return value
    if not publish:
        private = path.with_name(f"{path.name}.private-{os.getpid()}")
        try:
            _build(artifact, build, what, private)
            return load(private)
        finally:
            private.unlink(missing_ok=True)
    with file_lock(path):
        value = _trusted(artifact, path, load, what)
        if value is not None:
            log.info("%s: reusing %s (built while this process waited)", what, path)
            return value
        _build(artifact, build, what, path)
        return load(path)
