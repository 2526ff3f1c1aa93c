"""Rows for `mathsynth doctor`: what each optional component can do on this machine."""

from __future__ import annotations

from mathsynth.config import BuildConfig


def doctor_rows(config: BuildConfig) -> list[tuple[str, bool, str]]:
    rows: list[tuple[str, bool, str]] = []
    from mathsynth.verifiers.sandbox import isolation_report

    # every isolation layer, then each entry of the filesystem a program sees ("mount ...")
    for layer, ok, detail in isolation_report(include_mounts=True):
        rows.append(
            (f"sandbox {layer}" if layer.startswith("mount ") else f"sandbox: {layer}", ok, detail)
        )
    try:
        from mathsynth.verifiers.lean import describe_lean_backend
    except ImportError:
        rows.append(("lean", False, "Lean verifier not installed in this version"))
    else:
        name, ok, detail = describe_lean_backend(config.lean)
        rows.append((f"lean: {name}", ok, detail))
    if config.llm.configured:
        rows.append(("llm", True, f"{config.llm.model} at {config.llm.base_url}"))
    else:
        rows.append(
            ("llm", False, "not configured: set --llm-base-url and --llm-model (offline build)")
        )
    return rows
