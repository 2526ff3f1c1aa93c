"""The dataset card `OUT/README.md`, generated from the catalog and the shards.

Its YAML header makes the output directory a Hugging Face dataset repo: `configs:` names sft,
dpo, formal and rejected with their data files, so `datasets.load_dataset(OUT, "sft")` (and,
once pushed, `load_dataset(REPO_ID, "sft")`) reads exactly those Parquet shards; the concept
graph, the catalog and the LLM request cache lie outside every glob. The body reports what
the data cannot say by itself: where it came from, what checked it, what was thrown away and
why, what it cost.

Written at the end of every build and again before an export; it is derived, so editing it
by hand is pointless (the next build rewrites it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from mathsynth.errors import InputFileError
from mathsynth.storage.catalog import CATALOG_NAME, Catalog
from mathsynth.storage.schemas import TABLES
from mathsynth.storage.stats import dataset_stats

CARD_NAME = "README.md"

TABLE_ABOUT = {
    "sft": "problems with step-by-step solutions, executable programs and TRL `messages`",
    "dpo": "preference pairs (TRL conversational: prompt / chosen / rejected) with edit spans",
    "formal": "Lean 4 statements with their Lean status",
    "rejected": "everything filtered out: stage, reason, detail and the rejected input",
}

# The bundled seed library was written for this project and ships under its license.
BUNDLED_LICENSE = "apache-2.0"
# Hub datasets whose license is known; anything else says "unknown" unless configured.
KNOWN_LICENSES = {
    "openai/gsm8k": "mit",
    "gsm8k": "mit",
    "hendrycks/competition_math": "mit",
}
_LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING")
_LICENSE_TEXTS = (
    ("MIT License", "mit"),
    ("Apache License", "apache-2.0"),
    ("Attribution-ShareAlike 4.0", "cc-by-sa-4.0"),
    ("Attribution 4.0 International", "cc-by-4.0"),
)

CITATIONS = {
    "infinitymath": """@inproceedings{zhang2024infinitymath,
  title     = {InfinityMATH: A Scalable Instruction Tuning Dataset in Programmatic Mathematical
               Reasoning},
  author    = {Zhang, Bo-Wen and Yan, Yan and Li, Lin and Liu, Guang},
  booktitle = {Proceedings of the 33rd ACM International Conference on Information and
               Knowledge Management (CIKM)},
  year      = {2024},
  note      = {arXiv:2408.07089}
}""",
    "mugglemath": """@inproceedings{li2024mugglemath,
  title     = {MuggleMath: Assessing the Impact of Query and Response Augmentation on Math
               Reasoning},
  author    = {Li, Chengpeng and Yuan, Zheng and Yuan, Hongyi and Dong, Guanting and Lu, Keming
               and Wu, Jiancan and Tan, Chuanqi and Wang, Xiang and Zhou, Chang},
  booktitle = {Proceedings of the 62nd Annual Meeting of the Association for Computational
               Linguistics (ACL)},
  year      = {2024},
  note      = {arXiv:2310.05506}
}""",
    "mathscale": """@inproceedings{tang2024mathscale,
  title     = {MathScale: Scaling Instruction Tuning for Mathematical Reasoning},
  author    = {Tang, Zhengyang and Zhang, Xingxing and Wang, Benyou and Wei, Furu},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning (ICML)},
  year      = {2024},
  note      = {arXiv:2403.02884}
}""",
    "rise": """@inproceedings{xu2025rise,
  title     = {Subtle Errors in Reasoning: Preference Learning via Error-injected
               Self-editing},
  author    = {Xu, Kaishuai and Yu, Tiezheng and Hou, Wenjun and Cheng, Yi and Leong, Chak Tou
               and Li, Liangyou and Jiang, Xin and Shang, Lifeng and Liu, Qun and Li, Wenjie},
  booktitle = {Proceedings of the 63rd Annual Meeting of the Association for Computational
               Linguistics (ACL)},
  year      = {2025},
  note      = {arXiv:2410.06638}
}""",
    "formalize": """@article{xin2024deepseekprover,
  title   = {DeepSeek-Prover: Advancing Theorem Proving in LLMs through Large-Scale Synthetic
             Data},
  author  = {Xin, Huajian and Guo, Daya and Shao, Zhihong and Ren, Zhizhou and Zhu, Qihao and
             Liu, Bo and Ruan, Chong and Li, Wenda and Liang, Xiaodan},
  journal = {arXiv preprint arXiv:2405.14333},
  year    = {2024}
}""",
}
METHOD_PAPERS = {
    "infinitymath": "InfinityMATH",
    "mugglemath": "MuggleMath",
    "mathscale": "MathScale",
    "rise": "RISE",
    "formalize": "DeepSeek-Prover",
}


def write_card(out: Path, repo_id: str | None = None) -> Path:
    """(Re)write `OUT/README.md` from the catalog; returns its path. Written atomically.
    `repo_id`, when the card is written for a Hub export, is what its example loads.

    Failure modes: InputFileError when `out` holds no catalog (not a mathsynth dataset);
    CatalogBusyError while a build holds the catalog past the retry window.
    """
    out = Path(out)
    path = out / CARD_NAME
    tmp = out / f".{CARD_NAME}.tmp"
    tmp.write_text(render_card(out, repo_id), encoding="utf-8")
    os.replace(tmp, path)
    return path


def data_files(out: Path) -> dict[str, str]:
    """{table: data-files glob} for every table that has shards (an empty glob is an error
    for `datasets`, so a table without rows gets no config)."""
    return {t: f"{t}/*.parquet" for t in TABLES if any((Path(out) / t).glob("*.parquet"))}


def render_card(out: Path, repo_id: str | None = None) -> str:
    out = Path(out)
    if not (out / CATALOG_NAME).exists():
        raise InputFileError(out, "not a mathsynth dataset (no catalog.duckdb)")
    catalog = Catalog(out)
    with catalog.session():
        return _render(_Facts(out, catalog, repo_id))


def _render(facts: _Facts) -> str:
    header = yaml.safe_dump(facts.header(), sort_keys=False, allow_unicode=True)
    sections = [
        facts.intro(),
        facts.contents(),
        facts.by_generator(),
        facts.verification(),
        facts.rejections(),
        facts.deduplication(),
        facts.decontamination(),
        facts.llm(),
        facts.seed_sources(),
        facts.build(),
        facts.citations(),
    ]
    return f"---\n{header}---\n\n" + "\n\n".join(s.strip() for s in sections if s) + "\n"


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if n < limit:
            return label
    return "10M<n<100M"


def seeds_license(seeds: str | None, configured: str | None) -> tuple[str, str]:
    """(license, where it was learnt) of the seed source."""
    if configured:
        return configured, "card.seeds_license"
    if seeds is None:
        return BUNDLED_LICENSE, "bundled seed library (written for mathsynth)"
    name = seeds.partition(":")[0]
    if name in KNOWN_LICENSES:
        return KNOWN_LICENSES[name], f"known license of {name}"
    path = Path(seeds)
    folder = path if path.is_dir() else path.parent
    for candidate in _LICENSE_FILES:
        file = folder / candidate
        if file.is_file():
            text = file.read_text(encoding="utf-8", errors="replace")[:4000]
            for needle, spdx in _LICENSE_TEXTS:
                if needle in text:
                    return spdx, f"{file.name} next to the seeds"
    return "unknown", "not known: set card.seeds_license in the config"


class _Facts:
    """Everything the card says, read once from the catalog and the shards."""

    def __init__(self, out: Path, catalog: Catalog, repo_id: str | None = None) -> None:
        self.out = out
        self.load_name = repo_id or f"path/to/{out.resolve().name}"
        self.catalog = catalog
        self.stats = dataset_stats(out)  # also refreshes the views
        self.files = data_files(out)
        self.rows = self.stats["tables"]
        builds = self.catalog.query(
            "SELECT run_id, started_at, finished_at, status, config_hash, config, seconds, "
            "batches_total, batches_skipped, llm FROM builds ORDER BY started_at"
        )
        self.builds = builds
        self.config: dict[str, Any] = json.loads(builds[-1][5]) if builds else {}
        stored = self.catalog.query("SELECT value FROM dataset WHERE key = 'config_hash'")
        self.config_hash = stored[0][0] if stored else "unknown"
        self.batch_stats: dict[str, int] = {}
        for (stats,) in self.catalog.query("SELECT stats FROM batches"):
            for key, value in json.loads(stats or "{}").items():
                self.batch_stats[key] = self.batch_stats.get(key, 0) + int(value)
        self.card = self.config.get("card") or {}
        self.seeds = self.config.get("seeds")
        self.seed_license, self.seed_license_source = seeds_license(
            self.seeds, self.card.get("seeds_license")
        )

    def _q(self, sql: str) -> list[tuple[Any, ...]]:
        return self.catalog.query(sql)

    @property
    def name(self) -> str:
        return self.card.get("pretty_name") or f"mathsynth {self.config.get('name', 'dataset')}"

    @property
    def license(self) -> str:
        if self.card.get("license"):
            return self.card["license"]
        return self.seed_license if self.seed_license != "unknown" else "other"

    @property
    def selected(self) -> list[str]:
        return list(self.config.get("generators") or [])

    @property
    def version(self) -> str:
        from mathsynth import __version__

        if not self.rows["sft"]:
            return __version__
        found = self._q(
            "SELECT DISTINCT json_extract_string(provenance, '$.pipeline_version') FROM sft"
        )
        return ", ".join(sorted(v for (v,) in found if v)) or __version__

    # -- header ---------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        configs = []
        for table, glob in self.files.items():
            entry: dict[str, Any] = {
                "config_name": table,
                "data_files": [{"split": "train", "path": glob}],
            }
            if table == "sft":
                entry["default"] = True
            configs.append(entry)
        return {
            "license": self.license,
            "pretty_name": self.name,
            "language": ["en"],
            "tags": ["math", "synthetic", "mathsynth", "verified"],
            "task_categories": ["text-generation", "question-answering"],
            "size_categories": [_size_category(self.rows["sft"])],
            "configs": configs,
        }

    # -- sections -------------------------------------------------------------------------
    def intro(self) -> str:
        example = next(iter(self.files), "sft")
        return f"""# {self.name}

