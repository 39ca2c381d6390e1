"""The SVG chart drawer on plain data: gaps stay gaps, ticks are round, text is escaped."""
import re

from cloudwatchdog import svgchart

MINUTE = 60_000_000


def test_a_gap_in_the_points_is_a_gap_in_the_line_and_the_band():
    points = [(k * MINUTE, 10.0 + k % 3) for k in range(10)] + [(k * MINUTE, 12.0) for k in range(30, 40)]
    band = [(t, 11.0, 9.0, 13.0) for t, _ in points]
    svg = svgchart.render(svgchart.Chart(0, 40 * MINUTE, points=points, band=band, gap_us=3 * MINUTE))
    line = re.search(r'<path class="line" d="([^"]+)"', svg).group(1)
    assert line.count("M") == 2 and len(re.findall(r"[ML][\d.]+,[\d.]+", line)) == 20
    assert svg.count('<polygon class="band"') == 2


def test_ticks_are_round_values_and_whole_minutes_and_hours():
    assert svgchart.nice_ticks(0.13, 0.97) == [0.2, 0.4, 0.6, 0.8]
    assert svgchart.nice_ticks(-1087.96, 1263.67) == [-1000.0, -500.0, 0.0, 500.0, 1000.0]
    ticks, fmt = svgchart.time_ticks(0, 14 * 3600 * 1_000_000)
    assert fmt == "%H:%M" and all(t % (3600 * 1_000_000) == 0 for t in ticks) and 4 <= len(ticks) <= 8


def test_titles_and_links_are_escaped_and_an_empty_range_says_so():
    marker = svgchart.Marker(MINUTE, 5.0, "high", 'Value <b>"5"</b> & more', href="/x?a=1&b=2")
    svg = svgchart.render(svgchart.Chart(0, 2 * MINUTE, markers=[marker]))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and 'href="/x?a=1&amp;b=2"' in svg
    assert "No points in this range." in svg


def test_the_time_axis_carries_the_date_and_a_line_marks_now():
    day = 86_400 * 1_000_000
    start = 20_000 * day + 18 * 60 * MINUTE  # 2024-10-04 18:00 UTC, over midnight to 08:00
    points = [(start + k * MINUTE, 1.0 + k % 3) for k in range(14 * 60)]
    svg = svgchart.render(svgchart.Chart(start, start + 14 * 60 * MINUTE, points=points,
                                         now_us=start + 13 * 60 * MINUTE, unit="°C"))
    dates = re.findall(r'<text class="date"[^>]*>([^<]+)</text>', svg)
    assert dates == ["2024-10-04", "2024-10-05"]
    assert re.search(r'<line class="now" x1="([\d.]+)"', svg) and ">now</text>" in svg
    assert '<text class="unit" x="2" y="11.5">°C</text>' in svg
    later = svgchart.render(svgchart.Chart(start, start + 60 * MINUTE, points=points[:60], now_us=start + day))
    assert 'class="now"' not in later  # now outside the range: no line


def test_value_ticks_have_four_significant_digits_unless_that_would_repeat_one():
    points = [(k * MINUTE, 94.59200000000001 + k * 0.013) for k in range(10)]
    svg = svgchart.render(svgchart.Chart(0, 10 * MINUTE, points=points))
    assert "94.6<" in svg or "94.65<" in svg
    assert svgchart._value_labels([10000.5, 10001.0, 10001.5]) == ["10,000.5", "10,001", "10,001.5"]


def test_each_size_keeps_its_text_at_10_px_or_more_wherever_the_page_shows_it():
    shown_from = 300  # CSS px: the narrowest box the narrow chart is shown in (a 320 px phone, less padding)
    for size in reversed(svgchart.SIZES):
        assert size.font * shown_from / size.width >= 10, size.name
        shown_from = size.shown_below
    fitted = svgchart.render_fitted(svgchart.Chart(0, 10 * MINUTE, points=[(0, 1.0)]), chart_id="x")
    assert fitted.count("<svg ") == 3 and "container-type:inline-size" in fitted
    assert len(set(re.findall(r'clipPath id="([^"]+)"', fitted))) == 3
