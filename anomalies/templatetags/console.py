"""Filters of the support console: numbers as people read them (as the reason sentences write them)."""
from django import template

from anomalies.engine.explain import readable

register = template.Library()


@register.filter
def sig(value, digits: int = 4):
    """A number to `digits` significant digits, thousands separated (-0.010700000000000001 -> -0.0107)."""
    if value is None or value == "":
        return "–"
    try:
        return readable(float(value), int(digits))
    except (TypeError, ValueError):
        return value
