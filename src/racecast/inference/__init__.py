"""Inference: the service object every outer room (HTTP app, CLI, Kedro scoring) calls.

``InferenceService`` scores racecards online; :mod:`racecast.inference.guard` is the one
point-in-time guard; :mod:`racecast.inference.results` takes race results in on race day.
"""
