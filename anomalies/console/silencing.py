"""Silencing from the anomaly and incident pages: a few clicks for on-call (this series, its service or
one of its tags; for 1 h, 4 h or until the incident resolves) instead of the silences form's fields."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib import messages

from anomalies import alerting
from anomalies.console import display
from anomalies.models import Incident
from metrics.models import Series

# "Until resolved" still ends: an incident replayed away, or one that never resolves, must not silence
# the series for ever.
UNTIL_RESOLVED_AT_MOST = timedelta(days=7)
DURATIONS = {"1h": ("1 hour", timedelta(hours=1)), "4h": ("4 hours", timedelta(hours=4)),
             "resolved": ("until the incident resolves (7 days at most)", UNTIL_RESOLVED_AT_MOST)}


@dataclass
class Scope:
    key: str
    label: str
    match: dict  # the silence's service, metric_name, resource_id, tags


def silence_scopes(series: Series) -> list[Scope]:
    """What a silence from a series' page can cover: the series itself, its whole service, or the series
    having one of its tags."""
    # Exactly this series (by id: matching by its fields would also cover series with more tags);
    # its fields are kept so that the silence reads as what it covers.
    scopes = [Scope("series", f"this series ({series})", {
        "series": series, "service": series.service, "metric_name": series.metric_name,
        "resource_id": series.resource_id, "tags": dict(series.tags)})]
    if series.service:
        scopes.append(Scope("service", f"every series of service {series.service}", {"service": series.service}))
    for key, value in sorted(series.tags.items()):
        scopes.append(Scope(f"tag:{key}", f"every series tagged {key}={value}", {"tags": {key: value}}))
    return scopes


def silence_durations(incident: Incident | None) -> list[tuple[str, str]]:
    open_incident = incident is not None and incident.resolved_at is None
    return [(key, label) for key, (label, _) in DURATIONS.items() if key != "resolved" or open_incident]


def silence_from_form(request, *, series: Series, incident: Incident | None, now: datetime) -> None:
    """Create the silence the page's form asked for; the outcome, or why not, as a message."""
    scope = next((s for s in silence_scopes(series) if s.key == request.POST.get("scope")), None)
    duration = dict(silence_durations(incident)).get(request.POST.get("duration", "")) and request.POST["duration"]
    if scope is None or not duration:
        messages.error(request, "Choose what to silence and for how long.")
        return
    label, length = DURATIONS[duration]
    data = {"service": "", "metric_name": "", "resource_id": "", "tags": {}, **scope.match, "start": now,
            "end": now + length, "note": request.POST.get("note", "").strip()[:4000],
            "ends_with_incident": incident if duration == "resolved" else None}
    try:
        alerting.silence_create(tenant=series.tenant, data=data, actor=display.admin_actor(request))
    except alerting.TooManySilences as error:
        messages.error(request, f"Not silenced: {error}.")
        return
    messages.success(request, f"Silenced {scope.label} {label if duration == 'resolved' else 'for ' + label}: "
                              "their incidents notify nobody meanwhile.")
