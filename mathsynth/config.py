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
import re
import time
from contextvars import ContextVar
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

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
from mathsynth.train_settings import TrainSettings

# The YAML file of the config being loaded (read by `settings_customise_sources`).
_YAML_FILE: ContextVar[Path | None] = ContextVar("mathsynth_config_file", default=None)


class ModelPrice(BaseModel):
    """USD per million tokens. The batch prices apply to requests sent through a provider's
    Batch API (`llm.backend: batch`); unset, they are half the online prices, the discount
    OpenAI's and most providers' batch APIs give."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    batch_input_per_mtok: float | None = None
    batch_output_per_mtok: float | None = None

    def per_mtok(self, batch: bool = False) -> tuple[float, float]:
        """(input, output) USD per million tokens, online or at batch prices."""
        if not batch:
            return self.input_per_mtok, self.output_per_mtok
        return (
            self.batch_input_per_mtok
            if self.batch_input_per_mtok is not None
            else self.input_per_mtok / 2,
            self.batch_output_per_mtok
            if self.batch_output_per_mtok is not None
            else self.output_per_mtok / 2,
        )


# Reply-token budgets: "default" for every prompt kind without its own entry, "reasoning"
# the thinking allowance added on top when `llm.reasoning` is on, any other key a prompt kind
# ("rise.self_edit"; `mathsynth prompts list` shows them; the LLM client refuses unknown ones).
DEFAULT_MAX_TOKENS = {"default": 1024, "reasoning": 8192}
_KIND = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    max_tokens: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_TOKENS),
        description="reply-token budgets: a number (every kind) or {default, reasoning, <kind>}",
    )
    reasoning: bool = Field(
        False,
        description="the model thinks before it answers (Qwen3, DeepSeek-R1, gpt-oss, QwQ): "
        "every budget gets max_tokens.reasoning more tokens",
    )
    think_tags: list[str] = Field(
        default_factory=lambda: ["think"],
        description="tag names of a leading thinking block in replies (<think>...</think>)",
    )
    keep_reasoning: bool = Field(False, description="store the thinking text in provenance")
    structured_output: Literal["auto", "on", "off"] = Field(
        "auto",
        description="send a JSON schema as response_format for JSON prompts; auto: if the "
        "server accepts it (probed once)",
    )
    prompts_dir: Path | None = Field(
        None, description="folder of prompt templates overriding the shipped ones"
    )
    backend: Literal["online", "batch"] = Field(
        "online", description="online: chat completions; batch: the provider's Batch API"
    )
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between batch status polls")
    batch_completion_window: str = "24h"
    batch_max_requests: int = Field(50_000, ge=1, description="requests per submitted batch")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    samples: int = Field(4, ge=1, description="reasoning paths per MuggleMath question")
    agreement_threshold: float = Field(0.5, gt=0.0, le=1.0)
    concurrency: int = Field(64, ge=1, description="requests in flight, not records")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> Any:
        """A plain number (a flag, MATHSYNTH_LLM__MAX_TOKENS=2048) is the default budget;
        a mapping adds to the defaults instead of replacing them."""
        if isinstance(value, int | str) and not isinstance(value, bool):
            value = {"default": value}
        if isinstance(value, dict):
            return {**DEFAULT_MAX_TOKENS, **value}
        return value

    @field_validator("max_tokens")
    @classmethod
    def _check_budgets(cls, value: dict[str, int]) -> dict[str, int]:
        for key, budget in value.items():
            if key not in DEFAULT_MAX_TOKENS and not _KIND.match(key):
                raise ValueError(
                    f"{key!r} is not a prompt kind: use default, reasoning or <method>.<prompt>"
                    " (mathsynth prompts list)"
                )
            if budget <= 0:
                raise ValueError(f"max_tokens.{key} must be positive, not {budget}")
        return value

    @field_validator("structured_output", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare on / off as a boolean.
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @field_validator("think_tags")
    @classmethod
    def _tag_names(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not re.fullmatch(r"[A-Za-z][\w:.-]*", tag):
                raise ValueError(f"{tag!r} is not a tag name (write think, not <think>)")
        return value

    @field_validator("prompts_dir")
    @classmethod
    def _prompts_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a folder")
        return value

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)

    def budget(self, kind: str) -> int:
        """The max_tokens sent with a prompt of `kind` (see DEFAULT_MAX_TOKENS)."""
        answer = self.max_tokens.get(kind, self.max_tokens["default"])
        return answer + (self.max_tokens["reasoning"] if self.reasoning else 0)


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


class RunnerSettings(BaseModel):
    """Where batches run: threads of the build's process, or a Dask cluster (prefect-dask)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threads", "dask"] = "threads"
    address: str | None = Field(None, description="Dask scheduler, e.g. tcp://host:8786")
    workers: int = Field(2, ge=1, description="worker processes of a local Dask cluster")
    batches_in_flight: int | None = Field(
        None, ge=1, description="default: max_workers, with an LLM at least 4"
    )


