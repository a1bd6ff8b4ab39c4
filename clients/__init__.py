"""Thin HTTP clients of the faceverify service (they import nothing from `service/` or TensorFlow)."""
