"""``handcast.metrics``: a thin re-export of :mod:`handcast.eval.metrics` (the implementation lives there)."""

from handcast.eval.metrics import *  # noqa: F401,F403
from handcast.eval.metrics import __all__  # noqa: F401
