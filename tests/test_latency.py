"""SNAS's latency resource: per-op forward times at the supernet's real edge shapes, cached per
device. Nothing here depends on timing: a fake timer (or a fake clock) gives the numbers."""

from __future__ import annotations

import json

import pytest
import torch

from nasforge.errors import ConfigError
from nasforge.search import latency, resource
from nasforge.search.latency import LatencyCache, cache_key, device_name, measure_latency_costs, op_latency
from nasforge.search.snas import SnasConfig, SnasSearch
from nasforge.spaces.cell_supernet import CellSupernet

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
#: fake per-op seconds per element of the op's input (so the number depends on the real shape)
RATE = {"max_pool_3x3": 1e-9, "skip_connect": 1e-10, "sep_conv_3x3": 1e-8}


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    """Every test writes its own cache file, never ~/.cache."""
    path = tmp_path / "cache" / "latency.json"
    monkeypatch.setenv(latency.ENV_CACHE, str(path))
    return path


class FakeTimer:
    """``timer(module, x)``: seconds from the op's name and the input's size; records its calls."""

    def __init__(self):
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def __call__(self, module, x):
        name = type(module).__name__
        self.calls.append((name, tuple(x.shape)))
        op = {"MaxPool2d": "max_pool_3x3", "Identity": "skip_connect", "FactorizedReduce": "skip_connect"}.get(name, "sep_conv_3x3")
        if name == "Sequential" and any(type(m).__name__ == "MaxPool2d" for m in module.modules()):
            op = "max_pool_3x3"  # SNAS pools: pool + affine BN
        return RATE[op] * x.numel()


def test_cache_path_env_override_and_xdg_default(tmp_cache, monkeypatch, tmp_path):
    assert latency.cache_path() == tmp_cache
    monkeypatch.delenv(latency.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert latency.cache_path() == tmp_path / "xdg" / "nasforge" / "latency.json"


def test_device_name_holds_cpu_model_and_threads():
    name = device_name("cpu")
    assert name.startswith("cpu:") and name.endswith(f"{torch.get_num_threads()} threads")
    key = cache_key(name, "sep_conv_3x3", "snas", 8, 2, 14, 14, 64)
    assert key == f"{name}|sep_conv_3x3|snas|C=8|stride=2|14x14|batch=64"


def test_op_latency_measures_once_then_reads_the_cache(tmp_cache):
    timer = FakeTimer()
    cache = LatencyCache()
    a = op_latency("sep_conv_3x3", 8, 1, 6, 6, 4, op_set="snas", cache=cache, timer=timer)
    assert a == pytest.approx(RATE["sep_conv_3x3"] * 4 * 8 * 6 * 6)
    assert timer.calls == [("SepConv", (4, 8, 6, 6))]  # the real (batch, C, H, W)
    assert op_latency("sep_conv_3x3", 8, 1, 6, 6, 4, op_set="snas", cache=cache, timer=timer) == a
    assert len(timer.calls) == 1  # cached
    op_latency("sep_conv_3x3", 8, 1, 6, 6, 2, op_set="snas", cache=cache, timer=timer)  # other batch: new key
    op_latency("sep_conv_3x3", 8, 2, 6, 6, 4, op_set="snas", cache=cache, timer=timer)  # other stride
    assert len(timer.calls) == 3
    assert op_latency("none", 8, 1, 6, 6, 4, cache=cache, timer=timer) == 0.0 and len(timer.calls) == 3  # none: not timed
    cache.save()
    on_disk = json.loads(tmp_cache.read_text())
    assert on_disk["version"] == 1 and len(on_disk["entries"]) == 3
    entry = on_disk["entries"][cache_key(device_name("cpu"), "sep_conv_3x3", "snas", 8, 1, 6, 6, 4)]
    assert entry["seconds"] == pytest.approx(a) and entry["torch"] == torch.__version__
    # a new process reads it back and times nothing
    timer2 = FakeTimer()
    assert op_latency("sep_conv_3x3", 8, 1, 6, 6, 4, op_set="snas", cache=LatencyCache(), timer=timer2) == pytest.approx(a)
    assert timer2.calls == []


def test_cache_is_per_device(tmp_cache, monkeypatch):
    cache = LatencyCache()
    timer = FakeTimer()
    op_latency("max_pool_3x3", 4, 1, 8, 8, 1, cache=cache, timer=timer)
    monkeypatch.setattr(latency, "device_name", lambda device="cpu": "cpu:another machine:1 threads")
    op_latency("max_pool_3x3", 4, 1, 8, 8, 1, cache=cache, timer=timer)
    assert len(timer.calls) == 2 and len(cache.entries) == 2


def test_cache_save_merges_with_another_writer_and_survives_a_bad_file(tmp_cache):
    a, b = LatencyCache(), LatencyCache()
    a.put("k1", 1.0)
    b.put("k2", 2.0)
    a.save()
    b.save()  # must not drop k1
    c = LatencyCache()
    assert c.get("k1") == 1.0 and c.get("k2") == 2.0
    tmp_cache.write_text("{not json")
    assert LatencyCache().entries == {}  # unreadable: measure again (with a warning), do not fail


def test_time_forward_is_the_median_after_warmup(monkeypatch):
    ticks = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])  # durations 5, 1, 3 -> median 3
    monkeypatch.setattr(latency.time, "perf_counter", lambda: next(ticks))
    calls = []
    module = torch.nn.Identity()
    module.register_forward_hook(lambda m, i, o: calls.append(1))
    assert latency.time_forward(module, torch.zeros(1), warmup=2, repeats=3) == 3.0
    assert len(calls) == 5  # 2 warm-up + 3 timed


