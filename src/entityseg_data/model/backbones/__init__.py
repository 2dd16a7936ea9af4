"""model/backbones."""
