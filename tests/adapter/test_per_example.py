"""Per-example gradient moments of the AdaLoRA adapter against batch-1 backward passes, and the scores built on
them checked against hand-computed values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _per_example_models import batch_one_gradients, layout_of, padded_batch, tiny_bert, tiny_deberta, tiny_gpt2
from _tolerances import assert_reordered

from adalora_scores.adapter.per_example.collector import PerExampleGradients
from adalora_scores.adapter.per_example.shared_inputs import SharedProjectionContext
from adalora_scores.allocation import AdaptedMatrix, TripletLayout
from adalora_scores.scores import GradientMoments, create_score

LENGTHS = [7, 12, 5, 9, 12, 3]  # padding of different lengths in every batch
TERMS = max(LENGTHS) * 24
"""Products summed into one gradient entry: tokens × the widest layer (intermediate 24) of the tiny models."""


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Batched per-example products against batch-1 backward passes: the same sums in other orders."""
    assert_reordered(got, expected, TERMS)


def assert_moments(moments: GradientMoments, per_example: torch.Tensor) -> None:
    """m1, m2 and N of ``moments`` match (N, numel) reference gradients."""
    assert moments.count == per_example.shape[0]
    assert_close(moments.mean, per_example.mean(0))
    assert_close(moments.mean_square, per_example.square().mean(0))


def deberta_wide_buckets():
    return tiny_deberta(position_buckets=64)


@pytest.mark.parametrize(
    "build",
    [tiny_bert, tiny_deberta, deberta_wide_buckets, tiny_gpt2],
    ids=["bert", "deberta-v2", "deberta-v2-relative-band", "gpt2-conv1d"],
)
def test_moments_match_batch_one_backward_passes(build):
    model = build()
    layout = layout_of(model)
    batch = padded_batch(LENGTHS, seed=1)
    reference = batch_one_gradients(model, layout, batch)
    assert reference.abs().amax(dim=0).gt(0).all()  # every entry (λ, P, Q of every matrix) is checked
    with PerExampleGradients(model, layout) as collector:
        model(**batch).loss.backward()
        assert_moments(collector.consume(), reference)
    # the per-example mean is the mini-batch gradient; the mean square is not the square of the mean
    assert_close(layout.gather_gradients(), reference.mean(0))
    assert not torch.allclose(reference.square().mean(0), reference.mean(0).square(), rtol=1e-2)


def test_deberta_relative_position_path_is_attributed_per_example():
    model = tiny_deberta()
    attention = model.base_model.model.deberta.encoder.layer[0].attention.self
    with PerExampleGradients(model, layout_of(model)):
        assert "disentangled_attention_bias" in vars(attention)  # the per-instance wrapper is installed
    assert "disentangled_attention_bias" not in vars(attention)  # close() restores transformers' method
    # without the wrapper, the shared (batch 1) projection is refused instead of counted wrongly
    collector = PerExampleGradients(model, layout_of(model))
    del attention.disentangled_attention_bias
    with pytest.raises(RuntimeError, match="query_proj ran on 1 rows in a micro-batch of 6 examples"):
        model(**padded_batch(LENGTHS))
    collector._patched.remove(attention)
    collector.close()


def test_relative_position_rows_outside_the_gathered_band_get_no_gradient(monkeypatch):
    """The premise of SharedProjectionContext.used_rows, checked against the installed transformers: the rows of
    the shared projections' outputs outside the band get exactly zero gradient, and the collector uses the band."""
    model = tiny_deberta(position_buckets=64)
    batch = padded_batch(LENGTHS, seed=1)  # up to 12 tokens: relative positions -11..11 of 2k = 128 rows
    gradients = []

    def keep_shared_gradient(module, args, output):
        if output.shape[0] == 1 and output.requires_grad:
            output.register_hook(gradients.append)

    projections = [m for name, m in model.named_modules() if name.endswith(("query_proj", "key_proj"))]
    handles = [m.register_forward_hook(keep_shared_gradient) for m in projections]
    model(**batch).loss.backward()
    for handle in handles:
        handle.remove()
    assert len(gradients) == 4  # 2 layers × (query_proj, key_proj) on the relative-position embeddings
    rows_with_gradient = torch.stack([g[0].abs().amax(dim=1) > 0 for g in gradients]).any(dim=0).nonzero()
    assert rows_with_gradient.min() == 64 - 11 and rows_with_gradient.max() == 64 + 11

    bands = []
    original = SharedProjectionContext.used_rows

    def spy(self, rows):
        bands.append((rows, original(self, rows)))
        return bands[-1][1]

    monkeypatch.setattr(SharedProjectionContext, "used_rows", spy)
    model.zero_grad()
    with PerExampleGradients(model, layout_of(model)) as collector:
        model(**batch).loss.backward()
        collector.consume()
    assert bands and all(rows == 128 and band == slice(64 - 11, 64 + 12) for rows, band in bands)


