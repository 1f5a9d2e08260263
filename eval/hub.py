"""Telling "the Hugging Face Hub cannot be reached" apart from other errors, with one readable message.

    try:
        rows = datasets.load_dataset("google-research-datasets/mbpp", "full", split="test")
    except Exception as error:
        if reached_for_hub(error):
            raise hub_unavailable("MBPP's test split", error, "pass --problems <local file>") from error
        raise
"""

from __future__ import annotations

import os

from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

HUB_ERRORS = (ConnectionError, OfflineModeIsEnabled, LocalEntryNotFoundError)


class HubUnavailable(RuntimeError):
    """Something needs a dataset from the Hugging Face Hub, which cannot be reached."""


def reached_for_hub(error: BaseException | None) -> bool:
    """Whether `error`, or an exception it was raised from, says the Hub could not be reached."""
    while error is not None:
        if isinstance(error, HUB_ERRORS):
            return True
        error = error.__cause__ or error.__context__
    return False


def hub_unavailable(what: str, error: BaseException, alternative: str) -> HubUnavailable:
    """The error to raise when `what` needs the Hub and `error` says it cannot be reached."""
    hint = "" if os.environ.get("HF_HUB_OFFLINE") == "1" else " Set HF_HUB_OFFLINE=1 to fail without retrying."
    return HubUnavailable(
        f"{what} needs the Hugging Face Hub to download datasets, and it cannot be reached ({error}). Run once with "
        f"network access to fill the cache (HF_HOME), or {alternative}.{hint}"
    )
