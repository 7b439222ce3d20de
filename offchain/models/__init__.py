"""Prosumer models: scenarios, profiles and the CVaR prosumer as a cvxpy building block.

``from offchain.models import load_scenario, build_profiles, build_models``; the cvxpy-based
names (ProsumerModel, Response, build_models) are imported on first use to keep this light.
"""
from .profiles import CommunityProfiles, ProsumerProfiles, build_profiles
from .scenario import Market, Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = ["CommunityProfiles", "Market", "ProsumerModel", "ProsumerProfiles", "Response",
           "Scenario", "ScenarioError", "build_models", "build_profiles", "load_scenario",
           "parse_scenario"]


def __getattr__(name: str):
    if name in ("ProsumerModel", "Response", "build_models"):
        from . import prosumer

        return getattr(prosumer, name)
    raise AttributeError(name)
