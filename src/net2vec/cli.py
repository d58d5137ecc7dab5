"""What the command-line entry points share: a bad value ends the command with one line.

``train.py``, ``evaluate.py`` and ``experiments.py`` run their task inside
:func:`~net2vec.common.errors.one_line_errors` (a net2vec ``ValueError`` becomes one ``error:``
line and exit status 2; ``HYDRA_FULL_ERROR=1`` keeps the traceback).

:func:`run` also checks, before Hydra composes, that every plain ``group=option`` override
(``network=nope``, ``task=seg,cls``) names an option of a config group under ``conf/``, so an unknown
option is one line listing the valid ones too (Hydra's own message spans a dozen lines).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from net2vec.common.errors import ConfigError, one_line_errors

__all__ = ["check_choices", "one_line_errors", "run"]

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
