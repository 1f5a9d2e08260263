"""Write the bundled demo datasets that the default routemix job trains on.

Four small instruction datasets with clearly different vocabulary and style, so
that even a tiny MoE routes them differently:

    name       format           content
    code       ShareGPT         write-a-Python-function requests, code answers
    math       Alpaca           arithmetic and word problems, worked answers
    explain    OpenAI messages  short explanations of concepts from a fact table
    reasoning  ShareGPT         ordering, syllogisms, conditionals, knights and
                                knaves; ~20% two-turn conversations

Layout (as train.py's --data expects): `train/<name>/part-000.jsonl` and
`dev/<name>.jsonl`. Every record is built from templates with a seeded
`random.Random`, so the output is byte-identical on every run and platform.
Dev records never share their first user prompt with a train record.

    python scripts/make_demo_data.py                 # writes data/demo/
    python scripts/make_demo_data.py --out /tmp/demo

Standard library only; no network.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TRAIN_RECORDS = 1200
"""Train records written per dataset."""
DEV_RECORDS = 80
"""Dev records written per dataset."""
SEED = 20250401
"""Base seed; each dataset draws from `random.Random(f"{SEED}-{name}")`."""
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "demo"

NAMES = [
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Gita", "Hugo", "Ines", "Jonas",
    "Kofi", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara",
    "Umar", "Vera", "Wen", "Yusuf", "Zoe",
]
SHE = ["Alice", "Dana", "Farah", "Gita", "Ines", "Lena", "Nora", "Priya", "Rosa", "Tara", "Vera", "Zoe"]


def pronoun(name: str) -> str:
    """The subject pronoun used for a name in the word problems."""
    return "she" if name in SHE else "he"


# ---------------------------------------------------------------------------
# code: "write a Python function that ..." -> a fenced code answer (ShareGPT)
# ---------------------------------------------------------------------------


@dataclass
class CodeTask:
    """One function to write: what it does, its code, and a worked example call."""

    name: str
    args: list[tuple[str, str]]  # (argument name, type hint)
    returns: str  # return type hint
    goal: str  # third person, completes "a function that ..."
    doc: str  # imperative one-line docstring
    body: list[str]  # body lines, indented relative to the def
    note: str  # one sentence on how it works
    call: str  # an example call
    result: object  # what the example call returns


def _ints(rng: random.Random, count: int, low: int, high: int) -> list[int]:
    return [rng.randint(low, high) for _ in range(count)]


WORDS = [
    "apple", "river", "stone", "cloud", "garden", "planet", "yellow", "window", "rocket", "silver",
    "bridge", "forest", "candle", "orange", "tiger", "pencil", "marble", "violin", "anchor", "butter",
    "desert", "lemon", "island", "puzzle", "mirror", "thunder", "carpet", "engine", "basket", "copper",
]


def _words(rng: random.Random, count: int) -> list[str]:
    return rng.sample(WORDS, count)


def task_sum_above(rng: random.Random) -> CodeTask:
    limit = rng.randint(0, 50)
    numbers = _ints(rng, 6, 0, 80)
    name = rng.choice(["sum_above", "total_above", "sum_greater_than"])
    if rng.random() < 0.5:
        body = ["total = 0", "for n in numbers:", f"    if n > {limit}:", "        total += n", "return total"]
        note = f"The loop adds a number to the running total only when it is larger than {limit}."
    else:
        body = [f"return sum(n for n in numbers if n > {limit})"]
        note = f"The generator expression keeps the numbers above {limit} and `sum` adds them up."
    return CodeTask(
        name, [("numbers", "list[int]")], "int",
        f"returns the sum of all numbers in a list that are greater than {limit}",
        f"Return the sum of the numbers greater than {limit}.", body, note,
        f"{name}({numbers})", sum(n for n in numbers if n > limit),
    )


def task_count_char(rng: random.Random) -> CodeTask:
    char = rng.choice("abcdefghilmnoprstu")
    text = " ".join(_words(rng, 3))
    name = rng.choice(["count_char", "count_letter", "occurrences"])
    if rng.random() < 0.5:
        body = [f'return text.count("{char}")']
        note = "`str.count` scans the string once and counts non-overlapping matches."
    else:
        body = ["count = 0", "for ch in text:", f'    if ch == "{char}":', "        count += 1", "return count"]
        note = f"The loop looks at each character and counts the ones equal to '{char}'."
    return CodeTask(
        name, [("text", "str")], "int",
        f"counts how many times the letter '{char}' appears in a string",
        f"Count the occurrences of '{char}' in text.", body, note,
        f'{name}("{text}")', text.count(char),
    )


def task_keep_multiples(rng: random.Random) -> CodeTask:
    k = rng.randint(2, 12)
    numbers = _ints(rng, 7, 1, 60)
    name = rng.choice(["keep_multiples", f"multiples_of_{k}", "filter_divisible"])
    return CodeTask(
        name, [("numbers", "list[int]")], "list[int]",
        f"returns a new list with only the numbers that are divisible by {k}",
        f"Return the numbers that are divisible by {k}.",
        [f"return [n for n in numbers if n % {k} == 0]"],
        f"The list comprehension keeps `n` when the remainder `n % {k}` is zero.",
        f"{name}({numbers})", [n for n in numbers if n % k == 0],
    )


def task_scale(rng: random.Random) -> CodeTask:
    k = rng.randint(2, 20)
    numbers = _ints(rng, 4, -9, 30)
    name = rng.choice(["scale", f"times_{k}", "multiply_all"])
    return CodeTask(
        name, [("numbers", "list[int]")], "list[int]",
        f"multiplies every element of a list by {k} and returns the new list",
        f"Return a new list with each number multiplied by {k}.",
        [f"return [n * {k} for n in numbers]"],
        "A list comprehension builds the new list and leaves the input unchanged.",
        f"{name}({numbers})", [n * k for n in numbers],
    )


def task_clamp(rng: random.Random) -> CodeTask:
    low = rng.randint(-10, 10)
    high = low + rng.randint(5, 100)
    value = rng.randint(low - 30, high + 30)
    name = rng.choice(["clamp", "limit", "bound"])
    return CodeTask(
        name, [("value", "int")], "int",
        f"clamps a value to the range from {low} to {high}",
        f"Clamp value to the closed range [{low}, {high}].",
        [f"return max({low}, min(value, {high}))"],
        f"`min` caps the value at {high}, then `max` raises it to at least {low}.",
        f"{name}({value})", max(low, min(value, high)),
    )


def task_prefix_filter(rng: random.Random) -> CodeTask:
    words = _words(rng, 5)
    prefix = rng.choice(words)[: rng.randint(1, 2)]
    name = rng.choice(["starting_with", "filter_prefix", "words_with_prefix"])
    return CodeTask(
        name, [("words", "list[str]")], "list[str]",
        f'keeps only the words that start with "{prefix}"',
        f'Return the words that start with "{prefix}".',
        [f'return [w for w in words if w.startswith("{prefix}")]'],
        "`str.startswith` checks the beginning of each word, and order is preserved.",
        f"{name}({words})", [w for w in words if w.startswith(prefix)],
    )


def task_replace_char(rng: random.Random) -> CodeTask:
    old, new = rng.sample("aeiosnrt-_*#", 2)
    text = rng.choice(WORDS) + rng.choice(["", " ", "_"]) + rng.choice(WORDS)
    name = rng.choice(["replace_char", "swap_char", "substitute"])
    return CodeTask(
        name, [("text", "str")], "str",
        f"replaces every '{old}' in a string with '{new}'",
        f"Replace each '{old}' with '{new}'.",
        [f'return text.replace("{old}", "{new}")'],
        "Strings are immutable, so `str.replace` returns a new string.",
        f'{name}("{text}")', text.replace(old, new),
    )


def task_chunks(rng: random.Random) -> CodeTask:
    size = rng.randint(2, 5)
    items = list(range(1, rng.randint(size + 2, 11)))
    name = rng.choice(["chunk", "split_into_chunks", "batched"])
    return CodeTask(
        name, [("items", "list")], "list[list]",
        f"splits a list into consecutive chunks of {size} items (the last chunk may be shorter)",
        f"Split items into chunks of length {size}.",
        [f"return [items[i:i + {size}] for i in range(0, len(items), {size})]"],
        f"`range` steps through the start positions {size} at a time and each slice takes one chunk.",
        f"{name}({items})", [items[i : i + size] for i in range(0, len(items), size)],
    )


def task_fizzbuzz(rng: random.Random) -> CodeTask:
    a, b = sorted(rng.sample(range(2, 8), 2))
    word_a, word_b = rng.sample(["Fizz", "Buzz", "Ping", "Pong", "Zip", "Zap"], 2)
    n = rng.randint(a * b, a * b + 4)
    name = rng.choice(["fizzbuzz", "ping_pong", "number_words"])
    body = [
        "out = []",
        "for i in range(1, n + 1):",
        f"    if i % {a * b} == 0:",
        f'        out.append("{word_a}{word_b}")',
        f"    elif i % {a} == 0:",
        f'        out.append("{word_a}")',
        f"    elif i % {b} == 0:",
        f'        out.append("{word_b}")',
        "    else:",
        "        out.append(str(i))",
        "return out",
    ]

    def word(i: int) -> str:
        return word_a + word_b if i % (a * b) == 0 else word_a if i % a == 0 else word_b if i % b == 0 else str(i)

    return CodeTask(
        name, [("n", "int")], "list[str]",
        f'returns the numbers 1 to n as strings, with multiples of {a} replaced by "{word_a}", '
        f'multiples of {b} by "{word_b}", and multiples of both by "{word_a}{word_b}"',
        f"List 1..n with {word_a} for multiples of {a} and {word_b} for multiples of {b}.",
        body, f"The test for {a * b} comes first, because those numbers are multiples of both {a} and {b}.",
        f"{name}({n})[-3:]", [word(i) for i in range(n - 2, n + 1)],
    )


def task_count_vowels(rng: random.Random) -> CodeTask:
    text = " ".join(_words(rng, 2)).capitalize()
    name = rng.choice(["count_vowels", "vowel_count", "num_vowels"])
    return CodeTask(
        name, [("text", "str")], "int",
        "counts the vowels in a string, ignoring case",
        "Count the vowels (a, e, i, o, u) in text, ignoring case.",
        ['return sum(1 for ch in text.lower() if ch in "aeiou")'],
        "Lowercasing first means 'A' and 'a' are both counted.",
        f'{name}("{text}")', sum(1 for ch in text.lower() if ch in "aeiou"),
    )


def task_word_lengths(rng: random.Random) -> CodeTask:
    words = _words(rng, 3)
    name = rng.choice(["word_lengths", "length_map", "lengths_by_word"])
    return CodeTask(
        name, [("words", "list[str]")], "dict[str, int]",
        "maps each word in a list to its length",
        "Return a dict from each word to its length.",
        ["return {w: len(w) for w in words}"],
        "A dict comprehension pairs every word with `len(w)`.",
        f"{name}({words})", {w: len(w) for w in words},
    )


def task_dedupe(rng: random.Random) -> CodeTask:
    items = _ints(rng, 7, 1, 6)
    name = rng.choice(["dedupe", "unique_in_order", "remove_duplicates"])
    body = ["seen = set()", "out = []", "for x in items:", "    if x not in seen:", "        seen.add(x)",
            "        out.append(x)", "return out"]
    return CodeTask(
        name, [("items", "list[int]")], "list[int]",
        "removes duplicates from a list while keeping the first occurrence of each item in order",
        "Remove duplicates from items, keeping first occurrences in order.", body,
        "The set gives fast membership tests and the list keeps the original order.",
        f"{name}({items})", list(dict.fromkeys(items)),
    )


def task_is_prime(rng: random.Random) -> CodeTask:
    n = rng.choice([2, 9, 13, 21, 29, 49, 53, 91, 97, 101])
    name = rng.choice(["is_prime", "prime", "check_prime"])
    body = ["if n < 2:", "    return False", "i = 2", "while i * i <= n:", "    if n % i == 0:",
            "        return False", "    i += 1", "return True"]
    return CodeTask(
        name, [("n", "int")], "bool",
        "checks whether an integer is a prime number",
        "Return True if n is prime.", body,
        "Trial division only needs to test divisors up to the square root of n.",
        f"{name}({n})", all(n % i for i in range(2, n)),
    )


def task_factorial(rng: random.Random) -> CodeTask:
    n = rng.randint(0, 10)
    name = rng.choice(["factorial", "fact", "product_up_to"])
    if rng.random() < 0.5:
        body = ["result = 1", "for i in range(2, n + 1):", "    result *= i", "return result"]
        note = "The loop multiplies 2, 3, ..., n; for n = 0 or 1 it never runs and the result stays 1."
    else:
        body = ["if n <= 1:", "    return 1", f"return n * {name}(n - 1)"]
        note = "The recursion stops at n <= 1, which also covers 0! = 1."
    result = 1
    for i in range(2, n + 1):
        result *= i
    return CodeTask(
        name, [("n", "int")], "int", "computes the factorial of a non-negative integer n",
        "Return n! for n >= 0.", body, note, f"{name}({n})", result,
    )


def task_fibonacci(rng: random.Random) -> CodeTask:
    n = rng.randint(2, 20)
    name = rng.choice(["fibonacci", "fib", "nth_fibonacci"])
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return CodeTask(
        name, [("n", "int")], "int",
        "returns the n-th Fibonacci number, counting fib(0) = 0 and fib(1) = 1",
        "Return the n-th Fibonacci number (fib(0) = 0).",
        ["a, b = 0, 1", "for _ in range(n):", "    a, b = b, a + b", "return a"],
        "Keeping only the last two values makes it linear time and constant memory.",
        f"{name}({n})", a,
    )


def task_running_total(rng: random.Random) -> CodeTask:
    numbers = _ints(rng, 5, 1, 20)
    name = rng.choice(["running_total", "cumulative_sum", "prefix_sums"])
    totals, total = [], 0
    for n in numbers:
        total += n
        totals.append(total)
    return CodeTask(
        name, [("numbers", "list[int]")], "list[int]",
        "returns the running totals of a list of numbers",
        "Return the cumulative sums of numbers.",
        ["totals = []", "total = 0", "for n in numbers:", "    total += n", "    totals.append(total)", "return totals"],
        "Each position holds the sum of all numbers up to and including it.",
        f"{name}({numbers})", totals,
    )


def task_truncate(rng: random.Random) -> CodeTask:
    limit = rng.randint(8, 20)
    text = " ".join(_words(rng, 4))
    name = rng.choice(["truncate", "shorten", "ellipsize"])
    return CodeTask(
        name, [("text", "str")], "str",
        f'shortens a string to at most {limit} characters, ending with "..." when it cuts',
        f"Cut text to at most {limit} characters, marking a cut with '...'.",
        [f"if len(text) <= {limit}:", "    return text", f'return text[:{limit - 3}] + "..."'],
        f"The slice keeps {limit - 3} characters so that the three dots fit in the limit.",
        f'{name}("{text}")', text if len(text) <= limit else text[: limit - 3] + "...",
    )


def task_powers(rng: random.Random) -> CodeTask:
    base = rng.randint(2, 9)
    n = rng.randint(3, 7)
    name = rng.choice(["powers", f"powers_of_{base}", "power_list"])
    return CodeTask(
        name, [("n", "int")], "list[int]",
        f"returns the first n powers of {base}, starting from {base} ** 0",
        f"Return [{base} ** 0, ..., {base} ** (n - 1)].",
        [f"return [{base} ** i for i in range(n)]"],
        "`range(n)` gives the exponents 0 to n - 1.",
        f"{name}({n})", [base**i for i in range(n)],
    )


def task_count_long_words(rng: random.Random) -> CodeTask:
    limit = rng.randint(3, 6)
    sentence = " ".join(_words(rng, 5))
    name = rng.choice(["count_long_words", "long_word_count", "words_longer_than"])
    return CodeTask(
        name, [("sentence", "str")], "int",
        f"counts the words in a sentence that have more than {limit} letters",
        f"Count the words longer than {limit} characters.",
        [f"return sum(1 for w in sentence.split() if len(w) > {limit})"],
        "`split()` with no argument splits on any run of whitespace.",
        f'{name}("{sentence}")', sum(1 for w in sentence.split() if len(w) > limit),
    )


def task_min_max(rng: random.Random) -> CodeTask:
    numbers = _ints(rng, 6, -50, 50)
    name = rng.choice(["min_max", "extremes", "smallest_and_largest"])
    return CodeTask(
        name, [("numbers", "list[int]")], "tuple[int, int]",
        "returns the smallest and the largest number of a non-empty list as a tuple",
        "Return (min, max) of a non-empty list.",
        ["low = high = numbers[0]", "for n in numbers[1:]:", "    if n < low:", "        low = n",
         "    elif n > high:", "        high = n", "return low, high"],
        "One pass over the list updates both extremes, so it never sorts.",
        f"{name}({numbers})", (min(numbers), max(numbers)),
    )


def task_count_in_range(rng: random.Random) -> CodeTask:
    low = rng.randint(0, 30)
    high = low + rng.randint(5, 30)
    numbers = _ints(rng, 7, 0, 70)
    name = rng.choice(["count_between", "count_in_range", "how_many_between"])
    return CodeTask(
        name, [("numbers", "list[int]")], "int",
        f"counts the numbers that lie between {low} and {high}, inclusive",
        f"Count the numbers n with {low} <= n <= {high}.",
        [f"return sum(1 for n in numbers if {low} <= n <= {high})"],
        "Python's chained comparison checks both bounds in one expression.",
        f"{name}({numbers})", sum(1 for n in numbers if low <= n <= high),
    )


CODE_TASKS: list[Callable[[random.Random], CodeTask]] = [
    task_sum_above, task_count_char, task_keep_multiples, task_scale, task_clamp, task_prefix_filter,
    task_replace_char, task_chunks, task_fizzbuzz, task_count_vowels, task_word_lengths, task_dedupe,
    task_is_prime, task_factorial, task_fibonacci, task_running_total, task_truncate, task_powers,
    task_count_long_words, task_min_max, task_count_in_range,
]
CODE_SYSTEM_PROMPTS = [
    "You are a careful Python programmer. Answer with working code.",
    "You are a coding assistant. Write clean, idiomatic Python 3.",
    "You help people write small, correct Python functions.",
]


def render_function(task: CodeTask, type_hints: bool, docstring: bool) -> str:
    """The task's function as Python source, optionally with type hints and a docstring."""
    if type_hints:
        params = ", ".join(f"{arg}: {hint}" for arg, hint in task.args)
        header = f"def {task.name}({params}) -> {task.returns}:"
    else:
        header = f"def {task.name}({', '.join(arg for arg, _ in task.args)}):"
    lines = [header]
    if docstring:
        lines.append(f'    """{task.doc}"""')
    lines += ["    " + line for line in task.body]
    return "\n".join(lines)


