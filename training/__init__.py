"""Fine-tuning on the shards and the evaluation that closes the loop, on TRL (`train` extra).

- `data`: the sft / dpo tables of a build as `datasets.Dataset`s;
- `models`: loading a model and its tokenizer, precision, LoRA;
- `runner`: one TRL trainer run into an output directory (resume, save, metrics, curve);
- `sft`, `dpo`: the two stages on TRL's SFTTrainer / DPOTrainer;
- `rise`: RISE's objective, a DPOTrainer whose log-ratios weight the edit-span tokens;
- `benchmark`, `generate`, `evaluate`: read a benchmark, answer it, grade and score it.

Nothing here is imported by the base install: `check_installed()` is the one gate that
commands call before importing a module of this package.
"""

from __future__ import annotations

from mathsynth.stage import check_requires

PIP_EXTRA = "'mathsynth[train]'"
# (import name, pip name) of what the extra brings; the hint installs the extra as a whole.
REQUIRES = (
    ("torch", PIP_EXTRA),
    ("transformers", PIP_EXTRA),
    ("trl", PIP_EXTRA),
    ("peft", PIP_EXTRA),
    ("matplotlib", PIP_EXTRA),
)


def check_installed(command: str) -> None:
    """Raise MissingDependencyError ("<command> needs the package 'torch': pip install
    'mathsynth[train]'") when the `train` extra is not installed."""
    check_requires(command, REQUIRES)
