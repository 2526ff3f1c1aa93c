"""Structured outputs: JSON prompts send their reply schema as `response_format` where the
server takes it (`llm.structured_output`: auto probes once, on insists, off never)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from llm_mock_server import MockOpenAIServer
from llm_scripts import ScriptedLLM

from mathsynth.config import LLMSettings
from mathsynth.generators.llm import LLMClient, LLMUnavailableError
from mathsynth.generators.llm.client import response_format
from mathsynth.generators.llm.prompts import PromptLibrary

JSON_KINDS = {
    "infinitymath.decouple",
    "mugglemath.augment",
    "mathscale.concepts",
    "formalize.score",
}


def _settings(srv: MockOpenAIServer, **kw: Any) -> LLMSettings:
    return LLMSettings(base_url=srv.base_url, model="mock-model", timeout_s=5.0, **kw)


def _concepts(client: LLMClient, question: str = "Ann has 3 apples.") -> Any:
    request = client.prompts.get("mathscale.concepts").request({"question": question})
    (result,) = client.complete_many([request])
    return result


def test_every_json_prompt_has_a_schema_and_only_those() -> None:
    library = PromptLibrary()
    with_schema = {k for k in library.kinds if library.get(k).schema is not None}
    assert with_schema == JSON_KINDS
    for kind in with_schema:
        jsonschema.Draft202012Validator.check_schema(library.get(kind).schema)
    # strict (OpenAI's rule: closed objects, all properties required) only where it holds.
    strict = {
        k for k in with_schema if response_format(k, library.get(k).schema)["json_schema"]["strict"]
    }
    assert strict == {"mugglemath.augment", "mathscale.concepts"}


def test_auto_probes_once_sends_schemas_and_remembers(tmp_path: Path) -> None:
    script = ScriptedLLM()
    cache = tmp_path / "c.sqlite"
    with MockOpenAIServer(script, models=("mock-model",), check_schemas=True) as srv:
        with LLMClient(_settings(srv), None, cache) as client:
            assert isinstance(_concepts(client), list)
            assert isinstance(_concepts(client, "Bo has 4 pens."), list)
            text_prompt = client.prompts.get("rise.sample").request({"question": "q"})
            client.complete_many([text_prompt])
        assert len(srv.probes) == 1
        concepts, _, sample = srv.requests
        fmt = concepts["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["schema"] == PromptLibrary().get("mathscale.concepts").schema
        assert "response_format" not in sample  # a text prompt sends none
        # A new client on the same cache and endpoint asks nothing: not even the probe.
        with LLMClient(_settings(srv), None, cache) as again:
            assert isinstance(_concepts(again), list)
        assert len(srv.probes) == 1 and len(srv.requests) == 3


def test_auto_falls_back_for_a_server_that_refuses(tmp_path: Path) -> None:
    with MockOpenAIServer(ScriptedLLM(), models=("mock-model",), structured=False) as srv:
        with LLMClient(_settings(srv), None, tmp_path / "c.sqlite") as client:
            result = _concepts(client)
            assert client.stats["structured_probe"] == 1
        assert isinstance(result, list) and json.loads(result[0].text)["topics"]
        assert len(srv.probes) == 1 and "response_format" not in srv.requests[0]
        with LLMClient(_settings(srv), None, tmp_path / "c.sqlite") as again:
            assert isinstance(_concepts(again), list)
        assert len(srv.probes) == 1  # the refusal is remembered too


def test_on_with_a_refusing_server_is_one_clear_error() -> None:
    with MockOpenAIServer(ScriptedLLM(), models=("mock-model",), structured=False) as srv:
        with (
            LLMClient(_settings(srv, structured_output="on"), None, None) as client,
            pytest.raises(LLMUnavailableError, match="does not accept response_format"),
        ):
            _concepts(client)
        assert srv.requests == []


def test_off_sends_no_schema_and_no_probe() -> None:
    with MockOpenAIServer(ScriptedLLM(), models=("mock-model",)) as srv:
        with LLMClient(_settings(srv, structured_output="off"), None, None) as client:
            assert isinstance(_concepts(client), list)
        assert srv.probes == [] and "response_format" not in srv.requests[0]


def test_schema_is_part_of_the_cache_key(tmp_path: Path) -> None:
    """A reply given without a schema is not replayed for a request with one."""
    cache = tmp_path / "c.sqlite"
    with MockOpenAIServer(ScriptedLLM(), models=("mock-model",)) as srv:
        with LLMClient(_settings(srv, structured_output="off"), None, cache) as client:
            _concepts(client)
        with LLMClient(_settings(srv, structured_output="on"), None, cache) as client:
            _concepts(client)
        assert len(srv.requests) == 2 and "response_format" in srv.requests[1]
