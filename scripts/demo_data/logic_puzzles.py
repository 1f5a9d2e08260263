"""The `reasoning` dataset: logic puzzles with step-by-step answers (ShareGPT; ~20% two-turn)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from scripts.demo_data.people import NAMES, SHE


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
    ("No {A} are {B}. All {C} are {A}.", "Is any {C} a {B_one}?",
     "No. It follows necessarily that no {C} is a {B_one}.",
     "Every {C} is one of the {A}, and no {A} is a {B_one}. So no {C} can be a {B_one}.",
     "a categorical syllogism in the form called Celarent"),
    ("All {A} are {B}. Some {C} are {A}.", "Are some {C} {B}?", "Yes, it follows necessarily.",
     "The {C} that are {A} are also {B}, because all {A} are {B}. So at least some {C} are {B}.",
     "a categorical syllogism in the form called Darii"),
    ("Some {A} are {B}. Some {B} are {C}.", "Must some {A} be {C}?", "No, it does not follow.",
     "The {B} that are {A} might be different {B} from the ones that are {C}. The premises do not force any overlap.",
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


def make_record(rng: random.Random) -> tuple[str, dict]:
    """One ShareGPT record with a logic puzzle; about one in five continues with a follow-up turn."""
    puzzle = rng.choice(REASONING_PUZZLES)(rng)
    conversations = [{"from": "human", "value": puzzle.prompt}, {"from": "gpt", "value": puzzle.answer}]
    if rng.random() < 0.2:
        conversations += [{"from": "human", "value": puzzle.follow_up},
                          {"from": "gpt", "value": puzzle.follow_up_answer}]
    if rng.random() < 0.15:
        conversations.insert(0, {"from": "system", "value": rng.choice(REASONING_SYSTEM_PROMPTS)})
    return puzzle.prompt, {"conversations": conversations}