class ScheduleSettings(BaseModel):
    """The scheduled build `mathsynth deploy` registers."""

    model_config = ConfigDict(extra="forbid")

    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    work_pool: str = "mathsynth"


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
    variants: int = Field(32, ge=1, description="InfinityMATH variants per seed")
    mugglemath_variants: int = Field(16, ge=1, description="MuggleMath questions per seed")
    mathscale_samples: int = Field(1024, ge=1, description="MathScale concept walks")
    seed: int = 0
    batch_size: int = Field(1000, ge=1, description="records per Prefect task")
    max_workers: int = Field(2, ge=1, description="Prefect task runner threads")
    llm: LLMSettings = Field(default_factory=LLMSettings)
    lean: LeanSettings = Field(default_factory=LeanSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)  # `mathsynth train` / `eval`
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
                "llm": {
                    "api_key",
                    "concurrency",
                    "timeout_s",
                    "max_retries",
                    "prompts_dir",
                    # How requests travel, not what they ask: a build may switch backends
                    # and resume.
                    "backend",
                    "batch_poll_s",
                    "batch_completion_window",
                    "batch_max_requests",
                },
                "lean": {"pool_size", "recycle_after"},
                "sandbox": {"workers", "recycle_after"},
                "runner": True,
                "schedule": True,
                "train": True,  # training settings do not change what a build makes
                "card": True,
            },
        )
        # Not the folder's path but what is in it: an edited prompt is another build.
        data["llm"]["prompts"] = _folder_digest(self.llm.prompts_dir)
        # Likewise the seeds: an edited seed or pool file makes other rows, so a build into
        # the same folder must not resume as if nothing had changed.
        data["seeds_content"] = _seeds_digest(self.seeds)
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


def _seeds_digest(seeds: str | None) -> str | None:
    """What the seeds say: the bundled library's files (seeds and pools) when `seeds` is None,
    else the bytes of a local file or folder. None for a Hub id: it is not downloaded just to
    be hashed, so only the id itself is in the hash."""
    if seeds is None:
        return _folder_digest(Path(str(resources.files("mathsynth.generators.seeds") / "library")))
    path = Path(seeds)
    if path.is_file():
        return _file_digest(path).hex()[:16]
    return _folder_digest(path) if path.is_dir() else None


_DIGESTS: dict[tuple[str, int, int, int], bytes] = {}


def _file_digest(path: Path) -> bytes:
    """sha256 of a file's bytes. A build asks for its config hash many times (each batch, each
    Dask task) and a seeds folder may hold gigabytes, so a digest is kept while the file's
    size, inode and modification time stay the same. Not for a file modified in the last
    second: coarse timestamps could let it change again unseen (git's "racily clean" rule)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    digest = _DIGESTS.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        digest = sha.digest()
        if time.time_ns() - stat.st_mtime_ns > 1_000_000_000:
            if len(_DIGESTS) >= 4096:
                _DIGESTS.clear()
            _DIGESTS[key] = digest
    return digest


def _folder_digest(folder: Path | None) -> str | None:
    """sha256 over the relative paths and bytes of every file under `folder` (None: none)."""
    if folder is None:
        return None
    digest = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(_file_digest(path))
    return digest.hexdigest()[:16]


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
