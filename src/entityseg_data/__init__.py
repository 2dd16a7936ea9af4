"""entityseg-data: build, annotate, measure and use high-quality entity segmentation datasets.

Importing the package is cheap: no torch, no Label Studio, no side effects. Subpackages:
``ingest``, ``catalog``, ``annotation``, ``masks``, ``evaluation``, ``stats``, ``export``,
``model``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
