"""NAS-Bench-201 as a sequential decision problem, so BlockQNN's agent and random search
can run over the lookup table (reward = table accuracy, no training).

A cell is 6 edge ops chosen in the order of :data:`nasforge.spaces.nb201_table.EDGES`.
The state is ``(k, op)``: ``k`` edges are decided and ``op`` is the last one chosen
(``(0, "start")`` at the start); an action is ``(k + 1, op)`` for every op of
:data:`~nasforge.ops.NB201_PRIMITIVES`; the 6th action ends the episode. This chain
keeps the tabular Q-table small (the paper's agent reads the previous layer the same way).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from nasforge.errors import ArchError
from nasforge.ops import NB201_PRIMITIVES

N_EDGES = 6


@dataclass(frozen=True)
class NB201Grammar:
    name: str = "nb201"

    def start(self) -> tuple:
        return (0, "start")

    def next_state(self, state: tuple, action: tuple) -> tuple:
        return tuple(action)

    def is_final(self, action: tuple) -> bool:
        return int(action[0]) == N_EDGES

    def actions(self, state: tuple) -> list[tuple]:
        k = int(state[0])
        if k >= N_EDGES:
            return []
        return [(k + 1, op) for op in NB201_PRIMITIVES]

    def to_arch(self, actions: Sequence[tuple]) -> dict:
        ops = [a[1] for a in actions]
        if len(ops) != N_EDGES or any(op not in NB201_PRIMITIVES for op in ops):
            raise ArchError(f"a NAS-Bench-201 cell needs {N_EDGES} ops from {list(NB201_PRIMITIVES)}, got {ops}")
        return {"kind": "nb201", "ops": ops}

    def key(self, arch: dict) -> str:
        return "|".join(arch["ops"])

    def random_walk(self, rng: random.Random) -> list[tuple]:
        s, acts = self.start(), []
        while True:
            a = rng.choice(self.actions(s))
            acts.append(a)
            if self.is_final(a):
                return acts
            s = self.next_state(s, a)
