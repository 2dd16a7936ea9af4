"""model/inference."""
