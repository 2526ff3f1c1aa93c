"""The real `mathsynth` console script, run in a subprocess as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

# The console script pip installed next to this interpreter (the venv's bin/).
MATHSYNTH = str(Path(sys.executable).with_name("mathsynth"))


def mathsynth(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run `mathsynth ARGS...` to completion, capturing stdout and stderr as text."""
    return subprocess.run(
        [MATHSYNTH, *args], capture_output=True, text=True, env=env, timeout=timeout, **kwargs
    )


def mathsynth_popen(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start `mathsynth ARGS...` without waiting (for crash and resume tests)."""
    return subprocess.Popen([MATHSYNTH, *args], **kwargs)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2 with exactly one non-empty stderr line starting `error:`, holding `needles`."""
    assert proc.returncode == 2, proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
