"""422 details of a rejected results push point into the document the client sent."""

from __future__ import annotations

import json

from racecast.inference.results import results_problem_details


def test_a_problem_with_a_path_keeps_it_and_a_race_level_one_points_at_its_race():
    text = json.dumps(
        {
            "format": "racecast.results/1",
            "results": [
                {"race_id": "R1", "status": "official", "finishers": []},
                {"race_id": "R2", "status": "official", "finishers": []},
            ],
        }
    )
    problems = [
        {
            "race_id": "R2",
            "horse_id": None,
            "field": "result.finishers[1].horse_id",
            "reason": "result_unknown_horse",
            "detail": "push.results.json: results[1].finishers[1].horse_id: horse 'ZZ' is not a runner",
        },
        {
            "race_id": "R1",
            "horse_id": None,
            "field": "race",
            "reason": "two_winners_without_dead_heat",
            "detail": "R1.racecard.json: meetings[0].races[0]: two winners",
        },
        {"race_id": "R9", "field": "race", "reason": "x", "detail": None},
    ]
    details = results_problem_details(text, problems, limit=2)
    assert details[0]["loc"] == ["body", "results", 1, "finishers", 1, "horse_id"]
    assert details[0]["type"] == "result_unknown_horse" and "ZZ" in details[0]["msg"]
    # the single-race racecard the server built is not the client's: point at the result
    assert details[1]["loc"] == ["body", "results", 0]
    assert len(details) == 2  # bounded
    assert results_problem_details("not json", problems[2:])[0]["loc"] == ["body"]
