"""Shared checks that a command ended with one `error:` line (exit 2) and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def error_line(stderr: str, code: int) -> str:
    """The single `error:` line of a command that exited with status 2, without a traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def main_error(main, argv: list[str], capsys) -> str:
    """The `error:` line of an in-process CLI ``main(argv)`` (it exits through SystemExit)."""
    with pytest.raises(SystemExit) as raised:
        main(argv)
    return error_line(capsys.readouterr().err, raised.value.code)


def script(name: str, *args: str, cwd: Path | None = None, timeout: int = 600):
    """Run ``python <name>.py ARGS`` of the repository (offline W&B, no NET2VEC_* settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NET2VEC_")}
    return subprocess.run(
        [sys.executable, str(ROOT / f"{name}.py"), *args],
        cwd=cwd or ROOT,
        env={**env, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def script_error(name: str, *args: str, cwd: Path | None = None) -> str:
    """The `error:` line of ``python <name>.py ARGS`` (exit 2, no traceback)."""
    done = script(name, *args, cwd=cwd)
    return error_line(done.stderr, done.returncode)
