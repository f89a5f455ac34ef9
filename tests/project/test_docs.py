"""The README and the guides in ``docs/`` teach what runs: every shell and Python example runs here (one test per
block, named ``file:line``), with the substitutions that ``tests/_docs_examples.py`` lists (tiny local models for
Hub models, local copies of Hub data, 2 CPU processes for multi-GPU launches, one run of each paper-scale grid), and
its effect is checked: exit code 0, the files a command writes, and for some blocks the numbers. Links between the
docs resolve, and the README stays a front door."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from _docs_examples import DOC_FILES, NOT_RUN, ROOT, Assets, Block, DocRun, Outcome, collect_blocks

BLOCKS = [block for path in DOC_FILES for block in collect_blocks(path)]
NOT_RUN_COMMANDS = {"bash scripts/demo.sh", "bash scripts/test.sh"}
"""The only lines that may carry the not-run mark: the demo trains for minutes, and the test command runs this
suite (CI runs it through ``.ci/run``)."""


@pytest.fixture(scope="session")
def doc_runs(tmp_path_factory) -> dict[str, DocRun]:
    assets = Assets(tmp_path_factory.mktemp("docs-assets"))
    root = tmp_path_factory.mktemp("docs")
    return {str(p.relative_to(ROOT)): DocRun(p, assets, root / p.stem, _checks) for p in DOC_FILES}


# ---------------------------------------------------------------- checks of particular blocks
def _attach_example(run: DocRun, outcome: Outcome) -> None:
    allocator = outcome.namespace["allocator"]
    assert len(allocator.layout.matrices) == 12  # q, k, v, o, f1, f2 × 2 layers of the tiny DeBERTa
    assert allocator.step == 24 - 6  # T = 3 epochs of 8 batches; its last allocation is the final one, at T − tfinal
    assert sum(allocator.ranks().values()) == allocator.target_budget  # the final allocation came at T − tfinal
    assert (run.folder / "adapter" / "adapter_config.json").is_file()


def _budget_reached(outcome: Outcome) -> None:
    """The allocator stepped with the optimizer up to the final allocation (T − tfinal), at the target budget."""
    allocator = outcome.namespace["allocator"]
    assert outcome.namespace["total_steps"] == 24 and allocator.step == 24 - 6
    assert sum(allocator.ranks().values()) == allocator.target_budget < allocator.initial_budget


def _trainer_example(run: DocRun, outcome: Outcome) -> None:
    """The Trainer program (it checks the reloaded and the exported logits itself)."""
    _budget_reached(outcome)
    assert json.loads((run.folder / "trainer-adapter" / "adapter_config.json").read_text())["peft_type"] == "ADALORA"
    assert json.loads((run.folder / "trainer-lora" / "adapter_config.json").read_text())["peft_type"] == "LORA"


def _loop_example(run: DocRun, outcome: Outcome) -> None:
    """The plain loop (it checks the reloaded and the merged logits itself)."""
    _budget_reached(outcome)
    assert json.loads((run.folder / "loop-adapter" / "adapter_config.json").read_text())["peft_type"] == "ADALORA"
    assert (run.folder / "loop-merged" / "config.json").is_file()


def _own_score(run: DocRun, outcome: Outcome) -> None:
    """The score class registers and trains to the target budget."""
    from _tiny import batches, tiny_adalora

    import adalora_scores

    model = tiny_adalora(total_step=12, tinit=2, tfinal=4, deltaT=1)
    allocator = adalora_scores.attach(model, score="abs_grad")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step, batch in enumerate(batches(12), start=1):
        model(**batch).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    assert sum(allocator.ranks().values()) == allocator.target_budget


def _own_data_run(run: DocRun, outcome: Outcome) -> None:
    labels = json.loads((run.folder / "runs" / "reviews-fisher" / "labels.json").read_text())
    assert labels["labels"] == ["negative", "neutral", "positive"] and labels["label2id"]["positive"] == 2


def _own_data_sweep(run: DocRun, outcome: Outcome) -> None:
    results = run.folder / "results" / "reviews"
    runs = yaml.safe_load((results / "sweep.yaml").read_text())["runs"]
    assert len(runs) == 6  # 3 scores × 2 seeds
    accuracy = {
        name: json.loads((results / name / "metrics.json").read_text())["eval"]["dev"]["accuracy"] for name in runs
    }
    report = (results / "report.md").read_text()
    assert "classification" in report and "have no result" not in report
    fisher = [value for name, value in accuracy.items() if "__fisher__" in name]
    assert f"{sum(fisher) / 2:.2f}" in report  # the fisher cell is the mean over its two seeds


def _reload_labels(run: DocRun, outcome: Outcome) -> None:
    assert outcome.namespace["model"].config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert outcome.namespace["labels"] == ["negative", "neutral", "positive"]


def _causal_lm(run: DocRun, outcome: Outcome) -> None:
    folder = run.folder / "runs" / "math-fisher"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["main_metric"] == "exact_match" and metrics["score"] == "fisher_per_example"
    assert len((folder / "predictions.jsonl").read_text().splitlines()) == 16
    again = json.loads((folder / "evaluation" / "metrics.json").read_text())
    assert "exact_match" in json.dumps(again)


def _predict(run: DocRun, outcome: Outcome) -> None:
    """The labels of the new reviews, the generations of the math prompts and the SQuAD answers, one per input."""
    import csv

    with (run.folder / "runs" / "reviews-fisher" / "new-labels.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["review"] for row in rows] == ["A good film, not a sad one.", "The plot was awful."]
    assert {row["prediction"] for row in rows} <= {"negative", "neutral", "positive"}
    generations = (run.folder / "runs" / "math-fisher" / "generations.jsonl").read_text().splitlines()
    assert len(generations) == 16 and all("generation" in json.loads(line) for line in generations)
    questions = json.loads((run.folder / "squad" / "dev-v2.0.json").read_text())["data"]
    ids = {qa["id"] for article in questions for paragraph in article["paragraphs"] for qa in paragraph["qas"]}
    assert set(json.loads((run.folder / "runs" / "squad2-gsnr" / "answers.json").read_text())) == ids


def _squad(run: DocRun, outcome: Outcome) -> None:
    assert '"exact"' in outcome.output and '"f1"' in outcome.output  # evaluate-squad printed the official v2.0 metrics


def _export_for_servers(run: DocRun, outcome: Outcome) -> None:
    """The decoder's default export is exact in vLLM at the printed --max-lora-rank, which the guide's 16 holds; the
    --llama-cpp export is exact in llama.cpp."""
    lora, folded = (
        json.loads((run.folder / "exported" / name / "export.json").read_text())
        for name in ("math-lora", "math-llama-cpp")
    )
    assert lora["servers"]["vLLM"]["exact"] and folded["servers"]["llama.cpp"]["exact"]
    assert folded["scales_folded_into_lora_B"] and lora["vllm_max_lora_rank"] <= 16
    assert f"vLLM: exact: vllm serve BASE_MODEL --enable-lora --max-lora-rank {lora['vllm_max_lora_rank']} " in (
        outcome.output
    )


def _single_yaml_run(run: DocRun, outcome: Outcome) -> None:
    """The printed configuration is the file's, resolved; the run trained in the file's output folder with it."""
    lines = outcome.output.splitlines()
    end = lines.index("defaults:") + 1
    while end < len(lines) and lines[end].startswith("  "):  # the printed file ends with its defaults: section
        end += 1
    printed = yaml.safe_load("\n".join(lines[:end]))
    assert printed["output"] == "runs/sst2-fisher" and printed["defaults"]["task"] == "sst2"
    saved = yaml.safe_load((run.folder / "runs" / "sst2-fisher" / "config.yaml").read_text())
    assert (saved["score"], saved["num_epochs"], saved["data"]) == ("fisher", 1.0, "glue_data/SST-2")
    assert {key: saved[key] for key in printed["defaults"]} == printed["defaults"]


def _paper(run: DocRun, outcome: Outcome) -> None:
    report = (run.folder / "results" / "paper" / "report.md").read_text()
    assert "Missing runs" in report  # one run of 270 trained: the others are listed, never averaged over


CHECKS = {
    ("README.md", "python", "adalora_scores.attach("): _attach_example,
    ("docs/python-api.md", "python", "AllocationCallback(model)"): _trainer_example,
    ("docs/python-api.md", "python", "update_and_allocate(step)"): _loop_example,
    ("README.md", "bash", "--output runs/reviews-fisher"): _own_data_run,
    ("README.md", "bash", "reviews-sweep.yaml"): _own_data_sweep,
    ("docs/scores.md", "python", '@register_score("abs_grad")'): _own_score,
    ("docs/tasks.md", "python", "base_model_for_run"): _reload_labels,
    ("docs/tasks.md", "bash", "--task causal_lm"): _causal_lm,
    ("docs/tasks.md", "bash", "evaluate-squad"): _squad,
    ("docs/tasks.md", "bash", "--input reviews/new.csv"): _predict,
    ("docs/study.md", "bash", "sweep paper --output results/paper --seeds 1,2,3"): _paper,
    ("docs/export.md", "bash", "--llama-cpp"): _export_for_servers,
    ("docs/config.md", "bash", "train --config run.yaml --print-config"): _single_yaml_run,
}
"""(file, language, a text of the block) → a check of what the block made, beyond exit codes and files."""


def _checks(block: Block) -> list:
    return [
        check
        for (file, language, text), check in CHECKS.items()
        if (file, language) == (block.file, block.language) and text in block.text
    ]


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_the_example_runs(block: Block, doc_runs):
    outcome = doc_runs[block.file].run(block)
    if block.not_run:
        _check_not_run(block)
        return
    if outcome.skipped and not outcome.ran:
        pytest.skip("; ".join(outcome.skipped))


def test_every_check_finds_its_block():
    for key, check in CHECKS.items():
        assert [check in _checks(block) for block in BLOCKS].count(True) == 1, key


# ---------------------------------------------------------------- the two commands that are not run
def _check_not_run(block: Block) -> None:
    """The README's two commands, checked without running them: the scripts exist and parse, the demo script runs
    the demo, the test script the linters and pytest, and CI runs the test script."""
    for line in _commands(block):
        script = ROOT / line.split()[1]
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
    assert 'adalora-scores demo "$@"' in (ROOT / "scripts" / "demo.sh").read_text()
    test_script = (ROOT / "scripts" / "test.sh").read_text()
    assert 'ruff" check' in test_script and "-m pytest" in test_script
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def _commands(block: Block) -> list[str]:
    return [line.split("#")[0].strip() for line in block.text.splitlines() if line.split("#")[0].strip()]


def test_only_the_demo_and_the_test_command_are_not_run():
    marked = [block for block in BLOCKS if block.not_run]
    assert [block.file for block in marked] == ["README.md"]
    assert {line for block in marked for line in _commands(block)} == NOT_RUN_COMMANDS
    every = [path.read_text(encoding="utf-8") for path in DOC_FILES]
    assert sum(text.count(NOT_RUN) for text in every) == len(marked)  # no mark elsewhere, e.g. before prose


def test_examples_use_known_fences_only():
    """Output and file contents use fences that are not run; no example hides in an unnamed fence."""
    known = {"bash", "sh", "shell", "python", "text", "console", "yaml", "json", "csv", "toml", "bibtex"}
    for path in DOC_FILES:
        for block in collect_blocks(path, None):
            assert block.language in known, f"{block.id}: fence {block.language!r} (use one of {sorted(known)})"


# ---------------------------------------------------------------- the docs as a whole
def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^ *```.*?^ *```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_links_between_the_docs_resolve():
    for path in DOC_FILES:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            assert linked.exists(), f"{path.name}: link to {target}"
            if anchor:
                assert anchor in _anchors(linked), f"{path.name}: no heading for #{anchor} in {linked.name}"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 260  # the two commands, a real report excerpt and its figure, then the tour
    for guide in ("study", "tasks", "scale", "scores", "architecture", "python-api"):
        assert f"docs/{guide}.md" in readme
    cite = readme[readme.index("## Cite") :]
    assert "@inproceedings{zhang2023adalora" in cite and "Adaptive Budget Allocation for Parameter-Efficient" in cite
    assert "@misc{kim-adalora-score-functions" in cite and "via Score Function Variation in" in cite


def test_the_study_is_named_not_called_the_seed():
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8").lower()
        assert not re.search(r"\bseed (paper|study)|\bthe seed's\b", text), path.name


def test_the_metamath_sweep_is_486_runs_of_every_score_lora_and_svd_lora():
    """study.md's MetaMathQA sweep: every built-in score, LoRA r=32 and SVD-LoRA r=32, as it says."""
    from adalora_scores.scores.base import get_score_class, list_scores
    from adalora_scores.study.grid import load_sweep

    built_in = {name for name in list_scores() if get_score_class(name).__module__.startswith("adalora_scores.")}
    runs = load_sweep("metamath").runs()
    assert len(runs) == 486 and "486 runs" in (ROOT / "docs" / "study.md").read_text()
    rows = {run.grid_values["score"] for run in runs}
    assert rows == {*built_in, "lora_r32", "svd_lora_r32"}
    assert {run.config.method for run in runs if run.grid_values["score"] == "svd_lora_r32"} == {"svd_lora"}
    lora = [run.config for run in runs if run.grid_values["score"] == "lora_r32"]
    assert {c.learning_rate for c in lora} == {5e-5, 1e-4, 3e-4} and {c.lora_alpha for c in lora} == {4, 64}
    assert {c.orth_reg_weight for c in lora} == {0.0}  # LoRA has no regulariser: γ is not tuned there
    adalora = [run.config for run in runs if run.config.method == "adalora"]
    assert {(c.orth_reg_weight, c.update_scale) for c in adalora} == {
        (0.0, 0.125),
        (0.0, 2.0),
        (0.5, 0.125),
        (0.5, 2.0),
    }
    assert {c.lora_alpha for c in adalora} == {8.0, 128.0}  # c · init_r 64: PEFT's α 8, and LoRA's c = 2
    assert all(run.config.lr_schedule == "cosine" and run.config.task_options["generate"] for run in runs)
