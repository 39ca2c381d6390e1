"""The project's NAB scorer on hand-computed cases."""
import math

import pytest

from bench.nab_scoring import PROFILES, file_score, normalized, probation_rows, scaled_sigmoid

STANDARD = PROFILES[0]


def test_the_sigmoid_matches_nab_at_its_landmarks():
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.9866
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0


def test_a_detection_at_a_windows_left_edge_scores_one_and_later_ones_are_free():
    detections = [False] * 1000
    detections[500] = detections[505] = True
    score, counts = file_score(detections, [(500, 509)], STANDARD)
    assert score == pytest.approx(1.0)
    assert counts == {"detected": 1, "missed": 0, "false_positives": 0}


def test_a_detection_mid_window_scores_by_the_sigmoid():
    detections = [False] * 1000
    detections[504] = True  # window 500..509, width 10: position -(509-504+1)/10 = -0.6
    score, _ = file_score(detections, [(500, 509)], STANDARD)
    expected = (2 / (1 + math.exp(-3.0)) - 1) / (2 / (1 + math.exp(-5.0)) - 1)
    assert score == pytest.approx(expected)


def test_false_positives_cost_by_distance_after_a_window_and_fully_before_the_first():
    detections = [False] * 1000
    detections[400] = True  # before the window: full cost 0.11
    detections[514] = True  # 5 rows after a width-10 window: q = 5/9
    score, counts = file_score(detections, [(500, 509)], STANDARD)
    after = 2 / (1 + math.exp(5 * 5 / 9)) - 1
    assert counts == {"detected": 0, "missed": 1, "false_positives": 2}
    assert score == pytest.approx(-1.0 - 0.11 + 0.11 * after)


def test_detections_in_the_probationary_period_count_for_nothing():
    assert probation_rows(1000) == 150 and probation_rows(10_000) == 750
    detections = [False] * 1000
    detections[10] = True
    score, counts = file_score(detections, [], STANDARD)
    assert score == 0.0 and counts["false_positives"] == 0


def test_normalisation_puts_never_firing_at_zero_and_perfect_at_one_hundred():
    assert normalized(-55, 55, STANDARD) == 0.0
    assert normalized(55, 55, STANDARD) == 100.0
    assert normalized(0, 55, STANDARD) == 50.0
    low_fn = PROFILES[2]
    assert normalized(-110, 55, low_fn) == 0.0
