"""Answer equivalence: an exact fast path for plain numbers, math-verify in killable workers.

with AnswerChecker(timeout_s=2.0) as checker:
    checker.check(gold="3/4", pred="0.75")  # Verdict(verdict="correct", detail=...)
"""

from mathsynth.verifiers.answers.checker import AnswerChecker, Verdict, fast_verdict
from mathsynth.verifiers.answers.pool import AnswerWorkerError

__all__ = ["AnswerChecker", "AnswerWorkerError", "Verdict", "fast_verdict"]
