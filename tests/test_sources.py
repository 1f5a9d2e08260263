"""Reading data: every record used as written or refused with a message naming file, line and dataset (issue 14),
and the same mixture read from every kind of source (folders, files, saved `datasets`, hub layouts, mixture files;
issue 18) giving identical sampler streams and batches."""

import gzip
import json
import re
from pathlib import Path

import datasets
import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoTokenizer

from reading import data
from reading import sources
from launch import REPO
from models import TINY_DIR
from sampler import MixtureSampler

DEMO = REPO / "data" / "demo"
QA = {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TINY_DIR)


def write_jsonl(path: Path, records, opener=open) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    return path


def folder(root: Path, train: dict[str, list], dev: dict[str, list] | None = None) -> Path:
    """A data folder with train/<name>/part.jsonl and dev/<name>.jsonl."""
    for name, records in train.items():
        write_jsonl(root / "train" / name / "part.jsonl", records)
    for name, records in (dev or {name: [QA] for name in train}).items():
        write_jsonl(root / "dev" / f"{name}.jsonl", records)
    return root


def demo_records(split: str, name: str, n: int) -> list[dict]:
    path = DEMO / "train" / name / "part-000.jsonl" if split == "train" else DEMO / "dev" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()[:n]]


# --------------------------------------------------------------------------- issue 14: silent wrong data


def test_content_parts_are_joined_into_the_exact_rendered_text(tmp_path, tokenizer):
    record = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Add 2 and 3, "}, {"type": "text", "text": "then double it."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "10"}]},
    ]}
    loaded = sources.load(folder(tmp_path, {"a": [record]}))
    messages = loaded.train["a"][0]
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3, then double it."},
                        {"role": "assistant", "content": "10"}]
    text, _ = data.assistant_spans(tokenizer, messages)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd 2 and 3, then double it.<|im_end|>\n"
                    "<|im_start|>assistant\n10<|im_end|>\n")
    example = data.encode(tokenizer, messages, 512)
    assert tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != data.IGNORE_INDEX]) == "10<|im_end|>\n"


def test_a_non_text_content_part_names_file_line_dataset_and_part_type(tmp_path):
    image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                        {"type": "image_url", "image_url": {"url": "x.png"}}]},
                          {"role": "assistant", "content": "A cat."}]}
    root = folder(tmp_path, {"a": [QA, image]})
    with pytest.raises(sources.DataError, match=rf"{root}/train/a/part.jsonl:2: turn 0 part 1 is of type 'image_url': routemix "
                                                r"trains on text only \(dataset 'a', train\); pass --skip-bad-records"):
        sources.load(root)
    assert sources.load(root, skip_bad_records=True).report["train"]["a"]["skipped"] == {"non_text_content": 1}


def test_tool_roles_and_tool_calls_are_refused_naming_the_record(tmp_path):
    call = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]}]}
    tool = {"messages": [{"role": "user", "content": "Weather?"}, {"role": "tool", "content": "sunny"},
                         {"role": "assistant", "content": "Sunny."}]}
    observation = {"conversations": [{"from": "human", "value": "q"}, {"from": "observation", "value": "o"}, {"from": "gpt", "value": "a"}]}
    root = folder(tmp_path, {"a": [QA, call]}, {"a": [QA, QA, tool, observation]})
    with pytest.raises(sources.DataError, match=rf"{root}/train/a/part.jsonl:2: turn 1 has tool calls: routemix does not train "
                                                r"on tool use; remove such records \(dataset 'a', train\)"):
        sources.load(root)
    (root / "train" / "a" / "part.jsonl").write_text(json.dumps(QA) + "\n")
    with pytest.raises(sources.DataError, match=rf"{root}/dev/a.jsonl:3: turn 1 has role 'tool'.*\(dataset 'a', dev\)"):
        sources.load(root)
    report = sources.load(root, skip_bad_records=True).report
    assert report["dev"]["a"]["skipped"] == {"tool_use": 2}
    assert report["dev"]["a"]["first_skipped"] == {"tool_use": f"{root}/dev/a.jsonl:3"}


