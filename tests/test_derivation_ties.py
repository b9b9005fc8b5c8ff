"""SPEC 1.7's tie rule on mathematically equal edge strengths."""

import numpy as np

from cellnas.supernet import derive_cell


def test_edges_whose_logits_are_permutations_tie_and_go_to_the_lower_input():
    # mathematically equal strengths (the same logits in another order, `none` unchanged) must tie exactly, so that
    # the stable rule of SPEC 1.7 keeps the lower inputs; a softmax whose sum depends on the order broke such ties
    rng = np.random.default_rng(0)
    differing = 0
    for trial in range(300):
        values = rng.choice([0.0, 0.5, 1.0], size=7) if trial % 2 else rng.choice([0.0, 1e-3], size=7)
        rows = [np.concatenate([[0.25], rng.permutation(values)]) for _ in range(3)]
        alphas = np.concatenate([rng.normal(size=(2, 8)) * 1e-3, np.stack(rows)])  # node 0: 2 rows, node 1: 3
        cell = derive_cell(alphas, n_nodes=2, k=2)
        inputs = [i for _, i in cell.nodes[1]]
        differing += inputs != [0, 1]
    assert differing == 0
