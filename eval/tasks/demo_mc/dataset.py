"""The demo_mc questions, read from the jsonl file next to this one.

lm-eval resolves `dataset_kwargs.data_files` against the working directory, so a task folder
that must work from anywhere loads its own file (`custom_dataset: !function dataset.load`).
"""

import json
from pathlib import Path

import datasets


def load(**metadata) -> datasets.DatasetDict:
    """{"test": the questions}; lm-eval passes the task's metadata, which is not needed here."""
    with open(Path(__file__).with_name("demo_mc.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