def make_code_record(rng: random.Random) -> tuple[str, dict]:
    """One ShareGPT record asking for a small Python function."""
    task = rng.choice(CODE_TASKS)(rng)
    type_hints, docstring, example = rng.random() < 0.4, rng.random() < 0.4, rng.random() < 0.6
    signature = f"{task.name}({', '.join(arg for arg, _ in task.args)})"
    prompt = rng.choice([
        f"Write a Python function `{signature}` that {task.goal}.",
        f"Implement `{signature}` in Python. It {task.goal}.",
        f"I need a Python helper called `{task.name}` that {task.goal}.",
        f"Create a function {task.name} in Python which {task.goal}.",
        f"Python question: how do I write `{signature}` so that it {task.goal}?",
    ])
    extras = [text for flag, text in [(type_hints, "Add type hints."), (docstring, "Include a docstring."),
                                      (example, "Show an example call.")] if flag]
    if extras:
        prompt += " " + " ".join(extras)
    intro = rng.choice(["Here is one way to write it:", "Sure. Here is the function:",
                        "Here's a straightforward implementation:", "This version is short and easy to test:"])
    answer = f"{intro}\n\n```python\n{render_function(task, type_hints, docstring)}\n```\n\n{task.note}"
    if example:
        answer += f"\n\nExample:\n\n```python\n>>> {task.call}\n{task.result!r}\n```"
    conversations = [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]
    record: dict = {}
    placement = rng.random()
    if placement < 0.25:
        conversations.insert(0, {"from": "system", "value": rng.choice(CODE_SYSTEM_PROMPTS)})
        record["conversations"] = conversations
    elif placement < 0.4:
        record = {"conversations": conversations, "system_prompt": rng.choice(CODE_SYSTEM_PROMPTS)}
    else:
        record["conversations"] = conversations
    return prompt, record


