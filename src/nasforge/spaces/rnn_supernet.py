"""The DARTS recurrent-cell supernet (Liu et al., 2018, §2.1-2.2 and Fig. 1; App. A.1.2).

The recurrent cell has an input node ``s0`` and ``steps`` (8 in the code, ``STEPS``)
intermediate nodes. ``s0`` mixes the input ``x_t`` and the previous hidden state
``h_{t-1}`` through a highway layer with weight ``W0`` (``(ninp + nhid) × 2 nhid``)::

    c0, h0 = split([x_t, h_{t-1}] W0);  s0 = h_{t-1} + sigmoid(c0) * (tanh(h0) - h_{t-1})

Intermediate node ``i`` (1..steps) reads **every** earlier node ``j`` (0..i-1) through one
weight matrix ``W_i`` (``nhid × 2 nhid``, shared by all ``j`` as in the code) and a
highway step whose activation ``f`` is one of the candidates ``none, tanh, relu,
sigmoid, identity``::

    c, h = split(s_j W_i);  edge(j, f) = s_j + sigmoid(c) * (f(h) - s_j)
    s_i = sum_j sum_{f != none} w[(i, j), f] * edge(j, f)

where ``w`` are per-edge op weights (``softmax(α)`` for DARTS; any non-negative weights
for other strategies). There are ``1 + 2 + ... + steps`` = 36 edges and 5 ops, the shape
of DARTS's ``α``. ``h_t`` is the mean of the intermediate nodes 1..steps. As in the code
(``rnn/model_search.py``), every node (``s0`` included) goes through a BatchNorm without
affine parameters during search; the derived cell has no BN. Unlike the code, the BN
always normalises with the statistics of the current batch, in evaluation too: the code's
one module keeps running statistics that mix all nine nodes, and with running statistics
(shared or per node) the recurrence ``h_t -> BN(s0)`` can blow up in evaluation mode
(validation losses of 1e20 on a tiny corpus here). Training-mode outputs are the same.

Implementation note: the mixing is *fused*. With ``P_j = sum_{f != none} w_{j,f}`` and
``g_j = sum_f w_{j,f} f(h_j)`` the sum above equals
``sum_j [P_j s_j + sigmoid(c_j) (g_j - P_j s_j)]`` exactly, which builds one tensor per
node instead of one per (node, op); ``tests/test_darts_rnn.py`` checks it against the
code's formula and its α gradient against finite differences.

Around the cell, the language model is the code's ``RNNModel``: a tied embedding/decoder
(``ninp == nhid``), embedding dropout ``dropoute`` (drops whole words), variational
(locked) dropout on the embedding output ``dropouti`` and on the cell output ``dropout``,
and per-sequence masks on ``x_t`` (``dropoutx``) and on every state fed to a weight
matrix (``dropouth``). Weights are initialised uniform in ±0.04 (``INITRANGE``), the
decoder bias at 0.

The supernet holds only network weights: the architecture parameters belong to the
strategy (``nasforge.search.darts_rnn``), which passes the op weights to ``forward``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from nasforge.arch.recurrent import RecurrentArch
from nasforge.errors import ConfigError

#: DARTS ``rnn/genotypes.py``: ``PRIMITIVES`` and ``STEPS``
RNN_PRIMITIVES: tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")
STEPS = 8
#: DARTS ``rnn/model.py``: ``INITRANGE``
INIT_RANGE = 0.04

ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def num_edges(steps: int = STEPS) -> int:
    """Edges of the relaxed cell: node ``i`` (1..steps) has ``i`` inputs, 36 for 8 nodes."""
    return steps * (steps + 1) // 2


def edge_index(node: int, pred: int) -> int:
    """Row of ``α`` for the edge ``pred -> node`` (node 1..steps, pred 0..node-1)."""
    return (node - 1) * node // 2 + pred


def mask2d(rows: int, cols: int, keep_prob: float, like: torch.Tensor) -> torch.Tensor:
    """A ``(rows, cols)`` mask of ``0`` or ``1/keep_prob`` (DARTS ``utils.mask2d``)."""
    return torch.floor(torch.rand(rows, cols, device=like.device, dtype=like.dtype) + keep_prob) / keep_prob


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout on ``(T, B, D)``: one mask per sequence, shared over time."""
    if not training or not p:
        return x
    m = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * m


