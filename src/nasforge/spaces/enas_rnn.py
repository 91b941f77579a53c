"""ENAS recurrent-cell search space with shared weights (Pham et al. 2018, §2.1).

A cell has ``N`` nodes (``--child_rhn_depth=12`` in the official PTB script). Node 0,
``s0``, is computed from ``(x_t, h_{t-1})``; each later node ``i`` reads ONE earlier node
``j`` and applies an activation (tanh, ReLU, identity, sigmoid). The weight matrix of the
connection is shared per ``(i, j)``: ``W^{(h)}_{i,j}`` in the paper, so every child that
lets node ``i`` read node ``j`` uses the same matrix. The cell output is the AVERAGE of
the loose ends (nodes that no other node reads).

We use the highway form of the cell that DARTS uses to run the ENAS cell (and that the
corrected ENAS-LM code uses): ``s0 = h + c0 (tanh(h0) - h)`` with ``[c0, h0] = [x, h] W0``,
and ``s_i = s_j + sigmoid(c) (act(h~) - s_j)`` with ``[c, h~] = s_j W_{i,j}``, so the
derived :class:`~nasforge.arch.RecurrentArch` (nodes 1..N-1; node 0 = ``s0``) is exactly
what :class:`nasforge.nets.RNNModel` trains. In the paper node 1 also picks its
activation; here ``s0``'s activation is tanh (as in DARTS' translation ``ENAS_RNN``).

Random children with ReLU/identity chains can blow the state up (norms of 10^6 within
a few minibatches at lr 20); as ENAS-pytorch does, the hidden state's norm is clipped to
25 at every time step (``max_hidden_norm``; the final :class:`RNNModel` does not clip).

Embedding tied to the decoder; dropouts as in ENAS-LM/AWD-LSTM (variational on ``x`` and
on the states fed to matrices, locked on the embedded input and on the output, word-level
on the embedding). Sizes and dropout rates are configurable; our defaults are those of
:class:`~nasforge.nets.RNNModel` scaled down for search (see :mod:`nasforge.search.enas`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch.recurrent import ACTIVATIONS, RecurrentArch
from nasforge.errors import ArchError
from nasforge.nets.rnn import INITRANGE, _mask, embedded_dropout, locked_dropout

#: activation order of the controller's choices (ENAS-LM ``controller_num_functions=4``)
RNN_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
_ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda x: x}
assert set(RNN_ACTIVATIONS) == set(ACTIVATIONS)


def loose_ends(nodes: list[tuple[str, int]]) -> list[int]:
    """Nodes 1..N-1 that no other node reads (the cell output averages them)."""
    used = {inp for _, inp in nodes}
    return [i for i in range(1, len(nodes) + 1) if i not in used]


class RecurrentSupernet(nn.Module):
    """Shared weights of every recurrent child: ``forward(input, hidden, arch)``.

    Returns ``(log_probs (T, B, ntoken), hidden (B, nhid))``.
    """

    def __init__(
        self,
        ntoken: int,
        nhid: int = 200,
        num_nodes: int = 12,
        dropout: float = 0.4,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        dropouti: float = 0.2,
        dropoute: float = 0.1,
        max_hidden_norm: float | None = 25.0,
    ):
        super().__init__()
        if num_nodes < 2:
            raise ArchError(f"a recurrent cell needs at least 2 nodes, got {num_nodes}")
        self.ntoken, self.nhid, self.num_nodes = ntoken, nhid, num_nodes
        self.max_hidden_norm = max_hidden_norm
        self.dropout, self.dropouth, self.dropoutx, self.dropouti, self.dropoute = dropout, dropouth, dropoutx, dropouti, dropoute
        self.encoder = nn.Embedding(ntoken, nhid)
        self.W0 = nn.Parameter(torch.empty(2 * nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE))
        # W[i][j]: node i (1..N-1) reading node j (0..i-1)
        self.W = nn.ParameterDict(
            {f"{i}_{j}": nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE)) for i in range(1, num_nodes) for j in range(i)}
        )
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight
        self.encoder.weight.data.uniform_(-INITRANGE, INITRANGE)
        self.decoder.bias.data.zero_()

    def weight(self, node: int, prev: int) -> torch.Tensor:
        return self.W[f"{node}_{prev}"]

    def init_hidden(self, bsz: int) -> torch.Tensor:
        return self.encoder.weight.new_zeros(bsz, self.nhid)

    def check(self, arch: RecurrentArch) -> None:
        arch.validate()
        if len(arch.nodes) != self.num_nodes - 1:
            raise ArchError(f"architecture has {len(arch.nodes) + 1} nodes but the search space has {self.num_nodes}")

    def cell(self, x: torch.Tensor, h: torch.Tensor, arch: RecurrentArch, x_mask, h_mask) -> torch.Tensor:
        xin = x if x_mask is None else x * x_mask
        hin = h if h_mask is None else h * h_mask
        c0, h0 = torch.split(torch.cat([xin, hin], dim=-1) @ self.W0, self.nhid, dim=-1)
        states = [h + c0.sigmoid() * (h0.tanh() - h)]
        for k, (act, j) in enumerate(arch.nodes):
            s_prev = states[j]
            s_in = s_prev if h_mask is None else s_prev * h_mask
            c, hh = torch.split(s_in @ self.weight(k + 1, j), self.nhid, dim=-1)
            states.append(s_prev + c.sigmoid() * (_ACT[act](hh) - s_prev))
        return torch.stack([states[i] for i in arch.concat], -1).mean(-1)

    def forward(self, input: torch.Tensor, hidden: torch.Tensor, arch: RecurrentArch) -> tuple[torch.Tensor, torch.Tensor]:
        T, B = input.shape
        emb = embedded_dropout(self.encoder, input, self.dropoute, self.training)
        emb = locked_dropout(emb, self.dropouti, self.training)
        x_mask = h_mask = None
        if self.training:
            if self.dropoutx > 0:
                x_mask = _mask((B, self.nhid), 1.0 - self.dropoutx, emb)
            if self.dropouth > 0:
                h_mask = _mask((B, self.nhid), 1.0 - self.dropouth, emb)
        h = hidden
        outs = []
        for t in range(T):
            h = self.cell(emb[t], h, arch, x_mask, h_mask)
            if self.max_hidden_norm is not None:
                norm = h.norm(dim=-1, keepdim=True)
                h = h * (norm.clamp(max=self.max_hidden_norm) / norm.clamp_min(1e-12))
            outs.append(h)
        out = locked_dropout(torch.stack(outs), self.dropout, self.training)
        logits = self.decoder(out.reshape(T * B, self.nhid))
        return F.log_softmax(logits, dim=-1).view(T, B, self.ntoken), h


def decode_recurrent(actions: list) -> RecurrentArch:
    """Controller actions ``[None, (prev, act, None) × (N-1)]`` to a RecurrentArch."""
    rest = actions[1:]
    if len(rest) % 3:
        raise ArchError(f"recurrent actions must come in (previous node, activation, anchor) triples, got {len(rest)} values")
    nodes = [(RNN_ACTIVATIONS[int(rest[3 * k + 1])], int(rest[3 * k])) for k in range(len(rest) // 3)]
    return RecurrentArch(nodes=nodes, concat=loose_ends(nodes), name="ENAS_RNN_search")