def test_skipped_records_are_counted_per_dataset_and_split(tmp_path):
    no_answer = {"messages": [{"role": "user", "content": "no answer"}]}
    root = folder(tmp_path, {"a": [QA, no_answer, no_answer], "b": [QA]}, {"a": [QA, no_answer], "b": [QA, QA]})
    report = sources.load(root).report
    assert report == {
        "train": {"a": {"records": 1, "skipped": {"no_assistant": 2}, "first_skipped": {"no_assistant": f"{root}/train/a/part.jsonl:2"}},
                  "b": {"records": 1, "skipped": {}, "first_skipped": {}}},
        "dev": {"a": {"records": 1, "skipped": {"no_assistant": 1}, "first_skipped": {"no_assistant": f"{root}/dev/a.jsonl:2"}},
                "b": {"records": 2, "skipped": {}, "first_skipped": {}}},
    }
    assert sources.format_report(report).splitlines() == [
        "data:",
        f"  a: train 1 (skipped 2 no_assistant (first: {root}/train/a/part.jsonl:2)); dev 1 (skipped 1 no_assistant (first: {root}/dev/a.jsonl:2))",
        "  b: train 1; dev 2",
    ]


def test_unusable_records_of_every_kind_are_counted_and_reported(tmp_path):
    lines = [
        QA,
        {"prompt": "q", "completion": "a"},                                                        # unknown format
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " \n "}]},     # whitespace answer
        {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]},  # broken order
        "[1, 2, 3]",                                                                               # JSON, not an object
        '"just a string"',
        "{not json",                                                                               # --skip-bad-records
        {"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]},
    ]
    root = folder(tmp_path, {"a": lines})
    with pytest.raises(sources.DataError, match=rf"{root}/train/a/part.jsonl:7: malformed JSON"):
        sources.load(root)
    counts = sources.load(root, skip_bad_records=True).report["train"]["a"]
    assert counts["records"] == 1
    assert counts["skipped"] == {"bad_json": 1, "bad_order": 1, "bad_turn": 1, "empty_answer": 1, "not_object": 2, "unknown_format": 1}
    assert counts["first_skipped"]["not_object"] == f"{root}/train/a/part.jsonl:5"
    assert counts["first_skipped"]["empty_answer"] == f"{root}/train/a/part.jsonl:3"


def test_every_file_in_a_dataset_folder_is_read_or_named_in_an_error(tmp_path):
    records = [{"instruction": f"say {i}", "output": str(i)} for i in range(7)]
    root = folder(tmp_path, {})
    a = root / "train" / "a"
    write_jsonl(a / "part-0.jsonl", records[:2])
    write_jsonl(a / "part-1.jsonl.gz", records[2:4], opener=gzip.open)
    (a / "part-2.json").write_text(json.dumps(records[4:5], indent=2))  # a JSON array
    pq.write_table(pa.Table.from_pylist(records[5:6]), a / "part-3.parquet")
    write_jsonl(a / "more" / "part-4.jsonl", records[6:])  # files in subfolders too
    write_jsonl(root / "dev" / "a.jsonl", [QA])
    loaded = sources.load(root)
    assert [m[0]["content"] for m in loaded.train["a"]] == [f"say {i}" for i in (6, 0, 1, 2, 3, 4, 5)]  # all, in path order
    (a / "README.txt").write_text("about this data")
    with pytest.raises(sources.DataError, match=rf"{a}/README.txt: not a data file \(routemix reads .jsonl, .jsonl.gz, .json, .parquet\)"):
        sources.load(root)


def test_hidden_entries_are_ignored(tmp_path):
    root = folder(tmp_path, {"a": [QA]})
    write_jsonl(root / "train" / ".ipynb_checkpoints" / "part.jsonl", [QA])            # not a dataset
    write_jsonl(root / "train" / "a" / ".ipynb_checkpoints" / "part-checkpoint.jsonl", [QA, QA])  # not read
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0\1")
    write_jsonl(root / "dev" / ".a.jsonl", [QA])
    loaded = sources.load(root)
    assert loaded.names == ["a"] and len(loaded.train["a"]) == 1 and len(loaded.dev["a"]) == 1


