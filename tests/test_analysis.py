"""Pure analysis functions against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdaudit.analysis.curves import mean_sd_ci, normalized_auc, spearman
from sdaudit.analysis.selectivity import (
    bin_index,
    class_means,
    mutual_information,
    selectivity_index,
)


def test_selectivity_of_hand_made_activations():
    # Unit 0: fires only for class 2 → SI 1. Unit 1: equal for all → 0. Unit 2: dead → 0.
    # Unit 3: class means (4, 1, 1): μmax 4, μ−max 1 → (4 − 1)/(4 + 1) = 0.6.
    means = np.array([[0.0, 2.0, 0.0, 4.0], [0.0, 2.0, 0.0, 1.0], [3.0, 2.0, 0.0, 1.0]])
    si = selectivity_index(means, eps=1e-7)
    np.testing.assert_allclose(si, [1.0, 0.0, 0.0, 0.6], atol=1e-6)


def test_selectivity_shift_keeps_negative_units_in_range():
    means = np.array([[-1.0], [1.0]])
    assert selectivity_index(means, shift=np.array([-1.0]))[0] == pytest.approx(1.0)


def test_class_means_skip_absent_classes():
    sums = np.array([[2.0, 4.0], [0.0, 0.0], [3.0, 3.0]])
    counts = np.array([2, 0, 3])
    np.testing.assert_allclose(class_means(sums, counts), [[1.0, 2.0], [1.0, 1.0]])


def test_mutual_information_limits():
    # A unit whose bin is the class (2 classes, balanced): 1 bit. Independent: 0.
    perfect = np.zeros((1, 2, 2))
    perfect[0, 0, 0] = perfect[0, 1, 1] = 50
    independent = np.full((1, 2, 2), 25)
    mi = mutual_information(np.concatenate([perfect, independent]))
    np.testing.assert_allclose(mi, [1.0, 0.0], atol=1e-12)
    # Four balanced classes, each in its own bin: 2 bits.
    four = np.zeros((1, 4, 4))
    four[0, np.arange(4), np.arange(4)] = 10
    assert mutual_information(four)[0] == pytest.approx(2.0)


def test_bins_cover_min_to_max():
    values = np.array([[0.0], [0.5], [1.0]])
    np.testing.assert_array_equal(bin_index(values, np.array([0.0]), np.array([1.0]), 4)[:, 0],
                                  [0, 2, 3])


def test_normalized_auc():
    assert normalized_auc([0, 0.5, 1], [0.8, 0.8, 0.8], 0.8) == pytest.approx(1.0)
    # Linear fall from 1 to 0: area 0.5.
    assert normalized_auc([0, 0.25, 0.5, 0.75, 1], [1, 0.75, 0.5, 0.25, 0], 1.0) == \
        pytest.approx(0.5)
    # Uneven spacing is integrated, not averaged.
    assert normalized_auc([0, 0.1, 1.0], [1, 0, 0], 1.0) == pytest.approx(0.05)
    assert math.isnan(normalized_auc([0, 1], [0, 0], 0.0))


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties take average ranks: ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3, 4).
    expected = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_mean_sd_ci_uses_student_t():
    samples = np.array([[1.0], [2.0], [3.0]])
    mean, sd, lo, hi = mean_sd_ci(samples)
    assert mean[0] == 2.0
    assert sd[0] == pytest.approx(1.0)
    half = 4.303 * 1.0 / math.sqrt(3)
    assert lo[0] == pytest.approx(2.0 - half)
    assert hi[0] == pytest.approx(2.0 + half)
