"""Evaluation networks and genotypes whose cells carry no signal (cells with only ``none`` edges)."""

import logging

import pytest
import torch

from cellnas.genotype import Genotype
from cellnas.network import build_network
from cellnas.zoo import get_genotype

C4 = [2, 3, 4, 5]
NONE_CELL = [("none", 0), ("none", 1)] * 4
DARTS_V2 = get_genotype("DARTS_V2")


def _tiny(g: Genotype, kind: str = "cifar", **kw):
    return build_network(g, kind, num_classes=3, C=4, layers=5, in_channels=3, **kw)  # cells N R N R N


@pytest.mark.parametrize("kind", ["cifar", "imagenet"])
def test_a_network_whose_output_cannot_depend_on_its_input_is_built_with_a_warning(kind, caplog):
    # Wan et al.'s op-disabling study (SPEC 5.2) makes such variants on purpose: chance level is its result
    g = Genotype.from_darts(NONE_CELL, C4, DARTS_V2.reduce.pairs, C4)
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        net = _tiny(g, kind).eval()
    assert "cell 'normal' has only 'none' edges: its output is constant zero" in caplog.text
    assert "does not depend on its input" in caplog.text and "chance level" in caplog.text
    size = 8 if kind == "cifar" else 16
    logits, _ = net(torch.randn(2, 3, size, size))
    assert torch.allclose(logits[0], logits[1])


def test_a_network_with_an_all_none_reduce_cell_builds_with_a_warning_and_still_sees_its_input(caplog):
    g = Genotype.from_darts(DARTS_V2.normal.pairs, C4, NONE_CELL, C4)
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        net = _tiny(g).eval()
    assert "cell 'reduce' has only 'none' edges: its output is constant zero" in caplog.text
    x = torch.randn(2, 3, 8, 8)
    logits, _ = net(x)
    assert not torch.allclose(logits[0], logits[1])  # the next cells read around the reduction cell


def test_allow_constant_output_builds_the_network_for_inspection(caplog):
    g = Genotype.from_darts(NONE_CELL, C4, NONE_CELL, C4)
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        net = _tiny(g, allow_constant_output=True).eval()
    logits, _ = net(torch.randn(2, 3, 8, 8))
    assert torch.allclose(logits[0], logits[1])
    assert caplog.text == ""  # the caller (e.g. cellnas info) reports the problem itself


def test_whether_a_constant_cell_silences_the_network_depends_on_the_network_layout(caplog):
    from cellnas.network import signal_report

    reduce_none = Genotype.from_darts(DARTS_V2.normal.pairs, C4, NONE_CELL, C4)
    messages, depends = signal_report(reduce_none, 5)  # cells N R N R N: the last normal cell reads cell 2
    assert depends and len(messages) == 1
    messages, depends = signal_report(reduce_none, 3)  # cells N R R: the last cell is an all-none reduction
    assert not depends and "the network's output (3 cells) does not depend on its input" in messages[0]
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        build_network(reduce_none, "cifar", num_classes=3, C=4, layers=3)
    assert "cell 'reduce' has only 'none' edges" in caplog.text and "does not depend on its input" in caplog.text
    assert signal_report(DARTS_V2, 20) == ([], True)
