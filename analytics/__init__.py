"""Anomaly detection over audit events: features, detectors, scoring jobs and evaluation.

Depends on ``storage`` only. Detectors follow the scikit-learn estimator contract, so each is
usable on its own in a notebook (``fit`` on history, ``score_samples`` / ``predict`` on new windows).
"""
