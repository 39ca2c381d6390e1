"""Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses for sample values and count_values' label:
the shortest text that reads back as v, never with an exponent."""
import math

import numpy as np


def format_value(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        return _non_finite(value)
    text = repr(value)
    if "e" in text or "E" in text:
        return np.format_float_positional(value, unique=True, trim="-")
    return text[:-2] if text.endswith(".0") else text


def format_go(value: float) -> str:
    """Go's %v of a float64, for error messages: NaN, +Inf, 1e+19, 0.5."""
    value = float(value)
    if not math.isfinite(value):
        return _non_finite(value)
    text = repr(value)
    if "e" not in text and abs(value) < 1e21:
        return text[:-2] if text.endswith(".0") else text
    mantissa, exponent = text.split("e")
    return f"{mantissa.removesuffix('.0')}e{exponent[0] if exponent[0] in '+-' else '+'}{exponent.lstrip('+-').zfill(2)}"


def _non_finite(value: float) -> str:
    """Go's text of NaN and the infinities, in both formats."""
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
