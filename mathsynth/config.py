"""The one settings model. Precedence, lowest to highest: defaults, YAML file (`--config`),
environment variables (`MATHSYNTH_...`, nested with `__`, e.g. MATHSYNTH_LLM__MODEL), CLI flags.

`content_hash()` covers exactly the fields that change what a build produces; it goes into
every record's provenance and guards an output directory against mixing two configs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from mathsynth.errors import ConfigError, InputFileError

GENERATORS = ("infinitymath", "mugglemath", "mathscale", "rise", "formalize")


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    max_tokens: int = Field(1024, gt=0)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    samples: int = Field(4, ge=1, description="reasoning paths per MuggleMath question")
    agreement_threshold: float = Field(0.5, gt=0.0, le=1.0)
    concurrency: int = Field(64, ge=1, description="requests in flight, not records")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


class LeanSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repl_cmd: str | None = None
    server_url: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    pool_size: int = Field(1, ge=1)
    memory_mb: int = Field(8192, ge=256)
    recycle_after: int = Field(200, ge=1)


class SandboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int | None = Field(None, ge=1, description="default: one per CPU core")
    timeout_s: float = Field(5.0, gt=0)
    memory_mb: int = Field(1024, ge=64)
    recycle_after: int = Field(5000, ge=1)


class BuildConfig(BaseSettings):
    """Everything a `mathsynth build` needs to know."""

    model_config = SettingsConfigDict(
        env_prefix="MATHSYNTH_", env_nested_delimiter="__", extra="forbid"
    )

    name: str = "default"
    seeds: str | None = Field(None, description="path or HF dataset id; None = bundled library")
    max_seeds: int | None = Field(None, ge=1)
    out: Path | None = Field(None, description="default: ./data/<name>")
    generators: list[str] = Field(default_factory=lambda: list(GENERATORS))
    variants: int = Field(128, ge=1, description="InfinityMATH variants per seed")
    mugglemath_variants: int = Field(16, ge=1, description="MuggleMath questions per seed")
    mathscale_samples: int = Field(1024, ge=1, description="MathScale concept walks")
    seed: int = 0
    batch_size: int = Field(1000, ge=1, description="records per Prefect task")
    max_workers: int = Field(2, ge=1, description="Prefect task runner threads")
    llm: LLMSettings = Field(default_factory=LLMSettings)
    lean: LeanSettings = Field(default_factory=LeanSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)

    @field_validator("generators", mode="before")
    @classmethod
    def _split_generators(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("generators")
    @classmethod
    def _known_generators(cls, value: list[str]) -> list[str]:
        unknown = [g for g in value if g not in GENERATORS]
        if unknown:
            raise ValueError(f"unknown generator {unknown[0]!r} (known: {', '.join(GENERATORS)})")
        if not value:
            raise ValueError("no generator selected")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _llm_endpoint_complete(self, info: ValidationInfo) -> BuildConfig:
        # Half an endpoint would silently fall back to an offline build. Checked on the merged
        # config only (`load_config` sets the context): the environment alone may hold one half.
        if not (info.context or {}).get("complete"):
            return self
        has_url, has_model = bool(self.llm.base_url), bool(self.llm.model)
        if has_url != has_model:
            given, missing = ("model", "base_url") if has_model else ("base_url", "model")
            flag = "--llm-base-url" if missing == "base_url" else "--llm-model"
            raise ValueError(
                f"llm.{given} is set but llm.{missing} is not: set {flag} (or llm.{missing} "
                f"in the config, MATHSYNTH_LLM__{missing.upper()} in the environment)"
            )
        return self

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("data") / self.name

    def api_key(self) -> str | None:
        """The LLM key: config/env `MATHSYNTH_LLM__API_KEY`, else OPENAI_API_KEY."""
        if self.llm.api_key is not None:
            return self.llm.api_key.get_secret_value()
        return os.environ.get("OPENAI_API_KEY")

    def content_dict(self) -> dict[str, Any]:
        """The fields that decide what gets built (no paths, secrets or parallelism)."""
        data = self.model_dump(
            mode="json",
            exclude={
                "out": True,
                "max_workers": True,
                "llm": {"api_key", "concurrency", "timeout_s", "max_retries"},
                "lean": {"pool_size", "recycle_after"},
                "sandbox": {"workers", "recycle_after"},
            },
        )
        return data

    def content_hash(self) -> str:
        blob = json.dumps(self.content_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def effective(self) -> dict[str, Any]:
        """The full effective config as JSON-able data, with the API key masked."""
        data = self.model_dump(mode="json")
        if data["llm"].get("api_key"):
            data["llm"]["api_key"] = "***"
        data["out"] = str(self.out_dir)
        return data


def load_config(path: str | Path | None = None, **overrides: Any) -> BuildConfig:
    """Defaults < YAML file < environment < `overrides` (CLI flags; None values are ignored).

    Nested overrides use dotted keys: {"llm.model": "x"}. Raises ConfigError / InputFileError
    with a one-line message on a bad file or value.
    """
    file_values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise InputFileError(p, "no such config file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InputFileError(p, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputFileError(p, "expected a YAML mapping at the top level")
        file_values = loaded

    env_model = _from_env_only()
    merged = _deep_merge(file_values, env_model)
    for key, value in overrides.items():
        if value is None:
            continue
        target = merged
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    try:
        return BuildConfig.model_validate(merged, context={"complete": True})
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a check across fields: its message says it all
            raise ConfigError(message) from None
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"invalid config value for {loc}: {message}") from None


def _from_env_only() -> dict[str, Any]:
    """Settings given by environment variables only (so they can sit above the YAML file)."""
    try:
        full = BuildConfig()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "config"
        raise ConfigError(
            f"invalid MATHSYNTH_ environment value for {loc}: {first['msg']}"
        ) from None
    return full.model_dump(exclude_unset=True)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
