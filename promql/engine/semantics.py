"""The places where Prometheus 2.x and 3.x answer differently, each a named choice. The target is Debian's
Prometheus 2.42 (the differential tests in promql/tests/ run that binary), so every constant says what 2.42 does."""

# An instant selector at t sees a sample at exactly t - lookback [2.x]; 3.0 made the lower bound exclusive.
LOOKBACK_LOWER_BOUND_INCLUSIVE = True
# A range selector x[r] at t holds the samples in [t - r, t], closed at both ends [2.x]; 3.0 opened the left end.
RANGE_LOWER_BOUND_INCLUSIVE = True
# extrapolatedRate: 2.42 clamps the start to the counter's zero point before it compares the gaps with 1.1 times
# the average interval; 2.52 (PR #13725) compares first.
EXTRAPOLATION_THRESHOLD = 1.1
CLAMP_TO_ZERO_BEFORE_THRESHOLD = True
# Prometheus' --query.max-samples default.
MAX_SAMPLES = 50_000_000
# A range query may ask for at most this many steps per series.
MAX_RESOLUTION_POINTS = 11_000
# The functions whose output keeps the input's metric name (every other function drops it) [2.x].
FUNCTIONS_KEEPING_NAME = frozenset({"last_over_time", "sort", "sort_desc", "label_replace", "label_join"})
# The operators whose result drops the metric name [2.x]: atan2 keeps it in 2.42 (3.x drops it too).
OPERATORS_DROPPING_NAME = frozenset({"+", "-", "*", "/", "%", "^"})
# A subquery without a step (x[1h:]) steps at Prometheus' global evaluation_interval, 1 minute by default.
DEFAULT_EVALUATION_INTERVAL_MS = 60_000
