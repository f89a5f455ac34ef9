"""Reliability: exact resume, atomic checkpoints, 2-process (gloo) parity, accumulation parity, fp16 GradScaler,
non-finite values, gradient checkpointing, bf16, and the error matrix of the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adalora_scores.adapter.peft.peft_allocator import PeftRankAllocator
from adalora_scores.cli import main
from adalora_scores.engine import checkpoint as checkpoint_module
from adalora_scores.engine import loop as loop_module
from adalora_scores.engine import train as train_module
from adalora_scores.engine.checkpoint import load_checkpoint, save_checkpoint
from adalora_scores.engine.train import train
from adalora_scores.presets.overrides import resolve_config

SMALL = [
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=32",
    "learning_rate=5e-3",
    "eval_batch_size=8",
    "budget_warmup=0.1",
    "budget_final=0.2",
]


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """A tiny BERT without dropout (so runs that batch differently can agree) and a learnable two-class task."""
    from adalora_scores.demo.tiny_models import save_tiny_model
    from adalora_scores.tasks.contrast import write_contrast_task

    root = tmp_path_factory.mktemp("parity")
    data = write_contrast_task(root / "data", train=256, dev=32)
    sentences = [line.split("\t")[0] for line in (data / "train.tsv").read_text().splitlines()[1:]]
    model = save_tiny_model(
        root / "model",
        sentences,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return model, data


def _config(task: str, model, data, *overrides: str):
    values = {"task": task, "model": str(model), "data": str(data)}
    return resolve_config(None, task, values, [*SMALL, *overrides])


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter" / "adapter_model.safetensors")


SAME_SUMS_ATOL = 5e-5
"""Two trainings that compute the same float32 sums in other orders (two processes, accumulated micro-batches,
recomputed activations) end with O(0.1) adapter entries that differ by reordering noise carried through AdamW: at
most 2.4e-7 measured (a CPU with AVX512-BF16), 5e-5 leaves 200x for other kernels; a wrong gradient moves them by
1e-3 or more."""


def _assert_same_run(a: Path, b: Path, atol: float | None = None) -> None:
    assert json.loads((a / "rank_pattern.json").read_text()) == json.loads((b / "rank_pattern.json").read_text())
    first, second = _adapter(a), _adapter(b)
    assert first.keys() == second.keys()
    for key in first:
        if atol is None:
            assert torch.equal(first[key], second[key]), key
        else:
            torch.testing.assert_close(first[key], second[key], atol=atol, rtol=0)


# ---------------------------------------------------------------- exact resume
class SimulatedKill(Exception):
    pass


def _kill_at(monkeypatch, step: int) -> None:
    """Make training raise ``SimulatedKill`` right after optimizer step ``step`` (undo with ``monkeypatch.undo``)."""
    original = loop_module._optimizer_step

    def killed(session, progress, *rest):
        original(session, progress, *rest)
        if progress.step == step:
            raise SimulatedKill

    monkeypatch.setattr(loop_module, "_optimizer_step", killed)


@pytest.mark.parametrize(
    ("group_by_length", "accumulation", "every", "kill_at", "score"),
    [(False, 1, 5, 13, "sensitivity"), (True, 2, 4, 7, "sensitivity"), (True, 2, 4, 7, "gsnr_per_example")],
)
def test_resume_after_a_kill_is_bit_exact(
    group_by_length, accumulation, every, kill_at, score, glue_root, tiny_model_dir, tmp_path, monkeypatch
):
    config = _config(
        "rte",
        tiny_model_dir,
        glue_root / "rte",
        "num_epochs=2",
        "batch_size=2",
        "lora_dropout=0.1",
        f"gradient_accumulation_steps={accumulation}",
        f"group_by_length={group_by_length}",
        f"checkpoint_every={every}",
        f"score={score}",
    )
    train(config, tmp_path / "whole")
    _kill_at(monkeypatch, kill_at)
    with pytest.raises(SimulatedKill):
        train(config, tmp_path / "resumed")
    assert load_checkpoint(tmp_path / "resumed")["progress"]["step"] == (kill_at // every) * every
    monkeypatch.undo()
    metrics = train(config, tmp_path / "resumed", resume=True)
    assert metrics["resumed_from_step"] == (kill_at // every) * every
    # bit for bit: the same adapter tensors, rank pattern, per-step log (loss, LR, budget) and metrics
    _assert_same_run(tmp_path / "whole", tmp_path / "resumed")
    assert (tmp_path / "whole" / "log.jsonl").read_text() == (tmp_path / "resumed" / "log.jsonl").read_text()
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert whole["eval"] == metrics["eval"] and whole["train_loss"] == metrics["train_loss"]
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()  # removed once the run finished


def test_a_kill_during_the_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"progress": {"step": 5}})

    def torn(obj, stream):
        stream.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, {"progress": {"step": 10}})
    assert load_checkpoint(tmp_path)["progress"]["step"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


# ---------------------------------------------------------------- parity across processes and accumulation
def _two_and_one_process(common: list[str], out: Path, batch_size: int, port: int) -> None:
    """Run ``adalora-scores train`` as 2 gloo processes with ``batch_size`` each into ``out/two``, and as 1 process
    with the same global batch into ``out/one``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "adalora_scores.cli",
        "train",
    ]
    done = subprocess.run(
        [*launch, *common, "--output", str(out / "two"), f"batch_size={batch_size}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(["train", *common, "--output", str(out / "one"), f"batch_size={2 * batch_size}"]) == 0


@pytest.mark.parametrize(("score", "port"), [("sensitivity", 29561), ("fisher_per_example", 29562)])
def test_two_gloo_processes_match_one_process(score, port, parity, tmp_path):
    model, data = parity
    common = ["--task", "sst2", "--model", str(model), "--data", str(data), *SMALL, "num_epochs=1", f"score={score}"]
    _two_and_one_process(common, tmp_path, batch_size=4, port=port)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["total_steps"] == two["total_steps"] == 32  # 256 examples / (4 per process × 2 processes)
    assert one["eval"] == two["eval"]
    _assert_same_run(tmp_path / "one", tmp_path / "two", atol=SAME_SUMS_ATOL)
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / n / "log.jsonl").read_text().splitlines()]
        for n in ("one", "two")
    ]
    # the log holds the global batch's loss: one mean of 8 values in two orders, O(1): a few eps (measured 1 eps)
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


