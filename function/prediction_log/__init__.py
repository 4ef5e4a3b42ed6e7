"""The prediction log: every prediction becomes one PostgreSQL row, written off the request path, and the UI's
reads over those rows. `record()` only appends to a bounded queue that a background writer drains; a slow or
stopped database never fails or slows a prediction. This module only hands the public names on."""

from function.prediction_log.api import LogDisabled, LogUnavailable, PredictionLog
from function.prediction_log.null import NullLog
from function.prediction_log.postgres import PostgresLog
from function.prediction_log.queries import HistoryItem, VersionStats
from function.prediction_log.schema import Feedback, Issued, Row, ShadowRow

__all__ = [
    "Feedback",
    "HistoryItem",
    "Issued",
    "LogDisabled",
    "LogUnavailable",
    "NullLog",
    "PostgresLog",
    "PredictionLog",
    "Row",
    "ShadowRow",
    "VersionStats",
]
