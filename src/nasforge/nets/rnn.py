"""The DARTS recurrent language model from a ``recurrent`` architecture.

Liu et al., "DARTS" (ICLR 2019) §2.1/§3.2 and quark0/darts@f276dd3 ``rnn/model.py``:

- cell input: ``s0 = h + c0 * (tanh(h0) - h)`` with ``[c0, h0] = [x, h] W0`` and
  ``c0 = sigmoid(.)`` (``W0``: (ninp + nhid) × 2·nhid);
- node i reads node ``pred``: ``[c, h~] = s_pred W_i`` (one nhid × 2·nhid matrix per node),
  ``s_i = s_pred + sigmoid(c) * (act(h~) - s_pred)`` (highway bypass);
- the new hidden state is the MEAN of the ``concat`` nodes;
- variational dropout (Gal & Ghahramani 2016, as in DARTS/AWD-LSTM): one mask per
  sequence on the cell's input ``x`` (``dropoutx``) and on every state fed to a matrix
  (``dropouth``), locked dropout on the embedded input (``dropouti``) and on the output
  (``dropout``), embedding (word-level) dropout (``dropoute``);
- encoder and decoder weights are tied; the decoder has a bias; weights are initialised
  uniform(-0.04, 0.04), the decoder bias to 0.

Defaults are DARTS's PTB evaluation (``rnn/train.py``): 850/850/850, ``dropout=0.75``,
``dropouth=0.25``, ``dropoutx=0.75``, ``dropouti=0.2``. ``dropoute=0.1`` is the paper's
(App. A.2 "token-wise dropout on the embedding layer 0.1"); the official ``rnn/train.py``
default is ``--dropoute 0``.

``forward(input, hidden, return_h=False)`` returns ``(log_probs, hidden)``, log-probs of
shape ``(T, B, ntoken)`` as DARTS does (use ``F.nll_loss``); with ``return_h=True`` also the
raw and dropped cell outputs (lists with one ``(T, B, nhid)`` tensor each) for the
activation regularisers of AWD-LSTM / DARTS (``--beta 1e-3`` slowness term).
``hidden`` is a list with one ``(1, B, nhid)`` tensor (``init_hidden(bsz)``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch.recurrent import RecurrentArch
from nasforge.errors import ArchError

INITRANGE = 0.04

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda x: x}


def _mask(shape: tuple[int, ...], keep: float, like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(shape).bernoulli_(keep) / keep


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Same dropout mask at every time step of a ``(T, B, D)`` tensor."""
    if not training or p <= 0.0:
        return x
    return x * _mask((1, x.shape[1], x.shape[2]), 1.0 - p, x)


def embedded_dropout(embed: nn.Embedding, words: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole word types from the embedding matrix (Gal & Ghahramani; AWD-LSTM)."""
    weight = embed.weight
    if training and p > 0.0:
        weight = weight * _mask((weight.shape[0], 1), 1.0 - p, weight)
    return F.embedding(words, weight)


class DARTSCell(nn.Module):
    """One recurrent layer running the cell of ``arch`` over a ``(T, B, ninp)`` sequence."""

    def __init__(self, arch: RecurrentArch, ninp: int, nhid: int, dropouth: float, dropoutx: float):
        super().__init__()
        self.arch = arch
        self.nhid = nhid
        self.dropouth = dropouth
        self.dropoutx = dropoutx
        self._W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE))
        self._Ws = nn.ParameterList(
            [nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE)) for _ in arch.nodes]
        )

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T, B = inputs.shape[0], inputs.shape[1]
        x_mask = h_mask = None
        if self.training:
            if self.dropoutx > 0:
                x_mask = _mask((B, inputs.shape[2]), 1.0 - self.dropoutx, inputs)
            if self.dropouth > 0:
                h_mask = _mask((B, self.nhid), 1.0 - self.dropouth, inputs)
        h = hidden[0]
        outs = []
        for t in range(T):
            h = self.cell(inputs[t], h, x_mask, h_mask)
            outs.append(h)
        hiddens = torch.stack(outs)
        return hiddens, hiddens[-1].unsqueeze(0)

    def cell(self, x: torch.Tensor, h_prev: torch.Tensor, x_mask: torch.Tensor | None, h_mask: torch.Tensor | None) -> torch.Tensor:
        xin = x if x_mask is None else x * x_mask
        hin = h_prev if h_mask is None else h_prev * h_mask
        c0, h0 = torch.split(torch.cat([xin, hin], dim=-1) @ self._W0, self.nhid, dim=-1)
        states = [h_prev + c0.sigmoid() * (h0.tanh() - h_prev)]
        for i, (act, pred) in enumerate(self.arch.nodes):
            s_prev = states[pred]
            s_in = s_prev if h_mask is None else s_prev * h_mask
            c, hh = torch.split(s_in @ self._Ws[i], self.nhid, dim=-1)
            states.append(s_prev + c.sigmoid() * (_ACTIVATIONS[act](hh) - s_prev))
        return torch.stack([states[i] for i in self.arch.concat], -1).mean(-1)


class RNNModel(nn.Module):
    """DARTS ``RNNModel``: embedding → one recurrent cell layer → tied decoder (log-softmax)."""

    def __init__(
        self,
        arch: RecurrentArch,
        ntoken: int,
        ninp: int = 850,
        nhid: int = 850,
        nhidlast: int = 850,
        dropout: float = 0.75,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        dropouti: float = 0.2,
        dropoute: float = 0.1,
    ):
        super().__init__()
        if getattr(arch, "kind", None) != "recurrent":
            raise ArchError(f"RNNModel needs a 'recurrent' architecture, got kind {getattr(arch, 'kind', type(arch).__name__)!r}")
        arch.validate()
        if not (ninp == nhid == nhidlast):
            raise ArchError(f"RNNModel ties encoder and decoder: ninp, nhid, nhidlast must be equal, got {ninp}, {nhid}, {nhidlast}")
        for name, p in (("dropout", dropout), ("dropouth", dropouth), ("dropoutx", dropoutx), ("dropouti", dropouti), ("dropoute", dropoute)):
            if not 0.0 <= p < 1.0:
                raise ArchError(f"RNNModel: {name} must be in [0, 1), got {p}")
        self.ntoken, self.ninp, self.nhid = ntoken, ninp, nhid
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnns = nn.ModuleList([DARTSCell(arch, ninp, nhid, dropouth, dropoutx)])
        self.decoder = nn.Linear(ninp, ntoken)
        self.decoder.weight = self.encoder.weight
        self.encoder.weight.data.uniform_(-INITRANGE, INITRANGE)
        self.decoder.bias.data.zero_()

    def init_hidden(self, bsz: int) -> list[torch.Tensor]:
        w = self.encoder.weight
        return [w.new_zeros(1, bsz, self.nhid)]

    def forward(self, input: torch.Tensor, hidden: list[torch.Tensor], return_h: bool = False):
        T, B = input.shape
        emb = embedded_dropout(self.encoder, input, self.dropoute, self.training)
        raw = locked_dropout(emb, self.dropouti, self.training)
        new_hidden, raw_outputs = [], []
        for layer, rnn in enumerate(self.rnns):
            raw, h = rnn(raw, hidden[layer])
            new_hidden.append(h)
            raw_outputs.append(raw)
        out = locked_dropout(raw, self.dropout, self.training)
        log_prob = F.log_softmax(self.decoder(out.reshape(-1, self.ninp)), dim=-1).view(T, B, self.ntoken)
        if return_h:
            return log_prob, new_hidden, raw_outputs, [out]
        return log_prob, new_hidden
