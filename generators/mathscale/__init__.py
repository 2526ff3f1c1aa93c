"""MathScale: new problems for concept sets sampled from a concept graph.

- `concept_graph`: topics and knowledge points joined by co-occurrence, sampled by random
  walk, persisted in OUT/concept_graph and extended by later builds;
- `offline`: the graph from the bundled seeds' concept tags; a problem is the best-covering
  seed instantiated (or two seeds composed);
- `llm`: concepts extracted per seed by the LLM; problems written by it for each walk and
  kept when their program agrees with their answer.
"""

from __future__ import annotations

from mathsynth.records import Rejection
from mathsynth.registry import Method, Plan, StageContext
from mathsynth.stage import SourceStage
from mathsynth.storage.concept_graph_store import CONCEPT_GRAPH_DIR

NAME = "mathscale"


def plan(ctx: StageContext) -> Plan:
    """Build (or extend) the concept graph, persist it, and plan `mathscale_samples` walks.

    With an LLM, concepts come from extraction (each seed asked once, cached), else from the
    seeds' own tags. An empty graph (e.g. dataset seeds that all failed templating) plans no
    walk and says why in one Rejection.
    """
    from mathsynth.generators.mathscale.concept_graph import ConceptGraph
    from mathsynth.generators.mathscale.offline import graph_from_seeds, walkable

    graph_dir = ctx.out / CONCEPT_GRAPH_DIR
    graph = ConceptGraph.load(graph_dir) or ConceptGraph()
    rejected = []
    if ctx.llm is not None:
        from mathsynth.generators.mathscale.llm import extract_concepts

        rejected.extend(extract_concepts(ctx.llm, ctx.seeds, graph))
    else:
        graph_from_seeds(ctx.seeds, graph)
    ctx.state[NAME] = graph
    problem = walkable(graph)
    if problem is not None:
        return Plan([], [*rejected, Rejection(NAME, "empty_concept_graph", problem, {})])
    graph.save(graph_dir)
    n, step = ctx.config.mathscale_samples, ctx.config.batch_size
    return Plan([(None, start, min(start + step, n)) for start in range(0, n, step)], rejected)


def offline_stage(ctx: StageContext) -> SourceStage:
    from mathsynth.generators.mathscale.offline import MathScaleOffline

    return MathScaleOffline(
        sandbox=ctx.sandbox,
        graph=ctx.state[NAME],
        seeds=ctx.seeds,
        seed=ctx.config.seed,
        config_hash=ctx.config_hash,
    )


def llm_stage(ctx: StageContext) -> SourceStage:
    from mathsynth.generators.mathscale.llm import MathScaleLLM

    return MathScaleLLM(
        llm=ctx.llm,
        sandbox=ctx.sandbox,
        checker=ctx.checker,
        graph=ctx.state[NAME],
        seed=ctx.config.seed,
        config_hash=ctx.config_hash,
    )


METHOD = Method(name=NAME, role="source", offline=offline_stage, llm=llm_stage, plan=plan)
