"""model/training."""