def orthogonal_regulariser_gradients(model, layout: TripletLayout) -> torch.Tensor:
    """∇ of weight · mean_k ‖A_k A_kᵀ − I‖_F or ‖B_kᵀ B_k − I‖_F over every lora_A and lora_B (PEFT's formula,
    AdaLoraModel.forward), by autograd, in flat layout order."""
    weight = model.peft_config["default"].orth_reg_weight
    factors = [m.right for m in layout.matrices] + [m.left for m in layout.matrices]
    norms = [torch.linalg.matrix_norm(p @ p.T - torch.eye(p.shape[0])) for p in factors[: len(layout.matrices)]]
    norms += [torch.linalg.matrix_norm(p.T @ p - torch.eye(p.shape[1])) for p in factors[len(layout.matrices) :]]
    gradients = torch.autograd.grad(weight * torch.stack(norms).mean(), layout.parameters, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for p, g in zip(layout.parameters, gradients, strict=True)
        ]
    )


def test_orthogonal_regulariser_is_excluded():
    model = tiny_bert(orth_reg_weight=0.5)
    layout = layout_of(model)
    with PerExampleGradients(model, layout) as collector:
        model(**padded_batch(LENGTHS)).loss.backward()  # PeftModel's forward adds the regulariser to the loss
        moments = collector.consume()
    regulariser = orthogonal_regulariser_gradients(model, layout)
    assert regulariser.abs().max() > 10 * moments.mean.abs().max()  # large enough to show if it leaked in
    task = layout.gather_gradients() - regulariser
    assert_close(moments.mean, task)


@pytest.mark.parametrize("sizes", [[8, 8, 8, 8], [8, 16, 3, 5]], ids=["4x8", "unequal"])
def test_accumulated_micro_batches_give_the_moments_of_one_batch(sizes):
    model = tiny_bert()
    layout = layout_of(model)
    lengths = [3 + (5 * i) % 10 for i in range(32)]
    batch = padded_batch(lengths, seed=2)
    with PerExampleGradients(model, layout) as collector:
        model(**batch).loss.backward()
        whole = collector.consume()
        loss_scale = 1024.0  # fp16-style loss scaling, undone by the collector
        collector.set_loss_divisor(len(sizes))
        collector.set_loss_scale(loss_scale)
        start = 0
        for size in sizes:
            part = {key: value[start : start + size] for key, value in batch.items()}
            (model(**part).loss * loss_scale / len(sizes)).backward()
            start += size
        accumulated = collector.consume()
    assert accumulated.count == whole.count == 32
    assert_close(accumulated.mean, whole.mean)
    assert_close(accumulated.mean_square, whole.mean_square)


@pytest.mark.parametrize("build", [tiny_bert, tiny_deberta], ids=["bert", "deberta-v2"])
@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_gradient_checkpointing_counts_every_example_once(build, reentrant):
    batch = padded_batch(LENGTHS, seed=3)
    results = []
    for checkpointing in (False, True):
        model = build()
        if checkpointing:
            inner = model.base_model.model
            inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
            inner.enable_input_require_grads()  # reentrant checkpoints need an input that requires grad
        layout = layout_of(model)
        calls: list[int] = []
        first = layout.matrices[0].name.rsplit(".lora_E.", 1)[0]
        model.base_model.model.get_submodule(first.removeprefix("base_model.model.")).register_forward_hook(
            lambda *args, calls=calls: calls.append(1)
        )
        with PerExampleGradients(model, layout) as collector:
            model(**batch).loss.backward()
            results.append(collector.consume())
        assert len(calls) == (2 if checkpointing else 1)  # the checkpointed forward really ran twice
    plain, checkpointed = results
    assert checkpointed.count == plain.count == len(LENGTHS)
    assert_close(checkpointed.mean, plain.mean)
    assert_close(checkpointed.mean_square, plain.mean_square)


def test_lora_dropout_uses_the_forward_pass_sample():
    model = tiny_bert(lora_dropout=0.5)
    layout = layout_of(model)
    with PerExampleGradients(model, layout) as collector:
        torch.manual_seed(0)
        model(**padded_batch(LENGTHS)).loss.backward()
        moments = collector.consume()
    # m1 is the task gradient only if each layer's dropout mask is the one its forward pass used
    task = layout.gather_gradients().clone()
    assert_close(moments.mean, task)
    model.zero_grad()
    torch.manual_seed(1)
    model(**padded_batch(LENGTHS)).loss.backward()
    assert not torch.allclose(layout.gather_gradients(), task, rtol=1e-3)  # a different sample: a different m1


