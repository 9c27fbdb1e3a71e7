"""L1 loss = mean absolute difference over the dimensions, checked by hand."""

import pytest
import torch

from promptopt.objectives import MASS_PENALTY, ObjectivesError, abs_errors, l1_loss, mass_penalty


def test_l1_by_hand():
    scores = torch.tensor([50.0, 50, 50, 50, 50, 50])
    target = torch.tensor([40.0, 91, 62, 46, 26, 68])
    # |10| + |41| + |12| + |4| + |24| + |18| = 109; / 6
    assert l1_loss(scores, target).item() == pytest.approx(109 / 6)
    assert abs_errors(scores, target).tolist() == [10, 41, 12, 4, 24, 18]


def test_l1_batched():
    scores = torch.tensor([[40.0, 91, 62, 46, 26, 68], [46.0, 91, 62, 46, 26, 68]])
    out = l1_loss(scores, [40.0, 91, 62, 46, 26, 68])
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([0.0, 1.0])
    assert l1_loss(torch.zeros(3, 4, 6), torch.ones(6)).shape == (3, 4)


def test_l1_mismatch_error():
    with pytest.raises(ObjectivesError, match="same D"):
        l1_loss(torch.zeros(2, 5), torch.zeros(6))


def test_mass_penalty_is_zero_above_the_floor_and_grows_ten_points_per_percentage_point_below():
    mass = torch.tensor([[0.30, 0.10], [0.05, 0.05], [0.12, 0.08]])   # [P, Q]: means 0.2, 0.05, 0.1
    out = mass_penalty(mass, 0.1)
    assert out.shape == (3,)
    assert out.tolist() == pytest.approx([0.0, 50.0, 0.0], abs=1e-4)
    assert MASS_PENALTY * 0.01 == pytest.approx(10.0)
