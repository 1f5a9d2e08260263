"""Where records come from: folders, files, saved `datasets` datasets, hub ids and mixture files, read
into named datasets of chat messages with a train and a dev split each.

`--data` is one of:

- a folder: ``train/<name>/`` (any files below it) or ``train/<name>.<ext>``, and the same names under
  ``dev/``; the dataset name is the folder or file stem. Files are ``.jsonl``, ``.jsonl.gz``, ``.json``
  (an array of records, or JSON lines) and ``.parquet``; a ``<name>`` folder may also be a saved
  `datasets.Dataset` (`save_to_disk`), and ``train/`` or ``dev/`` a saved `DatasetDict` keyed by name.
  Hidden entries (``.ipynb_checkpoints``, dotfiles) are ignored; any other file is an error.
- a hub dataset id laid out the same way (the paper's ``Spico/dynamic-moe-sft-instructions``:
  ``train/<name>/*.jsonl``, ``dev/<name>.jsonl``) or with one config per dataset; read with
  `datasets.load_dataset`.
- a mixture file (``.yaml``, ``.yml``, ``.json``) listing datasets by source, with field mappings, initial
  weights and dev splits (`load_mixture_file`).

Every usable record becomes a list of ``{"role", "content"}`` messages (`records.to_messages`, which
lists the record formats), stored as JSON text in an Arrow table that is cached and memory-mapped: every
rank reads the same pages instead of holding its own Python copy, and a second start reads the cache. `Conversations` gives the messages of
record i on demand. Records that cannot be used as they are written are skipped and counted per dataset
and split (`Data.report`); malformed lines, non-text content and tool use stop the run with a message
naming file, line and dataset, unless `skip_bad_records`. `data.py` renders, labels and packs. No torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
import pyarrow.compute as pc
import yaml
from datasets.arrow_writer import ArrowWriter
from filelock import FileLock

from reading import records
from reading.records import (
    FIELDS,
    SUFFIXES,
    DataError,
    Messages,  # noqa: F401 -- callers take records' names from sources
    RecordError,
    dataset_files,
    read_records,
    readable_stem,
    to_messages,
)

DEV_SPLITS = ("dev", "validation", "valid", "val")
"""Split names taken as a dataset's dev split when none is given."""
SPLIT_DIRS = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev"}
"""Top-level folders of a hub dataset laid out like a data folder, and the split each holds."""
SKIP_HINT = "pass --skip-bad-records to skip and count such records"
# a change in how records are read invalidates the caches of what was read before
_CODE_VERSION = hashlib.sha256(Path(records.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- where a dataset split comes from


@dataclass(frozen=True)
class Part:
    """Where one split of one dataset comes from. `kind` is `files` (`files`, read by `read_records`),
    `saved` (a `datasets.Dataset` saved in folder `source`), `saved_dict` (split `split` of a saved
    DatasetDict) or `hub` (what `datasets.load_dataset(source, config, split=..., data_files=...,
    revision=...)` loads: a hub id or a local dataset folder). `fields` renames record keys
    (`to_messages`); `label` names the part in messages."""

    kind: str
    source: str
    label: str
    files: tuple[str, ...] = ()
    config: str | None = None
    split: str | None = None
    data_files: tuple[str, ...] | None = None
    revision: str | None = None
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def has_splits(self) -> bool:
        """Whether `source` holds several splits (so `split` picks one)."""
        return self.kind == "saved_dict" or self.kind == "hub" and not self.data_files

    def records(self, cache_dir: Path) -> datasets.Dataset:
        """The raw records of a `saved`, `saved_dict` or `hub` part, as `datasets` loads them (memory-mapped)."""
        split = self.split or "train"  # datasets names a list of data_files "train"
        try:
            if self.kind == "saved":
                return datasets.load_from_disk(self.source)
            if self.kind == "saved_dict":
                return datasets.load_from_disk(self.source)[split]
            return datasets.load_dataset(self.source, self.config, split=split, revision=self.revision,
                                         data_files=list(self.data_files) if self.data_files else None, cache_dir=str(cache_dir))
        except (ConnectionError, FileNotFoundError, ValueError, KeyError) as e:  # a missing id, split or file
            raise DataError(f"{self.label}: cannot load {self.source!r} (split {split!r}): {e}") from None


def _normalised_row(record, where: str, fields: dict, skip: bool, label: str) -> tuple[str, str, str]:
    """`(messages as JSON or "", skip reason or "", where)`; a fatal problem raises DataError."""
    try:
        return json.dumps(to_messages(record, fields), ensure_ascii=False), "", where
    except RecordError as e:
        if e.fatal and not skip:
            raise DataError(f"{where}: {e} ({label}); {SKIP_HINT}") from None
        return "", e.reason, where


def _rows_of_files(files: tuple[str, ...], fields: dict, skip: bool, label: str) -> Iterator[dict[str, list[str]]]:
    """The normalised rows of a `files` part in batches (columns of up to `WRITE_BATCH` rows), skipped records included."""
    batch = {"messages": [], "reason": [], "where": []}
    for path in files:
        for where, record, problem in read_records(Path(path), skip):
            row = ("", problem, where) if problem else _normalised_row(record, where, fields, skip, label)
            for column, value in zip(batch, row):
                batch[column].append(value)
            if len(batch["where"]) == WRITE_BATCH:
                yield batch
                batch = {column: [] for column in batch}
    yield batch


def _normalise_batch(batch: dict, indices: list[int], fields: dict, skip: bool, label: str) -> dict:
    rows = [_normalised_row(dict(zip(batch, values)), f"{label} row {i}", fields, skip, label)
            for values, i in zip(zip(*batch.values()), indices)]
    return {key: [row[k] for row in rows] for k, key in enumerate(("messages", "reason", "where"))}


WRITE_BATCH = 1000
ROW_FEATURES = datasets.Features({column: datasets.Value("string") for column in ("messages", "reason", "where")})


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps([_CODE_VERSION, *parts], default=str).encode()).hexdigest()[:24]


def normalised(part: Part, skip: bool, cache_dir: Path) -> datasets.Dataset:
    """One row per record of `part`, in order: `messages` (JSON, "" if skipped), `reason` ("" or why it is
    skipped), `where` (file and line, or row). Cached as one Arrow file under `cache_dir/routemix`, keyed by
    the files' sizes and times (or the `datasets` fingerprint of what `part` loads) and this module's code."""
    fields = dict(part.fields)
    cache = cache_dir / "routemix"
    cache.mkdir(parents=True, exist_ok=True)
    if part.kind == "files":
        stats = [(path, Path(path).stat().st_size, Path(path).stat().st_mtime_ns) for path in part.files]
        path = cache / f"records-{_fingerprint(stats, fields, skip, part.label)}.arrow"
        # the first process writes it, the others wait and map it (or meet the same bad record: every rank stops alike)
        with FileLock(f"{path}.lock"):
            if not path.exists():
                partial = path.with_suffix(".partial")
                try:
                    # batches, not from_generator's one row at a time: that encodes every row on its own (5x slower)
                    with ArrowWriter(features=ROW_FEATURES, path=str(partial)) as writer:
                        for batch in _rows_of_files(part.files, fields, skip, part.label):
                            writer.write_batch(batch)
                        writer.finalize()
                    partial.replace(path)
                finally:
                    partial.unlink(missing_ok=True)
        return datasets.Dataset.from_file(str(path))
    records = part.records(cache_dir)
    missing = sorted(set(fields.values()) - set(records.column_names))
    if missing:
        raise DataError(f"{part.label}: fields maps to {missing}, which {part.source!r} does not have (columns: {records.column_names})")
    fingerprint = _fingerprint(records._fingerprint, fields, skip, part.label)
    path = cache / f"records-{fingerprint}.arrow"
    with FileLock(f"{path}.lock"):
        return records.map(
            _normalise_batch, batched=True, with_indices=True, remove_columns=records.column_names, features=ROW_FEATURES,
            fn_kwargs={"fields": fields, "skip": skip, "label": part.label}, new_fingerprint=fingerprint,
            cache_file_name=str(path), desc=f"reading {part.label}",
        )


class Conversations(Sequence):
    """The usable records of one dataset split: `conversations[i]` is the chat messages of record i,
    read from the memory-mapped Arrow table when asked for (slices give lists); `where(i)` is its
    file and line (or row)."""

    def __init__(self, rows: datasets.Dataset):
        assert rows._indices is None, "an indices mapping: flatten it first"
        self.rows = rows
        # the Arrow columns themselves: a row through `datasets`' formatting costs 5x the JSON decoding
        self._messages, self._where = rows.data.column("messages"), rows.data.column("where")

    def where(self, index: int) -> str:
        return self._where[index].as_py()

    def __len__(self) -> int:
        return len(self._messages)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        return json.loads(self._messages[index].as_py())


def usable(rows: datasets.Dataset, name: str, split: str, part: Part) -> tuple[Conversations, dict]:
    """The usable records of one normalised split and what was skipped: `{"records", "skipped": {reason:
    count}, "first_skipped": {reason: where}}`. No usable record is an error naming the dataset."""
    reasons = rows.data.column("reason")
    skipped = {c["values"]: c["counts"] for c in pc.value_counts(reasons).to_pylist() if c["values"]}
    first = {reason: rows[int(pc.index(reasons, reason).as_py())]["where"] for reason in sorted(skipped)}
    if skipped:  # the usable rows, contiguous again (a filter alone leaves an indices mapping)
        records_file = Path(rows.cache_files[0]["filename"])
        cached = records_file.with_name(records_file.stem.replace("records-", "usable-"))
        with FileLock(f"{cached}.lock"):
            rows = rows.filter(lambda batch: [r == "" for r in batch], input_columns="reason", batched=True,
                               cache_file_name=f"{cached}-indices.arrow").flatten_indices(cache_file_name=f"{cached}.arrow")
    if len(rows) == 0:
        raise DataError(f"{split} dataset {name!r} in {part.source} has no usable records "
                        f"({', '.join(f'{n} {r} (first: {first[r]})' for r, n in sorted(skipped.items())) or 'no records'})")
    return Conversations(rows), {"records": len(rows), "skipped": dict(sorted(skipped.items())), "first_skipped": first}


# --------------------------------------------------------------------------- layouts: folders, hub ids, mixture files


def folder_parts(folder: Path, split: str) -> dict[str, Part]:
    """Dataset name -> where `folder/split` holds it (see the module docstring for the layout)."""
    root = folder / split
    if not root.is_dir():
        raise DataError(f"{root} does not exist: a data folder needs train/<name>/*.jsonl and dev/<name>.jsonl")
    if (root / "dataset_dict.json").exists():
        return {name: Part("saved_dict", str(root), f"dataset {name!r}, {split}", split=name)
                for name in sorted(datasets.load_from_disk(str(root)))}
    files: dict[str, list[str]] = {}
    saved: dict[str, Part] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and (entry / "state.json").exists():
            saved[entry.name] = Part("saved", str(entry), f"dataset {entry.name!r}, {split}")
        elif entry.is_dir():
            found = dataset_files(entry)
            if not found:
                raise DataError(f"{entry}: dataset {entry.name!r} has no data files ({', '.join(SUFFIXES)})")
            files.setdefault(entry.name, []).extend(str(path) for path in found)
        elif readable_stem(entry.name) is not None:
            files.setdefault(readable_stem(entry.name), []).append(str(entry))
        else:
            raise DataError(f"{entry}: not a data file or dataset folder (routemix reads {', '.join(SUFFIXES)}); move it out")
    if set(saved) & set(files):
        raise DataError(f"{root}: datasets {sorted(set(saved) & set(files))} are both a saved dataset and data files")
    parts = saved | {name: Part("files", str(root), f"dataset {name!r}, {split}", files=tuple(paths)) for name, paths in files.items()}
    if not parts:
        raise DataError(f"no datasets in {root}")
    return dict(sorted(parts.items()))


def hub_parts(source: str, revision: str | None = None) -> dict[str, dict[str, Part]]:
    """`{"train": {name: Part}, "dev": {...}}` of a dataset that `datasets.load_dataset` reads (a hub id,
    or a local dataset folder): one config per dataset, each with a train and a dev split (`DEV_SPLITS`),
    or laid out like a data folder (`train/<name>/...`, `dev/<name>.jsonl`, as the paper's release)."""
    try:
        configs = datasets.get_dataset_config_names(source, revision=revision)
        if len(configs) > 1:
            return _config_parts(source, configs, revision)
        builder = datasets.load_dataset_builder(source, revision=revision)
    except (ConnectionError, FileNotFoundError, ValueError) as e:
        raise DataError(f"--data {source}: cannot load it with datasets.load_dataset ({e})") from None
    layout: dict[str, dict[str, list[str]]] = {"train": {}, "dev": {}}
    for urls in (builder.config.data_files or {}).values():
        for url in urls:
            parts = str(url)[len(builder.base_path) :].strip("/").split("/")
            name = parts[1] if len(parts) > 2 else readable_stem(parts[-1]) if len(parts) == 2 else None
            if parts[0] in SPLIT_DIRS and name:
                layout[SPLIT_DIRS[parts[0]]].setdefault(name, []).append("/".join(parts))
    if not layout["train"]:
        raise DataError(f"--data {source}: its layout names no datasets (one config per dataset, or train/<name>/..., "
                        "dev/<name>...); list its datasets in a mixture file")
    return {split: {name: Part("hub", source, f"{source} dataset {name!r}, {split}", data_files=tuple(files), revision=revision)
                    for name, files in sorted(names.items())} for split, names in layout.items()}


def _config_parts(source: str, configs: list[str], revision: str | None) -> dict[str, dict[str, Part]]:
    out = {"train": {}, "dev": {}}
    for config in configs:
        splits = datasets.get_dataset_split_names(source, config, revision=revision)
        dev = next((s for s in DEV_SPLITS if s in splits), None)
        if "train" not in splits or dev is None:
            raise DataError(f"--data {source}: config {config!r} has splits {splits}; routemix needs train and one of {list(DEV_SPLITS)}")
        label = f"{source} config {config!r}"
        out["train"][config] = Part("hub", source, f"{label}, train", config=config, split="train", revision=revision)
        out["dev"][config] = Part("hub", source, f"{label}, {dev}", config=config, split=dev, revision=revision)
    return out


ENTRY_KEYS = {"name", "source", "config", "split", "data_files", "revision", "fields", "weight", "dev"}
DEV_KEYS = {"source", "config", "split", "data_files", "revision", "fields"}


def load_mixture_file(path: Path) -> tuple[dict[str, dict[str, Part]], dict[str, float] | None]:
    """The datasets of a mixture file and their initial weights (None if no entry gives one).

    A YAML or JSON list of entries (or ``{"datasets": [...]}``), like open-instruct's `dataset_mixer_list`
    with a dev split per dataset::

        - source: data/code.parquet          # a file, a folder of files, a saved dataset, or a hub id
          name: code                         # default: the file stem, folder name or hub name
          dev: data/code-dev.jsonl           # a path, or for a hub id / saved DatasetDict a split name
          weight: 2.0                        # optional initial sampling weight (all entries or none)
        - source: org/some-hub-dataset
          config: default                    # optional, with split (default train), data_files, revision
          fields: {instruction: question, output: answer}   # routemix key -> the record's key
          dev: {split: test}                 # or a mapping with its own source, config, split, ...

    With no `dev`, a hub id or saved DatasetDict uses its `dev`/`validation` split. Relative paths are
    relative to the mixture file. Every problem is an error naming the entry.
    """
    try:
        text = path.read_text(encoding="utf-8")
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{path}: not a readable mixture file ({e})") from None
    entries = spec.get("datasets") if isinstance(spec, dict) and set(spec) == {"datasets"} else spec
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise DataError(f"{path}: a mixture file is a list of entries (or {{datasets: [...]}}), each a mapping with a source")
    out: dict[str, dict[str, Part]] = {"train": {}, "dev": {}}
    weights = {}
    for i, entry in enumerate(entries, start=1):
        name = entry.get("name") or _default_name(str(entry.get("source", "")), entry.get("config"))
        where = f"{path} entry {i} ({name!r})"
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown or not entry.get("source"):
            raise DataError(f"{where}: " + (f"unknown keys {unknown} (known: {sorted(ENTRY_KEYS)})" if unknown else "no source"))
        if name in out["train"]:
            raise DataError(f"{where}: a second dataset named {name!r}; give each entry its own name")
        fields = _checked_fields(entry.get("fields"), where)
        train = _entry_part(path.parent, entry, f"{where}, train", fields)
        train = replace(train, split="train") if train.has_splits and train.split is None else train
        out["train"][name] = train
        out["dev"][name] = _dev_part(path.parent, entry, train, f"{where}, dev", fields)
        if "weight" in entry:
            weight = entry["weight"]
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < float("inf"):
                raise DataError(f"{where}: weight must be a positive number, got {weight!r}")
            weights[name] = float(weight)
    if weights and len(weights) != len(entries):
        raise DataError(f"{path}: entries {sorted(set(out['train']) - set(weights))} have no weight; give every entry one, or none")
    return out, weights or None


def _checked_fields(fields, where: str) -> dict[str, str]:
    if fields is not None and (not isinstance(fields, dict) or set(fields) - set(FIELDS) or not all(isinstance(v, str) for v in fields.values())):
        raise DataError(f"{where}: unknown field mapping {fields!r}: fields maps routemix keys {list(FIELDS)} to the "
                        "record's own keys, e.g. {instruction: question, output: answer}")
    return fields or {}


def _default_name(source: str, config: str | None) -> str:
    stem = readable_stem(Path(source).name) or Path(source).name
    return f"{stem}-{config}" if config else stem


def _is_hub_id(source: str, base: Path = Path()) -> bool:
    """`org/name`, unless it looks like a path: its folder exists (`data/demoo`, a typo) or it names a file type."""
    return (re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None and not (base / source.split("/")[0]).exists()
            and readable_stem(source) is None and not source.endswith((".yaml", ".yml")))


def _entry_part(base: Path, spec: dict, label: str, fields: dict) -> Part:
    """The Part a mixture entry (or its `dev` mapping) names; `split` stays None where it was not given."""
    source, split = str(spec["source"]), spec.get("split")
    data_files = spec.get("data_files")
    if data_files is not None and not (isinstance(data_files, str) or isinstance(data_files, list) and all(isinstance(f, str) for f in data_files)):
        raise DataError(f"{label}: data_files must be a path pattern or a list of them, got {data_files!r}")
    if data_files is not None and split is not None:
        raise DataError(f"{label}: give data_files or split, not both (datasets reads a list of data_files as one split)")
    data_files = (data_files,) if isinstance(data_files, str) else tuple(data_files) if data_files else None
    hub = {"config": spec.get("config"), "split": split, "data_files": data_files, "revision": spec.get("revision")}
    fields_items = tuple(sorted(fields.items()))
    path = Path(source).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        if not _is_hub_id(source, base):
            raise DataError(f"{label}: no such file or folder: {path}")
        return Part("hub", source, label, fields=fields_items, **hub)
    if path.is_dir() and (path / "dataset_dict.json").exists():
        return Part("saved_dict", str(path), label, split=split, fields=fields_items)
    if path.is_dir() and (data_files or spec.get("config")):  # a local dataset folder for datasets.load_dataset
        return Part("hub", str(path), label, fields=fields_items, **hub)
    if split is not None:
        raise DataError(f"{label}: {source} holds one split; drop `split: {split}`")
    if path.is_dir() and (path / "state.json").exists():
        return Part("saved", str(path), label, fields=fields_items)
    files = dataset_files(path) if path.is_dir() else [path] if readable_stem(path.name) else None
    if not files:
        raise DataError(f"{label}: {source} " + ("holds no data files" if files == [] else f"is not a data file ({', '.join(SUFFIXES)})"))
    _check_fields_in_first_record(files[0], fields, label)
    return Part("files", str(path), label, files=tuple(str(f) for f in files), fields=fields_items)


def _dev_part(base: Path, entry: dict, train: Part, label: str, fields: dict) -> Part:
    """The dev Part of a mixture entry: `dev` as a path or split name, a mapping, or (for a source with
    splits) its `dev`/`validation` split."""
    dev = entry.get("dev")
    if isinstance(dev, str):
        dev = {"split": dev} if train.has_splits else {"source": dev}
    if dev is None and not train.has_splits:
        raise DataError(f"{label}: no dev split: give `dev:` (a file or folder of dev records, or a mapping with a source)")
    dev = dev or {}
    if not isinstance(dev, dict) or set(dev) - DEV_KEYS:
        raise DataError(f"{label}: dev must be a path, a split name or a mapping with keys {sorted(DEV_KEYS)}, got {dev!r}")
    if "source" not in dev:
        if not train.has_splits and not train.data_files:
            raise DataError(f"{label}: {train.source} has no splits; give dev a source (a file or folder of dev records)")
        if train.data_files and "data_files" not in dev:
            raise DataError(f"{label}: no dev split: the train split is data_files {list(train.data_files)}; give dev its own data_files")
        dev = {"source": entry["source"], "config": entry.get("config"), "revision": entry.get("revision"), **dev}
    part = _entry_part(base, dev, label, _checked_fields(dev["fields"], label) if "fields" in dev else fields)
    if part.has_splits and part.split is None:
        splits = _split_names(part, label)
        found = next((s for s in DEV_SPLITS if s in splits), None)
        if found is None:
            raise DataError(f"{label}: no dev split: {part.source!r} has splits {splits}; give `dev:` (a split name or a path)")
        part = replace(part, split=found)
    return part


def _split_names(part: Part, label: str) -> list[str]:
    try:
        if part.kind == "saved_dict":
            return list(datasets.load_from_disk(part.source))
        return datasets.get_dataset_split_names(part.source, part.config, revision=part.revision)
    except (ConnectionError, FileNotFoundError, ValueError) as e:
        raise DataError(f"{label}: cannot list the splits of {part.source!r} ({e})") from None


def _check_fields_in_first_record(path: Path, fields: dict, label: str) -> None:
    """A mapped key that the first record lacks is a typo, not a record to skip."""
    if not fields:
        return
    first = next((record for _, record, _ in read_records(path, skip_bad_lines=True) if isinstance(record, dict)), None)
    missing = sorted(set(fields.values()) - set(first or {}))
    if first is not None and missing:
        raise DataError(f"{label}: fields maps to {missing}, which the first record of {path} does not have (keys: {sorted(first)})")


# --------------------------------------------------------------------------- loading


@dataclass
class Data:
    """What `load` read: the train and dev conversations of every dataset (same names), the mixture
    file's initial weights (or None), and `report`: per split and dataset, the records used and those
    skipped (`{"train": {name: {"records", "skipped", "first_skipped"}}, "dev": {...}}`)."""

    train: dict[str, Conversations]
    dev: dict[str, Conversations]
    weights: dict[str, float] | None = None
    report: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted(self.train or self.dev)


def resolve(data: Path | str, splits=("train", "dev")) -> tuple[dict[str, dict[str, Part]], dict[str, float] | None]:
    """`{"train": {name: Part}, "dev": {name: Part}}` (a folder: only `splits`) and initial weights for a `--data` value."""
    path = Path(data).expanduser()
    if path.is_dir():
        return {split: folder_parts(path, split) for split in splits}, None
    if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
        return load_mixture_file(path)
    if path.is_file():
        raise DataError(f"--data {data}: one file is one dataset without a dev set; give a folder (train/<name>, dev/<name>), "
                        "a mixture file (.yaml, .json) or a hub dataset id")
    if _is_hub_id(str(data)):
        return hub_parts(str(data)), None
    raise DataError(f"--data {data}: no such file or folder (and not a hub dataset id)")


def load(data: Path | str, *, skip_bad_records: bool = False, cache_dir: Path | str | None = None, splits=("train", "dev")) -> Data:
    """Every dataset of `data` (a folder, hub id or mixture file; see the module docstring), checked
    and counted before anything else runs. `splits=("dev",)` reads the dev sets only (a folder then
    needs no train/)."""
    parts, weights = resolve(data, splits)
    parts = {split: parts[split] for split in splits}
    return load_parts(parts, weights, skip_bad_records=skip_bad_records, cache_dir=cache_dir, what=str(data))


def load_parts(parts: dict[str, dict[str, Part]], weights: dict[str, float] | None = None, *, skip_bad_records: bool = False,
               cache_dir: Path | str | None = None, what: str = "the data") -> Data:
    """The conversations of `{"train": {name: Part}, "dev": {name: Part}}` (or one of them); train and dev must
    name the same datasets."""
    train_names, dev_names = sorted(parts.get("train", ())), sorted(parts.get("dev", ()))
    if "train" in parts and "dev" in parts and train_names != dev_names:
        raise DataError(
            f"train and dev dataset names differ in {what}: only in train {sorted(set(train_names) - set(dev_names))}, "
            f"only in dev {sorted(set(dev_names) - set(train_names))}"
        )
    cache_dir = Path(cache_dir or datasets.config.HF_DATASETS_CACHE)
    loaded, report = {"train": {}, "dev": {}}, {split: {} for split in parts}
    for split, named in parts.items():
        for name, part in sorted(named.items()):
            rows = normalised(part, skip_bad_records, cache_dir)
            loaded[split][name], report[split][name] = usable(rows, name, split, part)
    return Data(loaded["train"], loaded["dev"], weights, report)


def load_train_dev(data: Path | str, **kwargs) -> tuple[dict[str, Conversations], dict[str, Conversations]]:
    """`load(data, **kwargs)`'s train and dev conversations."""
    loaded = load(data, **kwargs)
    return loaded.train, loaded.dev


def count_unrendered(report: dict, unrendered: dict) -> dict:
    """`report` with the records that the chat template cannot render (`data.check_renders`' counts,
    `{split: {name: {"bad_render": n, "first": where}}}`) moved from `records` to `skipped` as `bad_render`."""
    report = json.loads(json.dumps(report))
    for split, named in unrendered.items():
        for name, counts in named.items():
            entry = report[split][name]
            entry["records"] -= counts["bad_render"]
            entry["skipped"]["bad_render"], entry["first_skipped"]["bad_render"] = counts["bad_render"], counts["first"]
    return report


def mixture_weights(loaded: Data, names: list[str], init_weights: str) -> list[float] | None:
    """The initial weights a mixture file gives, normalised in the order of `names` (None if it gives none).
    Weights in the file and an `--init-weights` other than the default are two answers: an error."""
    if loaded.weights is None:
        return None
    if init_weights != "uniform":
        raise DataError(f"--init-weights {init_weights} and the weights in the mixture file: give the weights in one place")
    total = sum(loaded.weights.values())
    return [loaded.weights[name] / total for name in names]


def load_split(data: Path | str, split: str, **kwargs) -> dict[str, Conversations]:
    """One split's conversations (`load(data, splits=(split,))`); kept for embeddings.py and eval callers."""
    loaded = load(data, splits=(split,), **kwargs)
    return loaded.train if split == "train" else loaded.dev


def split_files(folder: Path | str, split: str) -> dict[str, list[Path]]:
    """Dataset name -> the data files of `folder/split` (empty for a saved dataset); kept for scripts/pseudo_domains.py."""
    return {name: [Path(f) for f in part.files] for name, part in folder_parts(Path(folder), split).items()}


def read_jsonl(path: Path | str) -> list:
    """The records of one data file (any of `SUFFIXES`), errors naming file and line; kept for eval/mbpp.py and
    eval/alpaca_eval.py."""
    return [record for _, record, _ in read_records(Path(path))]


def format_report(report: dict) -> str:
    """The lines train.py prints at start: records per dataset and split, and what was skipped, why, and where first."""
    lines = []
    for name in sorted(next(iter(report.values()))):
        cells = []
        for split in report:
            counts = report[split][name]
            skipped = ", ".join(f"{n} {reason} (first: {counts['first_skipped'][reason]})" for reason, n in counts["skipped"].items())
            cells.append(f"{split} {counts['records']}" + (f" (skipped {skipped})" if skipped else ""))
        lines.append(f"  {name}: " + "; ".join(cells))
    return "data:\n" + "\n".join(lines)