def test_two_gloo_processes_all_reduce_to_the_moments_of_the_whole_batch(tmp_path):
    # unequal shares (4 and 2 rows): the global mean weighs examples, not processes
    script = Path(__file__).parents[1] / "_per_example_models.py"
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(script.parent), *sys.path]),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29571",
        str(script),
        str(tmp_path / "moments.pt"),
        ",".join(map(str, LENGTHS)),
        "4",
    ]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    distributed = torch.load(tmp_path / "moments.pt")
    model = tiny_bert()
    layout = layout_of(model)
    with PerExampleGradients(model, layout) as collector:
        model(**padded_batch(LENGTHS, seed=4)).loss.backward()
        whole = collector.consume()
    assert distributed["count"] == whole.count == len(LENGTHS)
    assert_close(distributed["mean"], whole.mean)
    assert_close(distributed["mean_square"], whole.mean_square)


def test_discard_and_consume_without_examples():
    model = tiny_bert()
    with PerExampleGradients(model, layout_of(model)) as collector:
        model(**padded_batch(LENGTHS)).loss.backward()
        collector.discard()  # a skipped step
        with pytest.raises(RuntimeError, match="no per-example gradients"):
            collector.consume()
        with torch.no_grad():
            model(**padded_batch(LENGTHS))  # evaluation does not open a micro-batch
        model(**padded_batch(LENGTHS[:4])).loss.backward()
        assert collector.consume().count == 4


# -- scores from known moments (β = 0.5, so the numbers are exact in binary) -----------------------------------------
def one_matrix_layout() -> TripletLayout:
    zeros = torch.nn.Parameter
    matrix = AdaptedMatrix(
        name="layer.lora_E.default",
        right=zeros(torch.zeros(2, 2)),
        value=zeros(torch.zeros(2, 1)),
        left=zeros(torch.zeros(3, 2)),
    )
    return TripletLayout([matrix])


def run_moments(name: str, options: dict, steps: list[tuple[float, float, float, int]]) -> torch.Tensor:
    """Feed constant (w, m1, m2, N) to every entry; return the element scores after the last step."""
    score = create_score(name, **options)
    layout = one_matrix_layout()
    score.bind(layout)
    param = torch.empty(layout.numel)
    for w, mean, mean_square, count in steps:
        param.fill_(w)
        moments = GradientMoments(torch.full_like(param, mean), torch.full_like(param, mean_square), count)
        score.observe(param, torch.full_like(param, float("nan")), moments)  # the mini-batch gradient is unused
    return score.element_scores(param)


@pytest.mark.parametrize(
    "name,options,steps,expected",
    [
        # m2 = 0.25, 2.25: F = 0.125, then 0.0625 + 1.125
        ("fisher_per_example", {"beta": 0.5}, [(2, 0.5, 0.25, 8), (2, -1.0, 2.25, 8)], 1.1875),
        # w² m2 = 4·0.25 = 1, then 1·9 = 9: T = 0.5, then 0.25 + 4.5
        ("taylor_per_example", {"beta": 0.5}, [(2, 0.5, 0.25, 8), (-1, 3.0, 9.0, 8)], 4.75),
        # v = 2/1·(2 − 1) = 2, then 4/3·(13 − 9) = 16/3; M1 = 0.5, 1.75; V = 1, 0.5 + 8/3 = 19/6;
        # /(1 − 0.25): M̂1 = 7/3, V̂ = 38/9; r = (49/9)/(38/9) = 49/38
        ("gsnr_per_example", {"beta": 0.5}, [(2, 1.0, 2.0, 2), (2, 3.0, 13.0, 4)], 49 / 38),
        # bounded: M̂1² / (V̂ + M̂1²) = 49 / 87
        ("gsnr_per_example", {"beta": 0.5, "bounded": True}, [(2, 1.0, 2.0, 2), (2, 3.0, 13.0, 4)], 49 / 87),
    ],
)
def test_hand_computed_per_example_scores(name, options, steps, expected):
    scores = run_moments(name, options, steps)
    torch.testing.assert_close(scores, torch.full_like(scores, expected), rtol=1e-5, atol=0)


def test_gsnr_per_example_is_zero_where_every_example_agrees_on_zero():
    # P and Q of a pruned triplet: no task gradient for any example, so no signal (not 0/ε)
    scores = run_moments("gsnr_per_example", {"beta": 0.5}, [(0.0, 0.0, 0.0, 4)])
    assert torch.all(scores == 0)


def test_per_example_scores_refuse_mini_batch_gradients():
    score = create_score("fisher_per_example")
    score.bind(one_matrix_layout())
    param = torch.zeros(score.layout.numel)
    with pytest.raises(ValueError, match="needs per-example gradient moments"):
        score.observe(param, param)
    with pytest.raises(ValueError, match="at least 2 examples"):
        create_score("gsnr_per_example").update_moments(param, GradientMoments(param, param, 1))
