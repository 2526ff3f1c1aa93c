"""Verifiers: sandboxed execution, answer equivalence, Lean checks, dedup/decontamination."""
