"""ENAS micro (cell) search space: a thin adapter on the shared cell supernet
(Pham et al. 2018, §2.4; :mod:`nasforge.spaces.cell_supernet`).

A cell has 2 inputs (outputs of the two previous cells) and ``B = 5`` nodes
(``--child_num_cells=5``); each node picks two inputs among the earlier nodes and one op
for each from :data:`~nasforge.ops.ENAS_MICRO_PRIMITIVES` (sep conv 3×3 and 5×5, average
and max pool 3×3, identity; or the ``primitives`` given, e.g. ``--ops``), and sums the
two results. Nodes that no other node reads ("loose ends") are concatenated to form the
cell output. The controller samples a normal and a reduction cell. The search network
of ``cifar10_micro_search.sh`` has 6 normal cells plus 2 reduction cells
(``--child_num_layers=6``) with 20 filters, batch 160.

The supernet holds one op per (edge, op) — shared by every child that uses it — and runs
only the chosen ops (its sparse ``choice=`` forward). Loose ends are expressed with its
``concat=`` argument: the other nodes' slices of the cell output are zero, which equals
ENAS' selection of the used slices of the final 1×1 conv weight. Where the ENAS code
differs: its cells apply the op at stride 2 inside reduction cells after a factorised
reduction of both inputs (``micro_child._enas_cell``), while the DARTS supernet strides
the ops reading the cell inputs; the stem and BN placement follow the supernet (DARTS).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from nasforge.arch.cell import CellArch, CellGenotype
from nasforge.errors import ArchError
from nasforge.ops import ENAS_MICRO_PRIMITIVES
from nasforge.spaces.cell_supernet import CellSupernet

NUM_INPUTS = 2


def cell_concat(nodes: Sequence[Sequence[tuple[str, int]]], inputs: int = NUM_INPUTS) -> list[int]:
    """Intermediate nodes that no node reads (ENAS: "loose ends" are concatenated)."""
    used = {inp for node in nodes for _, inp in node}
    return [inputs + j for j in range(len(nodes)) if inputs + j not in used]


class MicroSupernet(nn.Module):
    """Shared weights of every micro child: ``forward(x, arch: CellArch) -> logits``."""

    def __init__(
        self, num_classes: int, in_channels: int = 3, C: int = 20, normal_layers: int = 6, nodes: int = 5,
        primitives: Sequence[str] = ENAS_MICRO_PRIMITIVES, **kw,
    ):
        super().__init__()
        layers = normal_layers + 2
        self.nodes = nodes
        self.primitives = tuple(primitives)
        self.net = CellSupernet(num_classes, in_channels, C=C, layers=layers, nodes=nodes, primitives=self.primitives, inputs=NUM_INPUTS, **kw)

    def check(self, arch: CellArch) -> None:
        arch.validate()
        for name, g in arch.cells().items():
            if len(g.nodes) != self.nodes:
                raise ArchError(f"architecture's {name} cell has {len(g.nodes)} nodes but the search space has {self.nodes}")

    def forward(self, x: torch.Tensor, arch: CellArch) -> torch.Tensor:
        assert arch.reduce is not None
        choice = {"normal": self.net.choice_from_nodes(arch.normal.nodes), "reduce": self.net.choice_from_nodes(arch.reduce.nodes)}
        concat = {"normal": arch.normal.concat, "reduce": arch.reduce.concat}
        return self.net(x, choice=choice, concat=concat)


def decode_micro(actions: list, nodes: int = 5, primitives: Sequence[str] = ENAS_MICRO_PRIMITIVES) -> CellArch:
    """Controller actions (normal then reduce; per cell 2 anchors, then per node
    ``[input_1, input_2, op_1, op_2, anchor]``; ops index ``primitives``) to a ``cell``
    architecture. A candidate list other than the paper's is recorded in ``meta["ops"]``."""
    per_cell = NUM_INPUTS + 5 * nodes
    if len(actions) != 2 * per_cell:
        raise ArchError(f"micro actions for {nodes} nodes must have {2 * per_cell} entries, got {len(actions)}")
    cells = []
    for c in range(2):
        acts = actions[c * per_cell + NUM_INPUTS : (c + 1) * per_cell]
        node_list = []
        for j in range(nodes):
            a = acts[5 * j : 5 * j + 5]
            node_list.append([(primitives[int(a[2])], int(a[0])), (primitives[int(a[3])], int(a[1]))])
        cells.append(CellGenotype(nodes=node_list, concat=cell_concat(node_list)))
    meta = {} if tuple(primitives) == ENAS_MICRO_PRIMITIVES else {"ops": list(primitives)}
    return CellArch(normal=cells[0], reduce=cells[1], inputs=NUM_INPUTS, name="ENAS_micro_search", op_set="darts", meta=meta)
