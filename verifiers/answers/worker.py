"""Worker process main loop: `python -m verifiers.answers.worker MEMORY_MB`.

Protocol (JSON lines): the worker writes `{"ready": true}` once math-verify is imported and
warmed; then for each request line `{"pairs": [[gold, pred], ...]}` it writes one line
`{"verdict": ..., "detail": ...}` per pair, in order, as soon as that pair is done, so the
parent knows exactly which pair a hang belongs to.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def _answer_channel() -> object:
    """Our protocol gets the real stdout; anything the libraries print goes to stderr."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return channel


def main(argv: list[str]) -> int:
    memory_mb = int(argv[1]) if len(argv) > 1 else 0
    channel = _answer_channel()
    # Slow import (sympy + math-verify), done once here so every request finds it warm.
    from mathsynth.verifiers.answers.symbolic import compare, describe_exception

    compare("1", "1")  # warm the parser's lazily built regexes
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    channel.write('{"ready": true}\n')
    for line in sys.stdin:
        for gold, pred in json.loads(line)["pairs"]:
            try:
                verdict, detail = compare(gold, pred)
            except MemoryError:
                verdict, detail = "error", "memory limit exceeded"
            except RecursionError:
                verdict, detail = "error", "expression nested too deeply"
            except Exception as exc:  # a checker bug must not take the worker down
                verdict, detail = "error", f"checker failed: {describe_exception(exc)}"
            channel.write(json.dumps({"verdict": verdict, "detail": detail}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
