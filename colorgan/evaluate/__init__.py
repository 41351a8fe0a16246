"""Evaluation: scoring on a test split, metrics, the probe classifier, FID, realism, reports and figures."""