@pytest.mark.parametrize("score", ["sensitivity", "gsnr_per_example"])
def test_accumulation_matches_one_large_batch(score, parity, tmp_path):
    model, data = parity
    train(_config("sst2", model, data, "num_epochs=2", "batch_size=32", f"score={score}"), tmp_path / "large")
    train(
        _config(
            "sst2", model, data, "num_epochs=2", "batch_size=8", "gradient_accumulation_steps=4", f"score={score}"
        ),
        tmp_path / "accumulated",
    )
    large = json.loads((tmp_path / "large" / "metrics.json").read_text())
    accumulated = json.loads((tmp_path / "accumulated" / "metrics.json").read_text())
    assert large["total_steps"] == accumulated["total_steps"] == 16  # T in optimizer steps, not micro-batches
    _assert_same_run(tmp_path / "large", tmp_path / "accumulated", atol=SAME_SUMS_ATOL)


@pytest.mark.parametrize("score", ["sensitivity", "taylor_per_example"])
def test_gradient_checkpointing_changes_nothing(score, parity, tmp_path):
    model, data = parity
    train(_config("sst2", model, data, "num_epochs=1", "batch_size=16", f"score={score}"), tmp_path / "plain")
    train(
        _config("sst2", model, data, "num_epochs=1", "batch_size=16", "gradient_checkpointing=true", f"score={score}"),
        tmp_path / "checkpointed",
    )
    _assert_same_run(tmp_path / "plain", tmp_path / "checkpointed", atol=SAME_SUMS_ATOL)


def test_bf16_trains(parity, tmp_path):
    model, data = parity
    metrics = train(
        _config("sst2", model, data, "num_epochs=1", "batch_size=32", "mixed_precision=bf16"), tmp_path / "bf16"
    )
    assert metrics["steps"] == 8 and metrics["skipped_steps"] == 0
    assert all(torch.isfinite(t).all() for t in _adapter(tmp_path / "bf16").values())


