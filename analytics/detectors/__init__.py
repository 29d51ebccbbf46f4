"""The event detectors, each a scikit-learn estimator; ``EVENT_DETECTORS`` is what a scoring run uses."""

from __future__ import annotations

from analytics.detectors.base import ANOMALY_SCHEMA, Detector, empty_anomalies
from analytics.detectors.context import NewContext
from analytics.detectors.counts import FailedLoginBurst, PasswordSpraying
from analytics.detectors.export import ExportVolume
from analytics.detectors.multivariate import MultivariateOutlier
from analytics.detectors.privileged import PrivilegedAction
from analytics.detectors.seasonal import SeasonalSeries
from analytics.detectors.series import UnivariateSeries
from analytics.detectors.session import SessionChain
from analytics.detectors.slow import SlowFailures
from analytics.detectors.stuffing import FailureThenSuccess

EVENT_DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (FailedLoginBurst, PasswordSpraying, FailureThenSuccess, ExportVolume,
                              PrivilegedAction, NewContext, MultivariateOutlier, SessionChain, SlowFailures)
}

__all__ = ["ANOMALY_SCHEMA", "EVENT_DETECTORS", "Detector", "ExportVolume", "FailedLoginBurst",
           "FailureThenSuccess", "MultivariateOutlier", "NewContext", "PasswordSpraying", "PrivilegedAction",
           "SeasonalSeries", "SessionChain", "SlowFailures", "UnivariateSeries", "empty_anomalies"]
