"""Soft-prompt search spaces: shapes, bounds from the embedding table, z0 decodes to x0, seeding."""

from __future__ import annotations

import pytest
import torch

from promptopt.softprompt import make_space


@pytest.fixture
def table():
    return torch.randn(100, 8, generator=torch.Generator().manual_seed(0))


def test_subspace_decodes_affinely_around_x0(table):
    space = make_space(table, n_tokens=3, subspace=5, seed=1)
    assert space.dim == 5 and space.kind == "subspace"
    assert torch.equal(space.decode(space.z0[None])[0], space.x0)
    z = torch.rand(4, 5) * 2 - 1
    soft = space.decode(z)
    assert soft.shape == (4, 3, 8)
    # linear in z: decode(a) + decode(b) - x0 == decode(a + b)
    both = space.decode(z[:1] + z[1:2])[0]
    assert torch.allclose(soft[0] + soft[1] - space.x0, both, atol=1e-5)


def test_direct_space_bounds_are_the_per_dimension_range_of_real_embeddings(table):
    space = make_space(table, n_tokens=2, subspace=0, seed=0)
    assert space.dim == 16 and space.kind == "direct"
    assert torch.equal(space.lower[:8], table.min(0).values) and torch.equal(space.upper[8:], table.max(0).values)
    assert torch.equal(space.decode(space.z0[None])[0], space.x0)
    assert ((space.z0 >= space.lower) & (space.z0 <= space.upper)).all()


def test_x0_is_made_of_real_non_special_token_embeddings_chosen_by_seed(table):
    a = make_space(table, 4, 5, seed=3, special_ids={0, 1, 2})
    b = make_space(table, 4, 5, seed=3, special_ids={0, 1, 2})
    c = make_space(table, 4, 5, seed=4, special_ids={0, 1, 2})
    assert a.init_tokens == b.init_tokens and a.init_tokens != c.init_tokens
    assert not set(a.init_tokens) & {0, 1, 2}
    assert torch.equal(a.x0, table[a.init_tokens]) and torch.equal(a.projection, b.projection)


@pytest.mark.parametrize("tokens, subspace", [(0, 5), (2, -1)])
def test_bad_sizes_are_rejected(table, tokens, subspace):
    with pytest.raises(ValueError):
        make_space(table, tokens, subspace, seed=0)


@pytest.mark.parametrize("subspace", [0, 5])
def test_radius_scales_the_distance_from_x0_and_keeps_the_centre(table, subspace):
    one = make_space(table, 2, subspace, seed=0)
    three = make_space(table, 2, subspace, seed=0, radius=3.0)
    assert torch.equal(one.x0, three.x0) and three.describe()["radius"] == 3.0
    if subspace:   # same z, three times the step from x0
        z = torch.rand(4, subspace) * 2 - 1
        assert torch.allclose(three.decode(z) - three.x0, 3 * (one.decode(z) - one.x0), atol=1e-5)
    else:          # the box keeps its centre and triples its width
        assert torch.allclose(three.upper - three.lower, 3 * (one.upper - one.lower))
        assert torch.allclose(three.upper + three.lower, one.upper + one.lower, atol=1e-5)


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan")])
def test_bad_radius_is_rejected(table, radius):
    with pytest.raises(ValueError, match="radius"):
        make_space(table, 2, 5, seed=0, radius=radius)


@pytest.mark.parametrize("subspace", [0, 5])
def test_init_ids_set_x0_first_random_tokens_fill_up_and_the_projection_stays(table, subspace):
    plain = make_space(table, n_tokens=3, subspace=subspace, seed=4)
    given = make_space(table, n_tokens=3, subspace=subspace, seed=4, init_ids=[7])
    assert given.init_tokens == [7] + plain.init_tokens[:2]
    assert torch.equal(given.x0, table[given.init_tokens])
    assert make_space(table, n_tokens=3, subspace=subspace, seed=4, init_ids=[9, 8, 7, 6]).init_tokens == [9, 8, 7]
    assert make_space(table, n_tokens=3, subspace=subspace, seed=4, init_ids=[9, 8, 7, 6],
                      special_ids={8}).init_tokens == [9, 7, 6]  # special tokens never start a soft prompt
    if subspace:  # only x0 moves: the same seed draws the same projection
        assert torch.equal(given.projection, plain.projection)
    with pytest.raises(ValueError, match="init token ids"):
        make_space(table, n_tokens=3, subspace=subspace, seed=4, init_ids=[100])
