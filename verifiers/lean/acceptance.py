"""The acceptance rule: from a Lean REPL reply to compiled / proved / failed.

- `compiled`: Lean reported no message of severity "error".
- `proved`: compiled, and no `sorry` anywhere: no entry in the reply's `sorries`, no
  "declaration uses 'sorry'" warning, no `sorry`/`admit` token in the code (term-mode sorries
  are not listed in `sorries` by the REPL), and the code declares no new `axiom` (a proof that
  leans on an axiom it introduced proves nothing).
- `failed`: anything else, including a reply that is an error object (`{"message": ...}`),
  which the REPL sends for commands it could not run at all.

Reply shape (leanprover-community/repl README): `{"env": n, "messages": [{"severity",
"pos": {"line", "column"}, "endPos", "data"}], "sorries": [{"pos", "endPos", "goal"}]}`.
"""

from __future__ import annotations

import re
from typing import Any

from mathsynth.records import LeanStatus
from mathsynth.verifiers.lean.backend import LeanItem, LeanResult

_SORRY_WARNING = "declaration uses 'sorry'"
# Comments are stripped first so a `-- no sorry here` remark does not count.
_LINE_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_COMMENT = re.compile(r"/-.*?-/", re.DOTALL)
_SORRY_TOKEN = re.compile(r"(?<![\w.'])(sorry|admit)(?![\w'])")
_AXIOM_DECL = re.compile(r"^\s*(?:@\[[^\]]*\]\s*)?(?:private\s+|protected\s+)?axiom\s", re.M)


def format_message(message: dict[str, Any]) -> str:
    """Render one REPL message object as "error 3:4: unsolved goals ..."."""
    severity = str(message.get("severity", "info"))
    pos = message.get("pos") or {}
    where = f"{pos.get('line', '?')}:{pos.get('column', '?')}" if pos else "?:?"
    return f"{severity} {where}: {message.get('data', '')}"


def judge(item: LeanItem, reply: dict[str, Any]) -> LeanResult:
    """Apply the acceptance rule to one REPL command reply for `item`."""
    if "env" not in reply and "message" in reply:
        return LeanResult(item.id, "failed", [f"error: {reply['message']}"])
    raw_messages = reply.get("messages") or []
    messages = [format_message(m) for m in raw_messages if isinstance(m, dict)]
    if any(isinstance(m, dict) and m.get("severity") == "error" for m in raw_messages):
        return LeanResult(item.id, "failed", messages)
    status: LeanStatus = "proved"
    if reply.get("sorries") or any(_SORRY_WARNING in m for m in messages):
        status = "compiled"
    code = _BLOCK_COMMENT.sub(" ", item.code)
    code = _LINE_COMMENT.sub(" ", code)
    if _SORRY_TOKEN.search(code):
        status = "compiled"
    if _AXIOM_DECL.search(code):
        status = "compiled"
        messages.append("note: the code declares an axiom, so it does not count as proved")
    return LeanResult(item.id, status, messages)
