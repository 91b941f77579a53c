"""The ENAS controller: an LSTM that samples an architecture decision by decision, and
REINFORCE with a moving-average baseline that trains it (Pham et al. 2018, §2.1-2.4).

Paper defaults (§3 and the PyTorch reproduction carpedm20/ENAS-pytorch whose defaults
follow it): LSTM with 100 hidden units; logits ``c · tanh(u / T)`` with tanh constant
``c = 2.5`` and temperature ``T = 5.0``; Adam, lr 3.5e-4; entropy bonus 1e-4 added to the
reward; baseline = exponential moving average of the reward with decay 0.99.

A *layout* is the list of decision steps of a search space. Every step runs the LSTM cell
once; its input is the embedding of the previous decision (one embedding table per
decision type, as in the paper), and its output ``h`` gives the logits:

- ``Choice(group, n)``: one of ``n`` options, logits ``W_group h``; next input
  ``emb_group[choice]``. Used for ops and activations.
- ``Index(n)``: one of the first ``n`` *anchors* (the LSTM outputs recorded at earlier
  nodes), by attention ``v · tanh(W1 anchor_j + W2 h)``; next input = the chosen anchor
  (``micro_controller.py``). Used for a node's input (micro cells, recurrent cells).
- ``Skips(n)``: an independent yes/no for each of the first ``n`` anchors, by attention
  ``s_j = v · tanh(W1 anchor_j + W2 h)`` (squashed like the logits) and
  ``P(skip j) = sigmoid(2 s_j)`` (§2.3; the code samples from ``softmax([-s_j, s_j])``,
  which is the same); the KL divergence of these probabilities from a target skip
  probability ``rho = 0.4``, averaged over layers, is returned as ``skip_penalty`` (the
  code's KL uses ``sigmoid(s_j)``; we use the sampling probability). The step then records its own ``h`` as a new anchor; next input =
  ``sum(chosen anchors) / (1 + #skips)`` (``general_controller.py``).
- ``Anchor()``: record ``h`` as an anchor without a decision; next input = a learned
  "go" embedding.

Where the official code differs (melodyguan/enas@4bcfd73, ``scripts/*.sh``, ``main.py``):
``lstm_size = 64``; tanh constant 1.5 (1.10 for micro search) with op logits using
``tanh_constant / 2.5`` (``--controller_op_tanh_reduce``) and no temperature; controller
lr 1e-3 (3.5e-3 micro), Adam with ``beta1 = 0`` and ``epsilon = 1e-3`` (``utils.get_train_ops``,
which we use too); 50 controller steps per epoch (30 micro), each aggregating the
gradients of 20 (10) samples; the skip KL term is weighted 0.8 and ADDED to the loss; the
baseline starts at 0 (we start it at the first reward, as ENAS-pytorch does, so a run of a
few hundred steps is not spent warming it up). ENAS-LM (the corrected PTB code) uses a
64-unit controller, lr 5e-5, entropy 1e-5, tanh 2.25, baseline decay 0.999.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.errors import ConfigError


@dataclass(frozen=True)
class Choice:
    group: str
    n: int


@dataclass(frozen=True)
class Index:
    n: int


@dataclass(frozen=True)
class Skips:
    n: int


@dataclass(frozen=True)
class Anchor:
    pass


Step = Union[Choice, Index, Skips, Anchor]


@dataclass
class Sample:
    """One sampled architecture: one action per decision step (``Anchor`` steps give
    ``None``, ``Skips`` a list of chosen indices), and sums over its decisions."""

    actions: list
    log_prob: torch.Tensor
    entropy: torch.Tensor
    skip_penalty: torch.Tensor


class Controller(nn.Module):
    """LSTM controller over a layout of decision steps (see the module docstring)."""

    def __init__(
        self,
        layout: Sequence[Step],
        hidden: int = 100,
        tanh_constant: float | None = 2.5,
        temperature: float | None = 5.0,
        skip_target: float = 0.4,
    ):
        super().__init__()
        if not layout:
            raise ConfigError("the controller needs at least one decision step")
        self.layout = list(layout)
        self.hidden = hidden
        self.tanh_constant = tanh_constant
        self.temperature = temperature
        self.skip_target = skip_target
        groups: dict[str, int] = {}
        for s in self.layout:
            if isinstance(s, Choice):
                if groups.setdefault(s.group, s.n) != s.n:
                    raise ConfigError(f"decision group {s.group!r} used with {groups[s.group]} and {s.n} options")
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.g_emb = nn.Parameter(torch.empty(1, hidden))
        self.embeddings = nn.ModuleDict({g: nn.Embedding(n, hidden) for g, n in groups.items()})
        self.decoders = nn.ModuleDict({g: nn.Linear(hidden, n, bias=False) for g, n in groups.items()})
        self.attn_anchor = nn.Linear(hidden, hidden, bias=False)
        self.attn_query = nn.Linear(hidden, hidden, bias=False)
        self.attn_v = nn.Linear(hidden, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self, init_range: float = 0.1) -> None:
        """Uniform(-0.1, 0.1) for every weight, as ENAS-pytorch (ENAS code: same range)."""
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    def _squash(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _attention(self, anchors_w: list[torch.Tensor], n: int, h: torch.Tensor) -> torch.Tensor:
        keys = torch.cat(anchors_w[:n], dim=0)  # (n, hidden)
        return self.attn_v(torch.tanh(keys + self.attn_query(h))).view(-1)

    def forward(self, actions: list | None = None, generator: torch.Generator | None = None) -> Sample:
        """Sample an architecture (``actions=None``) or score the given ``actions``."""
        dev = self.g_emb.device
        x = self.g_emb
        hc = None
        anchors: list[torch.Tensor] = []
        anchors_w: list[torch.Tensor] = []
        out: list = []
        log_prob = torch.zeros((), device=dev)
        entropy = torch.zeros((), device=dev)
        skip_penalty = torch.zeros((), device=dev)
        skip_layers = 0
        for k, step in enumerate(self.layout):
            h, c = self.lstm(x, hc)
            hc = (h, c)
            given = None if actions is None else actions[k]
            if isinstance(step, Anchor):
                anchors.append(h)
                anchors_w.append(self.attn_anchor(h))
                out.append(None)
                x = self.g_emb
            elif isinstance(step, (Choice, Index)):
                if isinstance(step, Choice):
                    logits = self._squash(self.decoders[step.group](h).view(-1))
                else:
                    if not 1 <= step.n <= len(anchors):
                        raise ConfigError(f"decision step {k} indexes {step.n} anchors but only {len(anchors)} exist")
                    logits = self._squash(self._attention(anchors_w, step.n, h))
                logp = F.log_softmax(logits, dim=-1)
                if given is None:
                    a = int(torch.multinomial(logp.detach().exp(), 1, generator=generator).item())
                else:
                    a = int(given)
                log_prob = log_prob + logp[a]
                entropy = entropy - (logp.exp() * logp).sum()
                out.append(a)
                if isinstance(step, Choice):
                    x = self.embeddings[step.group](torch.tensor([a], device=dev))
                else:
                    x = anchors[a]
            else:  # Skips
                if step.n > len(anchors):
                    raise ConfigError(f"decision step {k} chooses skips among {step.n} anchors but only {len(anchors)} exist")
                if step.n > 0:
                    # the code samples from softmax([-s, s]) = sigmoid(2s), s = squashed score
                    logit = 2.0 * self._squash(self._attention(anchors_w, step.n, h))
                    p = torch.sigmoid(logit)
                    if given is None:
                        bits = torch.bernoulli(p.detach(), generator=generator)
                    else:
                        bits = torch.zeros_like(p)
                        if len(given):
                            bits[torch.tensor([int(j) for j in given], device=dev)] = 1.0
                    log_prob = log_prob + (bits * F.logsigmoid(logit) + (1 - bits) * F.logsigmoid(-logit)).sum()
                    ent = -(p * F.logsigmoid(logit) + (1 - p) * F.logsigmoid(-logit))
                    entropy = entropy + ent.sum()
                    rho = self.skip_target
                    kl = p * (torch.log(p + 1e-8) - math.log(rho)) + (1 - p) * (torch.log(1 - p + 1e-8) - math.log(1 - rho))
                    skip_penalty = skip_penalty + kl.sum()
                    skip_layers += 1
                    chosen = [int(j) for j in torch.nonzero(bits).view(-1).tolist()]
                    stacked = torch.cat(anchors[: step.n], dim=0)
                    x = (bits.view(1, -1) @ stacked) / (1.0 + bits.sum())
                else:
                    chosen = []
                    x = self.g_emb
                out.append(chosen)
                anchors.append(h)
                anchors_w.append(self.attn_anchor(h))
        if skip_layers:
            skip_penalty = skip_penalty / skip_layers  # mean over layers, as the code
        return Sample(out, log_prob, entropy, skip_penalty)

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None) -> list:
        return self(generator=generator).actions

    def log_prob(self, actions: list) -> torch.Tensor:
        """Log-probability of ``actions`` (differentiable)."""
        return self(actions=actions).log_prob

    @torch.no_grad()
    def probability(self, actions: list) -> float:
        return float(self(actions=actions).log_prob.exp())


class Reinforce:
    """REINFORCE with an exponential moving-average baseline (Pham et al. 2018, §2.2).

    Per step: sample ``aggregate`` architectures, get each one's reward ``R`` and add the
    entropy bonus ``entropy_weight · H``; update ``b ← b − (1 − decay)(b − R)``; loss
    ``= −log π(a) (R − b) + skip_weight · KL(skips ‖ rho)``; average the losses of the
    ``aggregate`` samples and take one Adam step.
    """

    def __init__(
        self,
        controller: Controller,
        lr: float = 3.5e-4,
        baseline_decay: float = 0.99,
        entropy_weight: float = 1e-4,
        skip_weight: float = 0.8,
        aggregate: int = 1,
        grad_clip: float | None = None,
    ):
        self.controller = controller
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=lr, betas=(0.0, 0.999), eps=1e-3)
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.skip_weight = skip_weight
        self.aggregate = aggregate
        self.grad_clip = grad_clip
        self.baseline: float | None = None
        self.steps = 0

    def step(self, reward_fn: Callable[[list], float]) -> dict:
        """One controller step; returns the mean reward, baseline, entropy, loss and the
        best sampled actions with their reward."""
        self.controller.train()
        self.optimizer.zero_grad(set_to_none=True)
        rewards, entropies, losses = [], [], []
        best: tuple[float, list] | None = None
        total = None
        for _ in range(self.aggregate):
            s = self.controller()
            r = float(reward_fn(s.actions))
            if best is None or r > best[0]:
                best = (r, s.actions)
            reward = r + self.entropy_weight * float(s.entropy.detach())
            if self.baseline is None:
                self.baseline = reward
            self.baseline -= (1.0 - self.baseline_decay) * (self.baseline - reward)
            loss = -s.log_prob * (reward - self.baseline) + self.skip_weight * s.skip_penalty
            total = loss if total is None else total + loss
            rewards.append(r)
            entropies.append(float(s.entropy.detach()))
            losses.append(float(loss.detach()))
        assert total is not None and best is not None
        (total / self.aggregate).backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.controller.parameters(), self.grad_clip)
        self.optimizer.step()
        self.steps += 1
        return {
            "reward": sum(rewards) / len(rewards),
            "baseline": self.baseline,
            "entropy": sum(entropies) / len(entropies),
            "loss": sum(losses) / len(losses),
            "best_reward": best[0],
            "best_actions": best[1],
        }

    def state_dict(self) -> dict:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.steps = int(state["steps"])


# --- decision layouts of the search spaces --------------------------------------------


def macro_layout(num_layers: int, num_ops: int = 6) -> list[Step]:
    """Per layer: its op, then its skip connections to every earlier layer (§2.3)."""
    out: list[Step] = []
    for i in range(num_layers):
        out += [Choice("op", num_ops), Skips(i)]
    return out


def micro_layout(num_nodes: int = 5, num_ops: int = 5, num_inputs: int = 2) -> list[Step]:
    """Normal then reduction cell (§2.4): per node its two inputs, then their two ops
    (``micro_controller.py`` order: index_1, index_2, op_1, op_2). The code records the
    two cell inputs' anchors as zeros; ours are the LSTM outputs of two "go" steps."""
    out: list[Step] = []
    for _cell in ("normal", "reduce"):
        out += [Anchor() for _ in range(num_inputs)]
        for j in range(num_nodes):
            out += [Index(num_inputs + j), Index(num_inputs + j), Choice("op", num_ops), Choice("op", num_ops), Anchor()]
    return out


def recurrent_layout(num_nodes: int = 12, num_acts: int = 4) -> list[Step]:
    """Node 0 (``s0`` from ``x_t, h_{t-1}``) then per node its previous node and its
    activation (§2.1)."""
    out: list[Step] = [Anchor()]
    for i in range(1, num_nodes):
        out += [Index(i), Choice("act", num_acts), Anchor()]
    return out


def nb201_layout(num_edges: int = 6, num_ops: int = 5) -> list[Step]:
    """NAS-Bench-201: one op per edge."""
    return [Choice("op", num_ops) for _ in range(num_edges)]
