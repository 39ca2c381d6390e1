"""Numbers and units as people write them: 4 significant digits (94.59200000000001 -> 94.59) and the
UCUM units series carry (Cel, By/s, {requests}) as °C, B/s, requests. Plain Python: the SVG chart, the
console's pages and the admin lists all show values through here, so they agree."""
from __future__ import annotations

import math

# UCUM atoms (and the Prometheus unit suffixes the metrics app keeps as units) that read differently.
_ATOMS = {"Cel": "°C", "[degF]": "°F", "By": "B", "bytes": "B", "us": "µs", "seconds": "s", "percent": "%",
          "celsius": "°C", "1": "", "ratio": ""}
_PREFIXES = ("Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T")
_NO_SPACE = ("%", "")  # 42% but 42 ms, 21.5 °C (the SI way)


def _atom_label(atom: str) -> str:
    if atom.startswith("{") and atom.endswith("}"):
        return atom[1:-1]  # an annotation is a count of things: {requests} -> requests
    if atom in _ATOMS:
        return _ATOMS[atom]
    for prefix in _PREFIXES:
        if atom.startswith(prefix) and atom[len(prefix):] == "By":
            return f"{prefix}B"
    return atom


def unit_label(ucum: str) -> str:
    """The unit as people write it: Cel -> °C, By/s -> B/s, {requests} -> requests, 1 -> '' (a plain number)."""
    ucum = (ucum or "").strip()
    if not ucum:
        return ""
    return "/".join(_atom_label(part) for part in ucum.split("/"))


def rate_label(ucum: str) -> str:
    """The unit of a counter drawn as its rate per second: {requests} -> requests/s, By -> B/s."""
    label = unit_label(ucum)
    return f"{label}/s" if label and label != "%" else "per second"


def value_label(*, kind: str, ucum: str) -> str:
    """The unit of a series' values as the console shows them: a counter's are its rate per second."""
    return rate_label(ucum) if kind == "counter" else unit_label(ucum)


def number(value: float, digits: int = 4) -> str:
    """`digits` significant digits, thousands separated: 94.59200000000001 -> 94.59, 1234567.8 -> 1,235,000;
    beyond a billion or below 0.0001, scientific (2.5e+12). The engine's reason sentences write them alike."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e9 or abs(value) < 1e-4:
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    rounded = float(f"{value:.{digits}g}")
    if rounded == int(rounded) and abs(rounded) >= 1:
        return f"{int(rounded):,}"
    decimals = max(digits - 1 - int(math.floor(math.log10(abs(rounded)))), 0)
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantity(value: float | None, label: str = "", digits: int = 4) -> str:
    """A value with its unit as `unit_label` writes it: 94.59 °C, 42%, 1,200 B/s, 12 requests; '–' for none."""
    if value is None:
        return "–"
    shown = number(float(value), digits)
    if label in _NO_SPACE:
        return f"{shown}{label}"
    return f"{shown} {label}"