Verified synthetic math data made by mathsynth (pipeline version
{self.version}, config `{self.config_hash}`). Every sft row carries an executable program
`solution(**variables)` that a checker re-ran; each row's `verification` says what checked it.
This card is generated from the dataset's catalog at the end of every build.

```python
from datasets import load_dataset

ds = load_dataset("{self.load_name}", "{example}", split="train")
```"""

    def contents(self) -> str:
        rows = [
            [f"`{t}`", self.rows[t], f"`{self.files[t]}`" if t in self.files else "-", about]
            for t, about in TABLE_ABOUT.items()
        ]
        return "## Contents\n\n" + _table(["config", "rows", "data files", "what"], rows)

    def by_generator(self) -> str:
        if not self.rows["sft"]:
            return "## Rows by generator and method\n\nNo sft rows."
        rows = self._q(
            "SELECT generator, method, count(*), "
            "count(*) FILTER (WHERE verification.status = 'verified') FROM sft "
            "GROUP BY ALL ORDER BY 1, 2"
        )
        body = _table(
            ["generator", "method", "sft rows", "verified"],
            [[g, m, int(n), _share(int(v), int(n))] for g, m, n, v in rows],
        )
        acceptance = _table(
            ["source generator", "accepted", "rejected", "acceptance rate"],
            [
                [a["generator"], a["accepted"], a["rejected"], f"{a['rate']:.1%}"]
                for a in self.stats["acceptance"]
            ],
        )
        return (
            "## Rows by generator and method\n\n" + body + "\n\nAcceptance of each source "
            "generator's problems (accepted sft rows / all it proposed; rejections by "
            "derived stages judge pairs and statements, not problems):\n\n" + acceptance
        )

    def verification(self) -> str:
        parts = ["## Verification"]
        if self.rows["sft"]:
            rows = self._q(
                "SELECT verification.status, verification.checker, count(*) FROM sft "
                "GROUP BY ALL ORDER BY 3 DESC"
            )
            parts.append(
                "sft:\n\n"
                + _table(
                    ["status", "checker", "rows", "share"],
                    [[s, c, int(n), _share(int(n), self.rows["sft"])] for s, c, n in rows],
                )
            )
        if self.rows["dpo"]:
            rows = self._q(
                "SELECT error_type, verification.status, verification.checker, count(*) "
                "FROM dpo GROUP BY ALL ORDER BY 4 DESC"
            )
            parts.append(
                "dpo (the rejected side's injected error, and what checked that it changes "
                "the outcome):\n\n"
                + _table(
                    ["error type", "status", "checker", "pairs"],
                    [[e, s, c, int(n)] for e, s, c, n in rows],
                )
            )
        if self.rows["formal"]:
            rows = self._q("SELECT lean_status, count(*) FROM formal GROUP BY ALL ORDER BY 2 DESC")
            parts.append(
                "formal (`unchecked` means no Lean backend ran; never counted as compiled):"
                "\n\n"
                + _table(
                    ["lean status", "statements", "share"],
                    [[s, int(n), _share(int(n), self.rows["formal"])] for s, n in rows],
                )
            )
        return "\n\n".join(parts)

    def rejections(self) -> str:
        if not self.rows["rejected"]:
            return "## Rejections\n\nNothing was rejected."
        total = self.rows["rejected"]
        proposed = self.rows["sft"] + sum(a["rejected"] for a in self.stats["acceptance"])
        rows = [
            [stage, reason, int(n), _share(int(n), total), _share(int(n), proposed)]
            for stage, reason, n in self.stats["rejected"]
        ]
        return (
            "## Rejections\n\nEvery rejected row is kept in `rejected` with its reason. The "
            "last column relates each reason to all problems the source generators proposed "
            f"({proposed:,}).\n\n"
            + _table(["stage", "reason", "rows", "of rejected", "of proposed"], rows)
        )

    def _rejected_count(self, reason: str) -> int:
        if not self.rows["rejected"]:
            return 0
        return sum(int(n) for _, r, n in self.stats["rejected"] if r == reason)

    def deduplication(self) -> str:
        near = self.catalog.report("near_duplicates") or {}
        lines = [
            "## Duplicates",
            "",
            "Exact duplicates (same question after Unicode NFKC, case folding and whitespace "
            "normalisation), across all generators:",
            "",
            f"- within a batch: {self._rejected_count('duplicate'):,} rows dropped",
            f"- across batches: {self._rejected_count('duplicate_across_batches'):,} rows "
            "dropped (the copy in the lowest batch is kept)",
            "",
        ]
        if near.get("enabled") is False:
            lines.append("Near-duplicate removal was switched off (`near_dup.enabled: false`).")
        elif near:
            dropped = self._rejected_count("near_duplicate")
            checked = near.get("rows_checked", 0)
            lines += [
                f"Near duplicates: MinHash-LSH (datasketch, {near.get('num_perm')} permutations) "
                f"over word {near.get('ngram')}-grams of the normalised question, estimated "
                f"Jaccard similarity ≥ {near.get('threshold')}; rows judged in batch order, "
                "each dropped row names its kept twin in `rejected.detail` (reason "
                "`near_duplicate`).",
                "",
                _table(
                    ["rows checked", "LSH candidates", "dropped", "share dropped"],
                    [[checked, near.get("candidates", 0), dropped, _share(dropped, checked + 0)]],
                ),
            ]
        else:
            lines.append("No near-duplicate pass has run on this dataset.")
        return "\n".join(lines)

    def decontamination(self) -> str:
        report = self.catalog.report("decontamination") or {}
        if not report.get("benchmarks"):
            return (
                "## Decontamination\n\nNo benchmark was named, so this dataset was **not** "
                "checked against any test set. Rebuild with `--decontaminate "
                "PATH_OR_HF_ID[,...]` (or `decontaminate:` in the config) to check it."
            )
        methods = report.get("methods", {})
        seeds = report.get("seeds", {})
        benchmarks = [b["name"] for b in report["benchmarks"]]
        rows_checked = self.batch_stats.get("decontaminate.checked", 0)
        listing = _table(
            ["benchmark", "source", "items"],
            [[b["name"], b.get("source", b["name"]), b["items"]] for b in report["benchmarks"]],
        )
        hit_rows = []
        from_method = {
            "ngram": f"word {methods.get('ngram', {}).get('n', 13)}-gram overlap",
            "masked_ngram": f"word {methods.get('masked_ngram', {}).get('n', 13)}-gram overlap, "
            "numbers masked",
            "fuzzy": "MinHash Jaccard ≥ "
            f"{methods.get('fuzzy', {}).get('threshold')} on masked word "
            f"{methods.get('fuzzy', {}).get('shingle_words')}-grams",
        }
        for method, label in from_method.items():
            for bench in benchmarks:
                hit_rows.append(
                    [
                        label,
                        bench,
                        int(seeds.get(f"hit:{method}:{bench}", 0)),
                        self.batch_stats.get(f"decontaminate.hit:{method}:{bench}", 0),
                    ]
                )
        contaminated = self._rejected_count("contaminated")
        return (
            "## Decontamination\n\nChecked against:\n\n"
            + listing
            + f"\n\nSeeds checked: {int(seeds.get('checked', 0)):,}; generated problems "
            f"checked: {rows_checked:,}. Matching seeds were dropped before generation; "
            "matching generated rows are in `rejected` with reason `contaminated`, the "
            f"benchmark and the matching item's id ({contaminated:,} rows in all). A row can "
            "match by several methods; hits per method:\n\n"
            + _table(["method", "benchmark", "seeds hit", "generated rows hit"], hit_rows)
        )

    def llm(self) -> str:
        llm_config = self.config.get("llm") or {}
        totals: dict[str, int] = {}
        for build in self.builds:
            for key, value in json.loads(build[9] or "{}").items():
                if isinstance(value, int | float):
                    totals[key] = totals.get(key, 0) + int(value)
        models = []
        if self.rows["sft"]:
            models = self._q(
                "SELECT json_extract_string(provenance, '$.model') AS m, generator, count(*) "
                "FROM sft WHERE m IS NOT NULL GROUP BY ALL ORDER BY 1, 2"
            )
        if not llm_config.get("model") and not models and not totals.get("requests"):
            return (
                "## LLM usage\n\nNo LLM was used: every row comes from program-based "
                "generators, and no tokens were paid for."
            )
        accepted = self.rows["sft"]
        tokens = totals.get("tokens_in", 0) + totals.get("tokens_out", 0)
        cost = totals.get("cost_usd_micros", 0) / 1e6
        sampling = _table(
            ["model", "temperature", "max tokens", "samples per question", "agreement"],
            [
                [
                    llm_config.get("model") or "-",
                    llm_config.get("temperature"),
                    llm_config.get("max_tokens"),
                    llm_config.get("samples"),
                    llm_config.get("agreement_threshold"),
                ]
            ],
        )
        usage = _table(
            [
                "requests",
                "tokens in",
                "tokens out",
                "cost (USD)",
                "tokens / accepted row",
                "cost / accepted row (USD)",
            ],
            [
                [
                    totals.get("requests", 0),
                    totals.get("tokens_in", 0),
                    totals.get("tokens_out", 0),
                    f"{cost:.4f}",
                    f"{tokens / accepted:,.1f}" if accepted else "-",
                    f"{cost / accepted:.6f}" if accepted else "-",
                ]
            ],
        )
        parts = [
            "## LLM usage",
            "Sampling parameters of the last build:",
            sampling,
            "Usage over every build of this dataset (preparation such as seed decoupling "
            "included; cached replies cost nothing):",
            usage,
        ]
        if models:
            parts += [
                "Rows by the model named in their provenance:",
                _table(["model", "generator", "sft rows"], [[m, g, int(n)] for m, g, n in models]),
            ]
        return "\n\n".join(parts)

    def seed_sources(self) -> str:
        if self.rows["sft"]:
            (used,) = self._q("SELECT count(DISTINCT seed_id) FROM sft")[0]
        else:
            used = 0
        source = (
            self.seeds or "bundled seed library (templated word problems written for mathsynth)"
        )
        return (
            "## Seed sources\n\n"
            + _table(
                ["source", "seeds behind sft rows", "license", "license from"],
                [[source, int(used), self.seed_license, self.seed_license_source]],
            )
            + (
                f"\n\nThe card's `license` field is `{self.license}`"
                + (
                    " (set with `card.license`)."
                    if self.card.get("license")
                    else ", taken from the seeds; set `card.license` in the config to change it."
                )
                + " Rows written by an LLM may also be subject to the model's terms of use."
            )
        )

    def build(self) -> str:
        runs = [
            [
                str(b[0])[:12],
                str(b[1])[:19],
                str(b[2] or "")[:19],
                b[3],
                f"{b[6]:.1f}" if b[6] is not None else "-",
                b[7] or 0,
                b[8] or 0,
            ]
            for b in self.builds
        ]
        config = {k: v for k, v in self.config.items() if k not in ("out",)}
        return (
            f"## Build\n\nPipeline version {self.version}; config hash `{self.config_hash}` "
            "(in every row's `provenance`). Builds of this dataset (a crashed build that was "
            "resumed shows as two runs):\n\n"
            + _table(
                ["run", "started", "finished", "status", "seconds", "batches", "already done"],
                runs,
            )
            + "\n\n<details><summary>Effective config of the last build</summary>\n\n```yaml\n"
            + yaml.safe_dump(config, sort_keys=True)
            + "```\n\n</details>"
        )

    def citations(self) -> str:
        used = [g for g in self.selected if g in CITATIONS]
        if not used:
            return ""
        names = ", ".join(f"{METHOD_PAPERS[g]} ({g})" for g in used)
        blocks = "\n\n".join(CITATIONS[g] for g in used)
        return (
            f"## Citation\n\nThe generation methods follow {names}. If you use this data, "
            f"please cite them:\n\n```bibtex\n{blocks}\n```"
        )
