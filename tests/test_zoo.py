"""Zoo parameter counts at the papers' evaluation settings, counted as the papers count.

How the papers count (DARTS ``cnn/utils.count_parameters_in_MB``, copied by SNAS): every
trainable parameter whose name lacks "auxiliary" — the auxiliary head is built (DARTS
trains with ``--auxiliary``) but not counted; BN affine weights/biases, the stem and the
classifier are counted; BN running statistics (buffers) are not. PTB (DARTS
``rnn/train.py``): ``sum(p.nelement() for p in model.parameters())`` — the tied
encoder/decoder matrix once, the decoder bias, W0 and one matrix per node.

Settings: CIFAR-10 = ``NetworkCIFAR`` 20 cells, C = 36, 10 classes; ImageNet =
``NetworkImageNet`` 14 cells, C = 48, 1000 classes; PTB = 850/850/850, 10,000 words.

Each row is a real build of the network (on the ``meta`` device: same modules and
shapes, no memory; ``test_meta_count_equals_real_count`` checks that this changes
nothing). ``paper`` is the number the cited table prints; ``ours`` our count to the same
rounding. Where they differ the reason is in ``why`` — we assert what the DARTS
framework gives and do not pretend to reproduce a number from another framework.
"""

from __future__ import annotations

import pytest
import torch

from nasforge import zoo
from nasforge.cost import count_parameters
from nasforge.nets import RNNModel, build_network

# name: (exact count, ours rounded to 0.1M, paper's number, why they differ or None)
CIFAR = {
    "DARTS_V2": (3_349_342, "3.3", 3.3, None),  # DARTS Table 1; DARTS train.py logs "param size = 3.349342MB" (recorded in a public annotated copy)
    "DARTS_V1": (3_169_414, "3.2", 3.3,
                 "DARTS Table 1 prints 3.3M for the first-order cell, but the released DARTS_V1 genotype "
                 "(cnn/genotypes.py) has one parametric op fewer than DARTS_V2 (no dil_conv_3x3) and gives 3.17M "
                 "in DARTS's own NetworkCIFAR; the table's number is not reproducible from the released cell"),
    "SNAS_moderate_edge_all": (2_848_222, "2.8", 2.8, None),  # SNAS Table 2
    "SNAS_aggressive_edge_all": (2_313_622, "2.3", 2.3, None),  # SNAS Table 2
    "SNAS_mild_edge_all": (2_663_542, "2.7", 2.9,
                           "SNAS Table 2 prints 2.9M for the mild cell; the released SNAS_mild(_edge_all) genotype "
                           "gives 2.66M in a network built as SNAS's model_edge_all.NetworkCIFAR is (pools with BN, "
                           "as in SNAS operations.py); not reproducible from the released cell"),
    "SNAS_moderate": (2_848_222, "2.8", 2.8, None),  # 8-edge form: same non-none edges as edge_all
    "SNAS_aggressive": (2_313_622, "2.3", 2.3, None),
    "SNAS_mild": (2_663_542, "2.7", 2.9, "see SNAS_mild_edge_all"),
    "AmoebaNet": (3_145_078, "3.1", 3.1, None),  # DARTS Table 1, AmoebaNet-A "in our setup" (†): 3.1M
    "GDAS_V1": (3_368_782, "3.4", 3.4, None),  # secondary table (GDAS 3.4M)
    "PC_DARTS_cifar": (3_634_678, "3.6", None, "no CIFAR-10 count in our reference for PC-DARTS"),
    "PC_DARTS_image": (3_721_510, "3.7", None, "searched on ImageNet; no CIFAR count reported"),
    "NASNet": (3_830_950, "3.8", 3.1,
               "DARTS Table 1: 3.3M in NASNet's own framework, 3.1M 'in our setup' (†) with a channel count "
               "DARTS does not state; at C=36 the 5-node-concat NASNet cell gives 3.83M (C=32 would give 3.06M)"),
    "PNASNet": (4_481_110, "4.5", 3.2,
                "DARTS Table 1 copies PNAS's 3.2M from PNAS's own framework (different channels); "
                "not reproducible at C=36 in DARTS's network"),
    "ENAS_micro_script": (4_394_710, "4.4", 4.6,
                          "4.6M is counted in ENAS's own TF network (micro_child.py, run with 15 layers and 36 filters), "
                          "which is wired differently; in DARTS's network the released arc gives 4.39M"),
    "ENASNet_paper_figure": (4_020_166, "4.0", 4.6,
                             "third-party transcription of the ENAS paper figure; D-X-Y annotate 4.02M in their "
                             "DARTS-style framework, which we reproduce; 4.6M is ENAS's own framework"),
}

IMAGENET = {
    "DARTS_V2": (4_718_752, "4.7", 4.7, None),  # DARTS Table 3
    "PC_DARTS_cifar": (5_270_560, "5.3", 5.3, None),  # secondary table
    "PC_DARTS_image": (5_342_464, "5.3", 5.3, None),  # secondary table
    "NASNet": (5_564_320, "5.6", 5.3, "5.3M is NASNet-A (4 @ 1056) in its own framework"),
    "AmoebaNet": (4_627_360, "4.6", 5.1, "5.1M is AmoebaNet-A in its own framework"),
    "PNASNet": (6_394_912, "6.4", 5.1, "5.1M is PNASNet-5 in its own framework"),
}

