"""Chat templates: the built-ins, `load_tokenizer`, and assistant labels for templates that do and do not
render conversations prefix-wise."""

import json
import shutil
import time

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from reading import data
from reading import sources
from eval.generation import chat_prompt, load_checkpoint
from launch import REPO, TINY_RUN, run_train
from models import TINY_DIR, load_tokenizer, templates, tiny_config
from sampler import MixtureSampler

TEST_TEMPLATES = REPO / "tests" / "fixtures" / "templates"
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
TWO_TURNS = [
    {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi!"},
    {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "I am good."},
]


def tiny_tokenizer(template: str | None = None):
    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer


def trained_pieces(tokenizer, example: data.Example) -> list[str]:
    """The decoded runs of consecutive trained tokens."""
    pieces, run = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != data.IGNORE_INDEX:
            assert label == token
            run.append(token)
        elif run:
            pieces, run = pieces + [tokenizer.decode(run)], []
    return pieces + ([tokenizer.decode(run)] if run else [])


# --------------------------------------------------------------------------- labels


def test_qwen3_style_template_labels_exactly_what_each_turn_writes():
    tokenizer = tiny_tokenizer((TEST_TEMPLATES / "qwen3_style.jinja").read_text())
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"},
        {"role": "user", "content": "Times 4?"}, {"role": "assistant", "content": "20"},
        {"role": "user", "content": "Minus 1?"}, {"role": "assistant", "content": "<think>20 - 1</think>19"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    # the template really is not prefix-wise: the first turn alone renders with a think block the whole lacks
    assert not text.startswith(tokenizer.apply_chat_template(messages[:3], tokenize=False))
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd 2 and 3.<|im_end|>\n"
        "<|im_start|>assistant\n5<|im_end|>\n<|im_start|>user\nTimes 4?<|im_end|>\n"
        "<|im_start|>assistant\n20<|im_end|>\n<|im_start|>user\nMinus 1?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n20 - 1\n</think>\n\n19<|im_end|>\n"
    )
    example = data.encode(tokenizer, messages, max_len=512)
    # each turn: its content and end-of-turn text; the last turn also the think block that the model writes there
    assert trained_pieces(tokenizer, example) == ["5<|im_end|>\n", "20<|im_end|>\n", "<think>\n20 - 1\n</think>\n\n19<|im_end|>\n"]
    assert tokenizer.decode(example.input_ids) == text


def test_qwen3_style_template_trains_every_demo_record_through_the_stream():
    """Every record of the demo data (the reasoning set has two-turn ones) through check_renders and the
    packing stream, as train.py feeds them, labelled by the rule written out here for each record."""
    tokenizer = tiny_tokenizer((TEST_TEMPLATES / "qwen3_style.jinja").read_text())
    train, _ = sources.load_train_dev(REPO / "data" / "demo")
    train = data.check_renders(tokenizer, train)
    multi_turn = 0
    for name in sorted(train):
        for messages in train[name][:300]:
            answers = [m["content"] for m in messages if m["role"] == "assistant"]
            expected = [a + "<|im_end|>\n" for a in answers[:-1]] + ["<think>\n\n</think>\n\n" + answers[-1] + "<|im_end|>\n"]
            assert trained_pieces(tokenizer, data.encode(tokenizer, messages, 4096)) == expected
            multi_turn += len(answers) > 1
    assert multi_turn > 20
    sizes = {name: len(conversations) for name, conversations in train.items()}
    sampler = MixtureSampler(sizes, {name: 1.0 for name in sizes}, seed=0)
    stream = data.PackedStream(sampler.draw, train, tokenizer, 256, 4, sampler.upcoming)
    assert all(sum(stream.next_batch()[1].values()) > 0 for _ in range(5))


def prefix_wise_labels(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """The labelling before non-prefix-wise templates were supported (commit 2bf1c56), written out: assistant
    turn i's span runs from the end of messages[:i] rendered with a generation prompt to the end of
    messages[:i+1] rendered; a token is trained on when its first character falls in a span, the first token
    never (nothing predicts it)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
            assert text.startswith(prompt) and text.startswith(through), "the template is not prefix-wise"
            spans.append((len(prompt), len(through)))
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    labels = [token if t > 0 and any(start <= char <= end - 1 for start, end in spans) else data.IGNORE_INDEX
              for t, (token, (char, _)) in enumerate(zip(ids, encoding["offset_mapping"]))]
    return ids, labels


def test_prefix_wise_templates_label_bit_identically_to_before():
    """encode_many over the demo data (train and dev) against the prefix-wise labelling that it replaced,
    for two templates that render prefix-wise: the built-in ChatML and a Llama-2-like one."""
    train, dev = sources.load_train_dev(REPO / "data" / "demo")
    conversations = [c for split in (train, dev) for name in sorted(split) for c in split[name]]
    for name in ("tiny", "llama2_style"):
        tokenizer = tiny_tokenizer(None if name == "tiny" else (TEST_TEMPLATES / f"{name}.jinja").read_text())
        examples = data.encode_many(tokenizer, conversations, 4096)
        assert not any(e.truncated for e in examples), name
        expected = [prefix_wise_labels(tokenizer, messages) for messages in conversations]
        assert all(any(label != data.IGNORE_INDEX for label in labels) for _, labels in expected), name  # not vacuous
        assert [(e.input_ids, e.labels) for e in examples] == expected, name


@pytest.mark.parametrize("template", ["chatml", "vicuna"])
def test_labels_are_the_templates_generation_blocks(template):
    """One answer to what is trained: data.py's labels are the `{% generation %}` tokens of the
    built-in templates (ChatML: content, <|im_end|> and the newline after it)."""
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = templates.resolve(template, tokenizer)
    for messages in (TWO_TURNS, [{"role": "system", "content": "Be brief."}] + TWO_TURNS[:2]):
        out = tokenizer.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
        example = data.encode(tokenizer, messages, 512)
        assert example.input_ids == out["input_ids"]
        assert [label != data.IGNORE_INDEX for label in example.labels] == [bool(m) for m in out["assistant_masks"]]
    if template == "chatml":
        assert trained_pieces(tokenizer, example) == ["Hi!<|im_end|>\n"]
        assert (REPO / "models" / "tiny" / "chat_template.jinja").read_text() == tokenizer.chat_template


def test_vicuna_is_fastchats_vicuna_v1_1_with_the_tokenizers_eos():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = templates.resolve("vicuna", tokenizer)
    eos = tokenizer.eos_token
    # FastChat's ADD_COLON_TWO: system + " ", then "ROLE: message" + (" " after user, sep2 after assistant)
    assert tokenizer.apply_chat_template(TWO_TURNS, tokenize=False) == (
        f"{VICUNA_SYSTEM} USER: Hello! ASSISTANT: Hi!{eos}USER: How are you? ASSISTANT: I am good.{eos}"
    )
    with_system = [{"role": "system", "content": "Be brief."}] + TWO_TURNS[:1]
    assert tokenizer.apply_chat_template(with_system, tokenize=False, add_generation_prompt=True) == (
        "Be brief. USER: Hello! ASSISTANT:"
    )
    assert trained_pieces(tokenizer, data.encode(tokenizer, TWO_TURNS, 512)) == [f" Hi!{eos}", f" I am good.{eos}"]


def test_a_template_that_changes_the_content_is_refused_not_mislabelled():
    # the Qwen3-style template drops an earlier turn's reasoning: that turn's content as given is not in the text
    tokenizer = tiny_tokenizer((TEST_TEMPLATES / "qwen3_style.jinja").read_text())
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>r</think>a"},
                {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(ValueError, match="does not render assistant turn 1's content as given"):
        data.assistant_spans(tokenizer, messages)


# --------------------------------------------------------------------------- rendering up front


class Located(list):
    """Conversations that know where each record came from, as `sources` gives them."""

    def where(self, index):
        return f"/data/train/y/part.jsonl:{index + 1}"


def test_check_renders_stops_at_the_first_bad_record_naming_it():
    tokenizer = tiny_tokenizer(
        "{%- for message in messages -%}{%- if 'BAD' in message['content'] -%}{{- raise_exception('no BAD here') -}}"
        "{%- endif -%}{%- endfor -%}" + templates.BUILTIN["chatml"].read_text()
    )
    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    bad = [{"role": "user", "content": "BAD"}, {"role": "assistant", "content": "a"}]
    datasets = {"x": [good, good], "y": Located([good, bad, good, bad, good])}
    with pytest.raises(sources.DataError, match=r"^/data/train/y/part.jsonl:2: dataset 'y': the chat template cannot render this record: no BAD here"):
        data.check_renders(tokenizer, datasets)
    with pytest.raises(sources.DataError, match=r"^record 1: dataset 'y'"):  # a dataset that does not know its records' files
        data.check_renders(tokenizer, {"y": list(datasets["y"])})
    skipped = {}
    checked = data.check_renders(tokenizer, datasets, skip_bad=True, skipped=skipped)
    assert checked["x"] is datasets["x"] and skipped == {"y": {"bad_render": 2, "first": "/data/train/y/part.jsonl:2"}}
    assert list(checked["y"]) == [good, good, good] and checked["y"].where(2) == "/data/train/y/part.jsonl:5"
    with pytest.raises(sources.DataError, match="dataset 'z': the chat template renders none of its 1 records"):
        data.check_renders(tokenizer, {"z": [bad]}, skip_bad=True)
    # a template that cannot label any conversation stops before the first record, naming no record
    tokenizer.chat_template = "{{ raise_exception('broken') }}"
    with pytest.raises(sources.DataError, match="^the chat template cannot render a plain user/assistant conversation: broken"):
        data.check_renders(tokenizer, datasets)


# --------------------------------------------------------------------------- load_tokenizer


@pytest.fixture(scope="module")
def no_template_folder(tmp_path_factory):
    """The tiny tokenizer saved without its chat template, as base models ship."""
    folder = tmp_path_factory.mktemp("base")
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    assert not (folder / "chat_template.jinja").exists()
    return folder


def test_load_tokenizer_without_a_template_names_the_flag_and_the_builtins(no_template_folder, tmp_path):
    with pytest.raises(ValueError, match=r"has no chat template.*--chat-template with a built-in \(chatml, vicuna;"):
        load_tokenizer(str(no_template_folder))
    for name in ("chatml", "vicuna"):
        tokenizer = load_tokenizer(str(no_template_folder), chat_template=name)
        assert tokenizer.chat_template == templates.BUILTIN[name].read_text()
        tokenizer.save_pretrained(tmp_path / name)  # what train.py writes to final/, and eval loads
        assert AutoTokenizer.from_pretrained(tmp_path / name).chat_template == tokenizer.chat_template
    path = TEST_TEMPLATES / "qwen3_style.jinja"
    assert load_tokenizer(str(no_template_folder), chat_template=str(path)).chat_template == path.read_text()
    # the model's own template stays the default, and the flag replaces it
    assert load_tokenizer("tiny").chat_template == (TINY_DIR / "chat_template.jinja").read_text()
    assert load_tokenizer("tiny", chat_template="vicuna").chat_template == templates.BUILTIN["vicuna"].read_text()
    with pytest.raises(ValueError, match="--chat-template nope: neither a built-in"):
        load_tokenizer(str(no_template_folder), chat_template="nope")
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}")
    with pytest.raises(ValueError, match=f"--chat-template {broken}: the template does not render"):
        load_tokenizer(str(no_template_folder), chat_template=str(broken))


def test_chatml_is_refused_for_a_tokenizer_without_its_tokens(tmp_path):
    vocab = {"[UNK]": 0, "</s>": 1, "hello": 2}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="[UNK]").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"no <\|im_start\|> or <\|im_end\|> token.*use --chat-template vicuna \(ends turns with the tokenizer's eos '</s>'\)"):
        load_tokenizer(str(tmp_path), chat_template="chatml")
    assert load_tokenizer(str(tmp_path), chat_template="vicuna").pad_token == "</s>"


# --------------------------------------------------------------------------- train.py on a base model


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A local model folder as base models ship it: weights, config and a tokenizer without a chat template."""
    folder = tmp_path_factory.mktemp("base_model")
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    config = tiny_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def test_train_on_a_model_without_a_template_stops_before_its_weights_naming_the_flag(base_model, tmp_path):
    # unreadable weights: if train.py loaded them before looking at the template, it would fail on them instead
    broken = tmp_path / "broken"
    shutil.copytree(base_model, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    start = time.perf_counter()
    result = run_train(tmp_path / "run", "--model", str(broken), *TINY_RUN, "--max-steps", "2")
    print(f"stopped after {time.perf_counter() - start:.1f} s")
    assert result.returncode != 0
    assert "has no chat template" in result.stderr and "--chat-template with a built-in (chatml, vicuna;" in result.stderr
    assert "safetensors" not in result.stderr.lower()
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("template", ["chatml", "vicuna"])
def test_train_with_a_chat_template_saves_it_with_the_model(base_model, tmp_path, template):
    """Trains on the demo data; final/ holds the template used, and evaluation loads it from there."""
    out = tmp_path / "run"
    result = run_train(out, "--model", str(base_model), "--chat-template", template, *TINY_RUN,
                       "--max-steps", "2", "--probe-every", "2", "--save-every", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    used = templates.BUILTIN[template].read_text()
    model, tokenizer = load_checkpoint(out / "final")
    assert tokenizer.chat_template == used
    assert isinstance(model, torch.nn.Module)
    prompt = chat_prompt(tokenizer, [{"role": "user", "content": "What is 2 + 2?"}])
    assert prompt.endswith("ASSISTANT:" if template == "vicuna" else "<|im_start|>assistant\n")


def test_a_record_the_template_cannot_render_stops_both_ranks_naming_it(tmp_path):
    """Two processes: every rank checks every record before training, so both stop at once with the same
    message (no rank is left waiting in a collective for the other)."""
    from test_distributed import run_two

    folder = tmp_path / "data"
    for name in ("code", "math", "reasoning"):
        lines = (REPO / "data" / "demo" / "train" / name / "part-000.jsonl").read_text().splitlines()[:40]
        if name == "reasoning":  # line 7: the first answer's reasoning, which the Qwen3-style template drops
            lines.insert(6, json.dumps({"conversations": [
                {"from": "human", "value": "q"}, {"from": "gpt", "value": "<think>r</think>a"},
                {"from": "human", "value": "q2"}, {"from": "gpt", "value": "b"}]}))
        (folder / "train" / name).mkdir(parents=True)
        (folder / "train" / name / "part-000.jsonl").write_text("\n".join(lines) + "\n")
        dev = (REPO / "data" / "demo" / "dev" / f"{name}.jsonl").read_text().splitlines()[:8]
        (folder / "dev").mkdir(exist_ok=True)
        (folder / "dev" / f"{name}.jsonl").write_text("\n".join(dev) + "\n")
    result = run_two(tmp_path / "run", "--data", str(folder), "--chat-template", str(TEST_TEMPLATES / "qwen3_style.jinja"),
                     "--max-steps", "2", "--micro-batch-size", "4", "--seq-len", "128")
    assert result.returncode != 0
    where = folder / "train" / "reasoning" / "part-000.jsonl"
    message = f"{where}:7: dataset 'reasoning': the chat template cannot render this record: the chat template does not render assistant turn 1's content"
    assert result.stderr.count(message) == 2, result.stderr[-3000:]  # each rank, by itself