# ---------------------------------------------------------------------------
# math: arithmetic and word problems -> worked answers (Alpaca)
# ---------------------------------------------------------------------------


def _money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}" if cents % 100 else f"${cents // 100}"


def problem_shopping(rng: random.Random) -> tuple[str, list[str], str]:
    name = rng.choice(NAMES)
    item_a, item_b = rng.sample(["notebook", "pen", "apple", "sandwich", "ticket", "candle", "mug", "plant"], 2)
    count_a, count_b = rng.randint(2, 9), rng.randint(2, 9)
    price_a, price_b = rng.randint(2, 40) * 25, rng.randint(2, 40) * 25
    cost_a, cost_b = count_a * price_a, count_b * price_b
    problem = (f"{name} buys {count_a} {item_a}s at {_money(price_a)} each and {count_b} {item_b}s at "
               f"{_money(price_b)} each. How much does {pronoun(name)} spend in total?")
    steps = [f"Cost of the {item_a}s: {count_a} × {_money(price_a)} = {_money(cost_a)}.",
             f"Cost of the {item_b}s: {count_b} × {_money(price_b)} = {_money(cost_b)}.",
             f"Total: {_money(cost_a)} + {_money(cost_b)} = {_money(cost_a + cost_b)}."]
    return problem, steps, _money(cost_a + cost_b)


def problem_distance(rng: random.Random) -> tuple[str, list[str], str]:
    vehicle = rng.choice(["car", "train", "bus", "cyclist", "boat", "truck"])
    speed, hours = rng.randint(3, 24) * 5, rng.randint(2, 9)
    if rng.random() < 0.5:
        problem = f"A {vehicle} travels at {speed} km/h for {hours} hours. How far does it go?"
        steps = ["Distance = speed × time.", f"Distance = {speed} km/h × {hours} h = {speed * hours} km."]
        return problem, steps, f"{speed * hours} km"
    problem = f"A {vehicle} covers {speed * hours} km at a steady {speed} km/h. How many hours does the trip take?"
    steps = ["Time = distance ÷ speed.", f"Time = {speed * hours} km ÷ {speed} km/h = {hours} h."]
    return problem, steps, f"{hours} hours"


def problem_percent(rng: random.Random) -> tuple[str, list[str], str]:
    percent = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 60, 75])
    if rng.random() < 0.5:
        whole = rng.randint(2, 60) * 20
        part = whole * percent // 100
        problem = f"What is {percent}% of {whole}?"
        steps = [f"{percent}% means {percent} ÷ 100 = {percent / 100:g}.", f"{percent / 100:g} × {whole} = {part}."]
        return problem, steps, str(part)
    item = rng.choice(["jacket", "lamp", "bicycle", "backpack", "chair", "pair of shoes"])
    price = rng.randint(2, 40) * 20
    discount = price * percent // 100
    problem = f"A {item} costs ${price}. It is on sale for {percent}% off. What is the sale price?"
    steps = [f"Discount: {percent}% of ${price} = {percent / 100:g} × {price} = ${discount}.",
             f"Sale price: ${price} - ${discount} = ${price - discount}."]
    return problem, steps, f"${price - discount}"


def problem_rectangle(rng: random.Random) -> tuple[str, list[str], str]:
    width, length = rng.randint(2, 30), rng.randint(2, 40)
    thing = rng.choice(["garden", "room", "field", "table top", "poster", "parking lot"])
    if rng.random() < 0.5:
        problem = f"A rectangular {thing} is {length} m long and {width} m wide. What is its area?"
        steps = ["Area of a rectangle = length × width.", f"Area = {length} × {width} = {length * width}."]
        return problem, steps, f"{length * width} square meters"
    perimeter = 2 * (length + width)
    problem = f"A rectangular {thing} is {length} m long and {width} m wide. What is its perimeter?"
    steps = ["Perimeter of a rectangle = 2 × (length + width).",
             f"Perimeter = 2 × ({length} + {width}) = 2 × {length + width} = {perimeter}."]
    return problem, steps, f"{perimeter} m"


