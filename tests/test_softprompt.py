"""Soft-prompt search spaces: shapes, bounds from the embedding table, z0 decodes to x0, seeding."""

from __future__ import annotations

import pytest
import torch

from promptopt.softprompt import fittest_tokens, make_space, punctuation_ids


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


@pytest.mark.parametrize("radius", [0.5, 0.05])
def test_a_narrow_direct_box_still_holds_its_starting_prompt(table, radius):
    space = make_space(table, 3, 0, seed=0, radius=radius)
    assert ((space.z0 >= space.lower) & (space.z0 <= space.upper)).all()
    wide = make_space(table, 3, 0, seed=0)
    assert (space.upper - space.lower).sum() < (wide.upper - wide.lower).sum()   # and is still narrower


def test_more_soft_tokens_than_usable_tokens_are_refused(table):
    with pytest.raises(ValueError, match="--tokens 99 is more than this model can supply.*only 97 that are not special; use --tokens 97 or fewer"):
        make_space(table, 99, 5, seed=0, special_ids={0, 1, 2})


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


def test_tokens_basis_directions_are_real_non_special_tokens_minus_the_mean_embedding(table):
    space = make_space(table, n_tokens=2, subspace=6, seed=5, special_ids={0, 1}, basis="tokens")
    assert space.describe()["basis"] == "tokens"
    scale = (3.0 / 6) ** 0.5
    offsets = (space.projection / scale).reshape(6 * 2, 8) + table.mean(0)   # back to embeddings, one per (row, token)
    distance = torch.cdist(offsets, table)                                     # [12, V]
    nearest = distance.argmin(1)
    assert torch.allclose(distance.min(1).values, torch.zeros(12), atol=1e-4)  # every direction is some real token
    assert not set(nearest.tolist()) & {0, 1}                                  # never a special one
    again = make_space(table, n_tokens=2, subspace=6, seed=5, special_ids={0, 1}, basis="tokens")
    assert torch.equal(again.projection, space.projection)


def test_tokens_basis_follows_the_tables_correlations_where_gaussian_does_not():
    # a table whose 8 dimensions all move together: real tokens vary along one direction only
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(500, 1, generator=gen) * torch.ones(1, 8) + 0.01 * torch.randn(500, 8, generator=gen)
    def share_along_ones(basis):
        a = make_space(table, 1, 32, seed=0, basis=basis).projection       # [32, 8]
        along = a @ torch.ones(8) / 8 ** 0.5
        return float((along ** 2).sum() / (a ** 2).sum())
    assert share_along_ones("tokens") > 0.99
    assert share_along_ones("gaussian") < 0.5


def test_both_bases_move_candidates_about_as_far_from_x0(table):
    z = torch.rand(2000, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    spaces = {b: make_space(table, 2, 16, seed=0, basis=b) for b in ("gaussian", "tokens")}
    steps = {b: (s.decode(z) - s.x0).std() for b, s in spaces.items()}
    assert 0.7 < float(steps["tokens"] / steps["gaussian"]) < 1.4


def test_bad_basis_is_rejected(table):
    with pytest.raises(ValueError, match="basis"):
        make_space(table, 2, 5, seed=0, basis="pca")


def test_punctuation_candidates_are_single_marks_or_a_space_and_never_special():
    from promptopt.models import build_tiny

    tokenizer = build_tiny().tokenizer
    ids = punctuation_ids(tokenizer)
    assert ids and not set(ids) & set(tokenizer.all_special_ids)
    assert all(len(tokenizer.decode([i])) == 1 and not tokenizer.decode([i]).isalnum() for i in ids)


@pytest.mark.parametrize("n_tokens", [1, 3])
def test_fittest_tokens_repeats_the_candidate_of_lowest_fitness_k_times(table, n_tokens):
    target = table[7]
    seen = []

    def fitness(soft):   # lowest for the candidate whose every token is row 7 of the table
        seen.append(soft.shape)
        return (soft - target).abs().sum((1, 2))

    assert fittest_tokens(table, [3, 7, 11], n_tokens, fitness) == [7] * n_tokens
    assert seen == [(3, n_tokens, table.shape[1])]   # one population, scored in one call
    with pytest.raises(ValueError, match="no candidate"):
        fittest_tokens(table, [], n_tokens, fitness)


def test_a_subspace_whose_projection_does_not_fit_in_memory_is_refused_before_it_is_allocated(monkeypatch):
    import promptopt.softprompt as softprompt

    emb = torch.randn(50, 16)
    monkeypatch.setattr(softprompt, "available_memory", lambda: 2 * 4 * 1000 * 2 * 16)   # room for d = 1000, K = 2
    assert softprompt.make_space(emb, n_tokens=2, subspace=1000, seed=0).dim == 1000
    with pytest.raises(ValueError, match=r"--subspace 1001 needs a .* GiB projection \(d x K x H = 1001 x 2 x 16 "
                                         r"float32\).*K x H = 32 values, so use --subspace 32"):
        softprompt.make_space(emb, n_tokens=2, subspace=1001, seed=0)


def test_the_memory_left_is_read_as_a_plausible_number_of_bytes_on_linux():
    from promptopt.softprompt import available_memory

    free = available_memory()
    assert free is not None and 2**20 < free < 2**50   # Linux: from /proc/meminfo
