"""Rank agreement, against values worked out by hand."""

import math

import pytest

from nasfpn.export.ranking import kendall_tau, spearman_rho


def test_kendall_tau_b_with_ties():
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # pairs: (1,2) tie in b, (1,3) +, (2,3) +  -> (2 - 0) / sqrt(3 * 2)
    assert kendall_tau([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_spearman_rho_averages_tied_ranks():
    assert spearman_rho([10, 20, 30], [1, 2, 3]) == pytest.approx(1.0)
    # ranks of b: 1.5, 1.5, 3 -> covariance 1.5, variances 2 and 1.5
    assert spearman_rho([1, 2, 3], [5, 5, 9]) == pytest.approx(1.5 / math.sqrt(2 * 1.5))
