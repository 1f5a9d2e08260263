"""Checks of `--model` that answer before anything is loaded: the path (or, for a hub id, that the hub answers), and
`--seq-len` against the model's positions, from the model's config alone (no weights, no tokenizer); and what the
model-dependent defaults follow: the model's size from its config, or the settings its routemix run recorded.

Flag ranges are checked earlier, in config.py, without torch; the data is checked when it is read
(sources.py), before the weights load.
"""

from __future__ import annotations

import json
from pathlib import Path

POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def looks_local(name: str) -> bool:
    """Whether `--model` is meant as a path: a hub id is `name` or `owner/name`, never more than one slash,
    and never starts with `/`, `.` or `~`."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith("/") or "\\" in name


def model_config(name: str, trust_remote_code: bool):
    """The model's config: the embedded model's (`tiny`, `tiny-random`: models/tiny/config.json), a local folder's
    `config.json`, or the hub's (a download of that file)."""
    from transformers import AutoConfig

    import models

    if name in models.TINY_NAMES:
        return AutoConfig.from_pretrained(models.TINY_DIR)
    path = Path(name)
    if path.exists() and not (path / "config.json").is_file():
        raise ValueError(f"--model {name}: {'the folder has no config.json' if path.is_dir() else 'not a folder'}; "
                         "a model folder is what save_pretrained writes")
    if not path.exists() and looks_local(name):  # transformers would try it as a hub id first, with retries
        raise ValueError(f"--model {name}: no such folder")
    if not path.exists():
        check_hub_reachable(name)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(f"--model {name}: {error}") from None


HUB_TIMEOUT_SECONDS = 5.0


def check_hub_reachable(name: str) -> None:
    """Stop within seconds when `--model` is a hub id and the Hugging Face hub cannot be reached (one request through
    huggingface_hub's own client, which honours proxies): transformers would retry for most of a minute first.
    Nothing is asked with HF_HUB_OFFLINE=1, where transformers reads the cache alone."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return
    try:
        get_session().head(f"{constants.ENDPOINT}/api/models/{name}", timeout=HUB_TIMEOUT_SECONDS)
    except Exception as error:  # any answer at all (even 401 or 404) means the hub is there; only no answer lands here
        raise ValueError(f"--model {name}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached ({error}). "
                         "If the model is in your cache (HF_HOME), set HF_HUB_OFFLINE=1 to use it without the network; "
                         "otherwise pass a local model folder") from None


def parameter_count(config) -> int | None:
    """About how many parameters the model of `config` has (embeddings, attention, every expert), from its config
    alone; None when the config does not name its width and depth."""
    text = config.get_text_config()

    def first(*keys):
        return next((value for key in keys if isinstance(value := getattr(text, key, None), int)), None)

    hidden, layers = first("hidden_size", "d_model", "n_embd"), first("num_hidden_layers", "num_layers", "n_layer")
    if hidden is None or layers is None:
        return None
    experts = first("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts") or 1
    expert_width = first("moe_intermediate_size", "intermediate_size", "ffn_dim") or 4 * hidden
    vocab = first("vocab_size") or 0
    return 2 * vocab * hidden + layers * (4 * hidden * hidden + 3 * experts * hidden * expert_width)


def recorded_settings(name: str) -> dict | None:
    """The settings of the routemix run that wrote model folder `name`: a checkpoint's own record, or for a run's
    `final/` the run's `config.json` beside it; None for any other model."""
    path = Path(name)
    try:
        if (path / "routemix_state_0.json").is_file():
            return json.loads((path / "routemix_state_0.json").read_text())["fingerprint"]
        run_config = path.parent / "config.json"
        if path.name == "final" and run_config.is_file():
            settings = json.loads(run_config.read_text())
            return settings if isinstance(settings, dict) and "probe_every" in settings else None
    except (OSError, ValueError, KeyError):
        return None
    return None


def max_positions(config) -> tuple[str, int] | None:
    """The name and value of the config's longest-sequence field, or None when it declares none."""
    for candidate in (config, config.get_text_config()):
        for key in POSITION_KEYS:
            if isinstance(value := getattr(candidate, key, None), int):
                return key, value
    return None


def check_model(name: str, seq_len: int, trust_remote_code: bool) -> None:
    """Refuse a `--model` that does not exist, and a `--seq-len` longer than the model's positions."""
    check_positions(model_config(name, trust_remote_code), name, seq_len)


def check_positions(config, name: str, seq_len: int) -> None:
    """Refuse a `--seq-len` longer than the positions of the model of `config`."""
    found = max_positions(config)
    if found is not None and seq_len > found[1]:
        key, value = found
        raise ValueError(f"--seq-len {seq_len} is longer than the {value} positions of --model {name} ({key} in its "
                         "config); pass --seq-len <= " + str(value))


def apply_model_defaults(args, config=None) -> str | None:
    """`config.model_defaults` for `args.model` (its config read here unless given): fills in the model-dependent flags
    left out and returns the line that says which values were chosen and why (None when all were given)."""
    from lifecycle.config import model_defaults

    config = config if config is not None else model_config(args.model, args.trust_remote_code)
    return model_defaults(args, parameter_count(config), recorded_settings(args.model))
