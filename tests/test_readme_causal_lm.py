"""The README's "Decoder LLMs" examples: its records and its train command run as written on a tiny LLaMA (the Hub
model name swapped for the local folder), and its MetaMathQA sweep resolves to the documented 126 runs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from test_readme_own_data import _blocks

from adalora_scores.cli import main
from adalora_scores.study.grid import load_sweep
from adalora_scores.tiny_models import save_tiny_decoder

README = Path(__file__).parents[1] / "README.md"
HUB_MODEL = "Qwen/Qwen2.5-0.5B"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Decoder LLMs: instruction tuning\n", 1)[1].split("\n## ", 1)[0]


def test_the_causal_lm_example_runs_as_written(tmp_path, monkeypatch):
    section = _section()
    monkeypatch.chdir(tmp_path)
    records, chat = _blocks(section, "text")[:2]
    lines = [line for line in records.splitlines() if line.startswith("{")]
    rows = [json.loads(line) for line in lines]
    assert all(set(row) == {"prompt", "completion"} for row in rows)
    assert set(json.loads(chat.strip())) == {"messages"}
    Path("math").mkdir()
    for name in ("train", "dev"):
        Path("math", f"{name}.jsonl").write_text("\n".join(lines * 8) + "\n", encoding="utf-8")
    model = save_tiny_decoder(tmp_path / "model", [row["prompt"] + row["completion"] for row in rows], "qwen2")
    (commands,) = [b for b in _blocks(section, "bash") if "--task causal_lm" in b]
    (command,) = [shlex.split(line) for line in commands.replace("\\\n", " ").splitlines() if line.strip()]
    command = [str(model) if word == HUB_MODEL else word for word in command[1:]]
    assert main([*command, "num_epochs=1", "max_seq_length=48", "task_options.max_new_tokens=4"]) == 0
    metrics = json.loads(Path("runs/math-fisher/metrics.json").read_text())
    assert metrics["main_metric"] == "exact_match" and metrics["score"] == "fisher_per_example"
    assert len(Path("runs/math-fisher/predictions.jsonl").read_text().splitlines()) == 16


def test_the_metamath_sweep_is_126_runs_of_every_score_lora_and_svd_lora():
    from adalora_scores.scores.base import get_score_class, list_scores

    built_in = {name for name in list_scores() if get_score_class(name).__module__.startswith("adalora_scores.")}
    runs = load_sweep("metamath").runs()
    assert len(runs) == 126 and "sweep metamath" in _section()
    rows = {run.grid_values["score"] for run in runs}
    assert rows == {*built_in, "lora_r32", "svd_lora_r32"}
    assert {run.config.method for run in runs if run.grid_values["score"] == "svd_lora_r32"} == {"svd_lora"}
    lora = [run.config for run in runs if run.grid_values["score"] == "lora_r32"]
    assert {c.learning_rate for c in lora} == {5e-5, 1e-4, 3e-4} and {c.lora_alpha for c in lora} == {64}
    assert all(run.config.lr_schedule == "cosine" and run.config.task_options["generate"] for run in runs)
