"""Finish-time forecasts: a duration model from history and a simulation of the rest of a run
with the engine's own dispatch rules. Pure: the store side is `engine.forecasts`."""

from taskplan.forecast.durations import DEFAULT_SECONDS, DurationModel, Estimate, History
from taskplan.forecast.plan import RunForecast, forecast_plan
from taskplan.forecast.simulate import Node, Prediction, SimRun, simulate

__all__ = [
    "DEFAULT_SECONDS",
    "DurationModel",
    "Estimate",
    "History",
    "Node",
    "Prediction",
    "RunForecast",
    "SimRun",
    "forecast_plan",
    "simulate",
]
