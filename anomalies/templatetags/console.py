"""Filters of the support console: numbers as people read them."""
import math

from django import template

register = template.Library()


@register.filter
def sig(value, digits: int = 4):
    """A number to `digits` significant digits, thousands separated (-0.010700000000000001 -> -0.0107)."""
    if value is None or value == "":
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if not math.isfinite(number):
        return str(number)
    if number == 0:
        return "0"
    if number != 0 and (abs(number) >= 1e9 or abs(number) < 1e-4):
        return f"{number:.{digits - 1}e}"
    rounded = float(f"{number:.{digits}g}")
    if rounded == int(rounded) and abs(rounded) >= 1:
        return f"{int(rounded):,}"
    decimals = max(digits - 1 - int(math.floor(math.log10(abs(rounded)))), 0)
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
