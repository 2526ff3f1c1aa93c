"""The one settings model. Precedence, lowest to highest: defaults, YAML file (`--config`),
environment variables (`MATHSYNTH_...`, nested with `__`, e.g. MATHSYNTH_LLM__MODEL), CLI flags.
The merge is pydantic-settings' own: flags are the init source, then the environment source,
then its YAML source (`settings_customise_sources`), nested sections merged key by key.

`content_hash()` covers exactly the fields that change what a build produces; it goes into
every record's provenance and guards an output directory against mixing two configs.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from mathsynth import registry
from mathsynth.errors import ConfigError, InputFileError

# The YAML file of the config being loaded (read by `settings_customise_sources`).
_YAML_FILE: ContextVar[Path | None] = ContextVar("mathsynth_config_file", default=None)


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


class DecontaminationSettings(BaseModel):
    """Benchmarks to decontaminate against (`verifiers.decontam`) and the methods' knobs.

    In YAML either a list of sources (`decontaminate: [openai/gsm8k:main, math500.jsonl]`)
    or a mapping with `sources` and any of the knobs; on the command line
    `--decontaminate A,B`.
    """

    model_config = ConfigDict(extra="forbid")

    # NoDecode: MATHSYNTH_DECONTAMINATE__SOURCES=a,b is split by the validator, not JSON.
    sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="paths or HF dataset ids"
    )
    ngram: int = Field(13, ge=1, description="words per n-gram (both n-gram methods)")
    min_words: int = Field(8, ge=1, description="shorter items only match as a whole text")
    fuzzy_threshold: float = Field(0.6, gt=0.0, lt=1.0, description="MinHash Jaccard")
    fuzzy_ngram: int = Field(3, ge=1, description="words per shingle of the fuzzy method")
    num_perm: int = Field(128, ge=16, le=1024)

    @model_validator(mode="before")
    @classmethod
    def _sources_only(cls, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            return {"sources": value}
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _split_sources(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("sources")
    @classmethod
    def _distinct_sources(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _bands(self) -> DecontaminationSettings:
        _check_lsh_bands(self.fuzzy_threshold, self.num_perm, "fuzzy_threshold")
        return self


# MinHash-LSH band weights (false positive, false negative) for near-duplicate and fuzzy
# decontamination lookups: recall first. A false candidate only costs one Jaccard estimate;
# datasketch's even weights miss 60 % of pairs right at the threshold, these 13 %.
LSH_WEIGHTS = (0.1, 0.9)


@lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) datasketch chooses for `threshold` under LSH_WEIGHTS. Cached:
    choosing integrates the collision curves numerically (~80 ms), and every LSH index of a
    build (one per near-duplicate component) uses the same answer.

    Failure modes: ValueError when fewer than two bands would do (a threshold too close to 1
    for `num_perm`)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


def _check_lsh_bands(threshold: float, num_perm: int, what: str) -> None:
    """MinHash-LSH needs at least two bands; thresholds close to 1 need more permutations."""
    try:
        lsh_bands(threshold, num_perm)
    except ValueError:
        raise ValueError(
            f"{what} {threshold} is too close to 1 for num_perm {num_perm} (MinHash-LSH needs "
            "two bands or more): lower it or raise num_perm"
        ) from None


class NearDupSettings(BaseModel):
    """Near-duplicate removal at the end of a build (`verifiers.neardup`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="estimated Jaccard similarity")
    ngram: int = Field(5, ge=1, description="words per shingle")
    num_perm: int = Field(128, ge=16, le=1024)

    @model_validator(mode="after")
    def _bands(self) -> NearDupSettings:
        _check_lsh_bands(self.threshold, self.num_perm, "threshold")
        return self


class CardSettings(BaseModel):
    """What the dataset card (README.md) says that the data cannot tell: not in the config
    hash, since it changes no row."""

    model_config = ConfigDict(extra="forbid")

    license: str | None = Field(None, description="card license; default: from the seeds")
    seeds_license: str | None = Field(None, description="license of --seeds data")
    pretty_name: str | None = None


class BuildConfig(BaseSettings):
    """Everything a `mathsynth build` needs to know."""

    model_config = SettingsConfigDict(
        env_prefix="MATHSYNTH_", env_nested_delimiter="__", extra="forbid"
    )

    name: str = "default"
    seeds: str | None = Field(None, description="path or HF dataset id; None = bundled library")
    max_seeds: int | None = Field(None, ge=1)
    out: Path | None = Field(None, description="default: ./data/<name>")
    generators: list[str] = Field(default_factory=lambda: list(registry.BUILTIN))
    variants: int = Field(128, ge=1, description="InfinityMATH variants per seed")
    mugglemath_variants: int = Field(16, ge=1, description="MuggleMath questions per seed")
    mathscale_samples: int = Field(1024, ge=1, description="MathScale concept walks")
    seed: int = 0
    batch_size: int = Field(1000, ge=1, description="records per Prefect task")
    max_workers: int = Field(2, ge=1, description="Prefect task runner threads")
    llm: LLMSettings = Field(default_factory=LLMSettings)
    lean: LeanSettings = Field(default_factory=LeanSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    decontaminate: DecontaminationSettings = Field(default_factory=DecontaminationSettings)
    near_dup: NearDupSettings = Field(default_factory=NearDupSettings)
    card: CardSettings = Field(default_factory=CardSettings)

    @field_validator("generators", mode="before")
    @classmethod
    def _split_generators(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("generators")
    @classmethod
    def _known_generators(cls, value: list[str]) -> list[str]:
        known = registry.names()
        unknown = [g for g in value if g not in known]
        if unknown:
            raise ValueError(f"unknown generator {unknown[0]!r} (known: {', '.join(known)})")
        if not value:
            raise ValueError("no generator selected")
        return list(dict.fromkeys(value))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: flags (init), environment, the YAML file. No .env or secrets dir.
        path = _YAML_FILE.get()
        if path is None:
            return init_settings, env_settings
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=path)

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
                "card": True,
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
    flags: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        target = flags
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    file = Path(path) if path is not None else None
    if file is not None and not file.is_file():
        raise InputFileError(file, "no such config file")
    token = _YAML_FILE.set(file)
    try:
        config = BuildConfig(**flags)
    except yaml.YAMLError as exc:
        raise InputFileError(file or "", f"not valid YAML ({str(exc).splitlines()[0]})") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise _config_error(exc) from None
        raise InputFileError(file or "", "expected a YAML mapping at the top level") from None
    except UnicodeDecodeError:
        raise InputFileError(file or "", "not valid YAML (not UTF-8 text)") from None
    finally:
        _YAML_FILE.reset(token)
    _check_llm_endpoint(config)
    return config


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    loc = ".".join(str(x) for x in first["loc"])
    env = "MATHSYNTH_" + "__".join(str(x) for x in first["loc"]).upper()
    source = f" (from the environment variable {env})" if env in os.environ else ""
    return ConfigError(f"invalid config value for {loc}{source}: {message}")


def _check_llm_endpoint(config: BuildConfig) -> None:
    """Half an endpoint would silently fall back to an offline build: refuse it. Checked on
    the merged config, since the environment may hold one half and a flag the other."""
    has_url, has_model = bool(config.llm.base_url), bool(config.llm.model)
    if has_url != has_model:
        given, missing = ("model", "base_url") if has_model else ("base_url", "model")
        flag = "--llm-base-url" if missing == "base_url" else "--llm-model"
        raise ConfigError(
            f"llm.{given} is set but llm.{missing} is not: set {flag} (or llm.{missing} "
            f"in the config, MATHSYNTH_LLM__{missing.upper()} in the environment)"
        )
