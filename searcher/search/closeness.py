"""Whether a search found anything close in meaning: "no close match" (`close_match: false`).

A cosine's scale depends on the model and the collection (all-MiniLM-L6-v2 on SciFact: the
best hit of a real question scores about 0.65, of made-up words about 0.25), so no fixed
number says "close". Each index measures its own floor instead: the best cosines that
queries of made-up words (PROBES of them, seeded, so every run asks the same) reach in it.
A search is a close match when its best hit's cosine is above that floor by MARGIN.
"""

from __future__ import annotations

import random
import string
from typing import Callable

PROBES = 16
MARGIN = 0.02  # SciFact: 2.7% of real questions below, no made-up words above; DBpedia-entity: 0% and 0.7%
SEED = 25


def probe_queries(n: int = PROBES, seed: int = SEED) -> list[str]:
    """`n` queries of one to three made-up words (letters drawn at random, 5 to 8 of them)."""
    rng = random.Random(seed)
    return [" ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 8)))
                     for _ in range(rng.randint(1, 3))) for _ in range(n)]


def noise_floor(best_cosine: Callable[[str], float | None], n: int = PROBES) -> float | None:
    """The highest best cosine of the probe queries (`best_cosine`: a query's best hit's
    cosine, None for an empty index); None when nothing answered."""
    found = [c for c in (best_cosine(q) for q in probe_queries(n)) if c is not None]
    return max(found) if found else None


def is_close(cosine: float | None, floor: float | None) -> bool | None:
    """Whether a best cosine is a close match above `floor`; None when either is unknown."""
    if cosine is None or floor is None:
        return None
    return cosine > floor + MARGIN
