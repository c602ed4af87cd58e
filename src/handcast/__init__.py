"""handcast: 4D hand motion — lifting, forecasting and probabilistic single-image hand pose.

Importing the package has no side effects: no files are read, no devices touched, no
OpenGL platform chosen. Submodules are imported on demand.
"""

__version__ = "0.1.0"
