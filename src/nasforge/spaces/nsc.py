"""The NSC search space as a state/action grammar for the BlockQNN agent.

Zhong et al., CVPR 2018, §3.2: the agent builds a block layer by layer. A *state* is the
NSC row of the current layer (the start state is the block input, row index 0); an
*action* is the next row; taking it makes that row the new state. From the state of layer
``i`` the legal actions are every row with index ``i + 1`` whose type/kernel are in
Table 1 and whose predecessors are earlier layers ``0..i``, plus ``terminal`` (not from
the start state: a block has at least one layer). At ``max_layers`` only ``terminal`` is
left.

``max_layers`` (the paper's maximum layer index): the value in the paper could not be
checked here [U]; the default 10 follows the unofficial Keras reproduction
(elenathfgs/BlockQNN_Keras, ``T = 10``) [S]. Two-input layers (add, concat) take two
*different* predecessors ``pred1 < pred2`` (order does not change their output).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from nasforge.arch.block import NSC_KERNELS, BlockArch, NSCRow

State = tuple
Action = tuple

DEFAULT_MAX_LAYERS = 10
START: NSCRow = NSCRow(0, "input", 0, 0, 0)


@dataclass(frozen=True)
class NSCGrammar:
    """Legal NSC rows after each row; ``actions`` lists them in a fixed order."""

    max_layers: int = DEFAULT_MAX_LAYERS
    name: str = "nsc"

    def start(self) -> State:
        return tuple(START)

    def next_state(self, state: State, action: Action) -> State:
        return tuple(action)

    def is_final(self, action: Action) -> bool:
        return action[1] == "terminal"

    def actions(self, state: State) -> list[Action]:
        i = int(state[0])
        j = i + 1
        term = (j, "terminal", 0, 0, 0)
        if i >= self.max_layers:
            return [term]
        out: list[Action] = []
        preds = range(0, j)
        for typ in ("conv", "max_pool", "avg_pool"):
            for k in NSC_KERNELS[typ]:
                out.extend((j, typ, k, p, 0) for p in preds)
        out.extend((j, "identity", 0, p, 0) for p in preds)
        for typ in ("add", "concat"):
            out.extend((j, typ, 0, a, b) for a in preds for b in preds if a < b)
        if i >= 1:
            out.append(term)
        return out

    def to_arch(self, actions: Sequence[Action]) -> dict:
        rows = [list(a) for a in actions]
        if not rows or rows[-1][1] != "terminal":
            rows.append([len(rows) + 1, "terminal", 0, 0, 0])
        arch = BlockArch.from_rows(rows)
        arch.validate()
        return arch.to_dict()

    def key(self, arch: dict) -> str:
        return BlockArch.from_dict(arch).key()

    def random_walk(self, rng: random.Random) -> list[Action]:
        """Uniform choice among legal actions at every step (ε = 1; random search)."""
        s, acts = self.start(), []
        while True:
            a = rng.choice(self.actions(s))
            acts.append(a)
            if self.is_final(a):
                return acts
            s = self.next_state(s, a)


def random_block(rng: random.Random, max_layers: int = DEFAULT_MAX_LAYERS) -> BlockArch:
    g = NSCGrammar(max_layers=max_layers)
    return BlockArch.from_dict(g.to_arch(g.random_walk(rng)))
