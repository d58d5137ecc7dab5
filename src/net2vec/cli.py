"""What the command-line entry points share: a bad value ends the command with one line.

``train.py`` and ``evaluate.py`` run their task inside :func:`one_line_errors`: a ``ValueError``
raised by net2vec's own code (``ConfigError``, ``NetworkError``, ``DatasetError`` …, whose messages
name the bad value and the valid choices) prints ``error: <message>`` on stderr and exits with
status 2, without a traceback. Errors raised inside other libraries keep their traceback, and
``HYDRA_FULL_ERROR=1`` (Hydra's own switch) keeps it for every error.

:func:`run` also checks, before Hydra composes, that every plain ``group=option`` override
(``network=nope``, ``task=seg,cls``) names an option of a config group under ``conf/``, so an unknown
option is one line listing the valid ones too (Hydra's own message spans a dozen lines).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from net2vec.config import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
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


CHOICE = re.compile(
    r"([A-Za-z_]\w*)=([\w.-]+(?:,[\w.-]+)*)"
)  # group=option[,option…], nothing fancier


def check_choices(config_dir: str | os.PathLike, overrides: list[str]) -> None:
    """Raise ConfigError for a ``group=option`` override whose option ``conf/<group>/`` lacks."""
    for override in overrides:
        match = CHOICE.fullmatch(override)
        group = Path(config_dir) / match[1] if match else None
        if group is None or not group.is_dir():
            continue
        options = sorted(path.stem for path in group.glob("*.yaml"))
        for option in match[2].split(","):
            if option not in options and option != "null":
                raise ConfigError(f"{match[1]}={option!r}: expected one of {', '.join(options)}")


def run(main: Callable[[], None], config_dir: str | os.PathLike) -> None:
    """Check the command line's config group options, then run the ``@hydra.main`` function."""
    with one_line_errors():
        check_choices(config_dir, sys.argv[1:])
    main()
