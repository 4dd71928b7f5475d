"""``edgesmith search``: the Pareto front of accuracy, latency and size over the choices a recipe marks
(Optuna samplers, a study in SQLite, a content-addressed pass cache, a local pool or a Ray cluster)."""

from edgesmith.search.pareto import SearchResult, Settings, search

__all__ = ["SearchResult", "Settings", "search"]
