"""`mathsynth export hub` against a local Hub (tests/hub_mock_server.py, real HTTP through
huggingface_hub) and `mathsynth export local`: what is published, what never is, resuming an
interrupted upload, branches, the token, and the Prefect flow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from console import assert_one_line_error, mathsynth
from dataset_checks import read_table
from hub_mock_server import MockHub
from small_build import build_small

from mathsynth.storage.catalog import Catalog
from mathsynth.storage.hub import export_hub
from mathsynth.storage.publish import ExportError, export_local, publishable_files

TOKEN = "hf_mathsynthTEST9f3c2a71d"
CACHE_SECRET = "SECRET-PROMPT-7d1e: the request cache holds prompts and replies"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "ds"
    build_small(out)
    # What a build with an LLM leaves next to the data: it must never be published.
    (out / "llm_cache.sqlite").write_text(CACHE_SECRET)
    (out / "concept_graph").mkdir(exist_ok=True)
    (out / "concept_graph" / "nodes.parquet").write_bytes(b"not data")
    return out


def hub_env(hub: MockHub, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(home))
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def _no_token_anywhere(proc: subprocess.CompletedProcess[str], *roots: Path) -> None:
    assert TOKEN not in proc.stdout + proc.stderr
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


def test_export_hub_uploads_the_card_and_data_files_only(dataset: Path, tmp_path: Path) -> None:
    with MockHub(TOKEN) as hub:
        env = hub_env(hub, tmp_path / "hf")
        proc = mathsynth("export", "hub", "me/math", "--out", str(dataset), "--private", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "exported" in proc.stdout and "me/math" in proc.stdout

        committed = hub.files("me/math")
        expected = publishable_files(dataset)
        assert sorted(committed) == sorted(expected)
        assert expected[0] == "README.md" and any(p.startswith("dpo/") for p in expected)
        assert all(committed[p] == (dataset / p).read_bytes() for p in expected)
        assert not any("llm_cache" in p or "catalog" in p or "concept" in p for p in committed)
        assert all(CACHE_SECRET.encode() not in data for data in committed.values())
        assert hub.repo("me/math").private

        # The token went to the Hub in the Authorization header and nowhere else.
        posts = [(p, h) for m, p, h in hub.requests if m == "POST"]
        assert posts and all(h.get("authorization") == f"Bearer {TOKEN}" for _, h in posts)
        assert not any(TOKEN in path for _, path, _ in hub.requests)
        _no_token_anywhere(proc, dataset, tmp_path / "hf")
        assert all(TOKEN.encode() not in data for data in committed.values())

        # What was pushed is a dataset that `datasets` loads from the Hub, config by config.
        code = (
            "import datasets, json\n"
            "print(json.dumps({c: len(datasets.load_dataset('me/math', c, split='train'))"
            " for c in ('sft', 'dpo')}))\n"
        )
        loaded = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        counts = json.loads(loaded.stdout.strip().splitlines()[-1])
        assert counts == {t: len(read_table(dataset, t)) for t in ("sft", "dpo")}


@pytest.fixture()
def in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """huggingface_hub in this process, as `hub_env` sets it up for a subprocess (the
    endpoint is passed to `export_hub`; Xet is read from constants at call time)."""
    import huggingface_hub.constants

    for key in [k for k in os.environ if k.startswith("HF_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def test_an_interrupted_upload_is_finished_by_a_rerun(
    dataset: Path, tmp_path: Path, in_process: None
) -> None:
    lfs_files = [p for p in publishable_files(dataset) if p.endswith(".parquet")]
    assert len(lfs_files) > 3
    with MockHub(TOKEN) as hub:
        hub.fail_lfs_after = 2
        proc = mathsynth(
            "export", "hub", "me/resume", "--out", str(dataset), env=hub_env(hub, tmp_path / "hf")
        )
        assert_one_line_error(proc, "me/resume", "uploading")
        assert hub.repo("me/resume").commits == []  # nothing half-published
        assert len(hub.lfs_puts) == 2

        hub.fail_lfs_after = None
        result = export_hub(dataset, "me/resume", endpoint=hub.url)
        assert len(hub.lfs_puts) == len(lfs_files)  # the first two were not sent again
        assert sorted(hub.files("me/resume")) == sorted(publishable_files(dataset))
        assert result["commit"] == hub.repo("me/resume").heads["main"]

        export_hub(dataset, "me/resume", endpoint=hub.url)
        assert len(hub.repo("me/resume").commits) == 1  # unchanged: no new commit


def test_a_branch_and_stale_remote_shards(dataset: Path, in_process: None) -> None:
    with MockHub(TOKEN) as hub:
        result = export_hub(dataset, "me/branchy", revision="v2", endpoint=hub.url)
        assert result["revision"] == "v2"
        assert sorted(hub.files("me/branchy", "v2")) == sorted(publishable_files(dataset))
        assert hub.files("me/branchy", "main") == {}
        # A shard an older build left on the branch would mix its rows in: it goes.
        hub.repo("me/branchy").branches["v2"]["sft/part-09999.parquet"] = b"old rows"
        export_hub(dataset, "me/branchy", revision="v2", endpoint=hub.url)
        assert "sft/part-09999.parquet" not in hub.files("me/branchy", "v2")


def test_refusals(
    dataset: Path, tmp_path: Path, in_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MockHub(TOKEN) as hub:
        no_token = hub_env(hub, tmp_path / "empty-home", token=None)
        proc = mathsynth("export", "hub", "me/x", "--out", str(dataset), env=no_token)
        assert_one_line_error(proc, "no Hugging Face token", "HF_TOKEN")
        assert hub.requests == []
        with pytest.raises(ExportError, match="not a repo id!"):
            export_hub(dataset, "not a repo id!", endpoint=hub.url)
        export_hub(dataset, "me/public", endpoint=hub.url)
        with pytest.raises(ExportError, match="exists and is public"):
            export_hub(dataset, "me/public", private=True, endpoint=hub.url)
        with pytest.raises(ExportError, match="not a mathsynth dataset"):
            export_hub(tmp_path / "nothing", "me/x", endpoint=hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
        with pytest.raises(ExportError, match="401") as refused:
            export_hub(dataset, "me/other", endpoint=hub.url)
        assert "hf_wrong" not in str(refused.value)
    # A build that has not finished is not published.
    unfinished = tmp_path / "unfinished"
    catalog = Catalog(unfinished)
    catalog.init("h", {}, overwrite=False)
    catalog.start_build("run", "h", {})
    with pytest.raises(ExportError, match="has not finished"):
        export_local(unfinished, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_export_local_is_a_clean_loadable_copy(dataset: Path, tmp_path: Path) -> None:
    dest = tmp_path / "published"
    proc = mathsynth("export", "local", str(dest), "--out", str(dataset))
    assert proc.returncode == 0, proc.stderr[-3000:]
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == sorted(publishable_files(dataset))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = (
        "import datasets, sys\n"
        "print(len(datasets.load_dataset(sys.argv[1], 'sft', split='train')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code, str(dest)], capture_output=True, text=True, env=env
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert int(loaded.stdout.split()[-1]) == len(read_table(dataset, "sft"))
    with pytest.raises(ExportError, match="not an empty directory"):
        export_local(dataset, dest)


@pytest.mark.slow
def test_a_scheduled_build_exports_when_it_finishes(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    out = tmp_path / "nightly"
    with MockHub(TOKEN) as hub:
        env = {**prefect_env, **hub_env(hub, tmp_path / "hf")}
        overrides = {"out": str(out), "max_seeds": 2, "variants": 3, "generators": "infinitymath"}
        code = (
            "import json, sys\n"
            "from mathsynth.flows.export import build_and_export\n"
            "r = build_and_export(repo_id='me/nightly', overrides=json.loads(sys.argv[1]))\n"
            "print(json.dumps(r))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(overrides)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert sorted(hub.files("me/nightly")) == sorted(publishable_files(out))
        assert result["files"] == publishable_files(out)
    _no_token_anywhere(proc, out)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    async def logs() -> list[str]:
        async with get_client() as client:
            flows = await client.read_flow_runs()
            exported = [f for f in flows if f.name and f.parameters.get("repo_id") == "me/nightly"]
            assert exported, "the export ran as a Prefect flow run"
            found = await client.read_logs(LogFilter())
            return [log.message for log in found]

    import asyncio

    messages = asyncio.run(logs())
    assert messages and not any(TOKEN in m for m in messages)