PTB = {
    "DARTS_RNN_V2": (22_960_000, "23", 23, None),  # DARTS Table 2
    "DARTS_RNN_V1": (22_960_000, "23", 23, None),
    "ENAS_RNN": (27_295_000, "27", 24,
                 "DARTS Table 2 quotes ENAS's 24M from ENAS's own model; the 12-node ENAS cell in DARTS's "
                 "850-unit model has 27.3M (ENAS's script uses 748 units: 22.0M in DARTS's model)"),
}


def _cifar_count(name: str, device: str = "meta") -> int:
    with torch.device(device):
        net = build_network(zoo.get(name), num_classes=10, in_channels=3, input_size=32, C=36, layers=20, auxiliary=True)
    return count_parameters(net)


def _imagenet_count(name: str, C: int = 48) -> int:
    with torch.device("meta"):
        net = build_network(zoo.get(name), num_classes=1000, in_channels=3, input_size=224, C=C, layers=14, auxiliary=True, style="imagenet")
    return count_parameters(net)


def _ptb_count(name: str, nhid: int = 850) -> int:
    with torch.device("meta"):
        return count_parameters(RNNModel(zoo.get(name), 10000, nhid, nhid, nhid))


def _check(count: int, row: tuple, digits: int) -> None:
    exact, rounded, paper, why = row
    assert count == exact
    assert f"{count / 1e6:.{digits}f}" == rounded
    if why is None:
        assert f"{paper:.{digits}f}" == rounded  # the paper's number, to the paper's rounding
    else:
        assert paper is None or f"{paper:.{digits}f}" != rounded  # documented difference stays true


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_counts(name):
    _check(_cifar_count(name), CIFAR[name], 1)


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_counts(name):
    _check(_imagenet_count(name), IMAGENET[name], 1)


@pytest.mark.parametrize("name", sorted(PTB))
def test_ptb_counts(name):
    _check(_ptb_count(name), PTB[name], 0)


def test_ptb_count_formula():
    # encoder = decoder (tied) V*n + decoder bias V + W0 (2n x 2n) + 8 nodes (n x 2n)
    V, n = 10000, 850
    assert _ptb_count("DARTS_RNN_V2") == V * n + V + (2 * n) * (2 * n) + 8 * n * (2 * n)
    assert _ptb_count("ENAS_RNN", 748) == 22_037_104


def test_snas_imagenet_is_secondary():
    # SNAS (mild) ImageNet "4.3M" is only quoted by later papers; SNAS's train_imagenet.py
    # uses C=50 and defaults to the moderate cell. Mild at C=50 gives 4.24M, moderate at
    # C=48 4.31M: recorded, not claimed as a reproduction.
    assert round(_imagenet_count("SNAS_mild_edge_all", C=50) / 1e6, 2) == 4.24
    assert round(_imagenet_count("SNAS_moderate_edge_all", C=48) / 1e6, 2) == 4.31


def test_every_cell_entry_has_a_row():
    cells = [n for n in zoo.names() if zoo.get_dict(n)["kind"] == "cell"]
    assert set(cells) <= set(CIFAR)
    assert {n for n in zoo.names() if zoo.get_dict(n)["kind"] == "recurrent"} == set(PTB)


def test_auxiliary_head_is_excluded_but_built():
    with torch.device("meta"):
        net = build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=32, C=36, layers=20, auxiliary=True)
    assert count_parameters(net, exclude_aux=False) - count_parameters(net) == sum(p.numel() for p in net.auxiliary_head.parameters()) > 0


def test_meta_count_equals_real_count():
    assert _cifar_count("DARTS_V2", device="cpu") == _cifar_count("DARTS_V2")


def test_meta_source_and_reported():
    for name in zoo.names():
        meta = zoo.get_dict(name).get("meta", {})
        if zoo.get_dict(name)["kind"] in ("cell", "recurrent"):
            assert meta.get("source") and isinstance(meta.get("reported"), dict), name


def test_aliases_and_unknown_names():
    from nasforge.errors import ArchError

    assert zoo.get("DARTS") == zoo.get("DARTS_V2")
    assert zoo.get("ENAS").name == "ENAS_micro_script"
    assert zoo.get("darts_v1").name == "DARTS_V1"
    with pytest.raises(ArchError, match="did you mean.*DARTS_V2"):
        zoo.get("DARTS_V3")
    with pytest.raises(ArchError, match="unknown zoo architecture 'zzz'"):
        zoo.get("zzz")


def test_enas_script_arc_decoding():
    arch = zoo.get("ENAS")
    # scripts/cifar10_micro_final.sh, per node [idx1, op1, idx2, op2]; concat = unused nodes
    assert arch.normal.nodes[0] == [("avg_pool_3x3", 0), ("sep_conv_3x3", 0)]
    assert arch.reduce.nodes[2] == [("sep_conv_5x5", 1), ("sep_conv_5x5", 3)]
    assert arch.normal.concat == [2, 3, 4, 5, 6]
    assert arch.reduce.concat == [2, 4, 5, 6]