def test_decoding_errors_name_file_and_line(tmp_path):
    root = folder(tmp_path, {"a": [QA]})
    part = root / "train" / "a" / "part.jsonl"
    part.write_bytes(part.read_bytes() + b'{"instruction": "caf\xe9", "output": "x"}\n')  # Latin-1, not UTF-8
    with pytest.raises(sources.DataError, match=re.escape(f"{part}:2: invalid UTF-8 (byte 20 of the line: ") + r"b'\\xe9\", '\)"):
        sources.load(root)
    assert sources.load(root, skip_bad_records=True).report["train"]["a"]["skipped"] == {"bad_encoding": 1}
    part.unlink()
    gz = write_jsonl(root / "train" / "a" / "part.jsonl.gz", [QA] * 50, opener=gzip.open)
    gz.write_bytes(gz.read_bytes()[:-30])  # truncated
    with pytest.raises(sources.DataError, match=rf"{gz}: cannot read past line \d+ \(Compressed file ended"):
        sources.load(root)
    gz.unlink()
    (root / "train" / "a" / "part.json").write_bytes(b'[\n{"instruction": "a", "output": "b"},\n{"instruction": "\xff"}]')
    with pytest.raises(sources.DataError, match=rf"{root}/train/a/part.json:3: invalid UTF-8"):
        sources.load(root)


def test_malformed_line_names_file_and_line_or_is_skipped_and_counted(tmp_path):
    root = folder(tmp_path, {"a": [QA, "{not json"]})
    path = root / "train" / "a" / "part.jsonl"
    with pytest.raises(sources.DataError, match=rf"{path}:2: malformed JSON"):
        sources.load(root)
    loaded = sources.load(root, skip_bad_records=True)
    assert len(loaded.train["a"]) == 1 and loaded.report["train"]["a"]["skipped"] == {"bad_json": 1}


def test_empty_datasets_and_mismatched_names_are_errors(tmp_path):
    root = folder(tmp_path / "x", {"a": [QA], "b": [{"messages": [{"role": "user", "content": "q"}]}]})
    with pytest.raises(sources.DataError, match=rf"train dataset 'b' in {root}/train has no usable records \(1 no_assistant "
                                                rf"\(first: {root}/train/b/part.jsonl:1\)\)"):
        sources.load(root)
    root = folder(tmp_path / "y", {"a": [QA]}, {"b": [QA]})
    with pytest.raises(sources.DataError, match=r"only in train \['a'\], only in dev \['b'\]"):
        sources.load(root)


def test_the_cache_follows_changed_files(tmp_path):
    root = folder(tmp_path, {"a": [QA]})
    assert len(sources.load(root).train["a"]) == 1
    write_jsonl(root / "train" / "a" / "part.jsonl", [QA, QA, QA])
    assert len(sources.load(root).train["a"]) == 3


# --------------------------------------------------------------------------- issue 18: every kind of source


NAMES = ("code", "explain", "math", "reasoning")


def demo_folder(root: Path, n: int = 30) -> Path:
    for name in NAMES:
        write_jsonl(root / "train" / name / "part-000.jsonl", demo_records("train", name, n))
        write_jsonl(root / "dev" / f"{name}.jsonl", demo_records("dev", name, 6))
    return root


def as_files(base: Path, root: Path) -> Path:
    """The same mixture as train/<name>.parquet and dev/<name>.jsonl.gz."""
    for name in NAMES:
        (root / "train").mkdir(parents=True, exist_ok=True)
        # through datasets' JSON reader: pa.Table.from_pylist would take the columns from the first record only
        datasets.load_dataset("json", data_files=str(base / "train" / name / "part-000.jsonl"), split="train").to_parquet(
            root / "train" / f"{name}.parquet")
        write_jsonl(root / "dev" / f"{name}.jsonl.gz", [json.loads(x) for x in (base / "dev" / f"{name}.jsonl").read_text().splitlines()],
                    opener=gzip.open)
    return root


def as_saved(base: Path, root: Path) -> Path:
    """The same mixture as saved `datasets`: train/<name>/ a saved Dataset each, dev/ one DatasetDict keyed by name."""
    dev = {}
    for name in NAMES:
        datasets.load_dataset("json", data_files=str(base / "train" / name / "part-000.jsonl"), split="train").save_to_disk(
            root / "train" / name)
        dev[name] = datasets.load_dataset("json", data_files=str(base / "dev" / f"{name}.jsonl"), split="train")
    datasets.DatasetDict(dev).save_to_disk(root / "dev")
    return root


def as_mixture_file(base: Path, files: Path, saved: Path, path: Path) -> Path:
    """One entry per kind of source: a Parquet file, a saved dataset, a local dataset folder read by
    datasets.load_dataset with data_files, a folder of JSON lines."""
    path.write_text(f"""
datasets:
  - source: {files}/train/code.parquet
    dev: {files}/dev/code.jsonl.gz
  - name: explain
    source: {saved}/train/explain
    dev: {{source: {saved}/dev, split: explain}}
  - name: math
    source: {base}
    data_files: train/math/*.jsonl
    dev: {{data_files: dev/math.jsonl}}
  - source: {base}/train/reasoning
    dev: {base}/dev/reasoning.jsonl
""")
    return path


