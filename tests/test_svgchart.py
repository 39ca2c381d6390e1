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
