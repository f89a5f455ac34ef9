"""The ``causal_lm`` task: labels by hand (with and without a chat template), truncation, answer extraction,
perplexity from a known loss, bad data, and every score end to end through the CLI on tiny random decoders
(LLaMA, Qwen2, GPT-2) with a locally built tokenizer: train, sweep, report, stock-PEFT reload, exact resume."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import yaml
from _tolerances import reordered_sums

from adalora_scores.cli import main
from adalora_scores.demo.tiny_models import decoder_tokenizer, save_tiny_decoder
from adalora_scores.engine.train import train
from adalora_scores.presets.overrides import resolve_config
from adalora_scores.scores.base import list_scores
from adalora_scores.tasks import configure_task
from adalora_scores.tasks.causal_lm import (
    IGNORE_INDEX,
    CausalLMDataset,
    LMExample,
    completion_loss,
    extract_answer,
    same_answer,
)

TINY = [
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=48",
    "learning_rate=5e-3",
    "batch_size=8",
    "eval_batch_size=8",
    "budget_warmup=0.1",
    "budget_final=0.2",
    "num_epochs=1",
]


def _records(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        out.append(
            {"prompt": f"what is {a} plus {b} ?", "completion": f"{a} plus {b} is {a + b} . the answer is {a + b}"}
        )
    return out


def _chat(record: dict[str, str]) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "add"},
            {"role": "user", "content": record["prompt"]},
            {"role": "assistant", "content": record["completion"]},
        ]
    }


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


TEXTS = [r["prompt"] + " " + r["completion"] for r in _records(80, 0)] + [str(i) for i in range(20)] + ["add"]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """Tiny model folders (LLaMA, Qwen2, GPT-2) and a data folder of prompt/completion and of chat records."""
    root = tmp_path_factory.mktemp("causal")
    train_rows, dev_rows = _records(32, 1), _records(8, 2)
    _write_jsonl(root / "data" / "train.jsonl", train_rows)
    _write_jsonl(root / "data" / "dev.jsonl", dev_rows)
    _write_jsonl(root / "chat" / "train.jsonl", [_chat(r) for r in train_rows])
    _write_jsonl(root / "chat" / "dev.jsonl", [_chat(r) for r in dev_rows])
    models = {kind: save_tiny_decoder(root / kind, TEXTS, kind) for kind in ("llama", "qwen2", "gpt2")}
    return root, models


# ------------------------------------------------------------------------------------------ labels by hand
def test_prompt_tokens_carry_minus_100_and_completion_tokens_their_ids():
    tokenizer = decoder_tokenizer(TEXTS)
    vocab = tokenizer.get_vocab()
    example = LMExample("x.jsonl, line 1", prompt="what is 2 plus 3 ?", completion="the answer is 5")
    (feature,) = CausalLMDataset([example], tokenizer, 64).features
    bos = eos = vocab["<|endoftext|>"]
    prompt = [bos] + [vocab[w] for w in "what is 2 plus 3 ?".split()]
    completion = [vocab[w] for w in "the answer is 5".split()] + [eos]
    assert feature["input_ids"] == prompt + completion
    assert feature["labels"] == [IGNORE_INDEX] * len(prompt) + completion
    assert feature["attention_mask"] == [1] * (len(prompt) + len(completion))


def test_chat_messages_mask_everything_but_the_last_assistant_turn():
    tokenizer = decoder_tokenizer(TEXTS)
    vocab = tokenizer.get_vocab()
    example = LMExample(
        "x.jsonl, line 1",
        messages=(("system", "add"), ("user", "what is 2 plus 3 ?"), ("assistant", "the answer is 5")),
    )
    (feature,) = CausalLMDataset([example], tokenizer, 64).features
    end, ids = vocab["<|endoftext|>"], lambda text: [vocab[w] for w in text.split()]  # noqa: E731
    prompt = [
        end,
        vocab["<|system|>"],
        *ids("add"),
        end,
        vocab["<|user|>"],
        *ids("what is 2 plus 3 ?"),
        end,
        vocab["<|assistant|>"],
    ]
    completion = [*ids("the answer is 5"), end]  # the template's own end of turn, no extra EOS
    assert feature["input_ids"] == prompt + completion
    assert feature["labels"] == [IGNORE_INDEX] * len(prompt) + completion


def test_padding_is_masked_and_truncation_is_counted():
    tokenizer = decoder_tokenizer(TEXTS)
    short = LMExample("a, line 1", prompt="what is 2 plus 3 ?", completion="5")
    long = LMExample("a, line 2", prompt="what is 2 plus 3 ?", completion="2 plus 3 is 5 . the answer is 5")
    dataset = CausalLMDataset([short, long], tokenizer, 10)
    assert dataset.lengths == [9, 10] and dataset.truncated == 1 and dataset.dropped == 0
    batch = dataset.collate(dataset.features)
    assert batch["input_ids"][0, -1] == tokenizer.pad_token_id and batch["labels"][0, -1] == IGNORE_INDEX
    assert batch["attention_mask"][0].tolist() == [1] * 9 + [0]
    hopeless = LMExample("data/train.jsonl, line 7", prompt="what is 2 plus 3 ? " * 3, completion="5")
    with pytest.raises(
        ValueError,
        match=r"data/train.jsonl, line 7: the prompt alone has 19 tokens.*"
        r"truncated_completion=drop",
    ):
        CausalLMDataset([short, hopeless], tokenizer, 10)
    with pytest.warns(UserWarning, match="dropped 1 of 2 examples"):
        dropped = CausalLMDataset([short, hopeless], tokenizer, 10, on_truncated="drop")
    assert len(dropped) == 1 and dropped.dropped == 1 and dropped.examples == [short]


# ------------------------------------------------------------------------------------------ answers, metrics
@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("so 3 + 4 = 7. The answer is: 7", None, "7"),
        ("The answer is 1,800 dollars, not 12", None, "1,800"),
        ("first 2, then the answer is 5. Check: 5 + 0 = 5, maybe 6", None, "5"),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", None, "72"),
        ("no number here", None, None),
        ("-3.5 degrees", None, "-3.5"),
        ("answer: (B) then answer: (C)", r"answer: \((\w)\)", "C"),
        ("yes", r"yes|no", "yes"),
    ],
)
def test_answer_extraction_on_crafted_generations(text, pattern, expected):
    assert extract_answer(text, pattern) == expected


def test_answers_compare_as_numbers():
    assert same_answer("1,800", "1800") and same_answer("18.0", "18") and same_answer("$5", "5.")
    assert not same_answer("17", "18") and not same_answer(None, "18") and same_answer("B", " B ")


def test_perplexity_from_a_known_loss():
    task = configure_task("causal_lm", {})
    dataset = type("D", (), {"truncated": 0, "dropped": 0, "examples": []})()
    outputs = {"completion_loss": torch.tensor([[6.0, 3.0], [2.0, 1.0]])}  # 8 nats over 4 tokens
    metrics, files = task.evaluate(outputs, dataset, None)
    assert metrics["loss"] == 2.0 and metrics["perplexity"] == pytest.approx(math.exp(2.0)) and files == {}
    assert task.main_metric == "perplexity"


def test_the_completion_loss_is_transformers_loss_per_example(decoders):
    """Summed over a padded batch, the per-example sums and counts give transformers' own token-mean loss; each
    example alone gives its own loss."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, models = decoders
    model, tokenizer = (
        AutoModelForCausalLM.from_pretrained(models["llama"]),
        AutoTokenizer.from_pretrained(models["llama"]),
    )
    examples = [
        LMExample(f"l{i}", prompt=r["prompt"], completion=r["completion"]) for i, r in enumerate(_records(3, 5))
    ]
    examples[1] = LMExample("l1", prompt="what is 2 ?", completion="2")  # shorter: padded in the batch
    dataset = CausalLMDataset(examples, tokenizer, 48)
    batch = dataset.collate(dataset.features)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        per_example = completion_loss(logits, batch["labels"])
        whole = model(**batch).loss
        alone = [model(**dataset.collate([feature])).loss for feature in dataset.features]
    # padded batch against each feature alone: the same sums in other orders, ≤ 48 tokens × 64-way log-softmax each
    rtol = reordered_sums(48 * 64, 0.0)["rtol"]
    torch.testing.assert_close(per_example[:, 0].sum() / per_example[:, 1].sum(), whole, rtol=rtol, atol=0)
    torch.testing.assert_close(per_example[:, 0] / per_example[:, 1], torch.stack(alone), rtol=rtol, atol=0)


