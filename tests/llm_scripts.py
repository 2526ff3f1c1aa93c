"""A scripted model for whole-build tests: it answers every prompt the LLM generators send.

`ScriptedLLM` is a `MockOpenAIServer` responder. It tells the prompt kinds apart by their
fixed wording (`KINDS`), answers each correctly, and injects what a test scripts for a kind:
`script={"augment": ["rate_limited", "truncated"]}` gives the first distinct augment prompt to
arrive a 429 (once; the retry is answered) and the second a truncated reply; later prompts of
that kind are answered normally. The i-th *distinct* prompt is keyed by its content, so the
retries of one prompt see the same scenario. Where arrival order is not fixed, a dict picks
by content instead: `{"decouple": {"Mia packs": "always_wrong"}}`.

Scenarios that every kind understands:
    rate_limited   429 + Retry-After on the first attempt, then the answer
    server_error   500 on the first attempt, then the answer
    malformed      a body that is not JSON on the first attempt, then the answer
    slow           every attempt answers after `slow_s` (beyond the client's timeout)
    truncated      finish_reason "length"          empty    empty content
Deliberately wrong answers, per kind:
    solve          minority (3 of 4 paths agree), no_majority, program_disagrees
    generate       program_disagrees (the program returns another number than the solution)
    self_edit      admits_error (the edited step says it is a mistake)
    score          poor
    decouple       wrong_then_fixed (first reply's program is wrong, the repair is right),
                   always_wrong

    truncated_reasoning   cut off inside the thinking (the reasoning styles below)

The questions the script writes itself (MuggleMath rewrites, MathScale problems) carry their
numbers in a fixed form, so later prompts about them (solve, RISE samples) can be answered
right or wrong on purpose. Questions it did not write (bundled seeds) get no RISE samples
it could judge; those requests are answered with a plain "I am not sure." text.

Reply styles (`style=`), the same answers each time:
    plain               the answer only
    think               "<think>DRAFT</think>" then the answer, in `content` (Qwen3, R1)
    think_open          "DRAFT</think>" then the answer: the chat template opened the block
    reasoning_content   DRAFT in the message's `reasoning_content` field (vLLM, SGLang)
    reasoning           DRAFT in the message's `reasoning` field (OpenRouter, newer vLLM)
The DRAFT is what a reasoning model writes first: the answer with every number off by one,
over several lines, ending in its own "The answer is" line; a parser that sees it gets the
numbers wrong.

`json_noise=f` makes a fraction f of the JSON replies (augment, concepts, score, decouple)
malformed, in one of the ways models break JSON (cut off, single quotes, unquoted keys),
unless the request carries a JSON-schema `response_format`: guided decoding would have kept
the model to the schema, so those get the clean object.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from llm_mock_server import Reply

# (kind, wording only that prompt has); first match wins, so the more specific come first.
KINDS: tuple[tuple[str, str], ...] = (
    ("decouple", "You turn a math word problem into a reusable template"),
    ("augment", "Rewrite the given question into a new question."),
    ("solve", "Then write a Python program in a ```python block"),
    ("concepts", "Identify the mathematical topics and knowledge points"),
    ("generate", "Write a new math word problem that a student can only solve"),
    ("self_edit", "Rewrite the current step so that it contains exactly one error"),
    ("rise_solve", "Solve the math problem step by step"),
    ("translate", "into a single Lean 4 theorem"),
    ("score", "Grade it excellent, good, above average, fair or poor."),
)
TRANSPORT_ONCE = ("rate_limited", "server_error", "malformed")
JSON_KINDS = ("decouple", "augment", "concepts", "score")
STYLES = ("plain", "think", "think_open", "reasoning_content", "reasoning")

NAMES = ("Ava", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana")
# MuggleMath rewrites: "<name> stacks A crates with B jars in each crate and then adds C more
# jars. How many jars does <name> have?"  →  A * B + C
_CRATES = re.compile(r"stacks (\d+) crates with (\d+) jars in each crate and then adds (\d+)")
# MathScale problems: "A shop packs A boxes of B stickers and gives away C." → A * B - C
_STICKERS = re.compile(r"packs (\d+) boxes of (\d+) stickers and gives away (\d+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Ask:
    """One request as a prompt-kind method sees it. `serial` counts earlier answers to the
    same request: a model sampling again writes something new."""

    prompt: str
    messages: list[Any]
    n: int
    scenario: str
    serial: int


def prompt_kind(request: dict[str, Any]) -> str:
    text = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
    return next((kind for kind, marker in KINDS if marker in text), "unknown")


def request_key(request: dict[str, Any]) -> str:
    """What the client's cache keys on (messages and sampling), as one string."""
    fields = {k: request.get(k) for k in ("messages", "temperature", "max_tokens", "n")}
    return json.dumps(fields, sort_keys=True)


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


