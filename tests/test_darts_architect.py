"""DARTS architecture gradient: the finite-difference second-order step equals the exact one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from nasforge.search.architect import Architect
from nasforge.spaces import cell_supernet
from nasforge.spaces.cell_supernet import CellSupernet, frozen_bn_stats
from nasforge.spaces.mixed_op import EdgeInput


#: smooth ops only: the Hessian of a ReLU/max-pool network is not a function (a finite
#: difference across a kink is O(1) wrong), so ReLU -> softplus and no max pooling here
SMOOTH_PRIMITIVES = ("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3")


class _SoftplusInput(EdgeInput):
    __slots__ = ()

    @property
    def relu(self):
        if self._relu is None:
            self._relu = F.softplus(self.x)
        return self._relu


def _setup(order: int, monkeypatch=None):
    torch.manual_seed(0)
    if monkeypatch is not None:
        monkeypatch.setattr(cell_supernet, "EdgeInput", _SoftplusInput)
    net = CellSupernet(4, 3, C=4, layers=3, nodes=2, primitives=SMOOTH_PRIMITIVES, channels_last=False, fused=False).double()
    if monkeypatch is not None:
        for m in list(net.modules()):
            for name, child in list(m.named_children()):
                if isinstance(child, torch.nn.ReLU):
                    setattr(m, name, torch.nn.Softplus())
    alphas = [(1e-1 * torch.randn(net.num_edges, net.num_ops, dtype=torch.float64)).requires_grad_() for _ in net.cell_types]
    weights = [p for p in net.parameters()]
    w_opt = torch.optim.SGD(weights, lr=0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def loss_fn(batch):
        x, y = batch
        return F.cross_entropy(net(x, weights=dict(zip(net.cell_types, [F.softmax(a, -1) for a in alphas]))), y)

    g = torch.Generator().manual_seed(1)
    train = (torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g))
    val = (torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g))
    # one ordinary weight step so that SGD has momentum buffers (they enter the unrolled step)
    w_opt.zero_grad()
    loss_fn(train).backward()
    w_opt.step()
    arch = Architect(weights, alphas, loss_fn, w_opt, a_opt, order=order, aux_context=lambda: frozen_bn_stats(net))
    return net, alphas, w_opt, arch, train, val


def _exact_second_order(net, alphas, w_opt, train, val):
    """∇α L_val(w − ξ(μv + ∇w L_train(w, α) + λw), α) by double backward (no finite differences)."""
    names = [n for n, _ in net.named_parameters()]
    params = [p for _, p in net.named_parameters()]
    group = w_opt.param_groups[0]
    eta, mom, wd = group["lr"], group["momentum"], group["weight_decay"]

    def loss_at(ps, batch):
        x, y = batch
        w = dict(zip(net.cell_types, [F.softmax(a, -1) for a in alphas]))
        return F.cross_entropy(functional_call(net, dict(zip(names, ps)), (x,), {"weights": w}), y)

    with frozen_bn_stats(net):
        g = torch.autograd.grad(loss_at(params, train), params, create_graph=True)
        unrolled = [p - eta * (mom * w_opt.state[p]["momentum_buffer"] + gi + wd * p) for p, gi in zip(params, g)]
        return torch.autograd.grad(loss_at(unrolled, val), alphas)


def _rel_err(a, b):
    num = torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b)))
    den = torch.sqrt(sum((y**2).sum() for y in b))
    return float(num / den)


def test_second_order_alpha_gradient_matches_exact_hessian_vector_product(monkeypatch):
    net, alphas, w_opt, arch, train, val = _setup(order=2, monkeypatch=monkeypatch)
    w_before = [p.detach().clone() for p in net.parameters()]
    _, fd = arch.second_order_grad(train, val)
    exact = _exact_second_order(net, alphas, w_opt, train, val)
    assert _rel_err(fd, exact) < 1e-2
    # the implicit term matters: the first-order gradient is clearly different
    first = torch.autograd.grad(arch.loss_fn(val), alphas)
    assert _rel_err(first, exact) > 10 * _rel_err(fd, exact)
    # the weights were restored after the unrolled and perturbed evaluations
    for p, w in zip(net.parameters(), w_before):
        assert torch.equal(p.detach(), w)


def test_first_order_step_descends_the_validation_loss():
    net, alphas, w_opt, arch, train, val = _setup(order=1)
    arch.a_optimizer.param_groups[0]["lr"] = 1e-2
    before = float(arch.loss_fn(val).detach())
    for _ in range(5):
        arch.step(train, val)
    assert float(arch.loss_fn(val).detach()) < before


def test_architect_is_generic_over_a_loss_closure():
    """Quadratic toy problem: L_train = ½‖w − Aα‖², L_val = ½‖w − b‖² + ½‖α‖²; exact answer by hand."""
    torch.manual_seed(0)
    A = torch.randn(3, 2, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    w = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    alpha = torch.randn(2, dtype=torch.float64, requires_grad=True)
    w_opt = torch.optim.SGD([w], lr=0.1)
    a_opt = torch.optim.SGD([alpha], lr=0.1)

    def loss(batch):
        if batch == "train":
            return 0.5 * ((w - A @ alpha) ** 2).sum()
        return 0.5 * ((w - b) ** 2).sum() + 0.5 * (alpha**2).sum()

    arch = Architect([w], [alpha], loss, w_opt, a_opt, order=2)
    _, (g,) = arch.second_order_grad("train", "val")
    xi = 0.1
    w1 = w.detach() - xi * (w.detach() - A @ alpha.detach())  # unrolled
    # d/dα [½‖w1(α) − b‖² + ½‖α‖²] with dw1/dα = ξA
    exact = xi * A.T @ (w1 - b) + alpha.detach()
    assert torch.allclose(g, exact, rtol=1e-6, atol=1e-8)
