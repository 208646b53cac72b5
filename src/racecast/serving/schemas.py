"""Pydantic models and OpenAPI fragments of the inference service's HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "Explanation",
    "HorseState",
    "PredictResponse",
    "RacePrediction",
    "RunnerPrediction",
]


class Explanation(BaseModel):
    feature: str
    value: float | None = Field(description="Input value of the feature (null: missing).")
    contribution: float = Field(description="Contribution to the ranker's score (utility units).")


class RunnerPrediction(BaseModel):
    horse_id: str
    rank: int = Field(description="1 = highest fundamental win probability in the race.")
    p_win: float = Field(description="Fundamental win probability (sums to 1 per race).")
    fair_odds: float = Field(description="1 / p_win, decimal odds.")
    market_odds: float | None = Field(description="Final decimal odds of the racecard.")
    p_market: float | None = Field(description="Normalised 1/odds (null unless every runner is priced).")
    p_win_combined: float | None = Field(description="Benter blend of fundamental and market.")
    edge: float | None = Field(description="p * market_odds - 1 (null without a price).")
    kelly_fraction: float = Field(description="Fractional Kelly share of the bankroll (0: no bet).")
    stake_units: float = Field(description="Stake in bankroll units.")
    stake_reason: str | None = Field(
        description="Why the stake is 0 (track not stakeable, no price, edge <= 0); null: staked."
    )
    feature_staleness_days: float | None = Field(description="Days since the horse's last run (null: debut).")
    stale: bool
    explanation: list[Explanation] | None = Field(
        description="The features that move the runner's score most; null unless the request "
        "asked for explanations (explain=true)."
    )


class RacePrediction(BaseModel):
    race_id: str
    off_time: str | None
    course: str | None
    n_runners: int
    model_version: str
    market: bool = Field(description="Every runner has final odds (both tracks available).")
    staking_track: str = Field(description="Probability the edge and stakes use.")
    stakeable: bool = Field(
        description="The bundle's validation races found the staking track profitable; "
        "false: every stake is 0."
    )
    stake_reason: str | None = Field(description="Why the track is not stakeable (null: it is).")
    runners: list[RunnerPrediction]


class PredictResponse(BaseModel):
    model_version: str
    feature_service: str
    races: list[RacePrediction]


class HorseState(BaseModel):
    horse_id: str
    last_run: str | None
    features: dict[str, Any]
