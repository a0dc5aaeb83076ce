"""Toy tasks with verifiable rewards, generated in code so that training is testable offline.

A task yields :class:`Example` s (prompt text + reference answer) for a train split and a disjoint
held-out split, and scores a completion with a pluggable reward function ``reward(example, text)``.

* ``addition``: ``"a+b="`` -> ``"c"`` with ``0 <= a, b <= max_operand`` (exact-answer reward).
* ``reversal``: ``"rev:abc="`` -> ``"cba"`` over a small alphabet (exact-answer reward).

Reward functions (``task.reward``): ``exact`` (1 if the stripped completion equals the answer),
``format`` (1 if the completion has the answer's format: digits for ``addition``, letters of the
alphabet for ``reversal``), ``exact_format`` (``exact + 0.1 * format``, a shaped reward), ``first_number``
(1 if the first integer in the completion equals the answer: lenient, for chatty instruct models),
``last_number`` (1 if the last integer does: for models that restate the question, "14 + 13 = 27").
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["REWARDS", "TASKS", "Example", "Task", "make_task"]


@dataclass(frozen=True)
class Example:
    """One prompt with its verifiable reference answer."""

    prompt: str  # raw task text, e.g. "12+7="; the model adapter may wrap it in a chat template
    answer: str  # e.g. "19"
    question: str  # natural-language form for instruct models, e.g. "What is 12 + 7?"


RewardFn = Callable[[Example, str], float]
_NUMBER = re.compile(r"-?\d+")


def exact_reward(example: Example, completion: str) -> float:
    """1.0 if the completion (whitespace-stripped) is exactly the answer, else 0.0."""
    return float(completion.strip() == example.answer)


def format_reward(example: Example, completion: str) -> float:
    """1.0 if the completion has the answer's format (all digits / all letters, non-empty)."""
    text = completion.strip()
    if example.answer.isdigit():
        return float(text.isdigit())
    return float(text.isalpha() and text.islower())


def exact_format_reward(example: Example, completion: str) -> float:
    """Shaped reward ``exact + 0.1 * format``: a small bonus for the right format."""
    return exact_reward(example, completion) + 0.1 * format_reward(example, completion)


def first_number_reward(example: Example, completion: str) -> float:
    """1.0 if the first integer in the completion equals the answer (lenient, for chat models)."""
    match = _NUMBER.search(completion)
    return float(match is not None and match.group() == example.answer)


def last_number_reward(example: Example, completion: str) -> float:
    """1.0 if the last integer in the completion equals the answer: chat models restate the question
    before answering ("14 + 13 = 27"), which the first number would score as wrong."""
    numbers = _NUMBER.findall(completion)
    return float(bool(numbers) and numbers[-1] == example.answer)


REWARDS: dict[str, RewardFn] = {
    "exact": exact_reward,
    "format": format_reward,
    "exact_format": exact_format_reward,
    "first_number": first_number_reward,
    "last_number": last_number_reward,
}


class Task:
    """A finite pool of examples split into train / held-out parts by a seeded shuffle."""

    def __init__(self, examples: list[Example], heldout_fraction: float, reward: str, seed: int) -> None:
        if reward not in REWARDS:
            raise ValueError(f"task.reward={reward!r} is not valid; accepted values: {', '.join(REWARDS)}")
        pool = list(examples)
        random.Random(seed).shuffle(pool)
        n_heldout = max(1, round(heldout_fraction * len(pool)))
        if n_heldout >= len(pool):
            raise ValueError(
                f"task has {len(pool)} examples, too few for heldout_fraction={heldout_fraction}"
            )
        self.heldout, self.train = pool[:n_heldout], pool[n_heldout:]
        self.reward_fn: RewardFn = REWARDS[reward]
        self._rng = random.Random(seed + 1)

    def sample(self, n: int) -> list[Example]:
        """``n`` training examples drawn with replacement."""
        return [self._rng.choice(self.train) for _ in range(n)]

    def reward(self, example: Example, completion: str) -> float:
        return self.reward_fn(example, completion)

    def alphabet(self) -> str:
        """Every character of every prompt and answer (for a character-level tokenizer)."""
        chars = {c for ex in self.train + self.heldout for c in ex.prompt + ex.answer}
        return "".join(sorted(chars))

    def rng_state(self) -> object:
        return self._rng.getstate()

    def set_rng_state(self, state: object) -> None:
        self._rng.setstate(state)  # type: ignore[arg-type]

    def reseed(self, seed: int) -> None:
        """A new stream of training prompts (data-parallel ranks); the held-out split is unchanged."""
        self._rng = random.Random(seed)


def addition_examples(max_operand: int) -> list[Example]:
    return [
        Example(f"{a}+{b}=", str(a + b), f"What is {a} + {b}? Answer with the number only.")
        for a in range(max_operand + 1)
        for b in range(max_operand + 1)
    ]


def reversal_examples(alphabet: str, min_len: int, max_len: int, limit: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    for _ in range(limit * 20):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
        if word not in seen:
            seen.add(word)
            q = f"Reverse the string '{word}'. Answer with the reversed string only."
            out.append(Example(f"rev:{word}=", word[::-1], q))
        if len(out) == limit:
            break
    return out


TASKS = ("addition", "reversal")


def make_task(
    name: str,
    *,
    max_operand: int = 9,
    alphabet: str = "abcd",
    min_len: int = 2,
    max_len: int = 4,
    heldout_fraction: float = 0.2,
    reward: str = "exact",
    seed: int = 0,
) -> Task:
    """Build a task by name (``addition`` | ``reversal``)."""
    if name == "addition":
        examples = addition_examples(max_operand)
    elif name == "reversal":
        examples = reversal_examples(alphabet, min_len, max_len, limit=2000, seed=seed)
    else:
        raise ValueError(f"task.name={name!r} is not valid; accepted values: {', '.join(TASKS)}")
    return Task(examples, heldout_fraction, reward, seed)
