"""The `code` dataset: "write a Python function that ..." requests with fenced-code answers (ShareGPT).

Each task draws its parameters, writes the function, and states one example call with the
value that call returns (computed here, in plain Python, from the same parameters).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


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
        ["totals = []", "total = 0", "for n in numbers:", "    total += n", "    totals.append(total)",
         "return totals"],
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


def make_record(rng: random.Random) -> tuple[str, dict]:
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
