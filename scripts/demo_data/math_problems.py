"""The `math` dataset: arithmetic and word problems with worked answers (Alpaca records)."""

from __future__ import annotations

import random
from collections.abc import Callable

from scripts.demo_data.people import NAMES, pronoun


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
    scores = [rng.randint(40, 100) for _ in range(count - 1)]
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
    steps = [f"One part: {total} ÷ {den} = {total // den}.",
             f"{num}/{den} of {total} = {num} × {total // den} = {given}.",
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


def make_record(rng: random.Random) -> tuple[str, dict]:
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
