"""Prompts as data: every LLM prompt is a Jinja2 template file shipped with its method.

A method keeps its prompts in `generators/<method>/prompts/`: `<name>.j2` is the template and,
for a prompt whose reply is JSON, `<name>.schema.json` is the reply's JSON schema (sent as
`response_format` when the server supports structured outputs, see `client`). The prompt's
kind is `<method>.<name>` ("rise.self_edit"): the name budgets (`llm.max_tokens`), stats and
provenance use.

A template renders to the conversation. Without role markers it is one user message; with
them, each line `--- system ---`, `--- user ---` or `--- assistant ---` starts a message of that
role (a system prompt, few-shot turns), e.g.

    --- system ---
    You turn a math word problem into a reusable template.
    --- user ---
    Problem:
    {{ question }}

The markers are read from the template's text, not from what it renders to, so data (a
problem that happens to contain such a line) can never open a message; whatever comes before
the first marker (`{% set %}`, comments) is shared by every message and must render to
nothing.

`llm.prompts_dir` overrides any of them: `<prompts_dir>/<method>/<name>.j2` (and
`.schema.json`) replaces the shipped file of that kind; `mathsynth prompts export DIR` writes
the shipped ones there to start from. An override may use only the variables the shipped
template is rendered with (its stage provides no others); a file that is no known prompt, a
template that does not parse, or an unknown variable is refused with one line when the
library is opened, before a build writes anything.

Each prompt has a `hash` (sha256 of its template and schema text): it is part of the request
cache key and of each row's provenance, so editing one prompt re-asks only that prompt.
Templates render in Jinja's sandbox with undefined variables as errors and no HTML escaping.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from mathsynth import registry
from mathsynth.errors import ConfigError
from mathsynth.generators.llm.chat import ChatRequest, Message

TEMPLATE_SUFFIX = ".j2"
SCHEMA_SUFFIX = ".schema.json"
_ROLE_LINE = re.compile(r"^--- (system|user|assistant) ---[ \t]*$", re.MULTILINE)


class PromptError(ConfigError):
    """A prompt template or schema cannot be used: unknown kind, bad Jinja, bad JSON schema,
    or a variable its stage does not provide."""


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Prompt:
    """One loaded prompt. `origin` says where it came from (shipped, or an override path)."""

    kind: str
    source: str
    schema: dict[str, Any] | None
    origin: str
    hash: str
    variables: frozenset[str]
    # (role, template) per message; the preamble renders alone to check it makes no text.
    _sections: tuple[tuple[str, jinja2.Template], ...] = field(repr=False, compare=False)
    _preamble: jinja2.Template | None = field(repr=False, compare=False)

    def render(self, **values: Any) -> list[Message]:
        """The conversation this prompt makes from `values`.

        Failure modes: PromptError when a variable the template uses is missing, the
        preamble before the first role marker makes text, or the conversation is empty or
        does not end with a user turn.
        """
        try:
            if self._preamble is not None and self._preamble.render(**values).strip():
                raise PromptError(
                    f"prompt {self.kind} ({self.origin}): text before the first role marker "
                    "(--- system --- / --- user --- / --- assistant ---)"
                )
            rendered = [(role, t.render(**values).strip()) for role, t in self._sections]
        except jinja2.TemplateError as exc:
            raise PromptError(f"prompt {self.kind} ({self.origin}): {exc}") from None
        messages: list[Message] = [{"role": r, "content": c} for r, c in rendered if c]
        if not messages or messages[-1]["role"] != "user":
            raise PromptError(
                f"prompt {self.kind} ({self.origin}): the conversation must end with a "
                "non-empty user turn"
            )
        return messages

    def request(
        self,
        values: dict[str, Any],
        *,
        n: int = 1,
        temperature: float | None = None,
        first_sample: int = 0,
    ) -> ChatRequest:
        """A ChatRequest of this prompt: its kind, hash and reply schema travel with it."""
        return ChatRequest(
            messages=self.render(**values),
            n=n,
            temperature=temperature,
            purpose=self.kind,
            first_sample=first_sample,
            prompt_hash=self.hash,
            response_schema=self.schema,
        )

    def follow_up(self, request: ChatRequest, reply: str, values: dict[str, Any]) -> ChatRequest:
        """`request`'s conversation, the model's `reply` to it, then this prompt as the next
        user turn (a repair round). It keeps `request`'s reply schema; its hash covers both."""
        turn = self.render(**values)
        return ChatRequest(
            messages=[*request.messages, {"role": "assistant", "content": reply}, *turn],
            n=request.n,
            temperature=request.temperature,
            purpose=self.kind,
            first_sample=request.first_sample,
            prompt_hash=_digest(f"{request.prompt_hash}+{self.hash}"),
            response_schema=request.response_schema,
        )


