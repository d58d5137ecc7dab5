"""The error a bad setting raises, and how every entry point prints net2vec's errors: one line.

Inside :func:`one_line_errors`, a ``ValueError`` raised by net2vec's own code (``ConfigError``,
``NetworkError``, ``DatasetError`` …, whose messages name the bad value and the valid choices)
prints ``error: <message>`` on stderr and exits with status 2, without a traceback. Errors raised
inside other libraries keep their traceback, and ``HYDRA_FULL_ERROR=1`` keeps it for every error.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and the value."""


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the net2vec package
EXIT_BAD_VALUE = 2


def raised_by_net2vec(error: BaseException) -> bool:
    """True when the innermost frame of the error's traceback lies in the net2vec package."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE_DIR)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn net2vec's ValueErrors inside the block into ``error: …`` on stderr and exit status 2."""
    try:
        yield
    except ValueError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not raised_by_net2vec(error):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_VALUE)
