"""The engine's values and the types the caller shares with it."""
from dataclasses import dataclass, field
from typing import Literal, Mapping

import numpy as np

try:
    import re2 as _regex  # linear time: a tenant's regex cannot hang a worker

    _OPTIONS = _regex.Options()
    _OPTIONS.log_errors = False  # a tenant's bad regex is answered as bad_data, not logged by RE2 too
    _compile = lambda pattern: _regex.compile(pattern, _OPTIONS)  # noqa: E731
except ImportError:  # pragma: no cover - requirements.txt pins google-re2
    import re as _regex

    _compile = _regex.compile

# Prometheus 2.x's default lookback delta: an instant selector sees a sample up to five minutes old.
LOOKBACK_MS = 300_000
# value.StaleNaN: the NaN Prometheus writes when a series goes away.
STALE_NAN_BITS = 0x7FF0000000000002

Labels = tuple[tuple[str, str], ...]  # sorted by name; "__name__" included when the series has one


class BadData(Exception):
    """The query or a parameter is wrong (Prometheus' `bad_data`, HTTP 400)."""


class ExecutionError(Exception):
    """A well-formed query that cannot be answered (Prometheus' `execution`, HTTP 422)."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str
    _compiled: object = field(default=None, compare=False, repr=False)

    def matches(self, label_value: str) -> bool:
        """`label_value` is "" for a label the series does not have, as in Prometheus."""
        if self.op == "=":
            return label_value == self.value
        if self.op == "!=":
            return label_value != self.value
        pattern = self._compiled
        if pattern is None:
            # Prometheus anchors label regexes at both ends.
            pattern = _compile(f"^(?:{self.value})$")
            object.__setattr__(self, "_compiled", pattern)
        found = pattern.match(label_value) is not None
        return found if self.op == "=~" else not found


def labels_match(matchers, labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


@dataclass(frozen=True)
class Series:
    labels: Labels
    ts_ms: np.ndarray  # int64, ascending
    values: np.ndarray  # float64, same length


@dataclass(frozen=True)
class Result:
    """What a query answers, in Prometheus' four result types.

    matrix: `series`, each with its points (a range query, or an instant query of a range selector);
    vector: `series`, each with exactly one point at the evaluation time;
    scalar: `scalar` = (t_ms, value); string: `string` = (t_ms, text).
    A range query's matrix is sorted by labels, as Prometheus sorts it."""
    result_type: Literal["matrix", "vector", "scalar", "string"]
    series: list[Series] = field(default_factory=list)
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None
    warnings: list[str] = field(default_factory=list)
