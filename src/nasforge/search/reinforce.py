"""REINFORCE (the ENAS controller) as a multi-trial strategy over NAS-Bench-201.

Pham et al., ICML 2018, §2.2 "Training the controller parameters θ": an LSTM controller
(:class:`~nasforge.search.enas_controller.Controller`, one softmax per edge over the 5
ops, :func:`~nasforge.search.enas_controller.nb201_layout`) samples a cell; its reward
``R`` is the table's accuracy / 100 plus the entropy bonus; the baseline is an
exponential moving average ``b ← b − (1 − decay)(b − R)`` (started at the first reward);
the loss ``−log π(cell) (R − b)`` takes one Adam step per result (Adam β = (0, 0.999),
ε = 1e-3 as the ENAS code). Here it runs on the same runner as random search and
BlockQNN (:func:`nasforge.runners.run_trials`), so its budget counts distinct cells.

Defaults for 10^2-10^3 queries (ours): controller lr 1e-2 and baseline decay 0.9 (the
paper's 3.5e-4 / 0.99 barely move the policy in 300 steps); LSTM 100 units, tanh
constant 2.5, temperature 5, entropy weight 1e-4 (paper). A cell proposed again gets its
stored reward back and the controller takes a step on it, as the paper's controller
would (``avoid_seen=False``); with ``avoid_seen=True`` the controller re-samples (at
most ``max_resample`` times) until the cell is new.

``state_dict()`` is plain JSON: tensors (controller, Adam state, sampling generator) are
stored as base64 of their bytes with dtype and shape, so a resume continues exactly.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch

from nasforge.search.early_stop import cost_corrected_reward
from nasforge.search.enas_controller import Controller, Reinforce, nb201_layout
from nasforge.search.multi_trial import MultiTrialConfig
from nasforge.search.registry import register_method
from nasforge.spaces.nb201 import N_EDGES, PRIMITIVES


@register_method("enas", config=MultiTrialConfig, kind="multi-trial", spaces=("nb201",), space_defaults={"nb201": {"executor": "inline"}})
class ReinforceStrategy:
    failed_reward = 0.0
    max_resample = 100

    def __init__(
        self,
        grammar: Any,
        *,
        lr: float = 1e-2,
        baseline_decay: float = 0.9,
        entropy_weight: float = 1e-4,
        hidden: int = 100,
        tanh_constant: float | None = 2.5,
        temperature: float | None = 5.0,
        avoid_seen: bool = False,
        seed: int = 0,
    ):
        self.grammar = grammar
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = Controller(nb201_layout(N_EDGES, len(PRIMITIVES)), hidden=hidden, tanh_constant=tanh_constant, temperature=temperature)
        self.rl = Reinforce(self.controller, lr=lr, baseline_decay=baseline_decay, entropy_weight=entropy_weight, skip_weight=0.0)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.avoid_seen = bool(avoid_seen)
        self.n_proposed = 0
        self.n_observed = 0
        self.proposed: dict[str, None] = {}

    def _sample(self) -> tuple[list[int], dict]:
        actions = [int(a) for a in self.controller.sample(generator=self.gen)]
        return actions, self.grammar.to_arch([(k + 1, PRIMITIVES[a]) for k, a in enumerate(actions)])

    def propose(self) -> tuple[dict, dict]:
        actions, arch = self._sample()
        if self.avoid_seen:
            for _ in range(self.max_resample):
                if self.grammar.key(arch) not in self.proposed:
                    break
                actions, arch = self._sample()
            self.proposed[self.grammar.key(arch)] = None
        self.n_proposed += 1
        return arch, {"actions": actions}

    def observe(self, meta: dict, reward: float) -> None:
        """One REINFORCE step on the proposed cell (the update of ``Reinforce.step``)."""
        rl = self.rl
        self.controller.train()
        rl.optimizer.zero_grad(set_to_none=True)
        s = self.controller(actions=list(meta["actions"]))
        r = float(reward) + rl.entropy_weight * float(s.entropy.detach())
        if rl.baseline is None:
            rl.baseline = r
        rl.baseline -= (1.0 - rl.baseline_decay) * (rl.baseline - r)
        (-s.log_prob * (r - rl.baseline)).backward()
        rl.optimizer.step()
        rl.steps += 1
        self.n_observed += 1

    def reward(self, metrics: dict) -> float:
        return cost_corrected_reward(metrics["accuracy"], None, None, 0.0, 0.0)

    def key(self, arch: dict) -> str:
        return self.grammar.key(arch)

    @torch.no_grad()
    def greedy_arch(self) -> dict:
        """The most likely op on every edge, decision after decision (argmax decoding)."""
        ctrl = self.controller
        x, hc, actions = ctrl.g_emb, None, []
        for _ in range(N_EDGES):
            h, c = ctrl.lstm(x, hc)
            hc = (h, c)
            a = int(ctrl._squash(ctrl.decoders["op"](h).view(-1)).argmax())
            actions.append(a)
            x = ctrl.embeddings["op"](torch.tensor([a], device=x.device))
        return self.grammar.to_arch([(k + 1, PRIMITIVES[a]) for k, a in enumerate(actions)])

    def state_dict(self) -> dict:
        return {
            "rl": _encode(self.rl.state_dict()),
            "gen": _encode(self.gen.get_state()),
            "n_proposed": self.n_proposed,
            "n_observed": self.n_observed,
            "proposed": list(self.proposed),
        }

    def load_state_dict(self, d: dict) -> None:
        self.rl.load_state_dict(_decode(d["rl"]))
        self.gen.set_state(_decode(d["gen"]))
        self.n_proposed, self.n_observed = int(d["n_proposed"]), int(d["n_observed"])
        self.proposed = dict.fromkeys(d.get("proposed", []))


def _encode(x: Any) -> Any:
    """Tensors -> ``{"__tensor__": base64, "dtype", "shape"}``; containers recursively (JSON-safe)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        return {"__tensor__": base64.b64encode(t.numpy().tobytes()).decode("ascii"), "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
    if isinstance(x, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return [_encode(v) for v in x]
    return x


def _decode(x: Any) -> Any:
    if isinstance(x, dict) and "__tensor__" in x:
        arr = np.frombuffer(base64.b64decode(x["__tensor__"]), dtype=np.dtype(x["dtype"])).reshape(x["shape"])
        return torch.from_numpy(arr.copy())
    if isinstance(x, dict) and "__dict__" in x:
        return {_decode(k): _decode(v) for k, v in x["__dict__"]}
    if isinstance(x, list):
        return [_decode(v) for v in x]
    return x