# ---------------------------------------------------------------- fp16 loss scaling and non-finite values
def _record_statistics(monkeypatch) -> list[dict[str, torch.Tensor]]:
    seen = []
    original = PeftRankAllocator.update_and_allocate

    def recording(self, model, step, force_mask=False):
        result = original(self, model, step, force_mask)
        statistics = self.score.state_dict()["statistics"]
        assert statistics, "the score keeps statistics"  # else the comparisons below would be empty
        seen.append({k: v.clone() for k, v in statistics.items()})
        return result

    monkeypatch.setattr(PeftRankAllocator, "update_and_allocate", recording)
    return seen


def _with_grad_scaler(monkeypatch, init_scale: float) -> None:
    """A CPU stand-in for fp16 training: accelerate's GradScaler path without fp16 autocast (which CPU lacks)."""

    class ScaledAccelerator(train_module.Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)

        def unscale_gradients(self, optimizer=None):
            # accelerate unscales only when mixed_precision == "fp16"; do what it does then, so that clipping
            # (which calls this first) sees unscaled gradients as it does on a GPU
            for accelerated in self._optimizers:
                self.scaler.unscale_(accelerated.optimizer)

    monkeypatch.setattr(train_module, "Accelerator", ScaledAccelerator)


@pytest.mark.parametrize("score", ["fisher", "fisher_per_example"])
@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_scores_never_see_loss_scaled_gradients(parity, tmp_path, monkeypatch, max_grad_norm, score):
    model, data = parity
    config = _config(
        "sst2", model, data, "num_epochs=1", "batch_size=32", f"score={score}", f"max_grad_norm={max_grad_norm}"
    )
    plain = _record_statistics(monkeypatch)
    train(config, tmp_path / "plain")
    monkeypatch.undo()
    _with_grad_scaler(monkeypatch, init_scale=2.0**12)
    scaled = _record_statistics(monkeypatch)
    train(config, tmp_path / "scaled")
    assert len(plain) == len(scaled) == 7  # PEFT calls the allocator until T − t_f (t_f = 1 step), then masks
    for a, b in zip(plain, scaled, strict=True):  # a power-of-two scale unscales exactly: equal to the bit
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _inject(monkeypatch, value: float, at_backward: int) -> None:
    """Make the gradient of the first lora_A tensor ``value`` at the ``at_backward``-th backward pass."""
    original = train_module.build_adapted_model

    def build(*args, **kwargs):
        adapted = original(*args, **kwargs)
        name, parameter = next((n, p) for n, p in adapted.model.named_parameters() if "lora_A" in n)
        calls = []

        def hook(grad):
            calls.append(1)
            return torch.full_like(grad, value) if len(calls) == at_backward else grad

        parameter.register_hook(hook)
        return adapted

    monkeypatch.setattr(train_module, "build_adapted_model", build)


def test_fp16_overflow_skips_the_step_and_keeps_statistics_finite(parity, tmp_path, monkeypatch):
    model, data = parity
    _with_grad_scaler(monkeypatch, init_scale=2.0**12)
    _inject(monkeypatch, float("inf"), at_backward=3)
    seen = _record_statistics(monkeypatch)
    metrics = train(_config("sst2", model, data, "num_epochs=1", "batch_size=32", "score=gsnr"), tmp_path / "run")
    assert metrics["skipped_steps"] == 1 and metrics["steps"] == 8  # a skipped update does not count towards T
    assert len(seen) == 7 and all(torch.isfinite(t).all() for stats in seen for t in stats.values())


def test_nonfinite_gradient_stops_with_step_and_parameter(glue_root, tiny_model_dir, tmp_path, monkeypatch, capsys):
    _inject(monkeypatch, float("nan"), at_backward=3)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--task",
            "rte",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(glue_root / "rte"),
            "--output",
            str(out),
            *SMALL,
            "batch_size=4",
        ]
    )
    error = capsys.readouterr().err
    assert code == 2 and "step 3: non-finite gradient of" in error and "lora_A" in error and "nonfinite=skip" in error
    assert not (out / "metrics.json").exists()


def test_nonfinite_gradient_skip_policy(glue_root, tiny_model_dir, tmp_path, monkeypatch):
    _inject(monkeypatch, float("nan"), at_backward=3)
    seen = _record_statistics(monkeypatch)
    config = _config("rte", tiny_model_dir, glue_root / "rte", "batch_size=4", "nonfinite=skip", "score=fisher")
    with pytest.warns(UserWarning, match="step 3: non-finite gradient"):
        metrics = train(config, tmp_path / "run")
    assert metrics["skipped_steps"] == 1 and metrics["steps"] == metrics["total_steps"]
    assert all(torch.isfinite(t).all() for stats in seen for t in stats.values())


