"""Convert the run's AdaLoRA adapter to PEFT LoRA: each module keeps only its kept triplets, modules pruned to rank 0
are left out. The default form is exact in PEFT and vLLM (one alpha / r for every module; the command prints the
--max-lora-rank to pass); --llama-cpp writes the form llama.cpp reads exactly; --uniform-rank and --merge are exact
everywhere. The command prints, and writes to export.json, how each server reads the folder. key=value may change
load_in_4bit and torch_dtype (e.g. --merge load_in_4bit=false)."""

from __future__ import annotations

import argparse

from adalora_scores.cli.common import add_run_folder_arguments, integers

HELP = "write a finished run's adapter as a standard PEFT LoRA adapter at the kept ranks (or merged)"
EXAMPLES = """  adalora-scores export runs/mrpc-fisher --output exports/mrpc-fisher
  adalora-scores export runs/math-sensitivity --output exported/math-llama-cpp --llama-cpp
  adalora-scores export runs/mrpc-fisher --output exports/mrpc-uniform --uniform-rank --rank-choices 8,16,32,64
  adalora-scores export runs/mrpc-fisher --output exports/mrpc-merged --merge"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="folder to write (adapter_config.json and weights)")
    uniform_help = "pad every module to one rank R (without R: the largest kept rank, rounded up to --rank-choices)"
    parser.add_argument("--uniform-rank", nargs="?", const="auto", metavar="R", help=uniform_help)
    parser.add_argument("--rank-choices", metavar="R,R,...", help="ranks the server accepts, e.g. 8,16,32,64")
    parser.add_argument(
        "--llama-cpp",
        action="store_true",
        help="fold each module's scale into lora_B, so that llama.cpp's lora_alpha / rank of each tensor gives it "
        "(exact in PEFT and llama.cpp, not in vLLM)",
    )
    parser.add_argument("--merge", action="store_true", help="write the base model with the update merged in")
    add_run_folder_arguments(parser, overwrite="an existing --output", example="torch_dtype=bfloat16")


def run(args: argparse.Namespace) -> int:
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
        rank_choices=tuple(integers(args.rank_choices, "--rank-choices", "ranks, e.g. 8,16,32,64")),
        merge=args.merge,
        overwrite=args.overwrite,
        overrides=args.overrides,
        fold_scales=args.llama_cpp,
    )
    print("\n".join(summary.lines()))
    return 0
