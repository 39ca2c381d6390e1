"""Time in one place: the epoch, microseconds since it (the storage's and the engine's unit), the
API's ISO 8601 rules for reading and writing timestamps, flooring to periods, and the same conversions
written in SQL (sql_at, sql_us)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MICROSECOND = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // _ONE_MICROSECOND


def from_us(ts_us: int) -> datetime:
    """The UTC datetime of a time in microseconds since the epoch (OverflowError outside years 1-9999)."""
    return EPOCH + timedelta(microseconds=ts_us)


def parse_iso(text) -> int:
    """Microseconds since the epoch of an ISO 8601 timestamp with a UTC offset; ValueError says why not."""
    if not isinstance(text, str):
        raise ValueError("must be an ISO 8601 string with a UTC offset")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        shown = text[:64].encode("utf-8", "backslashreplace").decode("utf-8")
        raise ValueError(f"'{shown}' is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError("needs a time zone: add 'Z' or an offset such as +00:00")
    return to_us(moment)


def format_iso(moment: datetime) -> str:
    """UTC with a Z, the one form responses use."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def format_utc(moment: datetime | None, seconds: bool = False) -> str:
    """The one time format people read in the console and the admin: 24-hour ISO date and time in UTC,
    saying so (2026-12-03 09:04 UTC); '–' for none. settings' formats (cloudwatchdog/formats) match it."""
    if moment is None:
        return "–"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def floor(moment: datetime, seconds: int) -> datetime:
    """The start of the `seconds`-long period (aligned to the epoch) that holds `moment`."""
    return EPOCH + timedelta(seconds=(moment - EPOCH) // timedelta(seconds=seconds) * seconds)


def sql_at(us: str) -> str:
    """SQL for the timestamptz that `us`, an SQL expression of µs since the epoch, stands for."""
    return f"timestamptz 'epoch' + ({us}) * interval '1 microsecond'"


def sql_us(moment: str) -> str:
    """SQL for the µs since the epoch (a bigint) of `moment`, an SQL timestamptz expression."""
    return f"(extract(epoch FROM ({moment})) * 1000000)::bigint"