def stream_and_first_batch(loaded: sources.Data, tokenizer):
    sizes = {name: len(c) for name, c in loaded.train.items()}
    sampler = MixtureSampler(sizes, {name: 1.0 for name in sizes}, seed=0)
    draws = []

    def draw():
        draws.append(sampler.draw())
        return draws[-1]

    batch, trained = data.PackedStream(draw, loaded.train, tokenizer, 256, 4, sampler.upcoming).next_batch()
    draws += [sampler.draw() for _ in range(200)]
    return sizes, draws, batch, trained


def test_the_same_mixture_from_every_source_gives_identical_streams_and_batches(tmp_path, tokenizer):
    base = demo_folder(tmp_path / "folder")
    files, saved = as_files(base, tmp_path / "files"), as_saved(base, tmp_path / "saved")
    variants = {
        "folder": sources.load(base),
        "parquet/jsonl.gz": sources.load(files),
        "saved datasets": sources.load(saved),
        "mixture file": sources.load(as_mixture_file(base, files, saved, tmp_path / "mix.yaml")),
        "hub layout": sources.load_parts(sources.hub_parts(str(base))),  # what a hub id goes through, on a local folder
    }
    reference = variants.pop("folder")
    sizes, draws, batch, trained = stream_and_first_batch(reference, tokenizer)
    assert sizes == {name: 30 for name in NAMES} and batch["token_mask"].sum() > 0
    for kind, loaded in variants.items():
        assert loaded.names == list(NAMES), kind
        for split in ("train", "dev"):
            ours, theirs = getattr(loaded, split), getattr(reference, split)
            assert all(ours[name][:] == theirs[name][:] for name in NAMES), (kind, split)
        other_sizes, other_draws, other_batch, other_trained = stream_and_first_batch(loaded, tokenizer)
        assert (other_sizes, other_draws, other_trained) == (sizes, draws, trained), kind
        assert all(torch.equal(other_batch[key], batch[key]) for key in batch), kind


def test_the_paper_layout_on_the_hub_gives_its_four_datasets(tmp_path):
    """`Spico/dynamic-moe-sft-instructions` holds train/<name>/fschat_0.jsonl and dev/<name>.jsonl for code, math,
    orca and sharegpt; the same layout in a local folder goes through the same load_dataset_builder/load_dataset calls."""
    repo = tmp_path / "dynamic-moe-sft-instructions"
    for name in ("code", "math", "orca", "sharegpt"):
        write_jsonl(repo / "train" / name / "fschat_0.jsonl", [{"id": f"{name}-1", **demo_records("train", "code", 1)[0]}] * 3)
        write_jsonl(repo / "dev" / f"{name}.jsonl", demo_records("train", "code", 1))
    (repo / "README.md").write_text("# four sources\n")
    parts = sources.hub_parts(str(repo))
    assert {split: sorted(names) for split, names in parts.items()} == {"train": ["code", "math", "orca", "sharegpt"],
                                                                         "dev": ["code", "math", "orca", "sharegpt"]}
    assert parts["train"]["orca"].data_files == ("train/orca/fschat_0.jsonl",)
    loaded = sources.load_parts(parts)
    assert {name: len(c) for name, c in loaded.train.items()} == {"code": 3, "math": 3, "orca": 3, "sharegpt": 3}


