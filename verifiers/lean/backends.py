"""Choosing a Lean backend from `LeanSettings`, and probing it for `mathsynth doctor`."""

from __future__ import annotations

import shlex

from mathsynth.config import LeanSettings
from mathsynth.errors import ConfigError
from mathsynth.verifiers.lean.backend import LeanBackend
from mathsynth.verifiers.lean.kimina import KiminaBackend, probe_kimina
from mathsynth.verifiers.lean.repl import ReplBackend
from mathsynth.verifiers.lean.repl_process import ReplError, ReplProcess

_PROBE = "example : (1 : Nat) + 1 = 2 := rfl"
_PROBE_TIMEOUT_S = 60.0


def make_lean_backend(settings: LeanSettings) -> LeanBackend | None:
    """The configured backend, or None when neither a REPL command nor a server URL is set.

    Nothing is started here: REPLs start on the first check. Raises ConfigError when both or
    an empty command are given.
    """
    repl_cmd = (settings.repl_cmd or "").strip()
    server_url = (settings.server_url or "").strip()
    if repl_cmd and server_url:
        raise ConfigError("set either lean.repl_cmd (--lean-repl) or lean.server_url, not both")
    if server_url:
        return KiminaBackend(server_url, timeout_s=settings.timeout_s)
    if repl_cmd:
        try:
            argv = shlex.split(repl_cmd)
        except ValueError as exc:
            raise ConfigError(f"cannot parse lean.repl_cmd {repl_cmd!r}: {exc}") from None
        return ReplBackend(
            argv,
            timeout_s=settings.timeout_s,
            start_timeout_s=max(600.0, settings.timeout_s),
            pool_size=settings.pool_size,
            memory_mb=settings.memory_mb,
            recycle_after=settings.recycle_after,
        )
    return None


def describe_lean_backend(settings: LeanSettings) -> tuple[str, bool, str]:
    """(backend name, reachable, one-line detail) for `mathsynth doctor`.

    The REPL probe starts the command and runs one import-free command, so it shows the
    executable speaks the protocol without paying for a Mathlib import.
    """
    server_url = (settings.server_url or "").strip()
    repl_cmd = (settings.repl_cmd or "").strip()
    if server_url:
        reachable, detail = probe_kimina(server_url)
        return "kimina", reachable, detail
    if not repl_cmd:
        return (
            "none",
            False,
            "not configured (--lean-repl / --lean-server): formal rows are unchecked",
        )
    try:
        argv = shlex.split(repl_cmd)
    except ValueError as exc:
        return "repl", False, f"cannot parse {repl_cmd!r}: {exc}"
    process = ReplProcess(
        argv,
        header="",
        timeout_s=min(_PROBE_TIMEOUT_S, settings.timeout_s),
        start_timeout_s=_PROBE_TIMEOUT_S,
        memory_mb=settings.memory_mb,
    )
    try:
        process.start()
        reply = process.run(_PROBE)
    except ReplError as exc:
        return "repl", False, str(exc)
    finally:
        process.close()
    if "env" not in reply:
        return "repl", False, f"{repl_cmd!r} answered {str(reply)[:100]}"
    return "repl", True, f"{repl_cmd!r} answers JSON commands"
