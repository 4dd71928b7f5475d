"""``edgesmith optimize``: structure-aware choice of compression settings, verified on the target."""

from edgesmith.optimize.search import OptimizeResult, optimize

__all__ = ["optimize", "OptimizeResult"]