def test_a_hub_dataset_with_one_config_per_dataset(tmp_path):
    repo = tmp_path / "configs"
    for name in ("code", "math"):
        write_jsonl(repo / name / "train.jsonl", demo_records("train", "code", 2))
        write_jsonl(repo / name / "dev.jsonl", demo_records("dev", "code", 1))
    configs = "".join(f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}/train.jsonl\n"
                      f"  - split: validation\n    path: {name}/dev.jsonl\n" for name in ("code", "math"))
    (repo / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    parts = sources.hub_parts(str(repo))
    assert {(part.config, part.split) for part in parts["dev"].values()} == {("code", "validation"), ("math", "validation")}
    loaded = sources.load_parts(parts)
    assert {name: (len(loaded.train[name]), len(loaded.dev[name])) for name in loaded.names} == {"code": (2, 1), "math": (2, 1)}
    assert loaded.train["code"][:] == [sources.to_messages(r) for r in demo_records("train", "code", 2)]


def test_a_hub_id_is_read_with_load_dataset_up_to_the_network(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(sources.DataError, match=r"--data Spico/dynamic-moe-sft-instructions: cannot load it with "
                                                r"datasets.load_dataset \(Couldn't reach 'Spico/dynamic-moe-sft-instructions' on the Hub"):
        sources.load("Spico/dynamic-moe-sft-instructions")
    with pytest.raises(sources.DataError, match=r"--data data/demoo: no such file or folder"):  # a typo is not a hub id
        sources.load("data/demoo")


def test_a_mixture_file_maps_fields_and_gives_initial_weights(tmp_path):
    qa = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    write_jsonl(tmp_path / "qa.jsonl", qa)
    datasets.Dataset.from_list(qa).save_to_disk(tmp_path / "qa_saved")
    (tmp_path / "mix.json").write_text(json.dumps([
        {"source": "qa.jsonl", "fields": {"instruction": "question", "output": "answer"}, "dev": "qa.jsonl", "weight": 3},
        {"name": "saved", "source": "qa_saved", "fields": {"instruction": "question", "output": "answer"}, "dev": "qa.jsonl",
         "weight": 1},
    ]))
    loaded = sources.load(tmp_path / "mix.json")
    assert loaded.weights == {"qa": 3.0, "saved": 1.0}
    assert loaded.train["qa"][:] == loaded.train["saved"][:] == [
        [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(3)]


@pytest.mark.parametrize(("entry", "message"), [
    ({"source": "qa.jsonl", "fields": {"prompt": "question"}, "dev": "qa.jsonl"},
     r"entry 2 \('qa'\): unknown field mapping \{'prompt': 'question'\}"),
    ({"source": "qa.jsonl", "fields": {"instruction": "q", "output": "answer"}, "dev": "qa.jsonl"},
     r"entry 2 \('qa'\), train: fields maps to \['q'\], which the first record of .*qa.jsonl does not have"),
    ({"source": "qa_saved", "fields": {"instruction": "q", "output": "answer"}, "dev": "qa_saved"},
     r"entry 2 \('qa_saved'\), train: fields maps to \['q'\], which .*qa_saved' does not have \(columns: \['question', 'answer'\]\)"),
    ({"source": "qa.jsonl", "fields": {"instruction": "question", "output": "answer"}},
     r"entry 2 \('qa'\), dev: no dev split: give `dev:`"),
    ({"name": "qa", "source": "qa_dict", "fields": {"instruction": "question", "output": "answer"}},
     r"entry 2 \('qa'\), dev: no dev split: '.*qa_dict' has splits \['train', 'test'\]"),
    ({"name": "qa", "source": "qa_dict", "dev": "validation", "fields": {"instruction": "question", "output": "answer"}},
     r"entry 2 \('qa'\), dev: cannot load .*qa_dict' \(split 'validation'\)"),
    ({"source": "qa.jsonl", "dev": "qa.jsonl", "wieght": 2}, r"entry 2 \('qa'\): unknown keys \['wieght'\]"),
    ({"source": "qa.jsonl", "dev": "missing.jsonl"}, r"entry 2 \('qa'\), dev: no such file or folder: .*missing.jsonl"),
])
def test_a_bad_mixture_entry_is_named(tmp_path, entry, message):
    qa = [{"question": "q", "answer": "a"}]
    write_jsonl(tmp_path / "qa.jsonl", qa)
    datasets.Dataset.from_list(qa).save_to_disk(tmp_path / "qa_saved")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(qa), "test": datasets.Dataset.from_list(qa)}).save_to_disk(tmp_path / "qa_dict")
    good = {"name": "good", "source": "qa.jsonl", "fields": {"instruction": "question", "output": "answer"}, "dev": "qa.jsonl"}
    (tmp_path / "mix.yaml").write_text(json.dumps({"datasets": [good, entry]}))  # JSON is YAML
    with pytest.raises(sources.DataError, match=rf"{tmp_path}/mix.yaml {message}"):
        sources.load(tmp_path / "mix.yaml")


def test_records_stay_arrow_backed_and_are_read_on_demand(tmp_path):
    loaded = sources.load(demo_folder(tmp_path, n=5))
    conversations = loaded.train["code"]
    assert isinstance(conversations, sources.Conversations)
    assert isinstance(conversations.rows.data, datasets.table.MemoryMappedTable)  # pages shared by every rank
    assert conversations[-1] == conversations[4] and conversations[1:3] == [conversations[1], conversations[2]]
    assert conversations.where(4) == f"{tmp_path}/train/code/part-000.jsonl:5"
    with pytest.raises(IndexError):
        conversations[5]


# --------------------------------------------------------------------------- through train.py


def test_train_reports_skipped_records_per_split_at_start_and_in_the_run_folder(tmp_path, capsys):
    from test_bad_input import run_main, small_data

    root = small_data(tmp_path / "data")
    with open(root / "train" / "a" / "part.jsonl", "a") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "no answer"}]}) + "\n[1, 2]\n")
    with open(root / "dev" / "b.jsonl", "a") as f:
        f.write(json.dumps({"instruction": "q", "output": "   "}) + "\n")
    out = run_main(tmp_path, "--data", str(root), "--out", str(tmp_path / "run"), "--max-steps", "1")
    report = json.loads((out / "data_report.json").read_text())
    assert report["train"]["a"] == {"records": 20, "skipped": {"no_assistant": 1, "not_object": 1},
                                    "first_skipped": {"no_assistant": f"{root}/train/a/part.jsonl:21",
                                                      "not_object": f"{root}/train/a/part.jsonl:22"}}
    assert report["dev"]["b"] == {"records": 4, "skipped": {"empty_answer": 1}, "first_skipped": {"empty_answer": f"{root}/dev/b.jsonl:5"}}
    assert report["train"]["b"]["skipped"] == report["dev"]["a"]["skipped"] == {}
    printed = capsys.readouterr().out
    assert sources.format_report(report) in printed
    assert "a: train 20 (skipped 1 no_assistant" in printed and "dev 4 (skipped 1 empty_answer" in printed


