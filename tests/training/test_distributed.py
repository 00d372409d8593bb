"""Several processes on CPUs (gloo), for real: the sharded sampler, batch norm over the global batch, K-means
across ranks, and the pieces of a run each against one process doing the same work."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from clinfonce.clusters import ClusterSpec, kmeans_clusters
from clinfonce.data.loaders import EpochSeededSampler
from clinfonce.training.batchnorm import GlobalBatchNorm, globalise
from clinfonce.training.recluster import kmeans_across_ranks


def _worker(rank: int, world: int, init_file: str, jobs: dict, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {name: job(rank, world, *args) for name, (job, args) in jobs.items()}
        Path(f"{out}.{rank}").write_bytes(pickle.dumps(results))
    finally:
        dist.destroy_process_group()


def _on_ranks(tmp_path: Path, jobs: dict[str, tuple[Callable, tuple]], world: int = 2) -> list[dict]:
    """Each ``job(rank, world, *args)`` of ``jobs`` in turn, in ``world`` gloo processes (started once: a start
    costs seconds); per rank, the results by job name."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), jobs, out), nprocs=world, join=True)
    return [pickle.loads(Path(f"{out}.{rank}").read_bytes()) for rank in range(world)]


# ------------------------------------------------------------------------------------------ the sampler


@pytest.mark.parametrize("n", [37, 40, 64])
def test_shards_together_are_one_process_global_batches(n) -> None:
    """Two processes with batch 4 train on exactly the batches of one process with batch 8, each sample at
    most once per epoch, none repeated to pad a shard."""
    one = EpochSeededSampler(n, seed=3, batch_size=8)
    shards = [EpochSeededSampler(n, seed=3, batch_size=4, rank=r, world_size=2) for r in range(2)]
    orders = []
    for epoch in range(3):
        for sampler in (one, *shards):
            sampler.set_epoch(epoch)
        single = list(one)
        orders.append(single)
        parts = [list(shard) for shard in shards]
        assert len(single) == len(one) == (n // 8) * 8
        assert [len(part) for part in parts] == [len(shard) for shard in shards] == [(n // 8) * 4] * 2
        for step in range(n // 8):
            together = parts[0][step * 4 : (step + 1) * 4] + parts[1][step * 4 : (step + 1) * 4]
            assert sorted(together) == sorted(single[step * 8 : (step + 1) * 8])
        assert len(set(parts[0]) | set(parts[1])) == len(parts[0]) + len(parts[1])
    assert orders[0] != orders[1] != orders[2]  # a new epoch, a new order


def test_resume_within_an_epoch_skips_the_trained_batches_on_every_rank() -> None:
    shards = [EpochSeededSampler(50, seed=1, batch_size=5, rank=r, world_size=2) for r in range(2)]
    full = [list(shard) for shard in shards]
    for shard in shards:
        shard.resume_within(epoch=0, batches=3)
    assert [list(shard) for shard in shards] == [part[15:] for part in full]
    assert [list(shard) for shard in shards] == full  # only once


def test_sampler_refuses_a_rank_outside_the_world() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        EpochSeededSampler(10, seed=0, batch_size=2, rank=2, world_size=2)


# -------------------------------------------------- jobs for two gloo processes, all in one start


def _batchnorm_inputs() -> tuple[torch.Tensor, torch.Tensor, nn.BatchNorm2d]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 4, 5, generator=gen, dtype=torch.float64) * 3 + 1
    probe = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    reference = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5, generator=gen)
        reference.bias.uniform_(-1, 1, generator=gen)
    return x, probe, reference


def _batchnorm_job(rank: int, world: int, x: torch.Tensor, probe: torch.Tensor, state: dict) -> dict:
    layer = globalise(nn.Sequential(nn.BatchNorm2d(x.shape[1]).double()))[0]
    layer.load_state_dict(state)
    rows = x.shape[0] // world
    local = x[rank * rows : (rank + 1) * rows].clone().requires_grad_(True)
    out = layer(local)
    (out * probe[rank * rows : (rank + 1) * rows]).sum().backward()
    return {
        "out": out.detach(),
        "grad": local.grad,
        "weight_grad": layer.weight.grad,
        "bias_grad": layer.bias.grad,
        "running_mean": layer.running_mean,
        "running_var": layer.running_var,
        "type": type(layer).__name__,
    }


def _low_precision_inputs() -> torch.Tensor:
    # 2 x 200 x 200 = 80,000 values per channel on each rank: more than float16 can count (65,504)
    gen = torch.Generator().manual_seed(2)
    return torch.randn(4, 3, 200, 200, generator=gen) * 2 + 5


def _low_precision_job(rank: int, world: int, x: torch.Tensor, dtype: torch.dtype) -> dict:
    layer = globalise(nn.BatchNorm2d(3))
    local = x[rank * 2 : (rank + 1) * 2].to(dtype)
    out = layer(local)
    return {"out": out.float(), "dtype": out.dtype, "running_var": layer.running_var}


_SPEC = ClusterSpec(source="kmeans", k=6, spherical=True, restarts=2, points_per_centroid=30)


def _kmeans_features() -> np.ndarray:
    gen = np.random.default_rng(3)
    centres = gen.normal(size=(6, 8)) * 4
    return (centres[gen.integers(0, 6, 300)] + gen.normal(size=(300, 8))).astype(np.float32)


def _kmeans_job(rank: int, world: int, features: np.ndarray, shares: list) -> dict:
    positions = shares[rank]
    ids, assignment = kmeans_across_ranks(features[positions], positions, len(features), _SPEC, seed=7)
    return {"ids": ids.numpy(), "assignment": assignment}


def _kmeans_bad_job(rank: int, world: int, share: np.ndarray, positions: list) -> str:
    try:
        kmeans_across_ranks(share, positions[rank], 4, ClusterSpec(k=2), seed=0)
    except (ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


_BAD_SHARES = {
    "overlapping shares": (
        np.zeros((2, 3), np.float32),
        [np.array([0, 1]), np.array([0, 1])],
        "not each of the 4 points once",
    ),
    "NaN features": (np.full((2, 3), np.nan, np.float32), [np.array([0, 1]), np.array([2, 3])], "non-finite"),
}
_SPLITS = {
    "strided": [np.arange(300)[0::2], np.arange(300)[1::2]],
    "rank 0 holds all": [np.arange(300), np.zeros(0, dtype=np.int64)],
}


_LOW = (torch.float16, torch.bfloat16)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    x, probe, reference = _batchnorm_inputs()
    jobs: dict[str, tuple[Callable, tuple]] = {
        "batchnorm": (_batchnorm_job, (x, probe, reference.state_dict())),
        **{f"batchnorm {dtype}": (_low_precision_job, (_low_precision_inputs(), dtype)) for dtype in _LOW},
        **{f"kmeans {name}": (_kmeans_job, (_kmeans_features(), shares)) for name, shares in _SPLITS.items()},
        **{name: (_kmeans_bad_job, (share, where)) for name, (share, where, _) in _BAD_SHARES.items()},
    }
    return _on_ranks(tmp_path_factory.mktemp("ranks"), jobs)


# ---------------------------------------------------------------------------- batch norm, global batch


def test_global_batchnorm_on_two_processes_is_batchnorm_on_the_whole_batch(two_ranks) -> None:
    """Reference: torch's BatchNorm2d on the concatenated batch (outputs, input gradients, parameter
    gradients summed over the processes as DDP's all-reduce does, running statistics)."""
    x, probe, reference = _batchnorm_inputs()
    results = [ranks["batchnorm"] for ranks in two_ranks]
    full = x.clone().requires_grad_(True)
    out = reference(full)
    (out * probe).sum().backward()
    assert {r["type"] for r in results} == {"GlobalBatchNorm"}
    torch.testing.assert_close(torch.cat([r["out"] for r in results]), out.detach())
    torch.testing.assert_close(torch.cat([r["grad"] for r in results]), full.grad)
    torch.testing.assert_close(sum(r["weight_grad"] for r in results), reference.weight.grad)
    torch.testing.assert_close(sum(r["bias_grad"] for r in results), reference.bias.grad)
    for r in results:
        torch.testing.assert_close(r["running_mean"], reference.running_mean)
        torch.testing.assert_close(r["running_var"], reference.running_var)


@pytest.mark.parametrize("dtype", _LOW, ids=str)
def test_global_batchnorm_of_half_precision_activations_keeps_float32_statistics(two_ranks, dtype) -> None:
    """Under mixed precision the activations are float16 / bfloat16; the statistics must not be (a count of
    80,000 overflows float16). Reference: BatchNorm2d on the float32 batch; the output keeps the input's
    dtype."""
    x = _low_precision_inputs()
    reference = nn.BatchNorm2d(3)
    expected = reference(x.to(dtype).float())
    results = [ranks[f"batchnorm {dtype}"] for ranks in two_ranks]
    assert {r["dtype"] for r in results} == {dtype}
    out = torch.cat([r["out"] for r in results])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, atol=0.05, rtol=0.01)  # the output's own rounding
    torch.testing.assert_close(results[0]["running_var"], reference.running_var, rtol=1e-4, atol=1e-5)


def test_global_batchnorm_in_one_process_and_in_eval_is_batchnorm() -> None:
    gen = torch.Generator().manual_seed(1)
    reference = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    model = globalise(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)))
    model.load_state_dict(reference.state_dict())
    assert isinstance(model[1], GlobalBatchNorm)
    x = torch.randn(8, 4, generator=gen)
    torch.testing.assert_close(model(x), reference(x))
    torch.testing.assert_close(model[1].running_var, reference[1].running_var)
    model.eval(), reference.eval()
    torch.testing.assert_close(model(x), reference(x))


