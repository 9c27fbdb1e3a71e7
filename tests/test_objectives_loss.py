"""L1 loss = mean absolute difference over the dimensions, checked by hand."""

import math

import pytest
import torch

from hypothesis import given, settings
from hypothesis import strategies as st

from promptopt.objectives import (ENTROPY_PENALTY, MASS_PENALTY, ObjectivesError, abs_errors, answer_entropy,
                                  entropy_penalty, l1_loss, mass_penalty, shift_penalty)


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


def test_answer_entropy_is_0_for_a_picked_option_and_1_for_uniform_over_each_items_own_options():
    # item 0 has 5 options, item 1 has 2 (its last three are padding, zero as the evaluator gives them)
    n = torch.tensor([5, 2])
    picked = torch.tensor([[[0, 0, 1.0, 0, 0], [1.0, 0, 0, 0, 0]]])
    uniform = torch.tensor([[[0.2] * 5, [0.5, 0.5, 0, 0, 0]]])
    mixed = torch.tensor([[[0.2] * 5, [1.0, 0, 0, 0, 0]]])
    out = answer_entropy(torch.cat([picked, uniform, mixed]), n)
    assert out.tolist() == pytest.approx([0.0, 1.0, 0.5], abs=1e-6)
    # by hand: p = (0.5, 0.25, 0.25) over 5 options: 1.5 bits / log2(5)
    half = torch.tensor([[[0.5, 0.25, 0.25, 0, 0]]])
    assert answer_entropy(half, torch.tensor([5])).item() == pytest.approx(1.5 / math.log2(5), abs=1e-6)
    with pytest.raises(ObjectivesError, match="n_options"):
        answer_entropy(uniform, torch.tensor([5, 2, 2]))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(2, 7), st.integers(0, 2**31 - 1))
def test_answer_entropy_lies_in_0_1_and_does_not_depend_on_the_order_of_the_options(p, q, o, seed):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(p, q, o, generator=gen) ** 4   # often peaked
    probs = probs / probs.sum(-1, keepdim=True)
    out = answer_entropy(probs, torch.full((q,), o))
    assert out.shape == (p,) and ((out >= -1e-6) & (out <= 1 + 1e-6)).all()
    shuffled = probs[..., torch.randperm(o, generator=gen)]
    assert torch.allclose(answer_entropy(shuffled, torch.full((q,), o)), out, atol=1e-5)


def test_entropy_penalty_is_zero_under_the_cap_and_grows_three_points_per_hundredth_above():
    out = entropy_penalty(torch.tensor([0.5, 0.6, 0.7]), 0.6)
    assert out.tolist() == pytest.approx([0.0, 0.0, 30.0], abs=1e-4)
    assert ENTROPY_PENALTY * 0.01 == pytest.approx(3.0)


def test_shift_penalty_is_zero_at_the_bare_answers_and_grows_weight_points_per_mean_answer_point_moved():
    bare = torch.tensor([1.0, 2.0, 1.5])
    means = torch.stack([bare, bare + torch.tensor([1.0, -1.0, 0.0]), bare + 0.5])   # [P, Q]
    assert shift_penalty(means, bare, 6.0).tolist() == pytest.approx([0.0, 4.0, 3.0])