def small_net():
    torch.manual_seed(0)
    return CellSupernet(10, 1, C=4, layers=3, nodes=2, primitives=OPS, channels_last=False)


def test_latency_costs_use_each_edges_real_shape(tmp_cache):
    net = small_net()
    timer = FakeTimer()
    costs = measure_latency_costs(net, (1, 8, 8), batch=3, cache=LatencyCache(), timer=timer)
    shapes = resource.edge_shapes(net, (1, 8, 8))
    expected = {t: torch.zeros(net.num_edges, net.num_ops, dtype=torch.float64) for t in net.cell_types}
    for cell in net.cells:
        kind = "reduce" if cell.reduction else "normal"
        for e, mixed in enumerate(cell.ops):
            _, C, H, W = shapes[id(mixed)]
            for k, name in enumerate(OPS):
                if name != "none":
                    expected[kind][e, k] += RATE[name] * 3 * C * H * W
    assert set(costs) == set(net.cell_types) == {"normal", "reduce"}
    for t in costs:
        assert costs[t].shape == (net.num_edges, len(OPS))
        torch.testing.assert_close(costs[t], expected[t])
        assert (costs[t][:, 0] == 0).all()  # none
    # (C, H) per edge: normal cell (4, 8); a reduction cell's input edges run at its input's
    # resolution with stride 2 ((8, 8), (16, 4)), its inner edges at half ((8, 4), (16, 2))
    assert {s[1:3] for s in shapes.values()} == {(4, 8), (8, 8), (8, 4), (16, 4), (16, 2)}
    # batch 3 in front; cells of one kind at one resolution share their keys: fewer timings than ops
    assert all(s[0] == 3 for _, s in timer.calls)
    n_timed = len(timer.calls)
    assert 0 < n_timed < sum(len(c.ops) for c in net.cells) * (len(OPS) - 1)
    # the cache was saved to the file: a default cache (and another process) times nothing
    again = measure_latency_costs(net, (1, 8, 8), batch=3, timer=timer)
    assert len(timer.calls) == n_timed and all(torch.equal(again[t], costs[t]) for t in costs)
    measure_latency_costs(net, (1, 8, 8), batch=4, timer=timer)  # another batch: timed again
    assert len(timer.calls) == 2 * n_timed


def test_snas_accepts_latency_and_rejects_unknown_resources():
    SnasConfig(resource="latency").validate()
    assert SnasConfig(resource="latency").resources == ("latency",)
    assert SnasConfig(resource="all").resources == ("flops", "params", "mac")  # the paper's three
    with pytest.raises(ConfigError, match="latency"):
        SnasConfig(resource="energy").validate()


def tiny_cfg(**kw):
    base = dict(data="digits", limit=64, epochs=1, batch_size=16, layers=3, channels=4, nodes=2,
                ops=list(OPS), max_steps=2, resource="latency", penalty=1.0, channels_last=False)
    base.update(kw)
    return SnasConfig(**base)


def test_snas_penalty_uses_the_measured_latencies(monkeypatch):
    timer = FakeTimer()
    monkeypatch.setattr(latency, "time_forward", lambda module, x, warmup=0, repeats=0: timer(module, x))
    s = SnasSearch(tiny_cfg(), None, progress=False)
    lat = s.costs()["latency"]
    net = s.net
    expected = measure_latency_costs(net.to("cpu"), s.input_shape, batch=16, op_set="snas", cache=LatencyCache(), timer=FakeTimer())
    for t in lat:
        torch.testing.assert_close(lat[t], expected[t])
    assert set(s.costs()) == {"flops", "params", "mac", "latency"}
    seen = []
    sample = s.sample
    monkeypatch.setattr(s, "sample", lambda: seen.append(sample()) or seen[-1])
    batches = s._batches(s.train_pair)
    stats = s.step(next(batches), None)
    z = {t: v.detach() for t, v in seen[0].items()}
    want = resource.resource_penalty(z, {"latency": lat}, ("latency",), log=True)
    assert stats["penalty"] == pytest.approx(float(want), rel=1e-5)
    # the penalty is log(E[latency] / max latency): made 10x slower everywhere, it does not change
    want10 = resource.resource_penalty(z, {"latency": {t: 10 * c for t, c in lat.items()}}, ("latency",), log=True)
    assert float(want10) == pytest.approx(float(want), rel=1e-5)


def test_snas_latency_search_records_latency_costs(tmp_path, monkeypatch, tmp_cache):
    import nasforge as nf

    timer = FakeTimer()
    monkeypatch.setattr(latency, "time_forward", lambda module, x, warmup=0, repeats=0: timer(module, x))
    cfg = tiny_cfg()
    res = nf.search("snas", out=tmp_path / "run", progress=False, **vars(cfg))
    rec = [json.loads(line) for line in (res.out / "metrics.jsonl").read_text().splitlines()][-1]
    assert set(rec["expected_cost"]) == set(rec["child_cost"]) == {"flops", "params", "mac", "latency"}
    assert rec["child_cost"]["latency"] > 0 and rec["expected_cost"]["latency"] > 0
    assert tmp_cache.exists() and len(json.loads(tmp_cache.read_text())["entries"]) == len(timer.calls)
    # the recorded child latency is the sum of the per-op times of the derived child's edges
    n = len(timer.calls)
    s = SnasSearch(tiny_cfg(), None, progress=False)
    record, _ = s.run_epoch()
    assert len(timer.calls) == n  # everything came from the cache file
    _, choice, _ = s.derive()
    lat = s.costs()["latency"]
    assert record["child_cost"]["latency"] == pytest.approx(resource.child_cost(s.net.normalise(choice), lat))
    assert record["child_cost"]["latency"] <= resource.max_cost(lat)