def test_globalise_keeps_parameters_statistics_dtype_and_mode() -> None:
    layer = nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.running_mean.fill_(0.5)
    layer.eval()
    converted = globalise(layer)
    assert isinstance(converted, GlobalBatchNorm) and not converted.training
    assert converted.momentum == 0.3 and float(converted.weight[0]) == 2.0
    assert float(converted.running_mean[0]) == 0.5
    assert globalise(nn.BatchNorm1d(2).double()).weight.dtype == torch.float64


# ------------------------------------------------------------------------------- K-means across ranks


@pytest.mark.parametrize("split", list(_SPLITS))
def test_kmeans_across_two_ranks_gives_the_ids_of_one_process(two_ranks, split) -> None:
    one = kmeans_clusters(_kmeans_features(), 6, seed=7, spherical=True, nredo=2, max_points_per_centroid=30)
    results = [ranks[f"kmeans {split}"] for ranks in two_ranks]
    for result in results:
        np.testing.assert_array_equal(result["ids"], one.ids)
    assert results[1]["assignment"] is None  # only rank 0 holds the features and the provenance
    assert results[0]["assignment"].provenance["n_train_points"] == 180  # the subsample: k x 30 rows
    assert results[0]["assignment"].provenance["nredo"] == 2


@pytest.mark.parametrize("case", list(_BAD_SHARES))
def test_a_kmeans_failure_on_rank_0_is_raised_on_every_rank(two_ranks, case) -> None:
    """Rank 0 fails; the other rank hears of it and raises too, instead of waiting for ids forever."""
    message = _BAD_SHARES[case][2]
    first, second = (ranks[case] for ranks in two_ranks)
    assert message in first and first.startswith(("ValueError", "InputError"))
    assert second.startswith("RuntimeError: K-means failed on rank 0") and message in second
