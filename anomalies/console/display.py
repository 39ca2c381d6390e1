"""How the console and the anomalies' admin lists show a row: cut text, band words, severity badges,
values with their series' unit, and who acted."""
from django.utils.html import format_html

from cloudwatchdog import units


def cut(text: str, length: int) -> str:
    if len(text) <= length:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[:length - 1])


def band_word(out_of_band: bool) -> str:
    # Words, not the admin's tick and cross: a green tick for "out of band" would read as fine.
    return "OUT OF BAND" if out_of_band else "in band"


def severity_badge(severity: str):
    colours = {"low": "#ca8a04", "medium": "#ea580c", "high": "#dc2626"}
    return format_html('<span style="color:#fff;background:{};padding:1px 7px;border-radius:8px">{}</span>',
                       colours.get(severity, "#6b7280"), severity)


def series_quantity(series, value: float | None) -> str:
    """A value of the series to 4 significant digits with its unit (a counter's: per second)."""
    return units.quantity(value, units.value_label(kind=series.kind, ucum=series.unit))


def admin_actor(request) -> str:
    return f"user:{request.user.get_username()}"


def duration(length) -> str:
    """A timedelta as on-call says it: 45 min, 2 h 14 min, 3 d 4 h."""
    minutes = int(length.total_seconds() // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
