"""The whole curation loop on bundled samples (``entityseg-data demo``)."""