def problem_sharing(rng: random.Random) -> tuple[str, list[str], str]:
    item = rng.choice(["cookies", "stickers", "marbles", "pencils", "cards", "grapes"])
    people = rng.randint(3, 9)
    total = people * rng.randint(3, 15) + rng.randint(0, people - 1)
    each, left = divmod(total, people)
    problem = (f"{total} {item} are shared equally among {people} friends. How many does each friend get, "
               "and how many are left over?")
    steps = [f"Divide: {total} ÷ {people} = {each} remainder {left}.",
             f"Check: {people} × {each} + {left} = {total}."]
    return problem, steps, f"each friend gets {each}, and {left} are left over"


def problem_linear(rng: random.Random) -> tuple[str, list[str], str]:
    a, x, b = rng.randint(2, 12), rng.randint(-10, 20), rng.randint(1, 50)
    c = a * x + b
    problem = f"Solve for x: {a}x + {b} = {c}."
    steps = [f"Subtract {b} from both sides: {a}x = {c} - {b} = {c - b}.",
             f"Divide both sides by {a}: x = {c - b} ÷ {a} = {x}.",
             f"Check: {a} × {x} + {b} = {c}."]
    return problem, steps, f"x = {x}"


def problem_order_of_operations(rng: random.Random) -> tuple[str, list[str], str]:
    a, b, c, d = rng.randint(2, 50), rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 30)
    problem = f"Compute {a} + {b} × {c} - {d}."
    steps = [f"Multiplication comes first: {b} × {c} = {b * c}.",
             f"Then add and subtract from left to right: {a} + {b * c} = {a + b * c}, and {a + b * c} - {d} = "
             f"{a + b * c - d}."]
    return problem, steps, str(a + b * c - d)


def problem_age(rng: random.Random) -> tuple[str, list[str], str]:
    name = rng.choice(NAMES)
    age, gap, years = rng.randint(10, 40), rng.randint(2, 9), rng.randint(2, 15)
    problem = (f"{name} is {age} years old. {pronoun(name).capitalize()} has a sister who is {gap} years younger. "
               f"How old will the sister be in {years} years?")
    steps = [f"The sister is now {age} - {gap} = {age - gap} years old.",
             f"In {years} years she will be {age - gap} + {years} = {age - gap + years}."]
    return problem, steps, f"{age - gap + years} years old"


def problem_mean(rng: random.Random) -> tuple[str, list[str], str]:
    count = rng.randint(3, 5)
    mean = rng.randint(50, 95)
    scores = _ints(rng, count - 1, 40, 100)
    last = mean * count - sum(scores)
    if not 0 <= last <= 100:
        last = rng.randint(40, 100)
    scores.append(last)
    total = sum(scores)
    problem = f"The test scores are {', '.join(map(str, scores))}. What is the mean score?"
    mean_text = f"{total / count:.2f}".rstrip("0").rstrip(".")
    steps = [f"Sum: {' + '.join(map(str, scores))} = {total}.", f"Mean = {total} ÷ {count} = {mean_text}."]
    return problem, steps, mean_text


def problem_fraction(rng: random.Random) -> tuple[str, list[str], str]:
    name = rng.choice(NAMES)
    den = rng.randint(2, 8)
    num = rng.randint(1, den - 1)
    total = den * rng.randint(2, 12)
    item = rng.choice(["marbles", "stamps", "coins", "shells", "books", "beads"])
    given = total // den * num
    problem = f"{name} has {total} {item} and gives away {num}/{den} of them. How many are left?"
    steps = [f"One part: {total} ÷ {den} = {total // den}.", f"{num}/{den} of {total} = {num} × {total // den} = {given}.",
             f"Left: {total} - {given} = {total - given}."]
    return problem, steps, f"{total - given} {item}"


def problem_minutes(rng: random.Random) -> tuple[str, list[str], str]:
    hours, minutes = rng.randint(1, 9), rng.randint(1, 59)
    problem = f"How many minutes are there in {hours} hours and {minutes} minutes?"
    steps = [f"{hours} hours = {hours} × 60 = {hours * 60} minutes.",
             f"Add the extra minutes: {hours * 60} + {minutes} = {hours * 60 + minutes}."]
    return problem, steps, f"{hours * 60 + minutes} minutes"


