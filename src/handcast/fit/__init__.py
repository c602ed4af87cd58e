"""Fitting MANO motion to 2D keypoint tracks (docs/fitting.md).

* :func:`refine` (:mod:`handcast.fit.refine`): batched reprojection refinement of both hands'
  pose and translation (the imputation step of the lifting paper).
* :func:`fit_tracks` (:mod:`handcast.fit.optimize`): the optimisation-only baseline (mean-pose
  initialisation, staged optimisation with temporal smoothness and a pose prior).
* :func:`impute_split` (:mod:`handcast.fit.impute`): resumable imputation of a clip-store split
  (initialiser + refinement) into clips with provenance "imputed".
"""

from handcast.fit.impute import impute_split, make_batch
from handcast.fit.optimize import FitConfig, fit_tracks, fit_tracks_initialiser
from handcast.fit.refine import RefineConfig, RefineResult, refine

__all__ = ["FitConfig", "RefineConfig", "RefineResult", "fit_tracks", "fit_tracks_initialiser", "impute_split",
           "make_batch", "refine"]
