"""What the reports on training logs share: ``eval.results`` (agents) and ``llm.compare`` (LLM runs).

Finding run directories and summaries, labelling runs by config keys, and statistics over seeds: a mean
with its Student-t interval, a difference of two means with Welch's interval, and the verdict rule that
reads such an interval. Only numpy and the standard library, so ``llm`` can use it without importing the
environments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

LEVEL = 0.95  # every interval of the reports

MISSING = object()


def tail_mean(values: np.ndarray, tail: float) -> float:
    """Mean of the last ``tail`` fraction of ``values`` (at least one point)."""
    n = max(1, math.ceil(len(values) * tail))
    return float(np.mean(values[-n:]))


def config_value(config: dict, key: str) -> object:
    """The value at dotted ``key`` of a nested config dict, or ``MISSING``."""
    node: object = config
    for name in key.split("."):
        if not isinstance(node, dict) or name not in node:
            return MISSING
        node = node[name]
    return node


def variant_label(
    config: dict, keys: list[str], defaults: dict, method: str, methods: tuple[str, ...], run: Path
) -> str:
    """``"[key=value ...]"`` of the dotted config ``keys`` (``--group-by``), ``""`` for no keys.

    A key the run's config predates (added to the schema later) reads as the schema's default
    (``defaults``), which is what that run ran with; a key the schema does not know is a ``ValueError``.
    Keys of another method's section (``algo.ppo.*`` on a V-MPO run: ``methods`` names the sections) do
    not label the run.
    """
    parts = []
    for key in keys:
        section = key.split(".")
        if section[0] == "algo" and len(section) > 2 and section[1] in methods and section[1] != method:
            continue
        value = config_value(config, key)
        if value is MISSING:
            value = config_value(defaults, key)
        if value is MISSING:
            raise ValueError(f"run '{run}' has no config key '{key}' (--group-by)")
        parts.append(f"{key}={value}")
    return f"[{' '.join(parts)}]" if parts else ""


def find_runs(paths: list[str]) -> list[Path]:
    """Run directories or ``.json`` summaries named directly, or found one level below a named folder."""
    found = []
    for name in paths:
        path = Path(name)
        if (path / "config.yaml").is_file() or (path.suffix == ".json" and path.is_file()):
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if (p / "config.yaml").is_file() or p.suffix == ".json")
        else:
            raise ValueError(f"'{path}' does not exist")
    return found


# ---------------------------------------------------------------- statistics over seeds
@dataclass(frozen=True)
class Interval:
    """A mean (or a difference of means) and its ``LEVEL`` interval; ``low``/``high`` NaN if undefined."""

    mean: float
    low: float
    high: float


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)``: Lentz's continued fraction (Numerical Recipes 6.4)."""
    if x <= 0.0 or x >= 1.0:
        return max(0.0, min(1.0, x))
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - log_beta)
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(500):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 / (1.0 + num * d if abs(1.0 + num * d) > tiny else tiny)
        c = 1.0 + num / c if abs(1.0 + num / c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0) / a


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (``0.5 < p < 1``) of Student's t with ``df`` (> 0, any real) degrees of freedom.

    ``P(T > t) = I_x(df/2, 1/2) / 2`` with ``x = df / (df + t^2)`` (Abramowitz & Stegun 26.7.1, 26.5.27),
    solved for ``x`` by bisection; ``df = inf`` is the normal quantile.
    """
    if math.isinf(df):
        return NormalDist().inv_cdf(p)
    lo, hi = 0.0, 1.0  # I_x grows with x; t = 0 at x = 1
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _betainc(df / 2, 0.5, mid) < 2 * (1 - p) else (lo, mid)
    x = (lo + hi) / 2
    return math.sqrt(df * (1 - x) / x)


def mean_interval(values: np.ndarray | list[float]) -> Interval:
    """Mean over seeds and its Student-t interval (n - 1 degrees of freedom); NaN bounds below 2 seeds."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return Interval(float(v.mean()) if len(v) else math.nan, math.nan, math.nan)
    half = t_quantile(0.5 + LEVEL / 2, len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return Interval(float(v.mean()), float(v.mean()) - half, float(v.mean()) + half)


def welch_interval(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> Interval:
    """``mean(a) - mean(b)`` and Welch's interval (Welch-Satterthwaite degrees of freedom).

    NaN bounds when either side has fewer than 2 seeds; a zero-width interval when both have no spread.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Interval(diff, math.nan, math.nan)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return Interval(diff, diff, diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(0.5 + LEVEL / 2, df) * math.sqrt(va + vb)
    return Interval(diff, diff - half, diff + half)


VERDICT_RULE = (
    f"Verdict on the claim 'A > B': 'supported' if the Welch {LEVEL:.0%} interval of mean(A) - mean(B) "
    "lies above 0, 'not supported' if it lies below 0, 'no difference at this budget' if it contains 0."
)


def verdict(diff: Interval) -> str:
    """The word :data:`VERDICT_RULE` gives a Welch interval of ``mean(A) - mean(B)`` for the claim A > B."""
    if math.isnan(diff.low):
        return "no interval (needs >= 2 seeds per group)"
    if diff.low > 0:
        return "supported"
    if diff.high < 0:
        return "not supported"
    return "no difference at this budget"
