"""Metrics of a trial's predictions: classification (defect prediction) and generated text (message generation)."""
