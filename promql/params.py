"""The Prometheus HTTP API's parameters, parsed as Prometheus 2.42 parses them (web/api/v1/api.go), with its
messages: times as RFC 3339 or Unix seconds (truncated to whole milliseconds), durations as seconds or `1m30s`,
series selectors for match[]. Pure: no Django, so the rules are tested on their own.

Every error is a BadData whose text names the parameter, as Prometheus words it, e.g.
`invalid parameter "start": cannot parse "x" to a valid timestamp`."""
import math
import re
from datetime import datetime

import promql_parser as pp

from promql.engine import BadData, Matcher

# Go's time.Time bounds as Prometheus prints them (minTime and maxTime in api.go): clients send them for
# "no bound", so they parse to our widest window rather than failing as out of range.
MIN_TIME_MS = -9223309901257974 * 1000  # time.Unix(math.MinInt64/1000 + 62135596801, 0), in ms
MAX_TIME_MS = 9223309901257974 * 1000 + 999
_MIN_TIME_TEXT = "-292273086-05-16T16:47:06Z"
_MAX_TIME_TEXT = "292277025-08-18T07:12:54.999999999Z"
# Prometheus' query_range refuses more points a series than this.
MAX_POINTS_PER_SERIES = 11_000
# model.ParseDuration: units largest first, each at most once, integers only.
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}  # by str(op)


def _invalid(name: str, reason: str) -> BadData:
    return BadData(f'invalid parameter "{name}": {reason}')


def time_ms(name: str, text: str | None, *, default: int | None = None) -> int:
    """A time parameter in ms: Unix seconds (float, rounded to the ms) or RFC 3339; `default` when absent."""
    if text is None or (text == "" and default is not None):
        if default is None:
            raise _invalid(name, 'cannot parse "" to a valid timestamp')
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None and math.isfinite(seconds):
        # As Go: math.Modf, the fraction rounded (half away from zero) to ms, time.Unix, then ms.
        whole = math.trunc(seconds)
        fraction_ms = seconds - whole
        fraction_ms = math.copysign(math.floor(abs(fraction_ms * 1000) + 0.5), fraction_ms)
        nanos = math.trunc(fraction_ms / 1000 * 1e9)
        parsed = (int(whole) * 10**9 + nanos) // 10**6
        if not MIN_TIME_MS <= parsed <= MAX_TIME_MS:
            # Prometheus' int64 conversion wraps silently here; a refusal is better than a wrong time.
            raise _invalid(name, f"cannot parse {_quoted(text)} to a valid timestamp: it is out of range")
        return parsed
    if text == _MIN_TIME_TEXT:
        return MIN_TIME_MS
    if text == _MAX_TIME_TEXT:
        return MAX_TIME_MS
    parsed = _rfc3339_ms(text)
    if parsed is None:
        raise _invalid(name, f"cannot parse {_quoted(text)} to a valid timestamp")
    return parsed


def _rfc3339_ms(text: str) -> int | None:
    found = _RFC3339.match(text)
    if not found:
        return None
    base, fraction, zone = found.groups()
    try:
        moment = datetime.fromisoformat(base + ("+00:00" if zone.upper() == "Z" else zone))
    except ValueError:
        return None
    millis = int((fraction or ".0")[1:4].ljust(3, "0"))  # Prometheus truncates below the ms
    return int(moment.timestamp()) * 1000 + millis


def duration_ms(name: str, text: str | None) -> int:
    """A duration parameter in ms: float seconds (truncated to the ms) or a Prometheus duration (`1m30s`)."""
    text = text or ""
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds) or abs(seconds) * 1e9 > 2**63 - 1:
            raise _invalid(name, f"cannot parse {_quoted(text)} to a valid duration. It overflows int64")
        return int(seconds * 1000)
    found = _DURATION.match(text)
    if text and text != "0" and found:
        return sum(int(part) * unit for part, unit in zip(found.groups(), _DURATION_MS) if part)
    if text == "0":
        return 0
    raise _invalid(name, f"cannot parse {_quoted(text)} to a valid duration")


def range_window(*, start_ms: int, end_ms: int) -> None:
    if end_ms < start_ms:
        raise BadData("end timestamp must not be before start time")


def range_steps(*, start_ms: int, end_ms: int, step_ms: int) -> None:
    """query_range's checks on its steps, in Prometheus' words (bad_data)."""
    if step_ms <= 0:
        raise BadData("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if (end_ms - start_ms) // step_ms > MAX_POINTS_PER_SERIES:
        raise BadData("exceeded maximum resolution of 11,000 points per timeseries. "
                      "Try decreasing the query resolution (?step=XX)")


def series_selector(text: str) -> tuple[Matcher, ...]:
    """One match[] value (a series selector such as `up{job=~"a|b"}`) as the engine's matchers."""
    try:
        parsed = pp.parse(text)
    except ValueError as error:
        raise _invalid("match[]", f"parse error: {error}") from None
    if not isinstance(parsed, pp.VectorSelector):
        raise _invalid("match[]", f"parse error: {_quoted(text)} is not a series selector (such as "
                                  'up{job="api"})')
    if parsed.offset is not None or parsed.at is not None or parsed.matchers.or_matchers:
        raise _invalid("match[]", f"parse error: {_quoted(text)} is not a plain series selector "
                                  "(no offset, @ or `or`)")
    matchers = [Matcher(m.name, _OPS[str(m.op)], m.value) for m in parsed.matchers.matchers]
    if parsed.name is not None:
        matchers.insert(0, Matcher("__name__", "=", parsed.name))
    for matcher in matchers:
        try:
            matcher.matches("")  # compiles a regex now: one RE2 refuses is the caller's error, not a 500 later
        except Exception as error:  # re2's error class is not part of its documented interface
            raise _invalid("match[]", f"parse error: invalid regex {_quoted(matcher.value)}: {error}") from None
    return tuple(matchers)


def series_selectors(values: list[str], *, required: bool) -> list[tuple[Matcher, ...]]:
    if not values and required:
        raise BadData("no match[] parameter provided")
    return [series_selector(text) for text in values]


def label_name(name: str) -> str:
    if not _LABEL_NAME.match(name):
        raise BadData(f"invalid label name: {_quoted(name)}")
    return name


def _quoted(text: str) -> str:
    # Go's %q; our texts are short and printable enough that JSON-style quoting reads the same.
    shown = text if len(text) <= 200 else text[:200] + "…"
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
