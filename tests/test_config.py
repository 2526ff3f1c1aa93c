"""Config precedence (defaults < YAML < env < flags), validation and the content hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mathsynth.config import load_config
from mathsynth.errors import ConfigError, InputFileError


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "variants: 7\nseed: 3\nllm:\n  model: from-file\n  base_url: http://127.0.0.1:8000/v1\n"
    )
    assert load_config(cfg_file).variants == 7
    monkeypatch.setenv("MATHSYNTH_VARIANTS", "9")
    monkeypatch.setenv("MATHSYNTH_LLM__MODEL", "from-env")
    cfg = load_config(cfg_file)
    assert (cfg.variants, cfg.seed, cfg.llm.model) == (9, 3, "from-env")
    cfg = load_config(cfg_file, variants=11, **{"llm.model": "from-flag"})
    assert (cfg.variants, cfg.llm.model) == (11, "from-flag")


def test_content_hash_ignores_operational_fields() -> None:
    base = load_config()
    assert load_config(out=Path("/elsewhere"), max_workers=8).content_hash() == base.content_hash()
    assert load_config(variants=3).content_hash() != base.content_hash()


def test_seed_content_is_part_of_the_config_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edited seed makes other rows: a build into the same folder must see another config
    (the path or id alone would not change)."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"question": "What is 1 + 1?", "answer": "2"}\n')
    first = load_config(seeds=str(seeds)).content_hash()
    assert load_config(seeds=str(seeds)).content_hash() == first
    seeds.write_text('{"question": "What is 1 + 2?", "answer": "3"}\n')
    second = load_config(seeds=str(seeds)).content_hash()
    assert second != first
    # a file's digest is kept while it is unchanged; an edit that keeps the size but moves the
    # modification time is read again
    os.utime(seeds, ns=(10**18, 10**18))
    assert load_config(seeds=str(seeds)).content_hash() == second
    seeds.write_text('{"question": "What is 1 + 1?", "answer": "2"}\n')
    os.utime(seeds, ns=(10**18 + 10**9, 10**18 + 10**9))
    assert load_config(seeds=str(seeds)).content_hash() == first
    # the bundled library: every seed and pool file counts
    import shutil
    from importlib import resources

    bundled = load_config().content_hash()
    copy = tmp_path / "pkg"
    shutil.copytree(
        Path(str(resources.files("mathsynth.generators.seeds") / "library")), copy / "library"
    )
    monkeypatch.setattr("mathsynth.config.resources.files", lambda package: copy)
    assert load_config().content_hash() == bundled
    pool = next((copy / "library" / "pools").glob("*.yaml"))
    pool.write_text(pool.read_text() + "\n# edited\n")
    assert load_config().content_hash() != bundled


def test_api_key_masked_and_not_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(**{"llm.api_key": "sk-secret-123"})
    assert "sk-secret-123" not in str(cfg.effective())
    assert cfg.content_hash() == load_config().content_hash()
    assert cfg.api_key() == "sk-secret-123"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"generators": "infinitymath,bogus"}, "unknown generator 'bogus'"),
        ({"variants": 0}, "variants"),
        ({"llm.model": "m"}, r"^llm.model is set but llm.base_url is not: set --llm-base-url"),
        ({"llm.base_url": "http://h/v1"}, r"^llm.base_url is set but llm.model is not"),
    ],
)
def test_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(**kwargs)


def test_half_an_endpoint_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATHSYNTH_LLM__MODEL", "from-env")
    cfg = load_config(**{"llm.base_url": "http://127.0.0.1:8000/v1"})
    assert cfg.llm.configured and cfg.llm.model == "from-env"


def test_bad_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [1,\n")
    with pytest.raises(InputFileError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(InputFileError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("varients: 3\n")
    with pytest.raises(ConfigError, match="varients"):
        load_config(unknown)
