"""One record -> chat messages, and one data file -> its records.

A record is in any of these formats (a mixture file's `fields` renames other shapes to them):

- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}], "system_prompt": optional}``
- OpenAI messages: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}``; content is a
  string or a list of text parts, joined
- Alpaca: ``{"instruction": ..., "input": optional, "output": ..., "system": optional, "history": optional}``

and becomes a list of ``{"role", "content"}`` messages (`to_messages`), or a `RecordError` that says
why not and what the record is counted as when skipped. A data file is ``.jsonl``, ``.jsonl.gz``,
``.json`` (an array of records, or JSON lines) or ``.parquet``; `read_records` gives each record with
its file and line. `sources.py` decides where files come from and caches what this reads. No torch.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

Messages = list[dict[str, str]]

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
ROLES = {**SHAREGPT_ROLES, "developer": "system"}  # OpenAI's newer name for the system role
TOOL_ROLES = {"tool", "function", "ipython", "observation", "function_call"}
TEXT_PARTS = {"text", "input_text", "output_text"}  # chat completions' and the Responses API's text parts
FIELDS = ("messages", "conversations", "system_prompt", "system", "instruction", "input", "output", "history")
"""What a mixture entry's `fields` can map a record's keys to."""
SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


class DataError(ValueError):
    """Bad input data; the message names the file, line, dataset or mixture entry."""


class RecordError(ValueError):
    """A record routemix cannot use as written. `reason` is what it is counted as when skipped; a `fatal`
    one stops the run unless bad records are skipped (the user meant something routemix cannot train)."""

    def __init__(self, reason: str, message: str, fatal: bool = False):
        super().__init__(message)
        self.reason, self.fatal = reason, fatal


# --------------------------------------------------------------------------- records


def to_messages(record, fields: dict[str, str] | None = None) -> Messages:
    """One record in any supported format -> chat messages. Raises RecordError saying what is wrong.

    `fields` maps routemix's keys (`FIELDS`) to the record's own, e.g. ``{"instruction": "question"}``.
    Keys whose value is None count as absent (Arrow tables hold None for a key that a row lacks).
    """
    if not isinstance(record, dict):
        raise RecordError("not_object", f"a record must be a JSON object, got {type(record).__name__}")
    for target, column in (fields or {}).items():
        if column in record:
            record = {**record, target: record[column]}
    record = {key: value for key, value in record.items() if value is not None}
    if "conversations" in record or "messages" in record:
        turns = record["conversations"] if "conversations" in record else record["messages"]
        if not isinstance(turns, list):
            raise RecordError("bad_turn", f"the turns must be a list, got {type(turns).__name__}")
        messages = [turn_message(turn, i) for i, turn in enumerate(turns)]
        system = record.get("system_prompt", record.get("system"))
        if system:
            messages.insert(0, {"role": "system", "content": text_of(system, "the system prompt")})
    elif "instruction" in record and "output" in record:
        messages = [{"role": "system", "content": text_of(record["system"], "system")}] if record.get("system") else []
        for i, pair in enumerate(record.get("history") or []):
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise RecordError("bad_turn", f"history entry {i} must be a [prompt, response] pair")
            messages += [{"role": "user", "content": text_of(pair[0], f"history {i}")},
                         {"role": "assistant", "content": text_of(pair[1], f"history {i}")}]
        prompt = text_of(record["instruction"], "instruction")
        if record.get("input"):
            prompt += "\n\n" + text_of(record["input"], "input")
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": text_of(record["output"], "output")}]
    else:
        raise RecordError(
            "unknown_format", f"unknown record format with keys {sorted(record)} (expected conversations, messages or instruction/output)"
        )
    check_turn_order(messages)
    return messages


def turn_message(turn, i: int) -> dict[str, str]:
    """One ShareGPT turn (`from`/`value`) or OpenAI message (`role`/`content`) -> `{"role", "content"}`.

    Tool roles and tool calls are refused rather than rendered: routemix's assistant-only labels and
    its probes assume user/assistant turns, and most MoE chat templates (the paper's models have none)
    render tool turns differently from how the model will see them, or not at all.
    """
    if not isinstance(turn, dict):
        raise RecordError("bad_turn", f"turn {i} must be an object, got {type(turn).__name__}")
    turn = {key: value for key, value in turn.items() if value is not None}
    role = turn.get("role", turn.get("from"))
    if role in TOOL_ROLES or turn.get("tool_calls") or "function_call" in turn:
        what = f"has role {role!r}" if role in TOOL_ROLES else "has tool calls"
        raise RecordError("tool_use", f"turn {i} {what}: routemix does not train on tool use; remove such records", fatal=True)
    if role not in ROLES:
        raise RecordError("bad_turn", f"turn {i} has unknown role {role!r}")
    if turn.get("weight", 1) != 1:
        raise RecordError("turn_weight", f"turn {i} has weight {turn['weight']!r}: routemix trains every assistant turn", fatal=True)
    return {"role": ROLES[role], "content": text_of(turn.get("content", turn.get("value", "")), f"turn {i}")}


def text_of(content, what: str) -> str:
    """A string (or number) as it is; a list of text parts joined with nothing between them, as chat
    templates that take content parts render them (a separator would add characters no part holds)."""
    if isinstance(content, str):
        return content
    if isinstance(content, int | float) and not isinstance(content, bool):
        return str(content)
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind is not None and kind not in TEXT_PARTS:
                raise RecordError("non_text_content", f"{what} part {j} is of type {kind!r}: routemix trains on text only", fatal=True)
            if kind is None or not isinstance(part.get("text"), str):
                raise RecordError("bad_turn", f"{what} part {j} is not a text part ({{'type': 'text', 'text': ...}}): {part!r:.80}")
            texts.append(part["text"])
        return "".join(texts)
    raise RecordError("bad_turn", f"{what} content must be a string or a list of text parts, got {type(content).__name__}")


def check_turn_order(messages: Messages) -> None:
    """An optional system message, then user/assistant alternating, starting with user, with an assistant
    turn; no assistant turn empty or whitespace only (it would teach the model to answer nothing)."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if any(m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(turns)):
        raise RecordError("bad_order", f"broken role order ({', '.join(m['role'] for m in messages)}): expected an optional "
                                       "system turn, then user and assistant alternating")
    answers = [m["content"] for m in turns if m["role"] == "assistant"]
    if not answers:
        raise RecordError("no_assistant", "no assistant turn")
    if not all(answer.strip() for answer in answers):
        raise RecordError("empty_answer", "an assistant turn is empty or whitespace only")


# --------------------------------------------------------------------------- files


def readable_stem(filename: str) -> str | None:
    """The dataset name a data file gives (`code.jsonl.gz` -> `code`), or None for a file routemix does not read."""
    for suffix in SUFFIXES:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return None


def dataset_files(folder: Path) -> list[Path]:
    """Every file below `folder`, sorted, hidden entries left out; any other kind of file is an error."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if readable_stem(path.name) is None:
            raise DataError(f"{path}: not a data file (routemix reads {', '.join(SUFFIXES)}); move it out of the data folder")
        files.append(path)
    return files


def read_records(path: Path, skip_bad_lines: bool = False) -> Iterator[tuple[str, object, str]]:
    """`(where, record, problem)` for every record of one file: `where` is `file:line` (JSON lines),
    `file item i` (a JSON array) or `file row i` (Parquet). A line that is not valid UTF-8 or not JSON is
    an error naming file and line, or with `skip_bad_lines` a `(where, None, "bad_encoding"|"bad_json")`."""
    if path.name.endswith(".parquet"):
        yield from _parquet_records(path)
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    if path.name.endswith(".json"):
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"["):
            yield from _json_array_records(path)
            return
    line_no = 0
    try:
        with opener(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    record = json.loads(raw.decode("utf-8-sig" if line_no == 1 else "utf-8"))
                except UnicodeDecodeError as e:
                    problem, message = "bad_encoding", f"invalid UTF-8 (byte {e.start} of the line: {raw[e.start : e.start + 4]!r})"
                except json.JSONDecodeError as e:
                    problem, message = "bad_json", f"malformed JSON ({e.msg}, column {e.colno})"
                else:
                    yield where, record, ""
                    continue
                if not skip_bad_lines:
                    raise DataError(f"{where}: {message}; pass --skip-bad-records to skip such lines")
                yield where, None, problem
    except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt .gz
        raise DataError(f"{path}: cannot read past line {line_no} ({e})") from None


def _json_array_records(path: Path) -> Iterator[tuple[str, object, str]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 (byte {e.start} of the file)") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg}, column {e.colno}) in a JSON array file") from None
    for i, record in enumerate(records):
        yield f"{path} item {i}", record, ""


def _parquet_records(path: Path) -> Iterator[tuple[str, object, str]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:  # ArrowInvalid for a file that is not Parquet
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield f"{path} row {row}", record, ""
            row += 1