class ScriptedLLM:
    """The responder (see module doc). `answered` holds the request keys that got a 200 reply
    in time (the ones the client can cache); `kinds` counts requests per kind."""

    def __init__(
        self,
        script: dict[str, list[str] | dict[str, str]] | None = None,
        *,
        slow_s: float = 3.0,
        formulas: dict[str, str] | None = None,
        style: str = "plain",
        json_noise: float = 0.0,
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}")
        self.script = dict(script or {})
        self.slow_s = slow_s
        self.style = style
        self.json_noise = json_noise
        self.malformed: Counter[str] = Counter()  # JSON replies broken on purpose, per kind
        # decouple: question prefix → the expression over v1, v2, ... that answers it
        self.formulas = dict(formulas or {})
        self.answered: set[str] = set()
        self.kinds: Counter[str] = Counter()
        self.assigned: dict[str, str] = {}  # request key → scenario
        self.served: dict[str, list[str]] = {}  # kind → scenarios given out, in order
        self._attempts: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()
        self._replies: Counter[str] = Counter()  # answers given per request key
        self._lock = threading.Lock()

    def scenario(self, key: str) -> str | None:
        """The scenario the prompt `key` was given, if any (None: answered normally)."""
        return self.assigned.get(key)

    def __call__(self, request: dict[str, Any]) -> str | Reply:
        kind = prompt_kind(request)
        key = request_key(request)
        with self._lock:
            self.kinds[kind] += 1
            self._attempts[key] += 1
            attempt = self._attempts[key]
            if attempt == 1:
                chosen = self._choose(kind, request)
                if chosen is not None:
                    self.assigned[key] = chosen
                    self.served.setdefault(kind, []).append(chosen)
            scenario = self.assigned.get(key, "ok")
        fault = self._fault(scenario, attempt)
        if fault is not None:
            return fault
        reply = self._styled(kind, request, key, self._answer(kind, request, scenario))
        with self._lock:
            self.answered.add(key)
        return reply

    def _choose(self, kind: str, request: dict[str, Any]) -> str | None:
        """The scenario of a prompt seen for the first time: by arrival for a list, by the
        first substring of the prompt found for a dict (when arrival order is not fixed)."""
        queue = self.script.get(kind)
        if isinstance(queue, dict):
            text = json.dumps(request["messages"], ensure_ascii=False)
            return next((s for marker, s in queue.items() if marker in text), None)
        position = self._seen[kind]
        self._seen[kind] += 1
        return queue[position] if queue is not None and position < len(queue) else None

    def _fault(self, scenario: str, attempt: int) -> Reply | None:
        if scenario in TRANSPORT_ONCE and attempt > 1:
            return None
        if scenario == "rate_limited":
            return Reply.rate_limited(retry_after=0.2)
        if scenario == "server_error":
            return Reply.server_error()
        if scenario == "malformed":
            return Reply.malformed_body()
        if scenario == "slow":
            return Reply.slow(self.slow_s, content="too late")
        return None

    def _styled(self, kind: str, request: dict[str, Any], key: str, reply: str | Reply) -> Reply:
        """The answer in the script's reply style, with its JSON noise."""
        if isinstance(reply, str):
            reply = Reply(content=reply)
        if reply.raw_body is not None or reply.status != 200 or reply.reasoning is not None:
            return reply
        texts = list(reply.content) if isinstance(reply.content, list) else [reply.content]
        if kind in JSON_KINDS and "response_format" not in request and self._noisy(key):
            texts = [_malform(t, _digest(key)) for t in texts]
            with self._lock:
                self.malformed[kind] += 1
        if self.style == "plain":
            content: str | list[str] = texts if isinstance(reply.content, list) else texts[0]
            return Reply(content=content, finish_reason=reply.finish_reason)
        drafts = [_draft(t) for t in texts]
        if self.style in ("reasoning_content", "reasoning"):
            return Reply(
                content=texts if len(texts) > 1 else texts[0],
                reasoning=drafts if len(texts) > 1 else drafts[0],
                reasoning_field=self.style,
                finish_reason=reply.finish_reason,
            )
        opening = "<think>\n" if self.style == "think" else ""
        styled = [f"{opening}{d}\n</think>\n\n{t}" for d, t in zip(drafts, texts, strict=True)]
        return Reply(
            content=styled if len(styled) > 1 else styled[0], finish_reason=reply.finish_reason
        )

    def _noisy(self, key: str) -> bool:
        return _digest(f"noise:{key}") % 1000 < self.json_noise * 1000

    def _answer(self, kind: str, request: dict[str, Any], scenario: str) -> str | Reply:
        if scenario == "truncated_reasoning":
            draft = "Let me think about this step by step. First 3 * 4 = 12, then"
            if self.style in ("reasoning_content", "reasoning"):
                return Reply(
                    content="", reasoning=draft, reasoning_field=self.style, finish_reason="length"
                )
            return Reply(content=f"<think>\n{draft}", finish_reason="length")
        if scenario == "truncated":
            return Reply.truncated("Let me think about this step by step. First")
        if scenario == "empty":
            return Reply.empty()
        messages = request["messages"]
        with self._lock:
            serial = self._replies[request_key(request)]
            self._replies[request_key(request)] += 1
        ask = Ask(
            str(messages[-1]["content"]), messages, int(request.get("n") or 1), scenario, serial
        )
        answer = getattr(self, f"_{kind}", None)
        if answer is None:
            return "I do not know what to do with this prompt."
        return answer(ask)

    # -- one method per prompt kind -------------------------------------------------------------

    def _augment(self, ask: Ask) -> str:
        h = _digest(ask.prompt)
        a, b, c = 2 + h % 8, 3 + (h // 8) % 9, 1 + (h // 72) % 9
        name = NAMES[(h // 648) % len(NAMES)]
        question = (
            f"{name} stacks {a} crates with {b} jars in each crate and then adds {c} more jars. "
            f"How many jars does {name} have?"
        )
        return json.dumps({"question": question})

    def _solve(self, ask: Ask) -> Reply | str:
        match = _CRATES.search(ask.prompt)
        if match is None:
            return "I cannot solve this."
        a, b, c = (int(x) for x in match.groups())
        total = a * b + c
        stated = [total] * ask.n
        returned = [total] * ask.n
        if ask.scenario == "minority":
            stated[-1] = returned[-1] = total + 1
        elif ask.scenario == "no_majority":
            stated = returned = [total + i for i in range(ask.n)]
        elif ask.scenario == "program_disagrees":
            returned = [total + 5] * ask.n
        paths = [
            f"{a} * {b} = {a * b}\n{a * b} + {c} = {s}\nThe answer is {s}.\n\n"
            f"```python\ndef solution():\n    stacked = {a} * {b}\n    return stacked + {c}"
            f"{'' if r == total else f' + {r - total}'}\n```"
            for s, r in zip(stated, returned, strict=True)
        ]
        return Reply(content=paths)

    def _concepts(self, ask: Ask) -> str:
        h = _digest(ask.prompt)
        topics = [("arithmetic", "measurement", "money")[h % 3]]
        points = ["multiplication", ("addition", "subtraction", "unit rates")[(h // 3) % 3]]
        return json.dumps({"topics": topics, "knowledge_points": points})

    def _generate(self, ask: Ask) -> str:
        h = _digest(f"{ask.prompt}#{ask.serial}")
        a, b = 2 + h % 8, 3 + (h // 8) % 9
        c = 1 + (h // 72) % (a * b - 1)
        left = a * b - c
        off = " + 1" if ask.scenario == "program_disagrees" else ""
        return (
            f"Question: A shop packs {a} boxes of {b} stickers and gives away {c}. "
            "How many stickers are left?\n"
            f"Solution: {a} * {b} = {a * b}\n{a * b} - {c} = {left}\n"
            f"The answer is {left}.\n"
            f"```python\ndef solution():\n    packed = {a} * {b}\n    return packed - {c}{off}\n```"
        )

    def _self_edit(self, ask: Ask) -> str:
        step = ask.prompt.rsplit("Current step:\n", 1)[-1].strip()
        numbers = list(_NUMBER.finditer(step))
        if not numbers:
            return step
        last = numbers[-1]
        wrong = str(Fraction(last.group()) + 1)
        if "." in last.group():
            wrong = f"{float(Fraction(last.group()) + 1):g}"
        edited = step[: last.start()] + wrong + step[last.end() :]
        if ask.scenario == "admits_error":
            edited += " (this step contains a deliberate mistake)"
        return edited

    def _rise_solve(self, ask: Ask) -> Reply | str:
        crates = _CRATES.search(ask.prompt)
        match = crates or _STICKERS.search(ask.prompt)
        if match is None:
            return "I am not sure."
        a, b, c = (int(x) for x in match.groups())
        sign = "+" if crates else "-"
        total = a * b + c if crates else a * b - c
        texts = []
        for i in range(ask.n):
            got = total if i % 2 == 0 else total + 10  # half right, half wrong
            texts.append(f"{a} * {b} = {a * b}\n{a * b} {sign} {c} = {got}\nThe answer is {got}.")
        return Reply(content=texts)

    def _translate(self, ask: Ask) -> str:
        answer = ask.prompt.rsplit("Answer:", 1)[-1].strip()
        return f"```lean\ntheorem answer_stated : ({answer} : ℚ) = {answer} := by sorry\n```"

    def _score(self, ask: Ask) -> str:
        score = "poor" if ask.scenario == "poor" else "good"
        return json.dumps(
            {
                "criteria": {"answer": "the conclusion states the given answer"},
                "score": score,
                "reason": f"scripted grade {score}",
            }
        )

    def _decouple(self, ask: Ask) -> str:
        # The problem is in the first user message; a repair round adds two more messages.
        problem = str(ask.messages[1]["content"])
        question = problem.split("Problem:\n", 1)[1].split("\n\nGold answer:", 1)[0]
        formula = next((f for q, f in self.formulas.items() if question.startswith(q)), None)
        if formula is None:
            return "I cannot template this problem."
        repair = len(ask.messages) > 2
        if ask.scenario == "always_wrong" or (ask.scenario == "wrong_then_fixed" and not repair):
            formula = " + ".join(f"v{i + 1}" for i in range(len(_NUMBER.findall(question))))
        return json.dumps(template_reply(question, formula))


def _draft(answer: str) -> str:
    """A reasoning model's first draft of `answer`: every number one more, several lines, and
    its own final-answer line."""
    shifted = _NUMBER.sub(lambda m: str(Fraction(m.group()) + 1), answer)
    return (
        "Okay, let me work this out before answering.\n"
        f"Draft:\n{shifted}\n"
        "Hmm, let me double-check the numbers.\n"
        f"The answer is {_NUMBER.findall(shifted)[-1] if _NUMBER.search(shifted) else 0}."
    )


def _malform(text: str, h: int) -> str:
    """`text` (a JSON object) broken the way models break JSON."""
    way = h % 3
    if way == 0:
        return text[: max(1, len(text) * 2 // 3)]  # cut off mid-object
    if way == 1:
        return text.replace('"', "'")  # a Python dict, not JSON
    return re.sub(r'"(\w+)":', r"\1:", text)  # unquoted keys


def template_reply(question: str, formula: str) -> dict[str, Any]:
    """A decoupling reply: every number of `question` becomes v1, v2, ...; the program
    returns `formula` over them."""
    numbers = list(_NUMBER.finditer(question))
    names = [f"v{i + 1}" for i in range(len(numbers))]
    template = question
    for name, match in reversed(list(zip(names, numbers, strict=True))):
        template = template[: match.start()] + "{" + name + "}" + template[match.end() :]
    variables = {
        name: {"type": "int", "min": 2, "max": 12, "default": int(match.group())}
        for name, match in zip(names, numbers, strict=True)
    }
    shown = re.sub(r"v(\d+)", r"{v\1}", formula)
    return {
        "question": template,
        "solution": f"{shown} = {{answer}}",
        "program": f"def solution({', '.join(names)}):\n    total = {formula}\n    return total",
        "variables": variables,
        "constraints": [],
        "whole": [],
        "answer_type": "int",
        "topics": ["arithmetic"],
        "knowledge_points": ["multiplication"],
        "difficulty": 1,
    }
