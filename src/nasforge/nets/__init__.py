"""Concrete networks built from an architecture (see ``docs/architecture.md``).

- :func:`build_network` — CIFAR-style and ImageNet-style CNNs from a ``cell`` arch
  (DARTS ``cnn/model.py``), :mod:`nasforge.nets.cnn`;
- :class:`RNNModel` — the DARTS recurrent language model from a ``recurrent`` arch
  (DARTS ``rnn/model.py``), :mod:`nasforge.nets.rnn`.

ENAS macro networks (``nets/macro.py``) and BlockQNN block networks (``nets/blocks.py``)
live in their own modules.
"""

from nasforge.nets.cell import Cell, drop_path
from nasforge.nets.cnn import AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet, NetworkCIFAR, NetworkImageNet, build_network, reduction_layers
from nasforge.nets.rnn import DARTSCell, RNNModel

__all__ = [
    "AuxiliaryHeadCIFAR",
    "AuxiliaryHeadImageNet",
    "Cell",
    "DARTSCell",
    "NetworkCIFAR",
    "NetworkImageNet",
    "RNNModel",
    "build_network",
    "drop_path",
    "reduction_layers",
]
