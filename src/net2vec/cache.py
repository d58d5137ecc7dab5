"""Disk caches that are never trusted half-written.

Every store (concept store, activation store, trained probes) is written to a temporary name
beside its final path and renamed into place only once complete and closed; an interrupted
writer leaves at most a ``*.tmp-<pid>`` file that no reader looks at. Writers that several
processes may need at once take an exclusive lock first, so a store is built once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

COMPLETE_ATTR = "net2vec_complete"


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


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
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