def problem_savings(rng: random.Random) -> tuple[str, list[str], str]:
    name = rng.choice(NAMES)
    weekly = rng.randint(3, 25) * 2
    goal = weekly * rng.randint(4, 20) + rng.choice([0, rng.randint(1, weekly - 1)])
    weeks = -(-goal // weekly)
    problem = f"{name} saves ${weekly} every week. How many weeks does it take to save at least ${goal}?"
    steps = [f"{goal} ÷ {weekly} = {goal // weekly} remainder {goal % weekly}."]
    if goal % weekly:
        steps.append(f"After {goal // weekly} weeks {pronoun(name)} has ${goal // weekly * weekly}, which is not "
                     f"enough, so one more week is needed: {weeks} weeks.")
    else:
        steps.append(f"The division is exact, so {weeks} weeks give exactly ${goal}.")
    return problem, steps, f"{weeks} weeks"


MATH_PROBLEMS: list[Callable[[random.Random], tuple[str, list[str], str]]] = [
    problem_shopping, problem_distance, problem_percent, problem_rectangle, problem_sharing, problem_linear,
    problem_order_of_operations, problem_age, problem_mean, problem_fraction, problem_minutes, problem_savings,
]
MATH_INSTRUCTIONS = [
    "Solve the following math problem. Show your steps.",
    "Answer the question step by step.",
    "Work out the answer and explain each calculation.",
    "Solve this problem.",
]


def make_math_record(rng: random.Random) -> tuple[str, dict]:
    """One Alpaca record: a problem (in the instruction or in the input) and a worked answer."""
    problem, steps, answer = rng.choice(MATH_PROBLEMS)(rng)
    if rng.random() < 0.5:
        output = "\n".join(f"Step {i}: {step}" for i, step in enumerate(steps, 1)) + f"\nAnswer: {answer}"
    else:
        output = " ".join(steps) + f" So the answer is {answer}."
    if rng.random() < 0.6:
        record = {"instruction": rng.choice(MATH_INSTRUCTIONS), "input": problem, "output": output}
    else:
        record = {"instruction": problem, "input": "", "output": output}
    return problem, record


# ---------------------------------------------------------------------------
# explain: short explanations of concepts from a fact table (OpenAI messages)
# ---------------------------------------------------------------------------


@dataclass
class Concept:
    """One fact-table row: `{name} is {definition}.` plus how it works, an example and why it matters."""

    name: str
    field: str
    definition: str
    mechanism: str
    example: str
    importance: str


CONCEPTS = [
    Concept("photosynthesis", "biology", "the process by which plants, algae and some bacteria turn light into chemical energy",
            "Chlorophyll in the leaves absorbs sunlight, and that energy joins carbon dioxide and water into sugar, releasing oxygen.",
            "A sunflower growing taller through the summer is building its stem from sugar made this way.",
            "Almost every food chain on Earth starts with it, and it produces the oxygen we breathe."),
    Concept("evolution", "biology", "the change in the inherited traits of living populations over many generations",
            "Individuals vary, some variations help survival and reproduction, and those traits become more common.",
            "Bacteria that survive an antibiotic pass their resistance on, so the whole population becomes resistant.",
            "It explains both the variety of life and why all organisms share a common chemistry."),
    Concept("the immune system", "biology", "the body's network of cells and organs that defends it against infection",
            "White blood cells recognise foreign molecules, attack invaders and remember them for next time.",
            "After chickenpox, the body usually recognises the virus quickly and you do not get sick from it again.",
            "Without it, even a small cut or a common cold could become life-threatening."),
    Concept("DNA", "biology", "the molecule that stores the genetic instructions of living things",
            "Its two strands carry a sequence of four bases, and cells read that sequence to build proteins.",
            "Children resemble their parents because each parent passes on half of their DNA.",
            "It lets traits be inherited and makes tools like genetic testing possible."),
    Concept("an ecosystem", "biology", "a community of living things together with the physical environment they share",
            "Energy flows from plants to the animals that eat them, and nutrients are recycled by decomposers.",
            "A pond holds algae, insects, frogs, fish and bacteria that all depend on one another.",
            "Healthy ecosystems clean water, pollinate crops and keep soil fertile."),
    Concept("metabolism", "biology", "the set of chemical reactions that keep a living body running",
            "Some reactions break food down to release energy, and others use that energy to build and repair tissue.",
            "Your body keeps burning energy while you sleep, just to keep your heart beating and your brain working.",
            "It sets how much energy a body needs and how it uses nutrients."),
    Concept("a vaccine", "biology", "a preparation that trains the immune system to recognise a germ without causing the disease",
            "It shows the body a harmless piece or weakened form of the germ, so immune memory forms in advance.",
            "The measles vaccine protects most people for life after two doses.",
            "Vaccines have made diseases like smallpox disappear and saved millions of lives."),
    Concept("gravity", "physics", "the force of attraction between any two objects that have mass",
            "The more mass objects have and the closer they are, the stronger they pull on each other.",
            "A dropped ball falls to the ground because the Earth pulls it down.",
            "It holds planets in orbit and keeps our atmosphere attached to the Earth."),
    Concept("friction", "physics", "the force that resists two surfaces sliding against each other",
            "Tiny bumps on the surfaces catch on each other, turning motion into heat.",
            "Rubbing your hands together on a cold day warms them because of friction.",
            "It lets us walk without slipping and lets brakes stop a car."),
    Concept("inertia", "physics", "the tendency of an object to keep doing what it is doing unless a force acts on it",
            "A resting object stays at rest and a moving object keeps moving in a straight line at the same speed.",
            "When a bus brakes suddenly, passengers lurch forward because their bodies keep moving.",
            "It is the reason seat belts are needed and is the heart of Newton's first law."),
    Concept("electric current", "physics", "the flow of electric charge through a material",
            "A voltage pushes electrons along a wire, and the current is how much charge passes a point each second.",
            "Turning on a lamp closes a circuit so current can flow through the bulb.",
            "Nearly every modern device depends on controlling current."),
    Concept("a wave", "physics", "a disturbance that carries energy from place to place without carrying matter along",
            "Each part of the medium moves back and forth and passes the motion on to its neighbour.",
            "In a stadium wave, people stand and sit in turn while nobody leaves their seat.",
            "Sound, light and radio signals all travel as waves."),
    Concept("energy conservation", "physics", "the principle that energy cannot be created or destroyed, only changed from one form to another",
            "When something seems to lose energy, that energy has moved elsewhere, often as heat.",
            "A swinging pendulum trades height for speed and back again, slowly losing a little to air resistance.",
            "It lets engineers track exactly where the energy in a machine goes."),
    Concept("magnetism", "physics", "the force produced by moving electric charges that attracts or repels certain materials",
            "In a magnet, countless tiny atomic magnets line up so their effects add together.",
            "A compass needle points north because it lines up with the Earth's magnetic field.",
            "Electric motors, generators and hard drives all rely on it."),
    Concept("an atom", "chemistry", "the smallest unit of a chemical element",
            "A tiny, dense nucleus of protons and neutrons is surrounded by a cloud of electrons.",
            "A single grain of salt contains more than a billion billion atoms.",
            "Every material is built from atoms, so their structure explains chemistry."),
    Concept("a chemical reaction", "chemistry", "a process in which substances change into new substances",
            "Bonds between atoms break and new bonds form, often giving off or taking in energy.",
            "When iron rusts, it reacts slowly with oxygen and water to form iron oxide.",
            "Cooking, burning fuel and digestion are all chemical reactions."),
    Concept("an acid", "chemistry", "a substance that releases hydrogen ions when dissolved in water",
            "The more hydrogen ions it releases, the lower the pH and the stronger the acid.",
            "Lemon juice tastes sour because it contains citric acid.",
            "Acids matter in digestion, in batteries and in keeping soil healthy."),
    Concept("a catalyst", "chemistry", "a substance that speeds up a chemical reaction without being used up",
            "It offers an easier path for the reaction, lowering the energy needed to get it started.",
            "A car's catalytic converter turns harmful exhaust gases into less harmful ones.",
            "Most industrial chemistry and every living cell depend on catalysts."),
    Concept("diffusion", "chemistry", "the spreading of particles from where they are crowded to where they are sparse",
            "Particles move randomly, so on average more of them wander out of a crowded area than into it.",
            "The smell of fresh bread slowly fills a whole house.",
            "It moves oxygen from the lungs into the blood."),
    Concept("a solution", "chemistry", "a mixture in which one substance is evenly dissolved in another",
            "Molecules of the dissolved substance spread out between the molecules of the liquid.",
            "Stirring sugar into tea makes a solution, and the sugar seems to disappear.",
            "Most chemistry in the body happens in watery solutions."),
    Concept("erosion", "earth science", "the wearing away of rock and soil by water, wind or ice",
            "Moving water or wind picks up loose particles and carries them somewhere else.",
            "The Grand Canyon was carved by the Colorado River over millions of years.",
            "It shapes landscapes and can strip farmland of its fertile soil."),
    Concept("a volcano", "earth science", "an opening in the Earth's crust where molten rock, gas and ash escape",
            "Magma rises because it is lighter than the surrounding rock, and pressure builds until it erupts.",
            "Mount Fuji in Japan is a volcano built up by many eruptions.",
            "Volcanoes create new land and fertile soil, but eruptions can be deadly."),
    Concept("the water cycle", "earth science", "the continuous movement of water between the oceans, the air and the land",
            "Water evaporates, condenses into clouds, falls as rain or snow and flows back to the sea.",
            "A puddle that vanishes on a sunny afternoon has evaporated into the air.",
            "It delivers the fresh water that plants, animals and people need."),
    Concept("plate tectonics", "earth science", "the theory that the Earth's outer shell is split into large plates that slowly move",
            "Heat from deep inside the Earth drives currents in the mantle that push and pull the plates.",
            "The Himalayas are still rising because the Indian plate pushes into the Eurasian plate.",
            "It explains earthquakes, volcanoes and the shapes of continents."),
    Concept("climate", "earth science", "the average pattern of weather in a place over many years",
            "It depends on latitude, ocean currents, altitude and the makeup of the atmosphere.",
            "A single cold day does not change the fact that a desert has a hot climate.",
            "Farming, housing and water supply are planned around it."),
    Concept("the greenhouse effect", "earth science", "the warming of a planet's surface by gases in its atmosphere that trap heat",
            "Sunlight warms the ground, and gases like carbon dioxide absorb some of the heat it gives off.",
            "A car parked in the sun gets hot inside for a similar reason.",
            "Without it Earth would be frozen, but adding more of these gases warms the climate."),
    Concept("inflation", "economics", "a general rise in prices over time, which means money buys less",
            "When spending grows faster than the supply of goods, or costs rise, sellers raise prices.",
            "If bread costs $2 this year and $2.10 next year, prices rose by 5%.",
            "It erodes savings, so central banks try to keep it low and steady."),
    Concept("supply and demand", "economics", "the idea that prices settle where the amount sellers offer matches the amount buyers want",
            "If buyers want more than is available the price rises, and if there is too much the price falls.",
            "Concert tickets for a popular band sell out and resell for more than their face value.",
            "It explains how markets set most prices without anyone planning them."),
    Concept("interest", "economics", "the price paid for borrowing money, usually a percentage of the amount borrowed",
            "A lender charges a rate per year, and compound interest also charges interest on past interest.",
            "A savings account paying 3% a year turns $100 into $103 after one year.",
            "It rewards saving and makes borrowing costly, which shapes spending and investment."),
    Concept("opportunity cost", "economics", "the value of the best alternative you give up when you make a choice",
            "Every choice uses limited time or money that could have gone somewhere else.",
            "An evening spent watching a film costs the evening you could have spent studying.",
            "It reminds us that nothing is truly free, even when no money changes hands."),
    Concept("a budget", "economics", "a plan that lists expected income and spending over a period",
            "You write down what comes in, decide what goes out, and compare the plan with what really happens.",
            "A family might plan to spend $400 a month on food and track receipts to check.",
            "It helps people and governments avoid spending more than they have."),
    Concept("taxation", "economics", "the way governments collect money from people and businesses to pay for public services",
            "Taxes are charged on things like income, purchases and property, at rates set by law.",
            "Sales tax is added to the price at the checkout.",
            "It funds roads, schools and hospitals."),
    Concept("a black hole", "astronomy", "a region of space where gravity is so strong that nothing, not even light, can escape",
            "When a very massive star collapses, its matter is squeezed into a tiny space.",
            "Astronomers photographed the shadow of the black hole at the centre of the galaxy M87 in 2019.",
            "Black holes test our theories of gravity at their limits."),
    Concept("a star", "astronomy", "a huge ball of hot gas that shines by nuclear fusion in its core",
            "Gravity squeezes hydrogen in the core until its nuclei fuse into helium, releasing energy.",
            "The Sun is a medium-sized star about 150 million kilometres away.",
            "Stars make most of the chemical elements, including those in our bodies."),
    Concept("an orbit", "astronomy", "the curved path an object follows around another object because of gravity",
            "The object moves sideways fast enough that it keeps falling around the other body instead of into it.",
            "The Moon orbits the Earth about once every 27 days.",
            "Satellites for weather, GPS and phone calls all depend on stable orbits."),
    Concept("a galaxy", "astronomy", "a vast system of stars, gas and dust held together by gravity",
            "Its stars orbit a shared centre, often around a supermassive black hole.",
            "Our Milky Way galaxy contains hundreds of billions of stars.",
            "Galaxies are the basic building blocks of the large-scale universe."),
    Concept("the Big Bang", "astronomy", "the theory that the universe began in an extremely hot, dense state and has been expanding ever since",
            "As space expanded it cooled, letting atoms, stars and galaxies form.",
            "Distant galaxies move away from us, and faint leftover heat fills the whole sky.",
            "It is the best explanation of where the universe came from."),
    Concept("a comet", "astronomy", "a small icy body that grows a glowing tail when it comes near the Sun",
            "Sunlight heats its ice, which turns to gas and streams away carrying dust.",
            "Halley's Comet returns to the inner solar system about every 76 years.",
            "Comets preserve material from the early solar system."),
    Concept("an algorithm", "computing", "a precise, step-by-step procedure for solving a problem",
            "Each step is clear enough that a person or a computer can follow it without guessing.",
            "A recipe that says exactly what to mix and for how long is an everyday algorithm.",
            "Every computer program is built from algorithms."),
    Concept("encryption", "computing", "the scrambling of information so that only someone with the right key can read it",
            "A mathematical procedure mixes the message with a secret key, and the key reverses it.",
            "The padlock icon in a web browser means the page travels encrypted.",
            "It protects passwords, payments and private messages."),
    Concept("the internet", "computing", "a worldwide network of computer networks that exchange data using shared rules",
            "Data is cut into small packets that travel separately and are put back together at the end.",
            "Loading a web page fetches data from a server that may be on another continent.",
            "It connects billions of people and devices."),
    Concept("machine learning", "computing", "a way of building computer systems that learn patterns from examples instead of following hand-written rules",
            "A model makes predictions, measures its errors on example data and adjusts itself to reduce them.",
            "An email filter learns to spot spam from thousands of messages people marked as spam.",
            "It powers translation, speech recognition and recommendations."),
    Concept("a database", "computing", "an organised collection of information that a computer can search and update quickly",
            "Data is kept in structured tables or documents, with indexes that work like a book's index.",
            "A library catalogue lets you find a book by title, author or subject in seconds.",
            "Banks, shops and hospitals keep their records in databases."),
    Concept("democracy", "civics", "a system of government in which citizens hold power, usually by voting",
            "People elect representatives, and regular elections let them replace leaders peacefully.",
            "In a national election, each adult citizen can vote for a candidate or party.",
            "It gives people a say in the laws they live under."),
    Concept("the separation of powers", "civics", "the division of government into branches that make, carry out and judge the law",
            "Each branch can check the others, so no single group holds all the power.",
            "A court can strike down a law that the legislature passed if it breaks the constitution.",
            "It guards against abuse of power."),
    Concept("a constitution", "civics", "the basic set of rules that says how a country is governed",
            "It sets up the institutions of government, limits their powers and lists citizens' rights.",
            "The constitution of the United States was written in 1787.",
            "Ordinary laws must follow it, which makes government predictable."),
    Concept("human rights", "civics", "the basic freedoms and protections that belong to every person",
            "They are written into declarations, treaties and national laws that governments agree to respect.",
            "Freedom of speech lets people criticise their government without fear of prison.",
            "They set a minimum standard for how every person must be treated."),
]
AUDIENCES = {
    "": "",
    " to a ten-year-old": "Imagine it like this: ",
    " to a beginner": "In simple terms, ",
    " for a high school student": "",
    " in plain language": "Put simply, ",
    " to someone who has never studied it": "Here is the basic idea: ",
}
EXPLAIN_SYSTEM_PROMPTS = [
    "You are a patient teacher who explains ideas clearly and briefly.",
    "You are a helpful assistant. Keep explanations short and accurate.",
    "You explain science and society to curious readers without jargon.",
]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def explain_prompt_and_answer(rng: random.Random) -> tuple[str, str]:
    """A question about one concept (or two from the same field) and its answer from the fact table."""
    concept = rng.choice(CONCEPTS)
    audience = rng.choice(list(AUDIENCES))
    opener = AUDIENCES[audience]
    lead = opener + concept.name if opener else _sentence(concept.name)
    kind = rng.randrange(6)
    if kind == 0:
        prompt = f"Explain what {concept.name} is{audience}."
        answer = f"{lead} is {concept.definition}. {concept.mechanism} {concept.example}"
    elif kind == 1:
        prompt = f"What is {concept.name}? Answer in one sentence{audience}."
        answer = f"{lead} is {concept.definition}."
    elif kind == 2:
        prompt = f"How does {concept.name} work? Explain it{audience}."
        answer = f"{concept.mechanism} An example: {concept.example}"
    elif kind == 3:
        prompt = f"Why does {concept.name} matter? Explain{audience}."
        answer = f"{lead} is {concept.definition}. {concept.importance}"
    elif kind == 4:
        prompt = f"Give me an everyday example of {concept.name} and explain it{audience}."
        answer = f"{concept.example} This shows {concept.name}, which is {concept.definition}."
    else:
        other = rng.choice([c for c in CONCEPTS if c.field == concept.field and c.name != concept.name])
        prompt = f"What is the difference between {concept.name} and {other.name}? Explain{audience}."
        answer = (f"{lead} is {concept.definition}. By contrast, {other.name} is {other.definition}. "
                  f"Example of {concept.name}: {concept.example} Example of {other.name}: {other.example}")
    return prompt, answer


def make_explain_record(rng: random.Random) -> tuple[str, dict]:
    """One OpenAI-messages record explaining a concept, sometimes with a system message."""
    prompt, answer = explain_prompt_and_answer(rng)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if rng.random() < 0.3:
        messages.insert(0, {"role": "system", "content": rng.choice(EXPLAIN_SYSTEM_PROMPTS)})
    return prompt, {"messages": messages}


# ---------------------------------------------------------------------------
# reasoning: logic puzzles -> step-by-step answers (ShareGPT, ~20% two-turn)
# ---------------------------------------------------------------------------


@dataclass
class Puzzle:
    """A puzzle, its step-by-step answer, and a follow-up question with its answer."""

    prompt: str
    answer: str
    follow_up: str
    follow_up_answer: str


COMPARISONS = [  # (more, less, most, least)
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
]


def puzzle_ordering(rng: random.Random) -> Puzzle:
    more, less, most, least = rng.choice(COMPARISONS)
    order = rng.sample(NAMES, rng.randint(3, 5))  # order[0] has the most
    facts = []
    for high, low in zip(order, order[1:]):
        facts.append((f"{high} is {more} than {low}", high, low) if rng.random() < 0.5
                     else (f"{low} is {less} than {high}", high, low))
    rng.shuffle(facts)
    ask_most = rng.random() < 0.5
    prompt = (". ".join(text for text, _, _ in facts) + f". Who is the {most if ask_most else least}?")
    steps = [f"Step {i}: \"{text}\" means {high} > {low}." for i, (text, high, low) in enumerate(facts, 1)]
    chain = " > ".join(order)
    steps.append(f"Step {len(facts) + 1}: Linking the steps gives one chain, from {most} to {least}: {chain}.")
    answer = "\n".join([f"Let's write every statement as \"X > Y\", meaning X is {more} than Y.", *steps,
                        f"Therefore {order[0] if ask_most else order[-1]} is the {most if ask_most else least}."])
    if len(order) % 2 == 1 and rng.random() < 0.5:
        middle = order[len(order) // 2]
        return Puzzle(prompt, answer, "Who is in the middle?",
                      f"The chain {chain} has {len(order)} people, so the middle one is number {len(order) // 2 + 1}: "
                      f"{middle}.")
    return Puzzle(prompt, answer, f"Now list everyone from {least} to {most}.",
                  f"Reversing the chain {chain} gives: {', '.join(reversed(order))}.")


NONSENSE_TERMS = ["glorps", "blickets", "wumps", "daxes", "feps", "tovs", "zorbs", "mimsies", "snarks", "grolls",
                  "vexes", "lumes", "pradles", "quins"]
SYLLOGISMS = [  # (premises, question, verdict, explanation, rule name); A, B, C are filled in
    ("All {A} are {B}. All {B} are {C}.", "Are all {A} {C}?", "Yes, it follows necessarily.",
     "Every {A} is inside the group of {B}, and every {B} is inside the group of {C}. So every {A} is inside {C}.",
     "a categorical syllogism in the form called Barbara"),
    ("All {A} are {B}. All {C} are {B}.", "Are all {A} {C}?", "No, it does not follow.",
     "Both {A} and {C} are inside {B}, but they could be separate parts of {B}. Nothing links {A} to {C} directly.",
     "the fallacy of the undistributed middle"),
    ("No {A} are {B}. All {C} are {A}.", "Is any {C} a {B_one}?", "No. It follows necessarily that no {C} is a {B_one}.",
     "Every {C} is one of the {A}, and no {A} is a {B_one}. So no {C} can be a {B_one}.",
     "a categorical syllogism in the form called Celarent"),
    ("All {A} are {B}. Some {C} are {A}.", "Are some {C} {B}?", "Yes, it follows necessarily.",
     "The {C} that are {A} are also {B}, because all {A} are {B}. So at least some {C} are {B}.",
     "a categorical syllogism in the form called Darii"),
    ("Some {A} are {B}. Some {B} are {C}.", "Must some {A} be {C}?", "No, it does not follow.",
     "The {B} that are {A} might be different {B} from the ones that are {C}. The premises allow no overlap.",
     "an invalid syllogism: two particular premises prove nothing"),
    ("All {A} are {B}.", "Does it follow that all {B} are {A}?", "No, it does not follow.",
     "The group of {B} may be larger and contain things that are not {A}. The statement only goes one way.",
     "the fallacy of illicit conversion"),
]


def puzzle_syllogism(rng: random.Random) -> Puzzle:
    a, b, c = rng.sample(NONSENSE_TERMS, 3)
    premises, question, verdict, explanation, rule = rng.choice(SYLLOGISMS)
    terms = {"A": a, "B": b, "C": c, "B_one": b[:-2] if b.endswith("xes") else b[:-1]}
    premises, question, verdict, explanation = (
        text.format(**terms) for text in (premises, question, verdict, explanation))
    prompt = f"Premises: {premises} Question: {question} Explain your reasoning."
    answer = (f"Let's check whether the conclusion is forced by the premises.\n{explanation}\n"
              f"Therefore: {verdict}")
    if rng.random() < 0.5:
        return Puzzle(prompt, answer, "What is this pattern of reasoning called?", f"It is {rule}.")
    return Puzzle(prompt, answer, "Would the answer change if we used real words instead of made-up ones?",
                  "No. Whether a conclusion follows depends only on the form of the argument, not on what the "
                  f"words mean. The same reasoning applies to any three groups in place of {a}, {b} and {c}.")


CONDITIONALS = [  # (P, not P, Q, not Q)
    ("it rains", "it does not rain", "the street gets wet", "the street does not get wet"),
    ("the alarm rings", "the alarm does not ring", "Sam wakes up", "Sam does not wake up"),
    ("the store is open", "the store is closed", "the lights are on", "the lights are off"),
    ("the password is correct", "the password is wrong", "the door unlocks", "the door stays locked"),
    ("the team wins", "the team does not win", "the fans celebrate", "the fans do not celebrate"),
    ("the kettle is switched on", "the kettle is not switched on", "the water boils", "the water does not boil"),
    ("Mia studies", "Mia does not study", "Mia passes the test", "Mia does not pass the test"),
]
CONDITIONAL_FORMS = [  # (which fact we learn, conclusion template, rule name)
    ("P", "Therefore {Q}.", "modus ponens (affirming the antecedent)"),
    ("not Q", "Therefore {not_P}.", "modus tollens (denying the consequent)"),
    ("Q", "We cannot conclude anything about whether {P}, because \"{Q}\" could have another cause.",
     "the fallacy of affirming the consequent"),
    ("not P", "We cannot conclude that {not_Q}, because \"{Q}\" could still be true for another reason.",
     "the fallacy of denying the antecedent"),
]


def puzzle_conditional(rng: random.Random) -> Puzzle:
    p, not_p, q, not_q = rng.choice(CONDITIONALS)
    fact_key, conclusion, rule = rng.choice(CONDITIONAL_FORMS)
    fact = {"P": p, "not P": not_p, "Q": q, "not Q": not_q}[fact_key]
    prompt = f"Rule: if {p}, then {q}. Fact: {fact}. What can we conclude?"
    step = {
        "P": f"The rule says {p} is enough for {q}, and the fact tells us {p}.",
        "not Q": f"If {p} were true, the rule would force {q}. But {not_q}, so {p} cannot be true.",
        "Q": f"The rule only says what happens when {p}. It does not say that \"{p}\" is the only cause of \"{q}\".",
        "not P": f"The rule says nothing about what happens when {not_p}.",
    }[fact_key]
    text = conclusion.format(Q=q, not_P=not_p, P=p, not_Q=not_q)
    answer = f"Step 1: Restate the rule: {p} → {q}.\nStep 2: {step}\nConclusion: {text[0].upper()}{text[1:]}"
    return Puzzle(prompt, answer, "What is the name of this kind of inference?", f"This is {rule}.")


def _relative(name: str, female: str, male: str) -> str:
    return female if name in SHE else male


def puzzle_family(rng: random.Random) -> Puzzle:
    a, b, c = rng.sample(NAMES, 3)
    kind = rng.randrange(3)
    if kind == 0:
        prompt = (f"{a} is the {_relative(a, 'mother', 'father')} of {b}. {b} is the "
                  f"{_relative(b, 'mother', 'father')} of {c}. What is {a} to {c}?")
        relation = _relative(a, "grandmother", "grandfather")
        steps = [f"{a} is a parent of {b}.", f"{b} is a parent of {c}.",
                 f"A parent's parent is a grandparent, so {a} is {c}'s {relation}."]
        reverse = f"{c} is {a}'s {_relative(c, 'granddaughter', 'grandson')}."
    elif kind == 1:
        prompt = (f"{a} is the {_relative(a, 'sister', 'brother')} of {b}. {b} is the "
                  f"{_relative(b, 'mother', 'father')} of {c}. What is {a} to {c}?")
        relation = _relative(a, "aunt", "uncle")
        steps = [f"{a} and {b} are siblings.", f"{b} is a parent of {c}.",
                 f"A parent's sibling is an aunt or uncle, so {a} is {c}'s {relation}."]
        reverse = f"{c} is {a}'s {_relative(c, 'niece', 'nephew')}."
    else:
        prompt = (f"{a} is the {_relative(a, 'mother', 'father')} of {b}. {a} is also the "
                  f"{_relative(a, 'mother', 'father')} of {c}. What is {b} to {c}?")
        relation = _relative(b, "sister", "brother")
        steps = [f"{a} is a parent of both {b} and {c}.", "Two children of the same parent are siblings.",
                 f"So {b} is {c}'s {relation}."]
        reverse = f"{c} is {b}'s {_relative(c, 'sister', 'brother')}."
        a = b  # the follow-up asks about the pair (b, c)
    answer = "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1)) + f"\nTherefore the answer is: {relation}."
    return Puzzle(prompt, answer, f"And what is {c} to {a}?", f"Turning the relation around: {reverse}")


DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def puzzle_weekday(rng: random.Random) -> Puzzle:
    today, offset = rng.randrange(7), rng.randint(8, 100)
    weeks, extra = divmod(offset, 7)
    prompt = f"Today is {DAYS[today]}. What day of the week will it be in {offset} days?"
    answer = (f"Step 1: A week has 7 days, so every 7 days the weekday repeats.\n"
              f"Step 2: {offset} = {weeks} × 7 + {extra}, so only the {extra} extra days matter.\n"
              f"Step 3: Counting {extra} days forward from {DAYS[today]} lands on {DAYS[(today + extra) % 7]}.\n"
              f"Therefore it will be {DAYS[(today + extra) % 7]}.")
    follow_up_answer = (f"Counting {extra} days backward from {DAYS[today]} lands on {DAYS[(today - extra) % 7]}, "
                        f"so {offset} days ago it was {DAYS[(today - extra) % 7]}.")
    return Puzzle(prompt, answer, f"And what day was it {offset} days ago?", follow_up_answer)


KNIGHT_CLAIMS = [  # (claim text with {me}/{other}, truth as a function of (speaker is knight, other is knight))
    ("{other} is a knave.", lambda me, other: not other),
    ("{other} is a knight.", lambda me, other: other),
    ("We are both knights.", lambda me, other: me and other),
    ("We are both knaves.", lambda me, other: not me and not other),
    ("At least one of us is a knave.", lambda me, other: not (me and other)),
    ("We are the same kind.", lambda me, other: me == other),
    ("We are different kinds.", lambda me, other: me != other),
]


def _kind(is_knight: bool) -> str:
    return "a knight" if is_knight else "a knave"


def puzzle_knights(rng: random.Random) -> Puzzle:
    first, second = rng.sample(NAMES, 2)
    while True:
        (text_1, claim_1), (text_2, claim_2) = rng.choice(KNIGHT_CLAIMS), rng.choice(KNIGHT_CLAIMS)
        cases = [(k1, k2) for k1 in (True, False) for k2 in (True, False)]
        consistent = [(k1, k2) for k1, k2 in cases if claim_1(k1, k2) == k1 and claim_2(k2, k1) == k2]
        if len(consistent) == 1:
            break
    said_1, said_2 = text_1.format(other=second), text_2.format(other=first)
    prompt = (f"On an island, knights always tell the truth and knaves always lie. {first} says: \"{said_1}\" "
              f"{second} says: \"{said_2}\" What is each of them?")
    lines = ["Let's test all four cases."]
    for k1, k2 in cases:
        label = f"{first} {_kind(k1)}, {second} {_kind(k2)}"
        if claim_1(k1, k2) != k1:
            lines.append(f"- {label}: {first}'s claim would be {'false' if k1 else 'true'}, but {first} is "
                         f"{_kind(k1)}. Impossible.")
        elif claim_2(k2, k1) != k2:
            lines.append(f"- {label}: {second}'s claim would be {'false' if k2 else 'true'}, but {second} is "
                         f"{_kind(k2)}. Impossible.")
        else:
            lines.append(f"- {label}: both statements fit. Consistent.")
    (k1, k2), = consistent
    lines.append(f"Therefore {first} is {_kind(k1)} and {second} is {_kind(k2)}.")
    both_knights = "could" if (True, True) in consistent else "could not"
    reason = "that case is the only consistent one" if both_knights == "could" else "that case led to a contradiction"
    return Puzzle(prompt, "\n".join(lines), "Could both of them be knights?",
                  f"No, {reason}." if both_knights == "could not" else f"Yes, {reason}.")


REASONING_PUZZLES: list[Callable[[random.Random], Puzzle]] = [
    puzzle_ordering, puzzle_syllogism, puzzle_conditional, puzzle_family, puzzle_weekday, puzzle_knights,
]
REASONING_SYSTEM_PROMPTS = [
    "You are a logical assistant. Reason step by step before answering.",
    "Solve logic puzzles carefully and state each inference.",
]


def make_reasoning_record(rng: random.Random) -> tuple[str, dict]:
    """One ShareGPT record with a logic puzzle; about one in five continues with a follow-up turn."""
    puzzle = rng.choice(REASONING_PUZZLES)(rng)
    conversations = [{"from": "human", "value": puzzle.prompt}, {"from": "gpt", "value": puzzle.answer}]
    if rng.random() < 0.2:
        conversations += [{"from": "human", "value": puzzle.follow_up}, {"from": "gpt", "value": puzzle.follow_up_answer}]
    if rng.random() < 0.15:
        conversations.insert(0, {"from": "system", "value": rng.choice(REASONING_SYSTEM_PROMPTS)})
    return puzzle.prompt, {"conversations": conversations}


# ---------------------------------------------------------------------------
# writing the files
# ---------------------------------------------------------------------------

DATASETS: dict[str, Callable[[random.Random], tuple[str, dict]]] = {
    "code": make_code_record,
    "math": make_math_record,
    "explain": make_explain_record,
    "reasoning": make_reasoning_record,
}
"""Dataset name -> function drawing one (first user prompt, record) pair."""


def draw_unique_records(make_record: Callable[[random.Random], tuple[str, dict]], rng: random.Random,
                        count: int) -> list[dict]:
    """Draw records until `count` of them have distinct first prompts (later repeats are dropped)."""
    records: list[dict] = []
    prompts: set[str] = set()
    for _ in range(50 * count):
        prompt, record = make_record(rng)
        if prompt not in prompts:
            prompts.add(prompt)
            records.append(record)
            if len(records) == count:
                return records
    raise RuntimeError(f"only {len(records)} distinct prompts after {50 * count} draws; the templates are too few")


def to_jsonl(records: list[dict]) -> bytes:
    """One JSON object per line, UTF-8, keys in insertion order, '\\n' line ends."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def generate(out_dir: Path | str = DEFAULT_OUT) -> dict[str, dict[str, int]]:
    """Write every demo dataset under `out_dir`; returns {name: {train_records, dev_records, train_bytes, dev_bytes}}.

    The first TRAIN_RECORDS distinct-prompt records go to train, the next DEV_RECORDS to dev,
    so no dev prompt appears in train.
    """
    out_dir = Path(out_dir)
    summary = {}
    for name, make_record in DATASETS.items():
        rng = random.Random(f"{SEED}-{name}")
        records = draw_unique_records(make_record, rng, TRAIN_RECORDS + DEV_RECORDS)
        train, dev = to_jsonl(records[:TRAIN_RECORDS]), to_jsonl(records[TRAIN_RECORDS:])
        train_path = out_dir / "train" / name / "part-000.jsonl"
        dev_path = out_dir / "dev" / f"{name}.jsonl"
        for path, payload in ((train_path, train), (dev_path, dev)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        summary[name] = {"train_records": TRAIN_RECORDS, "dev_records": DEV_RECORDS,
                         "train_bytes": len(train), "dev_bytes": len(dev)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: data/demo)")
    summary = generate(parser.parse_args().out)
    print(f"{'dataset':<10} {'train':>6} {'dev':>4} {'train bytes':>12} {'dev bytes':>10}")
    for name, row in summary.items():
        print(f"{name:<10} {row['train_records']:>6} {row['dev_records']:>4} {row['train_bytes']:>12,} "
              f"{row['dev_bytes']:>10,}")
    total = sum(row["train_bytes"] + row["dev_bytes"] for row in summary.values())
    print(f"total {total:,} bytes")


if __name__ == "__main__":
    main()
