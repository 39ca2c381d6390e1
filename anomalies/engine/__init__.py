"""The detection engine: pure Python/numpy, no Django.

Series are processed in timestamp order from a checkpointed state; the output depends only
on the points (and the configuration), never on batch boundaries or the number of runs.
"""
from anomalies.engine.config import DIRECTIONS, DetectionConfig, restart_at, setting_limits, severity_of
from anomalies.engine.explain import reason_sentence
from anomalies.engine.parallel import detect_many
from anomalies.engine.patterns import recurring_patterns
from anomalies.engine.scan import BaselineSnapshot, Finding, detect, expected_band, state_from_history
from anomalies.engine.state import SeriesState

__all__ = ["DIRECTIONS", "BaselineSnapshot", "DetectionConfig", "Finding", "SeriesState", "detect", "detect_many",
           "expected_band", "reason_sentence", "recurring_patterns", "restart_at", "setting_limits", "severity_of",
           "state_from_history"]