# ---------------------------------------------------------------- the error matrix
def _finished_run(tmp_path, glue_root, tiny_model_dir) -> list[str]:
    args = ["--task", "rte", "--model", str(tiny_model_dir), "--data", str(glue_root / "rte"), *SMALL, "batch_size=4"]
    assert main(["train", *args, "--output", str(tmp_path / "out")]) == 0
    return args


def _interrupted_run(tmp_path, glue_root, tiny_model_dir, monkeypatch) -> list[str]:
    args = [
        "--task",
        "rte",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(glue_root / "rte"),
        *SMALL,
        "batch_size=4",
        "checkpoint_every=2",
    ]
    _kill_at(monkeypatch, 3)
    with pytest.raises(SimulatedKill):
        main(["train", *args, "--output", str(tmp_path / "out")])
    monkeypatch.undo()
    return args


def _base(tiny_model_dir, glue_root) -> list[str]:
    return ["--model", str(tiny_model_dir), "--data", str(glue_root / "rte"), *SMALL]


def _disk_full(monkeypatch):
    from adalora_scores.runs import atomic as atomic_files

    original = atomic_files.atomic_write

    def full(path, text):
        if Path(path).name == "metrics.json":
            raise OSError(28, "No space left on device")
        original(path, text)

    monkeypatch.setattr(atomic_files, "atomic_write", full)


CASES = {
    "unknown task": (lambda t, g, m, mp: ["--task", "rtx", *_base(m, g)], "unknown task 'rtx'"),
    "unknown score": (lambda t, g, m, mp: ["--task", "rte", "--score", "fishr", *_base(m, g)], "unknown score"),
    "model path": (
        lambda t, g, m, mp: ["--task", "rte", "--model", str(t / "nope"), "--data", str(g / "rte")],
        "no such folder",
    ),
    "no budgeting phase": (
        lambda t, g, m, mp: ["--task", "rte", *_base(m, g), "budget_warmup=5", "budget_final=5"],
        "no budgeting phase",
    ),
    "target above init": (lambda t, g, m, mp: ["--task", "rte", *_base(m, g), "target_r=8"], "target_r (8)"),
    "folder holds another run": (lambda t, g, m, mp: _finished_run(t, g, m), "already holds files"),
    "resume a finished run": (lambda t, g, m, mp: [*_finished_run(t, g, m), "--resume"], "already finished"),
    "resume with a changed config": (
        lambda t, g, m, mp: [*_interrupted_run(t, g, m, mp), "--resume", "learning_rate=1e-2"],
        "changed config",
    ),
    "corrupt checkpoint": (lambda t, g, m, mp: [*_interrupted_run(t, g, m, mp), "--resume"], "is corrupt"),
    "corrupt config": (lambda t, g, m, mp: [*_interrupted_run(t, g, m, mp), "--resume"], "config.yaml is corrupt"),
    "resume and overwrite": (
        lambda t, g, m, mp: [*_finished_run(t, g, m), "--resume", "--overwrite"],
        "exclude each other",
    ),
    "bad key": (lambda t, g, m, mp: ["--task", "rte", *_base(m, g), "learning_rat=1"], "Did you mean"),
    "disk full": (lambda t, g, m, mp: ["--task", "rte", *_base(m, g)], "No space left on device"),
}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_error_matrix(case, tmp_path, glue_root, tiny_model_dir, monkeypatch, capsys):
    build, message = CASES[case]
    args = build(tmp_path, glue_root, tiny_model_dir, monkeypatch)
    out = tmp_path / "out"
    if case == "corrupt checkpoint":
        (out / "checkpoint.pt").write_bytes(b"\x00not a checkpoint")
    if case == "corrupt config":
        (out / "config.yaml").write_text("{unclosed: [")
    if case == "disk full":
        _disk_full(monkeypatch)
    before = _snapshot(out) if out.exists() else None
    capsys.readouterr()
    code = main(["train", *args, "--output", str(out)] if "--output" not in args else ["train", *args])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("error:") == 1, error
    if case == "disk full":
        assert not (out / "metrics.json").exists() and not list(out.glob(".metrics.json*"))  # no half file
    else:
        assert (_snapshot(out) if out.exists() else None) == before  # nothing written or overwritten