# ------------------------------------------------------------------------------------------ bad data
BAD = [
    ('{"prompt": "what is 2 ?"}\n', "line 1: no field 'completion'.*task_options.completion_field"),
    (
        '{"prompt": "a", "completion": "5"}\n{"prompt": "what", "completion": "  "}\n',
        "line 2, field 'completion': empty completion; fill it in or remove the record",
    ),
    (
        b'{"prompt": "a", "completion": "5"}\n{"prompt": "caf\xe9", "completion": "5"}\n',
        r"line 2: byte 0xe9.*not UTF-8.*iconv",
    ),
    (
        '{"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "5"}]}\n',
        "line 1, message 2: unknown role 'robot'; use one of system, user, assistant, tool",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD)
def test_bad_data_names_the_file_line_and_fix_and_writes_nothing(content, message, decoders, tmp_path, capsys):
    root, models = decoders
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_bytes(content if isinstance(content, bytes) else content.encode())
    (data / "dev.jsonl").write_text((root / "data" / "dev.jsonl").read_text())
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--task",
            "causal_lm",
            "--model",
            str(models["llama"]),
            "--data",
            str(data),
            "--output",
            str(out),
            *TINY,
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "train.jsonl" in error
    assert len(__import__("re").findall(message, error)) == 1, error
    assert not out.exists()


# ------------------------------------------------------------------------------------------ end to end
def test_every_score_and_lora_sweep_then_report(decoders, tmp_path):
    """One sweep over every registered score and LoRA on a tiny LLaMA, then the report (perplexity, lower is
    better); each adapter reloads in stock PEFT and gives the recorded dev loss."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, models = decoders
    tiny = {key: yaml.safe_load(value) for key, value in (item.split("=") for item in TINY)}
    spec = {
        "kind": "sweep",
        "grid": {"task": ["causal_lm"], "score": list_scores(), "seed": [1]},
        "baselines": {"lora_r2": {"method": "lora", "target_r": 2}},
        "set": {"model": str(models["llama"]), **tiny},
        "data": {"causal_lm": str(root / "data")},
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--output", str(results)]) == 0
    assert main(["report", str(results), "--no-plots"]) == 0
    report = (results / "report.md").read_text()
    assert "causal_lm perplexity" in report and "missing" not in report
    folders = sorted(p.parent for p in results.glob("*/metrics.json"))
    assert len(folders) == len(list_scores()) + 1
    tokenizer = AutoTokenizer.from_pretrained(models["llama"])
    task = configure_task("causal_lm", {})
    dev = CausalLMDataset(task.load(root / "data").evals["dev"], tokenizer, 48)
    batch = dev.collate(dev.features)
    for folder in folders[:: max(1, len(folders) // 3)]:  # a few of them: reloading is the same code for all
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["main_metric"] == "perplexity" and math.isfinite(metrics["eval"]["dev"]["perplexity"])
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(models["llama"]), folder / "adapter")
        with torch.no_grad():
            sums = (
                completion_loss(
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
                )
                .double()
                .sum(0)
            )
        assert (sums[0] / sums[1]).item() == pytest.approx(metrics["eval"]["dev"]["loss"], rel=1e-5)


@pytest.mark.parametrize(("kind", "data"), [("qwen2", "chat"), ("gpt2", "data"), ("llama", "chat")])
def test_decoders_train_on_chat_and_prompt_records_with_generation(kind, data, decoders, tmp_path):
    root, models = decoders
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "causal_lm",
                "--model",
                str(models[kind]),
                "--data",
                str(root / data),
                "--output",
                str(out),
                "score=fisher_per_example",
                "task_options.generate=true",
                "task_options.max_new_tokens=6",
                "task_options.main_metric=exact_match",
                *TINY,
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 8 and metrics["main_metric"] == "exact_match"
    assert metrics["eval"]["dev"]["exact_match"] == 100.0 * sum(p["correct"] for p in predictions) / 8
    assert all(p["reference"] is not None and p["where"].endswith(f"line {i}") for i, p in enumerate(predictions, 1))
    assert json.loads((out / "train_data.json").read_text()) == {
        "examples": 32,
        "kept": 32,
        "truncated": 0,
        "dropped": 0,
    }


def test_resume_after_a_kill_is_exact(decoders, tmp_path, monkeypatch):
    from test_reliability import SimulatedKill, _assert_same_run, _kill_at

    root, models = decoders
    config = resolve_config(
        None,
        "causal_lm",
        {"task": "causal_lm", "model": str(models["llama"]), "data": str(root / "data")},
        [*TINY, "num_epochs=2", "batch_size=4", "checkpoint_every=4", "score=gsnr_per_example", "lora_dropout=0.1"],
    )
    train(config, tmp_path / "whole")
    _kill_at(monkeypatch, 6)
    with pytest.raises(SimulatedKill):
        train(config, tmp_path / "resumed")
    monkeypatch.undo()
    metrics = train(config, tmp_path / "resumed", resume=True)
    assert metrics["resumed_from_step"] == 4
    _assert_same_run(tmp_path / "whole", tmp_path / "resumed")
    assert (tmp_path / "whole" / "log.jsonl").read_text() == (tmp_path / "resumed" / "log.jsonl").read_text()


def test_hub_training_and_evaluation_sets_from_two_datasets(monkeypatch):
    """MetaMathQA-style training records and GSM8K-style evaluation records, each with its own template."""
    import datasets

    train = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(
                [{"query": "what is 2 plus 3 ?", "response": "2 plus 3 is 5 . The answer is: 5", "type": "x"}]
            )
        }
    )
    test = datasets.DatasetDict(
        {"test": datasets.Dataset.from_list([{"question": "what is 1 plus 1 ?", "answer": "1 plus 1 is 2\n#### 2"}])}
    )
    requested = []
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda *args: requested.append(args) or {"meta-math/MetaMathQA": train, "openai/gsm8k": test}[args[0]],
    )
    task = configure_task(
        "causal_lm",
        {
            "hub_dataset": "meta-math/MetaMathQA",
            "query_template": "Question: {query}",
            "completion_field": "response",
            "dev_hub_dataset": "openai/gsm8k",
            "dev_hub_config": "main",
            "dev_split": "test",
            "dev_query_template": "Question: {question}",
            "dev_completion_field": "answer",
        },
    )
    data = task.load(None)
    assert requested == [("meta-math/MetaMathQA",), ("openai/gsm8k", "main")]
    assert data.train[0].prompt == "Question: what is 2 plus 3 ?" and extract_answer(data.train[0].reference) == "5"
    (dev,) = data.evals["dev"]
    assert dev.prompt == "Question: what is 1 plus 1 ?" and extract_answer(dev.reference) == "2"
    assert "Hub dataset openai/gsm8k (main), split 'test', row 1" == dev.where


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"main_metric": "exact_match"}, "needs generated answers; add task_options.generate=true"),
        ({"query_template": "Question: {query"}, "is not a format string"),
        ({"prompt_feild": "q"}, "Did you mean 'prompt_field'"),
        ({"max_new_tokens": 0}, "whole number >= 1"),
        ({"truncated_completion": "cut"}, "must be error or drop"),
    ],
)
def test_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        configure_task("causal_lm", options)


def _metamath_rows(count: int, seed: int) -> list[dict[str, str]]:
    """MetaMathQA's layout (query, response ending "The answer is: N", type, original_question)."""
    rows = []
    for i, record in enumerate(_records(count, seed)):
        rows.append(
            {
                "query": record["prompt"],
                "response": record["completion"].replace("the answer is", "The answer is:"),
                "type": "GSM_Rephrased",
                "original_question": f"q{i // 2}",
            }
        )
    return rows


def test_the_metamath_preset_trains_with_the_hub_layouts(decoders, tmp_path, monkeypatch):
    """``--config metamath-llama`` on a tiny LLaMA, with local datasets in MetaMathQA's and GSM8K's layouts behind
    ``load_dataset``: the selection split holds out whole original questions, dev is scored by exact match of the
    "The answer is"/"####" answer, and the learning rate follows PEFT's cosine schedule."""
    import datasets

    _, models = decoders
    metamath = datasets.DatasetDict({"train": datasets.Dataset.from_list(_metamath_rows(40, 3))})
    gsm8k = datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_list(
                [
                    {"question": r["prompt"], "answer": r["completion"].replace("the answer is", "####")}
                    for r in _records(6, 4)
                ]
            )
        }
    )
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *args: {"meta-math/MetaMathQA": metamath, "openai/gsm8k": gsm8k}[args[0]]
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                "metamath-llama",
                "--task",
                "causal_lm",
                "--model",
                str(models["llama"]),
                "--output",
                str(out),
                "max_seq_length=48",
                "batch_size=4",
                "max_train_samples=24",
                "selection_fraction=0.2",
                "lr_warmup_steps=2",
                "budget_warmup=1",
                "budget_final=2",
                "task_options.max_new_tokens=4",
                "init_r=4",
                "target_r=2",
                "learning_rate=1e-2",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "exact_match" and set(metrics["eval"]) == {"dev", "selection"}
    assert metrics["train_examples"] == 24
    held = [json.loads(line)["where"] for line in (out / "selection_predictions.jsonl").read_text().splitlines()]
    rows = {
        f"Hub dataset meta-math/MetaMathQA, split 'train', row {i}": row
        for i, row in enumerate(_metamath_rows(40, 3), 1)
    }
    held_questions = {rows[where]["original_question"] for where in held}
    assert len(held) == 2 * len(held_questions) == 8  # ceil(0.2 × 20 questions) = 4, two rewrites each
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    total = metrics["total_steps"]
    for record in log:
        step = record["step"]
        expected = step / 2 if step < 2 else 0.5 * (1 + math.cos(math.pi * (step - 2) / (total - 2)))
        assert record["lr"] == pytest.approx(1e-2 * expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_left_padded_batched_generation_equals_one_prompt_at_a_time(kind, decoders):
    """Prompts of different lengths in one left-padded batch continue exactly as each prompt alone."""
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adalora_scores.engine.generate import generate_texts

    _, models = decoders
    model, tokenizer = AutoModelForCausalLM.from_pretrained(models[kind]), AutoTokenizer.from_pretrained(models[kind])
    prompts = [tokenizer(text)["input_ids"] for text in ("what is 2 ?", "what is 2 plus 3 ? 2 plus", "5")]
    accelerator = Accelerator(cpu=True)
    batched = generate_texts(model, prompts, tokenizer, accelerator, batch_size=3, max_new_tokens=6)
    alone = [
        generate_texts(model, [prompt], tokenizer, accelerator, batch_size=1, max_new_tokens=6)[0]
        for prompt in prompts
    ]
    assert batched == alone and any(batched)
