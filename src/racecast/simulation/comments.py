"""Comment text of the synthetic world: racecard comments and result comments.

``_card_comments`` writes the racecard's comment of every declared runner (a little of
it is real signal about the hidden readiness); ``_post_comment`` and
``_NON_FINISH_COMMENTS`` the comment of a finisher and of a runner that did not finish.
"""

from __future__ import annotations

import numpy as np

_NON_FINISH_COMMENTS = {"pulled_up": "pulled up", "unseated": "unseated rider", "fell": "fell"}

_GENERIC_COMMENTS = (
    "others preferred",
    "consistent sort",
    "each-way claims",
    "best watched",
    "interesting runner",
    "place chance",
    "hard to fancy",
)


def _card_comments(
    rng: np.random.Generator,
    *,
    debut: np.ndarray,
    days_since: np.ndarray,
    readiness_z: np.ndarray,
    first_blinkers: np.ndarray,
    new_trainer: np.ndarray,
    trip_up: np.ndarray,
    trip_down: np.ndarray,
    soft_suits: np.ndarray,
) -> list[str | None]:
    """Racecard comments; the fitness remarks carry a little real signal.

    "sharp in work" is mostly said of horses whose (hidden) readiness is high and
    "needs the run" of those whose readiness is low (``readiness_z``: readiness in
    standard deviations, told when beyond +-2/3); the rest are
    facts a reader could also derive (layoff, debut, gear, trip) or uninformative filler.
    """
    n = len(readiness_z)
    u1, u2, u3 = rng.random(n), rng.random(n), rng.random(n)
    generic = rng.integers(0, len(_GENERIC_COMMENTS), n)
    fitness = np.select(
        [
            (readiness_z > 2 / 3) & (u1 < 0.8),
            (readiness_z < -2 / 3) & (u1 < 0.8),
            u1 > 0.985,
            u1 > 0.97,
        ],
        ["sharp in work", "needs the run", "sharp in work", "needs the run"],
        "",
    )
    fact = np.select(
        [
            debut,
            new_trainer,
            first_blinkers,
            ~debut & (days_since > 90),
            trip_up,
            trip_down,
            soft_suits & (u2 < 0.6),
        ],
        [
            "makes debut",
            "first run for new yard",
            "blinkers first time",
            "returns from a break",
            "steps up in trip",
            "drops in trip",
            "acts on soft ground",
        ],
        "",
    )
    out: list[str | None] = []
    for f, x, g, v in zip(
        fitness.tolist(), fact.tolist(), generic.tolist(), u3.tolist(), strict=True
    ):
        parts = [p for p in (x, f) if p]
        if not parts and v < 0.6:
            parts = [_GENERIC_COMMENTS[g]]
        out.append("; ".join(parts) if parts else None)
    return out


def _post_comment(
    position: int, running: list[int], n_fin: int, lengths: float, dead_heat: bool
) -> str:
    first_call = running[0]
    if position == 1:
        if dead_heat:
            return "dead-heated for first"
        if all(p == 1 for p in running):
            return "made all"
        if first_call > max(n_fin // 2, 2):
            return "held up, ran on to lead close home"
        return "led 150m out, kept on"
    if position <= 3:
        return "stayed on well" if first_call - position >= 3 else "every chance, kept on"
    if first_call <= 2 and position > n_fin / 2:
        return "prominent, weakened"
    if position == n_fin and lengths >= 10:
        return "always behind"
    return "never dangerous" if position > n_fin / 2 else "mid-division, no extra"
