"""Numbers, units and times as the console and the admin write them: plain functions, no database."""
from datetime import datetime, timedelta, timezone

import pytest

from cloudwatchdog.timeutil import format_utc
from cloudwatchdog.units import number, quantity, rate_label, unit_label, value_label


@pytest.mark.parametrize("ucum, shown", [
    ("Cel", "°C"), ("%", "%"), ("ms", "ms"), ("By/s", "B/s"), ("{requests}", "requests"), ("By", "B"), ("s", "s"),
    ("1", ""), ("", ""), ("KiBy", "KiB"), ("MBy/s", "MB/s"), ("{request}/s", "request/s"), ("us", "µs"),
    ("[degF]", "°F"), ("bytes", "B"), ("W", "W"),
])
def test_ucum_units_read_as_people_write_them(ucum, shown):
    assert unit_label(ucum) == shown


def test_a_counter_is_shown_per_second_of_its_unit():
    assert rate_label("{requests}") == "requests/s" and rate_label("By") == "B/s" and rate_label("") == "per second"
    assert value_label(kind="counter", ucum="By") == "B/s" and value_label(kind="gauge", ucum="By") == "B"


@pytest.mark.parametrize("value, shown", [
    (94.59200000000001, "94.59"), (-0.010700000000000001, "-0.0107"), (1234567.8, "1,235,000"), (48.50071, "48.5"),
    (0.0, "0"), (12.0, "12"), (0.5, "0.5"), (999.96, "1,000"), (2.5e12, "2.5e+12"), (3e-7, "3e-07"),
    (float("nan"), "nan"),
])
def test_numbers_have_at_most_four_significant_digits(value, shown):
    assert number(value) == shown


def test_a_quantity_puts_the_unit_where_people_do():
    assert quantity(94.59200000000001, "°C") == "94.59 °C"
    assert quantity(42.123, "%") == "42.12%"
    assert quantity(1200.0, "B/s") == "1,200 B/s"
    assert quantity(12, "requests") == "12 requests"
    assert quantity(0.25, "") == "0.25" and quantity(None, "ms") == "–"


def test_times_are_24_hour_iso_in_utc_saying_so():
    moment = datetime(2026, 12, 3, 21, 4, 5, tzinfo=timezone(timedelta(hours=12)))
    assert format_utc(moment) == "2026-12-03 09:04 UTC"
    assert format_utc(moment, seconds=True) == "2026-12-03 09:04:05 UTC"
    assert format_utc(None) == "–"