class PromptLibrary:
    """The prompts of every built-in method, with `prompts_dir` overrides applied.

    Opening it reads and checks every override (see module doc); `get(kind)` loads a
    prompt once. Failure modes: PromptError (one line naming the file and the problem).
    """

    def __init__(self, prompts_dir: Path | None = None) -> None:
        self.prompts_dir = Path(prompts_dir) if prompts_dir is not None else None
        self._env = _environment()
        self._shipped = shipped_prompts()
        self._loaded: dict[str, Prompt] = {}
        self.overrides = self._find_overrides()
        for kind in self.overrides:
            self.get(kind)  # checked now, not halfway through a build

    @property
    def kinds(self) -> list[str]:
        return sorted(self._shipped)

    def get(self, kind: str) -> Prompt:
        if kind not in self._loaded:
            self._loaded[kind] = self._load(kind)
        return self._loaded[kind]

    def shipped(self, kind: str) -> Prompt:
        """The prompt as the package ships it, ignoring overrides."""
        folder = self._folder_of(kind)
        name = kind.split(".", 1)[1]
        template = folder / f"{name}{TEMPLATE_SUFFIX}"
        schema = folder / f"{name}{SCHEMA_SUFFIX}"
        return self._make(
            kind,
            template.read_text(encoding="utf-8"),
            schema.read_text(encoding="utf-8") if schema.is_file() else None,
            "shipped",
        )

    def _folder_of(self, kind: str) -> Traversable:
        if kind not in self._shipped:
            known = ", ".join(self.kinds)
            raise PromptError(f"unknown prompt kind {kind!r} (known: {known})")
        return self._shipped[kind]

    def _load(self, kind: str) -> Prompt:
        shipped = self.shipped(kind)
        if kind not in self.overrides:
            return shipped
        template, schema = self.overrides[kind]
        source = template.read_text(encoding="utf-8") if template else shipped.source
        schema_text = (
            schema.read_text(encoding="utf-8")
            if schema
            else (json.dumps(shipped.schema, indent=2) if shipped.schema is not None else None)
        )
        origin = str(template or schema)
        prompt = self._make(kind, source, schema_text, origin)
        extra = prompt.variables - shipped.variables
        if extra:
            provided = ", ".join(sorted(shipped.variables)) or "none"
            raise PromptError(
                f"{origin}: uses {', '.join(sorted(extra))}, which the {kind} prompt is not "
                f"rendered with (provided: {provided})"
            )
        if (prompt.schema is None) != (shipped.schema is None):
            raise PromptError(
                f"{origin}: the {kind} reply is "
                f"{'text' if shipped.schema is None else 'JSON'}; its schema cannot be "
                f"{'added' if shipped.schema is None else 'removed'}"
            )
        return prompt

    def _make(self, kind: str, source: str, schema_text: str | None, origin: str) -> Prompt:
        marks = list(_ROLE_LINE.finditer(source))
        try:
            parsed = self._env.parse(source)
            if not marks:
                sections = (("user", self._env.from_string(source)),)
                preamble = None
            else:
                head = source[: marks[0].start()]
                bodies = [
                    source[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(source)]
                    for i, m in enumerate(marks)
                ]
                # The preamble's {% set %}s must be seen by every section.
                sections = tuple(
                    (m.group(1), self._env.from_string(head + body))
                    for m, body in zip(marks, bodies, strict=True)
                )
                preamble = self._env.from_string(head)
        except jinja2.TemplateSyntaxError as exc:
            line = exc.lineno
            raise PromptError(f"{origin}: line {line}: {exc.message}") from None
        schema = None
        if schema_text is not None:
            try:
                schema = json.loads(schema_text)
            except ValueError as exc:
                raise PromptError(f"{origin}: the reply schema is not JSON ({exc})") from None
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise PromptError(f"{origin}: the reply schema must describe a JSON object")
        blob = source + "\0" + (json.dumps(schema, sort_keys=True) if schema else "")
        return Prompt(
            kind=kind,
            source=source,
            schema=schema,
            origin=origin,
            hash=_digest(blob),
            variables=frozenset(meta.find_undeclared_variables(parsed)),
            _sections=sections,
            _preamble=preamble,
        )

    def _find_overrides(self) -> dict[str, tuple[Path | None, Path | None]]:
        """{kind: (template override, schema override)} found under prompts_dir."""
        found: dict[str, tuple[Path | None, Path | None]] = {}
        if self.prompts_dir is None:
            return found
        for path in sorted(p for p in self.prompts_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(self.prompts_dir)
            if any(part.startswith(".") for part in relative.parts):
                continue  # editor and VCS droppings
            kind, is_schema = _kind_of(relative)
            if kind is None or kind not in self._shipped:
                raise PromptError(
                    f"{path}: not a prompt of mathsynth (expected <method>/<name>.j2 or "
                    f"<method>/<name>.schema.json for one of: {', '.join(self.kinds)})"
                )
            template, schema = found.get(kind, (None, None))
            found[kind] = (template, path) if is_schema else (path, schema)
        return found

    def export(self, folder: Path) -> list[Path]:
        """Write every shipped template and schema under `folder` (the override layout);
        existing files are left alone. Returns the files written."""
        written: list[Path] = []
        for kind in self.kinds:
            method, name = kind.split(".", 1)
            source = self._shipped[kind]
            for suffix in (TEMPLATE_SUFFIX, SCHEMA_SUFFIX):
                item = source / f"{name}{suffix}"
                if not item.is_file():
                    continue
                target = folder / method / f"{name}{suffix}"
                if target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
                written.append(target)
        return written


def shipped_prompts() -> dict[str, Traversable]:
    """{kind: the package folder holding its template} for every built-in method."""
    kinds: dict[str, Traversable] = {}
    for method, package in registry.BUILTIN.items():
        folder = resources.files(package) / "prompts"
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.name.endswith(TEMPLATE_SUFFIX):
                kinds[f"{method}.{item.name[: -len(TEMPLATE_SUFFIX)]}"] = folder
    return kinds


def _kind_of(relative: Path) -> tuple[str | None, bool]:
    if len(relative.parts) != 2:
        return None, False
    method, filename = relative.parts
    for suffix, is_schema in ((SCHEMA_SUFFIX, True), (TEMPLATE_SUFFIX, False)):
        if filename.endswith(suffix):
            return f"{method}.{filename[: -len(suffix)]}", is_schema
    return None, False


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
