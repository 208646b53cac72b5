"""The synthetic race world: a seeded simulator that writes the racecard/results JSON."""

from racecast.simulation.config import MarketConfig, SimulationConfig
from racecast.simulation.world import SimulatedWorld, simulate, to_json_text, world_summary

__all__ = [
    "MarketConfig",
    "SimulatedWorld",
    "SimulationConfig",
    "simulate",
    "to_json_text",
    "world_summary",
]
