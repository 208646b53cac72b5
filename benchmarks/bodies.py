"""Request bodies of the serving benchmarks: one race at moving prices, or a new race.

On race day a race is scored again and again while its tote prices move, so the warm
figures rotate through :func:`repriced_bodies` (every runner's final odds moved by a
deterministic factor per variant: the service keeps the race's fundamental features and
probabilities and computes its market features and combined track); the cold figures send
:class:`ColdRaces`' bodies, each a race id the service has not seen (nothing kept for it:
read, guard, whole transform, every model).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

#: Price variants a warm run rotates through.
VARIANTS = 64


def price_factors(variant: int, runners: int) -> np.ndarray:
    """Deterministic factors (0.85-1.15) moving each runner's odds in one variant."""
    return np.random.default_rng(1000 + variant).uniform(0.85, 1.15, runners)


def moved_odds(odds: Any, factors: np.ndarray) -> np.ndarray:
    """Decimal odds moved by ``factors`` on their profit part, rounded to 0.01, >= 1.01
    (NaN stays NaN)."""
    odds = np.asarray(odds, dtype=np.float64)
    return np.maximum(np.round(1.0 + (odds - 1.0) * factors, 2), 1.01)


def repriced_bodies(body: str, n: int = VARIANTS) -> list[str]:
    """``n`` copies of a racecard text, each with every runner's final odds moved."""
    out = []
    for variant in range(n):
        document = json.loads(body)
        runners = [r for m in document["meetings"] for race in m["races"] for r in race["runners"]]
        odds = [((r.get("odds") or {}).get("final")) for r in runners]
        known = [i for i, o in enumerate(odds) if o is not None]
        moved = moved_odds([odds[i] for i in known], price_factors(variant, len(known)))
        for i, value in zip(known, moved.tolist(), strict=True):
            runners[i]["odds"] = {**runners[i]["odds"], "final": value}
        out.append(json.dumps(document))
    return out


class ColdRaces:
    """One-race bodies whose race ids the service has not seen: the ``k``-th body of the
    benchmark's process is the race with ``-cold<k>`` appended to its id."""

    def __init__(self, body: str) -> None:
        self._document = json.loads(body)
        self._next = 0

    def take(self, n: int) -> list[str]:
        """The next ``n`` bodies (never one given before)."""
        out = []
        for k in range(self._next, self._next + n):
            document = json.loads(json.dumps(self._document))
            for meeting in document["meetings"]:
                for race in meeting["races"]:
                    race["race_id"] = f"{race['race_id']}-cold{k}"
            out.append(json.dumps(document))
        self._next += n
        return out
