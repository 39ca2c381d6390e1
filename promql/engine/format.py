"""Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses for sample values and count_values' label:
the shortest text that reads back as v, never with an exponent."""
import math

import numpy as np


def format_value(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text or "E" in text:
        return np.format_float_positional(value, unique=True, trim="-")
    return text[:-2] if text.endswith(".0") else text