def embedded_dropout(embed: nn.Embedding, words: torch.Tensor, p: float) -> torch.Tensor:
    """Embedding lookup with whole rows (words) dropped with probability ``p``."""
    weight = embed.weight
    if p:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
        weight = weight * mask
    return F.embedding(words, weight)


class MixedRecurrentCell(nn.Module):
    """The relaxed DARTS recurrent cell (``DARTSCellSearch``); ``forward`` takes op weights."""

    def __init__(
        self,
        ninp: int,
        nhid: int,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        steps: int = STEPS,
        primitives: Sequence[str] = RNN_PRIMITIVES,
        batch_norm: bool = True,
        init_range: float = INIT_RANGE,
        recompute: bool = False,
    ):
        super().__init__()
        for p in primitives:
            if p != "none" and p not in ACTIVATION_FNS:
                raise ConfigError(f"unknown recurrent op {p!r} (known: none, {', '.join(ACTIVATION_FNS)})")
        self.ninp, self.nhid, self.steps = ninp, nhid, steps
        self.dropouth, self.dropoutx = dropouth, dropoutx
        self.primitives = tuple(primitives)
        self._W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-init_range, init_range))
        self._Ws = nn.ParameterList(
            [nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-init_range, init_range)) for _ in range(steps)]
        )
        self.batch_norm = batch_norm
        #: recompute each time step's cell in backward (activation checkpointing): memory
        #: of one step's intermediate tensors instead of all ``T`` steps', for ~1/3 more time
        self.recompute = recompute

    def bn(self, s: torch.Tensor) -> torch.Tensor:
        """BatchNorm without affine parameters, always with the batch's own statistics."""
        return F.batch_norm(s, None, None, training=True) if self.batch_norm else s

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs (T, B, ninp)``, ``hidden (B, nhid)``, ``weights (edges, ops)`` -> ``(outputs (T, B, nhid), h_T)``."""
        T, B = inputs.size(0), inputs.size(1)
        if weights.shape != (num_edges(self.steps), len(self.primitives)):
            raise ConfigError(
                f"op weights have shape {tuple(weights.shape)}, the cell needs {(num_edges(self.steps), len(self.primitives))}"
            )
        if self.training:
            x_mask = mask2d(B, inputs.size(2), 1.0 - self.dropoutx, inputs)
            h_mask = mask2d(B, self.nhid, 1.0 - self.dropouth, inputs)
        else:
            x_mask = h_mask = None
        weights = weights.to(inputs.dtype)
        # per node, built once for all time steps: the ops that run with their weight
        # columns, and P_j (the total weight of the non-`none` ops of edge j -> node)
        active = [(k, ACTIVATION_FNS[name]) for k, name in enumerate(self.primitives) if name != "none"]
        act_idx = torch.tensor([k for k, _ in active], device=weights.device)
        p_total = weights.index_select(1, act_idx).sum(1)
        plan = []
        for i in range(self.steps):
            lo, n = i * (i + 1) // 2, i + 1
            w = weights[lo : lo + n]
            plan.append(([(fn, w[:, k].view(n, 1, 1)) for k, fn in active], p_total[lo : lo + n].view(n, 1, 1)))
        outputs = []
        recompute = self.recompute and torch.is_grad_enabled()
        for t in range(T):
            if recompute:
                hidden = checkpoint(self.cell, inputs[t], hidden, x_mask, h_mask, plan, use_reentrant=False)
            else:
                hidden = self.cell(inputs[t], hidden, x_mask, h_mask, plan)
            outputs.append(hidden)
        return torch.stack(outputs), hidden

    def init_state(self, x: torch.Tensor, h_prev: torch.Tensor, x_mask, h_mask) -> torch.Tensor:
        """``s0``: highway mix of ``x_t`` and ``h_{t-1}`` (``_compute_init_state``)."""
        if x_mask is not None:
            xh = torch.cat([x * x_mask, h_prev * h_mask], dim=-1)
        else:
            xh = torch.cat([x, h_prev], dim=-1)
        c0, h0 = torch.split(xh.mm(self._W0), self.nhid, dim=-1)
        return h_prev + c0.sigmoid() * (h0.tanh() - h_prev)

    def cell(self, x, h_prev, x_mask, h_mask, plan) -> torch.Tensor:
        s0 = self.bn(self.init_state(x, h_prev, x_mask, h_mask))
        states = s0.unsqueeze(0)  # (nodes so far, B, nhid)
        for i, (ops, p) in enumerate(plan):
            n = i + 1
            fed = states * h_mask if h_mask is not None else states
            c, h = torch.split(fed.reshape(-1, self.nhid).mm(self._Ws[i]).view(n, -1, 2 * self.nhid), self.nhid, dim=-1)
            g = None  # sum over ops of w_{j,f} f(h_j)
            for fn, w in ops:
                g = w * fn(h) if g is None else g + w * fn(h)
            ps = p * states
            s = self.bn((ps + c.sigmoid() * (g - ps)).sum(0))
            states = torch.cat([states, s.unsqueeze(0)], 0)
        return states[1:].mean(0)


class RNNSupernet(nn.Module):
    """DARTS ``RNNModelSearch`` without its α: a tied-embedding LM around :class:`MixedRecurrentCell`."""

    def __init__(
        self,
        ntoken: int,
        ninp: int = 300,
        nhid: int = 300,
        dropout: float = 0.75,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        dropouti: float = 0.2,
        dropoute: float = 0.0,
        steps: int = STEPS,
        primitives: Sequence[str] = RNN_PRIMITIVES,
        init_range: float = INIT_RANGE,
        recompute: bool = False,
    ):
        super().__init__()
        if ninp != nhid:
            raise ConfigError(f"the DARTS language model ties embedding and decoder: emsize ({ninp}) must equal nhid ({nhid})")
        self.ntoken, self.ninp, self.nhid, self.steps = ntoken, ninp, nhid, steps
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        self.primitives = tuple(primitives)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.cell = MixedRecurrentCell(ninp, nhid, dropouth, dropoutx, steps, primitives, init_range=init_range, recompute=recompute)
        self.decoder = nn.Linear(ninp, ntoken)
        self.decoder.weight = self.encoder.weight  # tied
        self.encoder.weight.data.uniform_(-init_range, init_range)
        self.decoder.bias.data.zero_()

    @property
    def alpha_shape(self) -> tuple[int, int]:
        return num_edges(self.steps), len(self.primitives)

    def init_hidden(self, bsz: int) -> torch.Tensor:
        w = self.encoder.weight
        return w.new_zeros(bsz, self.nhid)

    def forward(self, input: torch.Tensor, hidden: torch.Tensor, weights: torch.Tensor, return_h: bool = False):
        """``input (T, B)`` token ids -> ``log_prob (T, B, ntoken)``, new hidden ``(B, nhid)``.

        With ``return_h`` also the cell outputs before and after the output dropout (for
        the activation regularisers AR/TAR of the code).
        """
        emb = embedded_dropout(self.encoder, input, self.dropoute if self.training else 0.0)
        emb = locked_dropout(emb, self.dropouti, self.training)
        raw_output, hidden = self.cell(emb, hidden, weights)
        output = locked_dropout(raw_output, self.dropout, self.training)
        log_prob = F.log_softmax(self.decoder(output), dim=-1)
        if return_h:
            return log_prob, hidden, raw_output, output
        return log_prob, hidden


def derive_recurrent(weights: torch.Tensor, steps: int = STEPS, primitives: Sequence[str] = RNN_PRIMITIVES, name: str = "") -> RecurrentArch:
    """Discrete cell from op weights (``RNNModelSearch.genotype``, paper §2.4 with k = 1).

    For node ``i`` the input ``j`` is the one whose strongest non-``none`` op is
    strongest (ties: lowest ``j``), and its op is that strongest non-``none`` op;
    ``concat`` is every intermediate node, 1..steps.
    """
    w = weights.detach().cpu().double()
    keep = [k for k, p in enumerate(primitives) if p != "none"]
    nodes: list[tuple[str, int]] = []
    for i in range(steps):
        rows = w[edge_index(i + 1, 0) : edge_index(i + 1, 0) + i + 1].tolist()
        # first maximum on ties, like the code's stable sort and its `>` scan
        j = max(range(i + 1), key=lambda r: (max(rows[r][k] for k in keep), -r))
        k_best = max(keep, key=lambda k: (rows[j][k], -k))
        nodes.append((primitives[k_best], j))
    arch = RecurrentArch(nodes=nodes, concat=list(range(1, steps + 1)), name=name)
    arch.validate()
    return arch
