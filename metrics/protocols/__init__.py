"""The agent protocols: OTLP/HTTP metrics (otlp) and Prometheus remote write 1.0 (remote_write).

Each turns a request body into the same `metrics.ingest.Event`s as the JSON API, so the same
limits, validation and first-write-wins rules apply (metrics.services.points_ingest), and
reports what it refused or dropped while converting. remote_write_pb2 is generated from
remote_write.proto by `make protos`; the OTLP classes come from the opentelemetry-proto package.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cloudwatchdog.timeutil import format_iso, from_us
from metrics.ingest import Event, shown

# What a point is called when a protocol gives no name for its service or resource. OTLP's SDKs
# say "unknown_service" for a missing service.name; the resource follows the same pattern.
UNKNOWN_SERVICE = "unknown_service"
UNKNOWN_RESOURCE = "unknown_resource"


@dataclass
class Converted:
    """A protocol request as events, with the points refused or dropped on the way."""

    events: list[Event] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why each refused point was refused, naming it
    dropped: int = 0  # deliberately not stored: staleness markers, points with no recorded value

    def refuse(self, what: str, reason: str) -> None:
        self.refused.append(f"{what}: {reason}")


def point_name(event: Event) -> str:
    """How an error names one point: its metric, series identity and time."""
    try:
        when = format_iso(from_us(event.timestamp))
    except (OverflowError, TypeError):
        when = f"{event.timestamp} µs since the epoch"
    # Names cut short: a refused megabyte-long name must not come back a megabyte long, five times.
    return (f"{shown(event.metric_name, 200)} (service {shown(event.service, 200)!r}, resource "
            f"{shown(event.resource_id, 200)!r}) at {when}")


def rejections_named(events: list[Event], rejected: list[dict]) -> list[str]:
    """points_ingest's rejections (by index, errors by field) as sentences naming each point."""
    return [
        f"{point_name(events[item['index']])}: " + "; ".join(
            f"{field_name} {message}" for field_name, messages in item["errors"].items() for message in messages)
        for item in rejected
    ]


_REASON_CHARS = 1000


def summary(reasons: list[str], *, total: int, noun: str, shown: int = 5) -> str:
    """'N of M <noun>s refused: <the first few reasons>' for a response that names what it refused."""
    head = "; ".join(reason if len(reason) <= _REASON_CHARS else reason[:_REASON_CHARS] + "…"
                     for reason in reasons[:shown])
    more = f"; and {len(reasons) - shown} more" if len(reasons) > shown else ""
    return f"{len(reasons)} of {total} {noun}s refused: {head}{more}"