def test_allocator_ignores_a_nonfinite_gradient_under_trainer_style_use():
    """Outside our loop (e.g. transformers.Trainer after an fp16 overflow) the allocator itself refuses to observe
    a NaN/Inf gradient: it warns, counts it, and keeps its statistics finite."""
    from _tiny import tiny_adalora

    import adalora_scores

    model = tiny_adalora(total_step=20, tinit=2, tfinal=4, deltaT=1)
    allocator = adalora_scores.attach(model, score="gsnr")
    for step in (1, 2, 3):
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.grad = torch.full_like(parameter, float("nan") if step == 2 else 0.01 * step)
        if step == 2:
            with pytest.warns(UserWarning, match="step 2: non-finite adapter gradient"):
                model.base_model.update_and_allocate(step)
        else:
            model.base_model.update_and_allocate(step)
    assert allocator.skipped_updates == 1 and allocator.score.num_updates == 2
    assert all(torch.isfinite(v).all() for v in allocator.score.state_dict().values() if isinstance(v, torch.Tensor))


def test_training_runs_in_train_mode(glue_root, tiny_model_dir, tmp_path, monkeypatch):
    """from_pretrained returns an eval-mode model; the loop must switch dropout on (a regression once found)."""
    modes = []
    original = loop_module._optimizer_step

    def recording(session, progress, *rest):
        modes.append(session.model.training and session.unwrapped.base_model.model.bert.encoder.training)
        original(session, progress, *rest)

    monkeypatch.setattr(loop_module, "_optimizer_step", recording)
    train(_config("rte", tiny_model_dir, glue_root / "rte", "batch_size=8"), tmp_path / "run")
    assert modes and all(modes)


def test_checkpoints_by_default_every_tenth_of_the_run(glue_root, tiny_model_dir, tmp_path, monkeypatch):
    config = _config("rte", tiny_model_dir, glue_root / "rte", "num_epochs=2", "batch_size=2")  # T = 24 steps
    _kill_at(monkeypatch, 5)
    with pytest.raises(SimulatedKill):
        train(config, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["progress"]["step"] == 4  # every 24 // 10 = 2 steps


def test_two_gloo_processes_extract_the_same_squad_answers(parity, tmp_path):
    """Evaluation gathers windowed logits of different lengths from both processes, in order, without duplicates."""
    from _squad import write_squad_folder

    model, _ = parity
    write_squad_folder(tmp_path / "squad", version_2=True)
    common = [
        "--task",
        "squad_v2",
        "--model",
        str(model),
        "--data",
        str(tmp_path / "squad"),
        "num_epochs=1",
        "init_r=4",
        "target_r=2",
        "mask_interval=1",
        "max_seq_length=48",
        "doc_stride=16",
        "eval_batch_size=3",
        "max_answer_length=8",
    ]
    _two_and_one_process(common, tmp_path, batch_size=2, port=29562)
    one, two = (json.loads((tmp_path / n / "metrics.json").read_text())["eval"]["dev"] for n in ("one", "two"))
    odds = [json.loads((tmp_path / n / "null_odds.json").read_text()) for n in ("one", "two")]
    # null odds are differences of two logits of models trained in two orders of the same sums, and each set-up pads
    # its batches to another length: measured 7.4e-3 at most (odds up to 0.45), so 5e-2 leaves about 7x
    assert odds[0] == pytest.approx(odds[1], abs=5e-2)
    answers = [json.loads((tmp_path / n / "predictions.json").read_text()) for n in ("one", "two")]
    assert set(answers[0]) == set(answers[1]) and len(answers[0]) == one["total"] == 12
    clear = [q for q in answers[0] if abs(odds[0][q]) > 2e-2]  # away from the null threshold 0
    assert len(clear) >= 6 and all(answers[0][q] == answers[1][q] for q in clear)
    if all(answers[0][q] == answers[1][q] for q in answers[0]):  # then EM/F1 and their breakdown agree exactly
        assert {k: v for k, v in one.items() if not k.startswith("best_")} == {
            k: v for k, v in two.items() if not k.startswith("best_")
        }
