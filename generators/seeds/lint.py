"""The seed lint: everything wrong with a library file, in one run, before a build sees it.

    .venv/bin/python -m mathsynth.generators.seeds.lint generators/seeds/library/<file>.yaml
    .venv/bin/python -m mathsynth.generators.seeds.lint --show generators/seeds/library/x.yaml

Checks each seed for: schema errors; the static rules (`checks.static_problems`: at least 3
phrasings, a kind on every variable and the answer, answer type allowed for the kind, ranges,
pool references and attributes, template fields, linkable slots, no sentence repeated across
phrasings); then, running the program in the sandbox: the defaults reproduce `answer` in every
phrasing, at least MIN_PASS of DRAWS random draws are accepted (the reasons of the others are
listed), no rendered text says "1 <plural noun>" or "a 8", every solution line is an
`expr = value` step whose arithmetic recomputes, the defaults lie in their declared ranges.
`--show` prints one rendered variant per phrasing. Exit status: 0 clean, 1 problems found,
2 usage error (a file that does not exist, no file given).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mathsynth.errors import ConfigError
from mathsynth.generators.common.instantiate import Draft, render_variant, sandbox_job
from mathsynth.generators.common.pools import Pool, bundled_pools, parse_pool_file
from mathsynth.generators.common.sampling import UnsatisfiableSpecError, sample_values
from mathsynth.generators.seeds.checks import static_problems
from mathsynth.generators.seeds.library import parse_library_file
from mathsynth.inflection import article, one_plural
from mathsynth.seeds import SeedSpec
from mathsynth.verifiers.sandbox import Sandbox

DRAWS = 40
MIN_PASS = 0.3

# lower-case a/an anywhere; capitalised only opening a sentence ("Spinner A and B" is a name)
_ARTICLE = re.compile(r"(?:\b(an?)|(?:^|(?<=[.!?]\s))(An?)) ([A-Za-z0-9][\w-]*)")


def wrong_articles(text: str) -> list[str]:
    """ "a 8", "an 12", "a apple": articles that do not agree with the next word."""
    found = []
    for m in _ARTICLE.finditer(text):
        used = (m.group(1) or m.group(2)).lower()
        word = m.group(3)
        # Numbers by the spoken-number rule; words by inflect, a second opinion on the rules
        # the templates used.
        want = article(word) if word[0].isdigit() else _inflect_article(word)
        if used != want:
            found.append(m.group(0))
    return found


def _inflect_article(word: str) -> str:
    from mathsynth.inflection import _engine

    return str(_engine().a(word)).split(" ", 1)[0].lower()


@dataclass
class SeedReport:
    seed_id: str
    problems: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    passed: int = 0
    draws: int = 0


def lint_specs(
    specs: Sequence[SeedSpec],
    pools: Mapping[str, Pool],
    sandbox: Sandbox,
    *,
    draws: int = DRAWS,
    show: bool = False,
) -> list[SeedReport]:
    reports = []
    for spec in specs:
        report = SeedReport(spec.id, list(static_problems(spec, pools)))
        _run_checks(spec, sandbox, report, draws, show)
        reports.append(report)
    return reports


def _text_problems(where: str, draft: Draft) -> list[str]:
    problems = []
    for text in (draft.question, draft.solution):
        problems += [f"{where}: says {p!r}" for p in one_plural(text)]
        problems += [f"{where}: wrong article {p!r}" for p in wrong_articles(text)]
    return problems


def _step_problems(where: str, spec: SeedSpec, draft: Draft) -> list[str]:
    from mathsynth.generators.rise.steps import find_equations

    problems = []
    steps = draft.solution.strip().splitlines()[:-1]  # the last line is "The answer is X."
    for line in steps:
        if "=" not in line:
            problems.append(f"{where}: step without an `expr = value` equation: {line!r}")
            continue
        equations = find_equations(line)
        if not equations and spec.answer_type != "exact":
            problems.append(f"{where}: no arithmetic `expr = value` in step {line!r}")
        problems += [
            f"{where}: wrong arithmetic in step {line!r}" for e in equations if not e.is_correct
        ]
    return problems


def _run_checks(
    spec: SeedSpec, sandbox: Sandbox, report: SeedReport, draws: int, show: bool
) -> None:
    defaults = spec.default_values()
    result = sandbox.run([sandbox_job("default", spec, defaults)])[0]
    for k in range(len(spec.questions)):
        draft = render_variant(spec, defaults, result, phrasing=k)
        where = f"defaults, questions[{k}]"
        if not isinstance(draft, Draft):
            report.problems.append(f"{where}: {draft[0]}: {draft[1]}")
            continue
        if draft.answer != spec.answer:
            report.problems.append(
                f"{where}: the program gives {draft.answer!r}, `answer` says {spec.answer!r}"
            )
        report.problems += _text_problems(where, draft)
        report.problems += _step_problems(where, spec, draft)
        if show:
            report.shown.append(f"--- questions[{k}], defaults\n{draft.question}\n{draft.solution}")
    rng = random.Random(f"lint:{spec.id}")
    try:
        drawn = [sample_values(spec, rng) for _ in range(draws)]
    except UnsatisfiableSpecError as exc:
        report.problems.append(f"variables cannot be drawn: {exc}")
        return
    results = sandbox.run([sandbox_job(f"d{i}", spec, v) for i, v in enumerate(drawn)])
    reasons: Counter[str] = Counter()
    text_problems: list[str] = []
    for i, (values, res) in enumerate(zip(drawn, results, strict=True)):
        draft = render_variant(spec, values, res, salt=i)
        if not isinstance(draft, Draft):
            reasons[draft[0]] += 1
            continue
        report.passed += 1
        where = f"draw {values}"
        text_problems += _text_problems(where, draft) + _step_problems(where, spec, draft)
    report.draws = draws
    if report.passed < MIN_PASS * draws:
        detail = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
        report.problems.append(
            f"only {report.passed} of {draws} random draws pass (need {MIN_PASS:.0%}): {detail}"
        )
    report.problems += list(dict.fromkeys(text_problems))[:10]


def _load_pools(extra: Sequence[Path]) -> dict[str, Pool]:
    pools = dict(bundled_pools())
    for path in extra:
        pools.update(parse_pool_file(path.name, path.read_text(encoding="utf-8")))
    return pools


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mathsynth.generators.seeds.lint",
        description="Check seed library files (schema, phrasings, kinds, pools, draws).",
    )
    parser.add_argument("files", nargs="+", type=Path, help="library YAML files")
    parser.add_argument("--pools", nargs="*", type=Path, default=[], help="extra pool files")
    parser.add_argument("--draws", type=int, default=DRAWS, help="random draws per seed")
    parser.add_argument("--show", action="store_true", help="print a variant per phrasing")
    args = parser.parse_args(argv)
    for path in [*args.files, *args.pools]:
        if not path.is_file():
            parser.error(f"no such file: {path}")
    try:
        pools = _load_pools(args.pools)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = 0
    with Sandbox(workers=2, timeout_s=10.0) as sandbox:
        for path in args.files:
            text = path.read_text(encoding="utf-8")
            try:
                specs = parse_library_file(path.name, text, pools, strict=False)
            except ConfigError as exc:
                print(f"{path}: {exc}")
                failed += 1
                continue
            for report in lint_specs(specs, pools, sandbox, draws=args.draws, show=args.show):
                for shown in report.shown:
                    print(shown)
                status = "ok" if not report.problems else "FAIL"
                print(f"{path}: {report.seed_id}: {status} ({report.passed}/{report.draws} draws)")
                for problem in report.problems:
                    print(f"    {problem}")
                failed += bool(report.problems)
    if failed:
        print(f"{failed} problem seed(s)/file(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