def test_data_is_read_and_checked_before_the_model_loads(tmp_path, monkeypatch):
    import train
    from test_bad_input import run_main, small_data

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the data was checked")

    monkeypatch.setattr(train, "load_model", no_model)
    root = small_data(tmp_path / "data")
    tool = {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "x"}, {"role": "assistant", "content": "a"}]}
    with open(root / "dev" / "c.jsonl", "a") as f:
        f.write(json.dumps(tool) + "\n")
    with pytest.raises(sources.DataError, match=rf"{root}/dev/c.jsonl:5: turn 1 has role 'tool'"):
        run_main(tmp_path, "--data", str(root), "--out", str(tmp_path / "run"))


def test_a_mixture_file_through_train_with_its_initial_weights(tmp_path):
    from test_bad_input import run_main, small_data

    root = small_data(tmp_path / "data")
    # entries out of name order: each weight belongs to its dataset's name, not to a place in the file
    entries = [{"source": f"train/{name}", "dev": f"dev/{name}.jsonl", "weight": weight} for name, weight in (("c", 4), ("a", 1), ("b", 3))]
    (root / "mix.yaml").write_text(json.dumps(entries))
    out = run_main(tmp_path, "--data", str(root / "mix.yaml"), "--out", str(tmp_path / "run"), "--max-steps", "1", "--mix", "static")
    (update,) = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    assert update["names"] == ["a", "b", "c"]
    assert update["weights_before"] == pytest.approx([1 / 8, 3 / 8, 4 / 8])
    assert json.loads((out / "final" / "mixture_weights.json").read_text()) == pytest.approx({"a": 1 / 8, "b": 3 / 8, "c": 4 / 8})
    with pytest.raises(sources.DataError, match=r"--init-weights size and the weights in the mixture file"):
        run_main(tmp_path, "--data", str(root / "mix.yaml"), "--out", str(tmp_path / "run2"), "--init-weights", "size")


def test_the_memory_benchmark_reads_the_same_records_both_ways(tmp_path):
    """benchmarks/data_memory.py compares Python lists of records with sources.load: the same records, in order."""
    from benchmarks import data_memory

    data_memory.generate(tmp_path / "data", 400)
    lists, _ = data_memory.load_as_lists(tmp_path / "data")
    arrow = sources.load(tmp_path / "data").train
    assert {name: len(c) for name, c in lists.items()} == {name: 100 for name in data_memory.NAMES}
    assert all(arrow[name][:] == lists[name] for name in data_memory.NAMES)
