"""Sigma interop: import Sigma rules (single-event and correlation) as threshold rules, export ours as Sigma."""
