"""The DARTS architecture step, first and second order (Liu et al. 2019, Sec. 2.3, eq. 6-8).

Generic over the model: the architect sees a list of weights ``w``, a list of
architecture parameters ``α``, a loss closure ``loss_fn(batch) -> scalar tensor`` that
evaluates the model at the current values of ``w`` and ``α``, the weight optimiser
(SGD: its learning rate, momentum, weight decay and momentum buffers define the unrolled
step) and the α optimiser (Adam in DARTS). The CNN and the RNN searches both use it.

First order (ξ = 0): ``∇α L_val(w, α)``.

Second order: with the unrolled weights ``w' = w − ξ (μ·v + ∇w L_train(w, α) + λ·w)``
(ξ = the weight optimiser's *current* learning rate; momentum μ·v and weight decay λ
included as in the official ``cnn/architect.py``; paper footnote 1 names only ξ = the
weight learning rate), the gradient is (eq. 7-8)::

    ∇α L_val(w', α) − ξ · [∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)] / (2ε)
    w± = w ± ε ∇w' L_val(w', α),   ε = 0.01 / ‖∇w' L_val(w', α)‖₂   (footnote 2)

The model is evaluated at ``w'`` and ``w±`` by swapping the weights' data in place and
restoring it afterwards. A pass that needs the gradient of only α (first order, and the
passes at ``w±``) or of only w (the unrolled step) runs with the other parameters'
``requires_grad`` switched off, so that no work is done for gradients nobody asked for
(the depthwise-weight backward is the most expensive part of a step on CPU). ``aux_context``
(e.g. :func:`nasforge.spaces.cell_supernet.frozen_bn_stats`) wraps the extra passes so
they leave BN running statistics alone (the official code's unrolled model is a copy
whose statistics are discarded). ``reduce`` averages gradients across processes (DDP).
``unrolled_updates_stats`` lets the unrolled step's forward move them (when the\nweight step reuses its gradient and so runs no forward of its own). ``clip`` clips the unrolled step's gradient norm (the DARTS RNN architect does; the CNN
one does not).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

import torch

LossFn = Callable[[Any], torch.Tensor]
Reduce = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    gs = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


class Architect:
    """α update of DARTS; ``step(train_batch, val_batch)`` returns the validation loss."""

    def __init__(
        self,
        weights: Sequence[torch.nn.Parameter],
        alphas: Sequence[torch.Tensor],
        loss_fn: LossFn,
        w_optimizer: torch.optim.Optimizer,
        a_optimizer: torch.optim.Optimizer,
        *,
        order: int = 1,
        r: float = 0.01,
        clip: float | None = None,
        aux_context: Callable[[], ContextManager] | None = None,
        reduce: Reduce | None = None,
        unrolled_updates_stats: bool = False,
    ):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        self.weights = [w for w in weights if w.requires_grad]
        self.alphas = list(alphas)
        self.loss_fn = loss_fn
        self.w_optimizer = w_optimizer
        self.a_optimizer = a_optimizer
        self.order = order
        self.r = r
        self.clip = clip
        self.aux_context = aux_context or contextlib.nullcontext
        self.reduce: Reduce = reduce or (lambda g: g)
        #: ∇w L_train(w, α) of the last unrolled step (see :meth:`last_train_grads`)
        self._train_grads: list[torch.Tensor] | None = None
        self.last_train_loss = float("nan")
        self.unrolled_updates_stats = unrolled_updates_stats

    @contextlib.contextmanager
    def _grad_only(self, wanted: Sequence[torch.Tensor]):
        """Switch ``requires_grad`` off for the weights and α not in ``wanted`` (restored after)."""
        keep = {id(t) for t in wanted}
        off = [t for t in self.weights + self.alphas if id(t) not in keep and t.requires_grad]
        for t in off:
            t.requires_grad_(False)
        try:
            yield
        finally:
            for t in off:
                t.requires_grad_(True)

    # -- hyper-parameters of the weight optimiser -------------------------------------------
    def _sgd(self) -> tuple[float, float, float]:
        g = self.w_optimizer.param_groups[0]
        return float(g["lr"]), float(g.get("momentum", 0.0)), float(g.get("weight_decay", 0.0))

    def step(self, train_batch: Any, val_batch: Any) -> float:
        self.a_optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            with self._grad_only(self.alphas):
                loss = self.loss_fn(val_batch)
                dalpha = self.reduce(_grads(loss, self.alphas))
        else:
            loss, dalpha = self.second_order_grad(train_batch, val_batch)
        for a, g in zip(self.alphas, dalpha):
            a.grad = g.detach().clone()
        self.a_optimizer.step()
        return float(loss.detach())

    # -- second order -----------------------------------------------------------------------
    def unrolled_weights(self, train_batch: Any) -> list[torch.Tensor]:
        """``w' = w − ξ (μ·v + ∇w L_train + λ·w)`` (official ``_compute_unrolled_model``)."""
        eta, mom, wd = self._sgd()
        with (contextlib.nullcontext() if self.unrolled_updates_stats else self.aux_context()), self._grad_only(self.weights):
            loss = self.loss_fn(train_batch)
            grads = self.reduce(_grads(loss, self.weights))
        self.last_train_loss = float(loss.detach())
        if self.clip is not None:
            norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
            coef = self.clip / (float(norm) + 1e-6)
            if coef < 1.0:
                grads = [g * coef for g in grads]
        self._train_grads = [g.detach() for g in grads]
        # d = ∇w + λw (+ μv), w' = w − ξd; multi-tensor ops: ~1,400 tensors, one call each
        ws = [w.detach() for w in self.weights]
        d = torch._foreach_add(self._train_grads, ws, alpha=wd)
        if mom:
            state = self.w_optimizer.state
            bufs = [state.get(w, {}).get("momentum_buffer") for w in self.weights]
            have = [i for i, b in enumerate(bufs) if b is not None]
            if have:
                torch._foreach_add_([d[i] for i in have], [bufs[i] for i in have], alpha=mom)
        return torch._foreach_add(ws, d, alpha=-eta)

    def last_train_grads(self) -> list[torch.Tensor] | None:
        """∇w L_train(w, α_old) of the last unrolled step (reused by ``reuse_unrolled_grad``)."""
        return self._train_grads

    @contextlib.contextmanager
    def _at(self, values: Sequence[torch.Tensor]):
        ws = [w.detach() for w in self.weights]
        saved = torch._foreach_mul(ws, 1.0)  # copies
        try:
            torch._foreach_copy_(ws, list(values))
            yield
        finally:
            torch._foreach_copy_(ws, saved)

    def second_order_grad(self, train_batch: Any, val_batch: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
        eta = self._sgd()[0]
        w_unrolled = self.unrolled_weights(train_batch)
        with self._at(w_unrolled), self.aux_context():
            loss = self.loss_fn(val_batch)
            g = self.reduce(_grads(loss, self.alphas + self.weights))
        dalpha, vector = g[: len(self.alphas)], g[len(self.alphas) :]
        implicit = self.hessian_vector_product(vector, train_batch)
        return loss, [da - eta * ig for da, ig in zip(dalpha, implicit)]

    def hessian_vector_product(self, vector: Sequence[torch.Tensor], train_batch: Any) -> list[torch.Tensor]:
        """``∇²_{α,w} L_train(w, α) · v`` by central differences, ε = r / ‖v‖."""
        vector = [v.detach() for v in vector]
        norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(vector))))
        eps = self.r / max(norm, 1e-12)
        w0 = [w.detach() for w in self.weights]
        with self.aux_context(), self._grad_only(self.alphas):
            with self._at(torch._foreach_add(w0, vector, alpha=eps)):
                g_pos = self.reduce(_grads(self.loss_fn(train_batch), self.alphas))
            with self._at(torch._foreach_add(w0, vector, alpha=-eps)):
                g_neg = self.reduce(_grads(self.loss_fn(train_batch), self.alphas))
        return [(p - n) / (2 * eps) for p, n in zip(g_pos, g_neg)]
