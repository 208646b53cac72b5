"""The JSON documents of the synthetic world (``docs/racecard_format.md``).

A race day's racecard document (``racecast.racecard/1``) and results document
(``racecast.results/1``), built from the day's arrays (``racecast.simulation.population``),
the ids and sexes written into them, and :func:`to_json_text`, the deterministic
serialisation the simulation pipeline writes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np

from racecast.simulation.comments import _NON_FINISH_COMMENTS, _post_comment
from racecast.simulation.population import (
    _GEAR_STRINGS,
    _NON_FINISH_OUTCOMES,
    GOINGS,
    SURFACES,
    _Day,
    _Horses,
    _RacePlan,
)

RACECARD_FORMAT = "racecast.racecard/1"
RESULTS_FORMAT = "racecast.results/1"


def _racecard_doc(
    d: _Day, horses: _Horses, jockey_ids: list[str], trainer_ids: list[str]
) -> dict[str, Any]:
    """The racecard document (``racecast.racecard/1``) of a declared race day."""
    h, hi = horses, d.hi
    names = h.name[hi].tolist()
    sexes = _sex(h.male[hi], h.gelded[hi], d.age)
    trainers = h.trainer[hi].tolist()
    col = {
        k: getattr(d, k).tolist()
        for k in (
            "cloth draw age weight_kg body_weight rating gear jockey odds_morning odds_final "
            "non_runner"
        ).split()
    }
    meetings: dict[int, dict[str, Any]] = {}
    for r, plan in enumerate(d.plans):
        meeting = meetings.setdefault(
            plan.meeting,
            {
                "date": d.date.isoformat(),
                "course": plan.course.course_id,
                "country": plan.course.country,
                "races": [],
            },
        )
        runners = []
        for i in sorted(
            range(d.starts[r], d.starts[r] + d.sizes[r]), key=col["cloth"].__getitem__
        ):
            nr, rating = col["non_runner"][i], col["rating"][i]
            runners.append(
                {
                    "horse_id": _horse_id(hi[i]),
                    "horse_name": names[i],
                    "cloth_number": col["cloth"][i],
                    "draw": col["draw"][i],
                    "age": col["age"][i],
                    "sex": sexes[i],
                    "weight_carried_kg": col["weight_kg"][i],
                    "body_weight_kg": col["body_weight"][i],
                    "rating": None if math.isnan(rating) else int(rating),
                    "gear": _GEAR_STRINGS[col["gear"][i]],
                    "jockey_id": jockey_ids[col["jockey"][i]],
                    "trainer_id": trainer_ids[trainers[i]],
                    "odds": {
                        "morning": col["odds_morning"][i],
                        "final": None if nr else col["odds_final"][i],
                    },
                    "non_runner": nr,
                    "comment": d.comment[i],
                }
            )
        meeting["races"].append(
            {
                "race_id": _race_id(d.date, plan),
                "off_time": plan.off_time.isoformat(),
                "race_type": "flat",
                "surface": SURFACES[plan.course.surface],
                "going": GOINGS[plan.going],
                "distance_m": plan.distance_m,
                "race_class": plan.race_class,
                "prize": plan.prize,
                "runners": runners,
            }
        )
    return {"format": RACECARD_FORMAT, "meetings": [meetings[m] for m in sorted(meetings)]}

def _results_doc(d: _Day) -> dict[str, Any]:
    """The results document (``racecast.results/1``) of a race day whose races were run."""
    col = {
        k: getattr(d, k).tolist()
        for k in "run finished dnf_kind position lengths finish_time odds_final n_calls incident_call calls".split()
    }
    results = []
    for r, plan in enumerate(d.plans):
        finishers = []
        if not d.void[r]:
            idx = [i for i in range(d.starts[r], d.starts[r] + d.sizes[r]) if col["run"][i]]
            n_fin = sum(col["finished"][i] for i in idx)
            idx.sort(
                key=lambda i: (not col["finished"][i], col["position"][i], col["calls"][i][0])
            )
            for i in idx:
                finishers.append(_finisher(d, r, i, n_fin, col))
        results.append(
            {
                "race_id": _race_id(d.date, plan),
                "status": "void" if d.void[r] else "official",
                "finishers": finishers,
            }
        )
    return {"format": RESULTS_FORMAT, "results": results}

def _finisher(d: _Day, r: int, i: int, n_fin: int, col: dict[str, list]) -> dict[str, Any]:
    horse_id = _horse_id(d.hi[i])
    if not col["finished"][i]:
        kind = _NON_FINISH_OUTCOMES[col["dnf_kind"][i]]
        return {
            "horse_id": horse_id,
            "position": None,
            "outcome": kind,
            "lengths_behind": None,
            "finish_time_s": None,
            "starting_price": col["odds_final"][i],
            "in_running_positions": col["calls"][i][: col["incident_call"][i]],
            "comment": _NON_FINISH_COMMENTS[kind],
        }
    position = col["position"][i]
    running = col["calls"][i][: col["n_calls"][i]] + [position]
    return {
        "horse_id": horse_id,
        "position": position,
        "outcome": "finished",
        "lengths_behind": col["lengths"][i],
        "finish_time_s": col["finish_time"][i],
        "starting_price": col["odds_final"][i],
        "in_running_positions": running,
        "comment": _post_comment(
            position, running, n_fin, col["lengths"][i], bool(d.dead_heat[r])
        ),
    }


def _race_id(date: dt.date, plan: _RacePlan) -> str:
    return f"SYN-{date.isoformat()}-{plan.course.course_id}-{plan.race_no:02d}"


def _horse_id(index: int) -> str:
    return f"H{int(index) + 1:05d}"


def _sex(male: np.ndarray, gelded: np.ndarray, age: np.ndarray) -> list[str]:
    young = age <= 4
    sex = np.where(
        male,
        np.where(gelded, "gelding", np.where(young, "colt", "horse")),
        np.where(young, "filly", "mare"),
    )
    return sex.tolist()


def to_json_text(document: dict[str, Any]) -> str:
    """Serialise a contract document deterministically (stable key order, 2-space indent).

    Args:
        document: A racecard or results document.

    Returns:
        The JSON text, ending with a newline.
    """
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
