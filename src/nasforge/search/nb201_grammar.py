"""NAS-Bench-201 as a sequential decision problem, so BlockQNN's agent and random search
can run over the lookup table (reward = table accuracy, no training).

A cell is 6 edge ops chosen in the order of :data:`nasforge.spaces.nb201.EDGES`; an
action is ``(k + 1, op)`` for every op of :data:`~nasforge.spaces.nb201.PRIMITIVES`; the
6th action ends the episode. Two state encodings (``state``):

- ``"chain"`` (default, the paper's reading): ``(k, op)`` — ``k`` edges are decided and
  ``op`` is the last one chosen (``(0, "start")`` at the start), as BlockQNN's agent reads
  the previous layer. 1 + 5·5 states, 130 state-action pairs.
- ``"edge"``: ``(k,)`` — only the number of decided edges. 6 states, 30 pairs: each
  Q-value pools every cell sharing that edge's op, so it is learnt from 5× more samples
  per pair (NAS-Bench-201's edges matter nearly independently; see ``docs/experiments.md``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from nasforge.errors import ArchError, ConfigError
from nasforge.spaces.nb201 import N_EDGES, PRIMITIVES

STATES = ("chain", "edge")


@dataclass(frozen=True)
class NB201Grammar:
    name: str = "nb201"
    state: str = "chain"

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ConfigError(f"NAS-Bench-201 agent state must be one of {', '.join(STATES)}, got {self.state!r}")

    def start(self) -> tuple:
        return (0, "start") if self.state == "chain" else (0,)

    def next_state(self, state: tuple, action: tuple) -> tuple:
        return tuple(action) if self.state == "chain" else (int(action[0]),)

    def is_final(self, action: tuple) -> bool:
        return int(action[0]) == N_EDGES

    def actions(self, state: tuple) -> list[tuple]:
        k = int(state[0])
        if k >= N_EDGES:
            return []
        return [(k + 1, op) for op in PRIMITIVES]

    def to_arch(self, actions: Sequence[tuple]) -> dict:
        ops = [a[1] for a in actions]
        if len(ops) != N_EDGES or any(op not in PRIMITIVES for op in ops):
            raise ArchError(f"a NAS-Bench-201 cell needs {N_EDGES} ops from {list(PRIMITIVES)}, got {ops}")
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
