"""Augmentation as tensor ops: crop with padding, flip, cutout; and the BatchLoader."""

from __future__ import annotations

import pytest
import torch

from nasforge.data import Augment, BatchLoader, TensorPair, cutout, random_crop, random_flip
from nasforge.data.augment import cutout_mask
from nasforge.errors import DataError


def _batch(n=16, c=3, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) + 0.5  # strictly positive: zeros mark padding/cutout


def test_flip_is_exact_mirror_or_identity():
    x = _batch(64)
    out = random_flip(x, torch.Generator().manual_seed(1))
    flipped = 0
    for i in range(len(x)):
        if torch.equal(out[i], x[i].flip(-1)):
            flipped += 1
        else:
            assert torch.equal(out[i], x[i])
    assert 15 < flipped < 49  # p = 0.5


def test_crop_keeps_content_shifted():
    x = _batch(32, h=10, w=10)
    p = 3
    out = random_crop(x, p, torch.Generator().manual_seed(2))
    assert out.shape == x.shape
    seen = set()
    for i in range(len(x)):
        # recover the shift: padded image equals out at some offset (dy, dx) in 0..2p
        padded = torch.nn.functional.pad(x[i], (p, p, p, p))
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1) if torch.equal(padded[:, dy : dy + 10, dx : dx + 10], out[i])]
        assert len(matches) == 1
        dy, dx = matches[0]
        seen.add((dy, dx))
        sy, sx = dy - p, dx - p  # out[r, c] = x[r + sy, c + sx]
        r0, r1 = max(0, -sy), min(10, 10 - sy)
        c0, c1 = max(0, -sx), min(10, 10 - sx)
        assert torch.equal(out[i][:, r0:r1, c0:c1], x[i][:, r0 + sy : r1 + sy, c0 + sx : c1 + sx])
        assert (out[i] == 0).sum() == 3 * (100 - (r1 - r0) * (c1 - c0))  # the rest is padding
    assert len(seen) > 10


def test_crop_fill_black_for_dataset():
    class DS:
        mean, std = (0.5, 0.25, 0.5), (0.5, 0.5, 0.25)

    aug = Augment.for_dataset(DS, crop_padding=4, flip=False)
    x = _batch(8)
    out = aug(x, torch.Generator().manual_seed(0))
    fill = torch.tensor([-1.0, -0.5, -2.0]).view(1, 3, 1, 1)
    assert ((out == fill) | (out > 0)).all()
    assert (out == fill).any()


def test_cutout_zeroes_one_clipped_square():
    x = _batch(200, c=2, h=16, w=16)
    L = 6
    out = cutout(x, L, torch.Generator().manual_seed(3))
    full = 0
    for i in range(len(x)):
        z = out[i] == 0
        assert torch.equal(z[0], z[1])  # same square in every channel
        rows = z[0].any(1).nonzero().flatten()
        cols = z[0].any(0).nonzero().flatten()
        assert len(rows) and len(cols)  # a centre inside the image always cuts something
        # a rectangle: the zero set is exactly rows x cols, contiguous, at most L x L
        assert z[0].sum() == len(rows) * len(cols)
        assert rows[-1] - rows[0] + 1 == len(rows) <= L and cols[-1] - cols[0] + 1 == len(cols) <= L
        full += len(rows) == L and len(cols) == L
        assert torch.equal(out[i][:, ~z[0]], x[i][:, ~z[0]])  # the rest untouched
    assert full > 50  # away from the borders the square is whole


def test_cutout_mask_matches_official_clipping():
    # rows clip(cy - 8, 0, 32) .. clip(cy + 8, 0, 32) (exclusive), same for columns
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        m = cutout_mask(1, 32, 32, 16, g)[0, 0]
        g = torch.Generator().manual_seed(seed)
        cy, cx = torch.randint(0, 32, (1,), generator=g).item(), torch.randint(0, 32, (1,), generator=g).item()
        exp = torch.zeros(32, 32, dtype=torch.bool)
        exp[max(0, cy - 8) : min(32, cy + 8), max(0, cx - 8) : min(32, cx + 8)] = True
        assert torch.equal(m, exp)


def test_augment_reproducible_and_shapes():
    aug = Augment(crop_padding=4, flip=True, cutout=16)
    x = _batch(96, h=32, w=32)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(Augment(0, False, 0)(x), x)
    with pytest.raises(DataError):
        aug(x[0])
    with pytest.raises(DataError):
        Augment(cutout=-1)


def test_batch_loader_epoch_covers_everything_once():
    pair = TensorPair(torch.arange(23, dtype=torch.float32).view(23, 1, 1, 1), torch.arange(23))
    loader = BatchLoader(pair, 5, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 5
    batches = list(loader)
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    ys = torch.cat([y for _, y in batches])
    assert sorted(ys.tolist()) == list(range(23)) and ys.tolist() != list(range(23))
    for x, y in batches:
        assert torch.equal(x.view(-1).long(), y)
    dl = BatchLoader(pair, 5, drop_last=True)
    assert len(dl) == 4 and sum(len(y) for _, y in dl) == 20
    ordered = torch.cat([y for _, y in BatchLoader(pair, 4, shuffle=False)])
    assert ordered.tolist() == list(range(23))
    for x, _ in BatchLoader(pair, 4, shuffle=False):
        x.zero_()  # e.g. an in-place ReLU on the input must not change the data set
    assert torch.equal(pair.x.view(-1).long(), pair.y)


def test_batch_loader_reproducible_from_generator_and_augments():
    pair = TensorPair(_batch(40, h=8, w=8), torch.arange(40))
    aug = Augment(crop_padding=2, cutout=3)

    def run(seed, epochs=2):
        g = torch.Generator().manual_seed(seed)
        loader = BatchLoader(pair, 16, generator=g, augment=aug, device="cpu")
        return [(x.clone(), y.clone()) for _ in range(epochs) for x, y in loader]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))
    assert not torch.equal(a[0][1], a[3][1])  # a new order each epoch
    x, y = a[0]
    assert x.shape == (16, 3, 8, 8) and not torch.equal(x, pair.x[y])  # augmented
    # resuming from a saved generator state continues the same stream
    g = torch.Generator().manual_seed(0)
    loader = BatchLoader(pair, 16, generator=g, augment=aug)
    list(loader)
    state = g.get_state()
    second = [x for x, _ in loader]
    g2 = torch.Generator()
    g2.set_state(state)
    again = [x for x, _ in BatchLoader(pair, 16, generator=g2, augment=aug)]
    assert all(torch.equal(p, q) for p, q in zip(second, again))
    with pytest.raises(DataError):
        BatchLoader(pair, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_loader_cuda_pinned_same_as_cpu():
    pair = TensorPair(_batch(40, h=8, w=8), torch.arange(40))
    aug = Augment(crop_padding=2, cutout=3)
    cpu = list(BatchLoader(pair, 16, generator=torch.Generator().manual_seed(0), augment=aug))
    gpu = list(BatchLoader(pair, 16, generator=torch.Generator().manual_seed(0), augment=aug, device="cuda", pin_memory=True))
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and yg.is_cuda
        assert torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
