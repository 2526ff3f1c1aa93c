"""A stand-in for the Lean REPL: same JSON-over-stdio protocol, scripted answers.

Commands are JSON objects separated by blank lines; replies are pretty-printed JSON objects
followed by a blank line, as leanprover-community/repl prints them. What it answers depends on
markers in the command text:

    FAKE_HANG     never answers             FAKE_CRASH    exits with code 1 (stderr: panic)
    FAKE_GARBAGE  prints a non-JSON reply   FAKE_MEMORY   allocates 1 GiB, then answers
    FAKE_ERROR    an error message          FAKE_PID      an info message "pid=<pid> env=<env>"
    sorry         a sorry warning + a `sorries` entry

A command holding `import` and no `env` is the header. A `theorem n : LHS = RHS := by ...`
whose sides are arithmetic over `(literal : ℚ/ℤ/ℕ)` leaves is "proved" when both sides are
equal and gets an "unsolved goals" error otherwise, so stage tests can see real failures.
Binders `(x y : ℕ)` with hypotheses `(h₀ : x = 80)` are understood too: the goal is
evaluated with each variable replaced by its value (casts `(x : ℚ)` included); a doc
comment before the theorem is skipped.

Start options: --fail-start (exit 3 at once), --header-error (header gets an error message),
--banner (print a non-JSON line before the first reply), --weak-tactics (every command
without `sorry` fails, as if no tactic closed the goal), --reject-all (every command fails).
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import time
from fractions import Fraction

_LEAF = re.compile(r"\(\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?\s*:\s*[ℚℤℕ]\s*\)")
_THEOREM = re.compile(r"theorem\s+\S+(.*?)\s*:=\s*by", re.S)
_HYPOTHESIS = re.compile(r"\(\s*h\S*\s*:\s*(\S+)\s*=\s*([^()]+?)\s*\)")
_CAST = re.compile(r"\(\s*([^\s():]+)\s*:\s*[ℚℤℕ]\s*\)")
_DECIMAL = re.compile(r"(?<![\w.'])(\d+\.\d+)(?![\w.])")


def _split_goal(signature: str) -> tuple[str, str] | None:
    """(binders, goal) of `binders : goal`: the first colon outside parentheses."""
    depth = 0
    for i, char in enumerate(signature):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == ":" and depth == 0:
            return signature[:i], signature[i + 1 :]
    return None


def _substituted(signature: str) -> str | None:
    """The goal with every hypothesis `(h : x = v)` applied, casts dropped."""
    parts = _split_goal(signature)
    if parts is None:
        return None
    binders, goal = parts
    goal = _CAST.sub(lambda m: m.group(1) if not m.group(1)[0].isdigit() else m.group(0), goal)
    for name, value in _HYPOTHESIS.findall(binders):
        goal = re.sub(rf"(?<![\w'«]){re.escape(name)}(?![\w'»])", f"({value})", goal)
    return goal


def _leaf(match: re.Match[str]) -> str:
    num, den = match.group(1), match.group(2) or "1"
    return f"(F({num!r}) / F({den!r}))"


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "F":
        arg = node.args[0]
        assert isinstance(arg, ast.Constant)
        return Fraction(str(arg.value))
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        ops = {
            ast.Add: lambda: left + right,
            ast.Sub: lambda: left - right,
            ast.Mult: lambda: left * right,
            ast.Div: lambda: left / right,
            ast.FloorDiv: lambda: Fraction(left // right),
            ast.Mod: lambda: left % right,
            ast.Pow: lambda: left ** int(right),
        }
        return ops[type(node.op)]()
    raise ValueError("not arithmetic")


def _equation_holds(cmd: str) -> bool | None:
    match = _THEOREM.search(cmd)
    if match is None or "sorry" in cmd:
        return None
    goal = _substituted(match.group(1))
    if goal is None:
        return None
    text = _LEAF.sub(_leaf, goal).replace("^", "**")
    text = _DECIMAL.sub(lambda m: f"F({m.group(1)!r})", text)
    if "ℚ" not in match.group(1):
        # ℕ and ℤ divide with rounding (exact in the statements we make).
        text = text.replace("/", "//")
    if text.count("=") != 1:
        return None
    lhs, rhs = text.split("=")
    try:
        return _eval(ast.parse(lhs.strip(), mode="eval")) == _eval(
            ast.parse(rhs.strip(), mode="eval")
        )
    except (SyntaxError, ValueError, KeyError, ZeroDivisionError, AssertionError):
        return None


def _message(severity: str, data: str) -> dict[str, object]:
    return {
        "severity": severity,
        "pos": {"line": 1, "column": 0},
        "endPos": {"line": 1, "column": 5},
        "data": data,
    }


def main() -> None:
    args = set(sys.argv[1:])
    if "--fail-start" in args:
        print("fake: cannot find the Lean toolchain", file=sys.stderr)
        sys.exit(3)
    banner = "--banner" in args
    envs = 0
    known: set[int] = set()
    block: list[str] = []
    for line in sys.stdin:
        if line.strip():
            block.append(line)
            continue
        if not block:
            continue
        command = json.loads("".join(block))
        block = []
        cmd: str = command["cmd"]
        env = command.get("env")
        if banner:
            banner = False
            sys.stdout.write("Lean REPL (fake) starting up\n\n")
            sys.stdout.flush()
        if "FAKE_HANG" in cmd:
            time.sleep(3600)
        if "FAKE_CRASH" in cmd:
            print("fake: PANIC at the disco", file=sys.stderr)
            sys.exit(1)
        if "FAKE_GARBAGE" in cmd:
            sys.stdout.write("uh-oh, this is not JSON\n\n")
            sys.stdout.flush()
            continue
        if "FAKE_MEMORY" in cmd:
            hog = bytearray(1 << 30)
            del hog
        reply: dict[str, object]
        if env is not None and env not in known:
            reply = {"message": "Unknown environment."}
        else:
            messages: list[dict[str, object]] = []
            sorries: list[dict[str, object]] = []
            if env is None and "import" in cmd and "--header-error" in args:
                messages.append(_message("error", "unknown package 'Mathlib'"))
            if "FAKE_ERROR" in cmd:
                messages.append(_message("error", "type mismatch"))
            if "FAKE_PID" in cmd:
                messages.append(_message("info", f"pid={os.getpid()} env={env}"))
            if re.search(r"\bsorry\b", cmd):
                messages.append(_message("warning", "declaration uses 'sorry'"))
                sorries.append({"pos": {"line": 1, "column": 0}, "goal": "⊢ True"})
            header = env is None and "import" in cmd
            weak = "--weak-tactics" in args and "sorry" not in cmd
            if not header and (weak or "--reject-all" in args):
                messages.append(_message("error", "linarith failed"))
            if _equation_holds(cmd) is False:
                messages.append(_message("error", "unsolved goals\n⊢ False"))
            reply = {"env": envs, "messages": messages}
            if sorries:
                reply["sorries"] = sorries
            known.add(envs)
            envs += 1
        sys.stdout.write(json.dumps(reply, indent=2, ensure_ascii=False) + "\n\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
