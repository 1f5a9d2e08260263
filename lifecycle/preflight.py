"""Checks of `--model` that answer before anything is loaded: the path, and `--seq-len` against the model's
positions, from the model's config alone (no weights, no tokenizer).

Flag ranges are checked earlier, in config.py, without torch; the data is checked when it is read
(sources.py), before the weights load.
"""

from __future__ import annotations

from pathlib import Path

POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def looks_local(name: str) -> bool:
    """Whether `--model` is meant as a path: a hub id is `name` or `owner/name`, never more than one slash,
    and never starts with `/`, `.` or `~`."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


def model_config(name: str, trust_remote_code: bool):
    """The model's config: `tiny`'s own, a local folder's `config.json`, or the hub's (a download of that file)."""
    from transformers import AutoConfig

    import models

    if name == "tiny":
        return models.tiny_config(vocab_size=1, pad_token_id=0, eos_token_id=0)
    path = Path(name)
    if path.exists() and not (path / "config.json").is_file():
        raise ValueError(f"--model {name}: {'the folder has no config.json' if path.is_dir() else 'not a folder'}; "
                         "a model folder is what save_pretrained writes")
    if not path.exists() and looks_local(name):  # transformers would try it as a hub id first, with retries
        raise ValueError(f"--model {name}: no such folder")
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(f"--model {name}: {error}") from None


def max_positions(config) -> tuple[str, int] | None:
    """The name and value of the config's longest-sequence field, or None when it declares none."""
    for candidate in (config, config.get_text_config()):
        for key in POSITION_KEYS:
            if isinstance(value := getattr(candidate, key, None), int):
                return key, value
    return None


def check_model(name: str, seq_len: int, trust_remote_code: bool) -> None:
    """Refuse a `--model` that does not exist, and a `--seq-len` longer than the model's positions."""
    found = max_positions(model_config(name, trust_remote_code))
    if found is not None and seq_len > found[1]:
        key, value = found
        raise ValueError(f"--seq-len {seq_len} is longer than the {value} positions of --model {name} ({key} in its "
                         "config); pass --seq-len <= " + str(value))
