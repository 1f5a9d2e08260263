"""AlpacaEval answers: one reply per AlpacaEval instruction, in the model-outputs file AlpacaEval's evaluator
reads (`alpaca_eval --model_outputs <file>`; judging needs an API key and is not run here).

    python -m eval.alpaca_eval --checkpoint runs/dynamic-mix/final                       # 805 instructions, hub
    python -m eval.alpaca_eval --checkpoint runs/dynamic-mix/final --instructions my.json

Instructions: `alpaca_eval.json` of the `tatsu-lab/alpaca_eval` dataset on the Hugging Face Hub (the first
run needs the Hub, later ones read the cache), or a local file: a JSON list, or JSONL, of records with an
`instruction` string (other fields, such as `dataset`, are kept). Each instruction is one user turn of the
checkpoint's chat template, answered greedily (as the paper's `gen_alpaca_eval_ans.py`). Writes

    [{"instruction": "...", "output": "<the reply>", "generator": "dynamic-mix", "dataset": "helpful_base"}, ...]

to `<checkpoint or --out>/eval/alpaca_eval/model_outputs/<model-id>.json`, and a result JSON (eval.results,
task "alpaca_eval_answers", no score) with the generation time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from reading import sources
from eval.generation import chat_prompt, generate, load_checkpoint, model_folder
from eval.hub import HubUnavailable, hub_unavailable, reached_for_hub
from eval.results import EvalResult, results_dir, run_name, settings_of, write_result

HUB_FILE = ("tatsu-lab/alpaca_eval", "alpaca_eval.json")


@dataclass
class Args:
    """Generate AlpacaEval answers in AlpacaEval's model-outputs format."""

    checkpoint: Path
    """Checkpoint folder: model.safetensors, config.json, tokenizer files."""
    instructions: Path | None = None
    """Local JSON list or JSONL of {"instruction": ...} records; default: the AlpacaEval set from the Hub."""
    model_id: str | None = None
    """`generator` in the answers and the answer file's name (default: the run folder's name)."""
    max_new_tokens: int = 1024
    """Longest answer, in tokens (the paper's)."""
    temperature: float = 0.0
    """Sampling temperature; 0 (the paper's) is greedy decoding."""
    batch_size: int = 8
    """Instructions generated together (left-padded)."""
    limit: int | None = None
    """Only the first N instructions (quick checks)."""
    out: Path | None = None
    """Results go to <out>/eval/ instead of <checkpoint>/eval/."""
    seed: int = 0
    """Seed of the sampling."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint to run."""


def read_instructions(path: Path | None) -> list[dict]:
    """The instruction records of a local JSON list / JSONL file, or of the Hub's AlpacaEval set when `path` is None."""
    if path is None:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(HUB_FILE[0], HUB_FILE[1], repo_type="dataset"))
        except Exception as error:
            if reached_for_hub(error):
                raise hub_unavailable(f"the AlpacaEval set ({HUB_FILE[0]})", error, "pass --instructions <local file>") from error
            raise
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        where = [f"{path} item {i}" for i in range(len(records))]
    else:
        records = sources.read_jsonl(path)
        where = [f"{path} record {i + 1}" for i in range(len(records))]
    for record, place in zip(records, where):
        if not isinstance(record, dict) or not isinstance(record.get("instruction"), str) or not record["instruction"].strip():
            raise ValueError(f"{place}: needs a non-empty string field `instruction`")
    if not records:
        raise ValueError(f"{path} holds no instructions")
    return records


def answer_records(records: list[dict], outputs: list[str], model_id: str) -> list[dict]:
    """AlpacaEval's model-outputs rows: each input record with `output` and `generator` set to ours."""
    return [{**record, "output": output, "generator": model_id} for record, output in zip(records, outputs)]


def main(args: Args) -> EvalResult:
    args.checkpoint = Path(model_folder(args.checkpoint))  # a run folder: its final/ or newest checkpoint
    start = time.monotonic()
    records = read_instructions(args.instructions)[: args.limit]  # before the model: fail fast
    model_id = args.model_id or run_name(args.checkpoint)
    model, tokenizer = load_checkpoint(args.checkpoint, args.trust_remote_code)
    prompts = [chat_prompt(tokenizer, [{"role": "user", "content": r["instruction"]}]) for r in records]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                       batch_size=args.batch_size, seed=args.seed, desc="alpaca_eval")
    directory = results_dir(args.checkpoint, args.out)
    answer_file = directory / "alpaca_eval" / "model_outputs" / f"{model_id}.json"
    answer_file.parent.mkdir(parents=True, exist_ok=True)
    answers = answer_records(records, [o.strip() for o in outputs], model_id)
    answer_file.write_text(json.dumps(answers, indent=2, ensure_ascii=False) + "\n")
    result = EvalResult(
        run=model_id,
        checkpoint=str(args.checkpoint.resolve()),
        task="alpaca_eval_answers",
        metrics={"instructions": len(records), "mean_answer_chars": sum(len(a["output"]) for a in answers) / len(answers)},
        seconds=time.monotonic() - start,
        score=None,
        in_average=False,
        settings=settings_of(args) | {"answer_file": str(answer_file),
                                      "instructions_source": str(args.instructions or "/".join(HUB_FILE))},
    )
    write_result(result, directory)
    print(f"alpaca_eval: {len(records)} answers ({result.seconds:.1f} s) -> {answer_file}\n"
          f"judge them with: alpaca_eval --model_outputs {answer_file}")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(tyro.cli(Args))
    except (HubUnavailable, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
