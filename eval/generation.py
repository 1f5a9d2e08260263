"""Loading a checkpoint for evaluation and batched text generation from it.

A checkpoint is a Hugging Face folder (`<run>/final/`, or an intermediate `<run>/checkpoints/step_N/`):
model.safetensors, config.json and tokenizer files with a chat template, or a LoRA adapter
(adapter_config.json naming its base model, adapter_model.safetensors, tokenizer files), which
transformers loads onto its base through peft. It loads in bfloat16 on CUDA and float32 on CPU.
Generation pads on the left, batches prompts of similar length together, and stops at the
checkpoint's end-of-sequence tokens and at caller-given stop strings.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA with bfloat16 when there is a GPU, else CPU with float32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def model_folder(path: Path | str) -> Path | str:
    """The model folder that `path` names: a routemix run folder's `final/`, or its newest complete checkpoint when
    the run has not finished (a printed line says which); anything else as given (a model folder or a hub id). A run
    folder with neither is refused, saying what to pass."""
    path = Path(path)
    if not any((path / name).exists() for name in ("final", "checkpoints", "run.lock")):  # not a run folder
        return path
    if (path / "final" / "config.json").is_file() or (path / "final" / "adapter_config.json").is_file():
        print(f"{path} is a run folder: evaluating its final model, {path / 'final'}")
        return path / "final"
    steps = [p for p in (path / "checkpoints").glob("step_*") if (p / "COMPLETE").exists() and p.name[5:].isdigit()]
    if steps:
        newest = max(steps, key=lambda p: int(p.name[5:]))
        print(f"{path} is a run folder without final/ (the run has not finished): evaluating its newest checkpoint, "
              f"{newest}")
        return newest
    raise SystemExit(f"{path} is a run folder with no model yet (no final/, no complete checkpoint): pass a run that "
                     "has saved a checkpoint, its final/ or checkpoints/step_N/, or a Hugging Face model folder")


def load_checkpoint(path: Path | str, trust_remote_code: bool = False):
    """(model in eval mode on the best device, tokenizer with a pad token) from a checkpoint folder (or a run folder:
    `model_folder`). routemix's model ports register themselves with the Auto classes when `models` is imported."""
    if importlib.util.find_spec("models") is not None:
        importlib.import_module("models")
    path = Path(model_folder(path))
    if path.is_dir() and not any((path / name).exists() for name in ("config.json", "adapter_config.json")):
        sharded = [p.name for p in path.iterdir() if p.name.startswith(("pytorch_model_fsdp", "pytorch_model"))]
        raise ValueError(
            f"{path} holds no config.json or adapter_config.json, so it is not a model folder (pass a run folder, its "
            "final/ or checkpoints/step_N/, or a Hugging Face model folder)"
            + (f"; its weights are sharded ({', '.join(sorted(sharded))}: FSDP or DeepSpeed): merge them first, e.g. "
               f"`accelerate merge-weights {path / sharded[0]} MERGED`, or evaluate the run's final/" if sharded else "")
        )
    device, dtype = device_and_dtype()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model, info = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code, output_loading_info=True
    )
    if info["missing_keys"]:  # from_pretrained would go on with freshly initialised weights: a silent wrong result
        missing = sorted(info["missing_keys"])
        raise ValueError(f"{path}: {len(missing)} weights of the model are not in the checkpoint ({', '.join(missing[:3])}, ...)")
    return model.to(device).eval(), tokenizer


def end_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a reply: the generation config's EOS ids and the tokenizer's EOS."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """`messages` rendered with the checkpoint's chat template, ending with the assistant header."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def cut_at_stop(text: str, stop: list[str]) -> str:
    """`text` up to the earliest stop string."""
    ends = [i for s in stop if (i := text.find(s)) != -1]
    return text[: min(ends)] if ends else text


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    stop: list[str] | None = None,
    add_special_tokens: bool = False,
    seed: int = 0,
    desc: str = "generating",
) -> list[str]:
    """The continuation of each prompt (greedy when temperature is 0), cut at the first stop string.

    Chat prompts already hold their special tokens (`add_special_tokens=False`); plain
    completion prompts may want the tokenizer's BOS (`add_special_tokens=True`).
    """
    stop = list(stop or [])
    torch.manual_seed(seed)
    lengths = [len(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # longest first: OOM shows up early
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    outputs: list[str] = [""] * len(prompts)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        indices = order[start : start + batch_size]
        batch = tokenizer(
            [prompts[i] for i in indices],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=add_special_tokens,
        ).to(model.device)
        generated = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            eos_token_id=end_token_ids(model, tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            stop_strings=stop or None,
            tokenizer=tokenizer if stop else None,
            **sampling,
        )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        for i, text in zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            outputs[i] = cut_at_stop(text, stop)
    return outputs
