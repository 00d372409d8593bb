"""ClInfoNCELoss against independent references: a float64 brute-force loop, pytorch-metric-learning's
SupConLoss (also L_out), a textbook NT-Xent, gradcheck, and a two-process gloo run for gathering."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clinfonce.losses import ClInfoNCELoss


def brute_force_loss(features: torch.Tensor, positive: torch.Tensor, tau: float) -> float:
    """The paper's formula, literally: loops over anchors and positives in float64.

    ``positive[i, j]`` says sample j is a positive of sample i (own views always are).
    """
    n, v, _ = features.shape
    z = F.normalize(features.double(), dim=-1).reshape(n * v, -1)
    sample = [a // v for a in range(n * v)]
    total, anchors = 0.0, 0
    for a in range(n * v):
        denominator = sum(math.exp(float(z[a] @ z[b]) / tau) for b in range(n * v) if b != a)
        positives = [
            p
            for p in range(n * v)
            if p != a and (sample[p] == sample[a] or bool(positive[sample[a], sample[p]]))
        ]
        if not positives:
            continue
        terms = [math.log(math.exp(float(z[a] @ z[p]) / tau) / denominator) for p in positives]
        total += -sum(terms) / len(positives)
        anchors += 1
    return total / anchors if anchors else 0.0


def id_mask(ids: torch.Tensor) -> torch.Tensor:
    return ids[:, None] == ids[None, :]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_views", [1, 2, 3])
def test_matches_brute_force_loop(seed: int, n_views: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(9, n_views, 5, generator=gen) * 3
    ids = torch.randint(0, 4, (9,), generator=gen) * 7 - 5  # arbitrary, negative and sparse values
    tau = 0.3
    got = ClInfoNCELoss(temperature=tau)(features.double(), ids)
    assert got.item() == pytest.approx(brute_force_loss(features, id_mask(ids), tau), rel=1e-10)


def test_matches_pytorch_metric_learning_supcon() -> None:
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    gen = torch.Generator().manual_seed(0)
    for tau in (0.07, 0.1, 0.5):
        features = torch.randn(64, 2, 32, generator=gen, dtype=torch.float64)
        ids = torch.randint(0, 10, (64,), generator=gen)
        ours = ClInfoNCELoss(temperature=tau)(features, ids)
        embeddings = F.normalize(features, dim=-1).reshape(128, 32)
        reference = losses.SupConLoss(temperature=tau)(embeddings, ids.repeat_interleave(2))
        assert ours.item() == pytest.approx(reference.item(), rel=1e-9)


def test_no_ids_is_nt_xent() -> None:
    """Textbook SimCLR: cross-entropy over self-masked logits, the target being the other view."""
    gen = torch.Generator().manual_seed(3)
    n, tau = 16, 0.2
    features = torch.randn(n, 2, 8, generator=gen, dtype=torch.float64)
    z = F.normalize(torch.cat([features[:, 0], features[:, 1]]), dim=1)  # view-major [2N, D]
    logits = z @ z.T / tau
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    reference = F.cross_entropy(logits, targets)
    loss_fn = ClInfoNCELoss(temperature=tau)
    assert loss_fn(features).item() == pytest.approx(reference.item(), rel=1e-10)
    # all-distinct ids are the same thing
    assert loss_fn(features, torch.arange(n) * 3).item() == pytest.approx(reference.item(), rel=1e-10)


def test_one_cluster_for_all() -> None:
    """Every other embedding is a positive: l_a = lse_a - mean_{b != a} s_ab, checked by hand."""
    gen = torch.Generator().manual_seed(4)
    features = torch.randn(6, 2, 4, generator=gen, dtype=torch.float64)
    tau = 0.5
    z = F.normalize(features, dim=-1).reshape(12, 4)
    s = z @ z.T / tau
    off = ~torch.eye(12, dtype=torch.bool)
    expected = torch.stack([torch.logsumexp(s[a][off[a]], 0) - s[a][off[a]].mean() for a in range(12)]).mean()
    got = ClInfoNCELoss(temperature=tau)(features, torch.zeros(6, dtype=torch.long))
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)


def test_pos_mask_equals_ids_and_handles_multilabel() -> None:
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(10, 2, 6, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, 3, (10,), generator=gen)
    loss_fn = ClInfoNCELoss(temperature=0.2)
    assert loss_fn(features, pos_mask=id_mask(ids)).item() == pytest.approx(
        loss_fn(features, ids).item(), rel=1e-12
    )
    # a non-transitive, asymmetric mask (multi-label), diagonal deliberately False
    mask = torch.rand(10, 10, generator=gen) < 0.3
    mask.fill_diagonal_(False)
    expected = brute_force_loss(features, mask, 0.2)
    assert loss_fn(features, pos_mask=mask).item() == pytest.approx(expected, rel=1e-10)


def test_single_view_anchors_without_positive_are_counted_not_nan() -> None:
    features = torch.randn(5, 1, 4, dtype=torch.float64)
    ids = torch.tensor([0, 0, 1, 2, 3])  # three singletons: no positive with one view
    loss_fn = ClInfoNCELoss(temperature=0.1)
    loss = loss_fn(features, ids)
    assert int(loss_fn.anchors_without_positive) == 3
    assert loss.item() == pytest.approx(brute_force_loss(features, id_mask(ids), 0.1), rel=1e-10)
    # no positives at all: zero loss, zero gradient, no NaN
    features.requires_grad_(True)
    loss = loss_fn(features, torch.arange(5))
    loss.backward()
    assert loss.item() == 0.0 and int(loss_fn.anchors_without_positive) == 5
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_gradcheck_float64_across_chunks() -> None:
    gen = torch.Generator().manual_seed(6)
    features = torch.randn(7, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 1, 0, 2, 2, 2, 5])
    for chunk in (1, 3, None):
        loss_fn = ClInfoNCELoss(temperature=0.3, chunk_size=chunk)
        assert torch.autograd.gradcheck(lambda f, fn=loss_fn: fn(f, ids), (features,))
        mask = torch.rand(7, 7, generator=gen) < 0.4
        assert torch.autograd.gradcheck(lambda f, fn=loss_fn, m=mask: fn(f, pos_mask=m), (features,))


def test_chunking_does_not_change_value_or_gradient() -> None:
    features = torch.randn(33, 2, 16, requires_grad=True)
    ids = torch.randint(0, 5, (33,))
    values, grads = [], []
    for chunk in (1, 7, None):
        features.grad = None
        loss = ClInfoNCELoss(chunk_size=chunk)(features, ids)
        loss.backward()
        values.append(loss.item())
        grads.append(features.grad.clone())
    assert values[0] == pytest.approx(values[1], rel=1e-6) == pytest.approx(values[2], rel=1e-6)
    torch.testing.assert_close(grads[0], grads[2])
    torch.testing.assert_close(grads[1], grads[2])


def test_base_temperature_rescales() -> None:
    features, ids = torch.randn(8, 2, 4), torch.randint(0, 3, (8,))
    plain = ClInfoNCELoss(temperature=0.1)(features, ids)
    scaled = ClInfoNCELoss(temperature=0.1, base_temperature=0.07)(features, ids)
    assert scaled.item() == pytest.approx(plain.item() * 0.1 / 0.07, rel=1e-6)


@pytest.mark.parametrize("tau", [0.01, 0.05])
def test_finite_for_small_temperature_and_huge_features(tau: float) -> None:
    gen = torch.Generator().manual_seed(7)
    features = (torch.randn(32, 2, 16, generator=gen) * 1e4).requires_grad_(True)
    ids = torch.randint(0, 4, (32,), generator=gen)
    loss = ClInfoNCELoss(temperature=tau)(features, ids)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
    expected = brute_force_loss(features.detach(), id_mask(ids), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_reduce_in_float32(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(8)
    features = torch.randn(16, 2, 32, generator=gen)
    ids = torch.randint(0, 4, (16,), generator=gen)
    reference = ClInfoNCELoss(temperature=0.1)(features.to(dtype).float(), ids)
    low = features.to(dtype).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ClInfoNCELoss(temperature=0.1)(low, ids)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    loss.backward()
    assert low.grad.dtype == dtype and torch.isfinite(low.grad.float()).all()


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        (torch.randn(4, 8), {}, r"shape \[N, V, D\]"),
        (torch.ones(4, 2, 3, dtype=torch.long), {}, "floating point"),
        (torch.randn(4, 2, 3), {"cluster_ids": torch.arange(5)}, r"cluster_ids must have shape \[N\]"),
        (torch.randn(4, 2, 3), {"cluster_ids": torch.zeros(4)}, "integer tensor"),
        (
            torch.randn(4, 2, 3),
            {"cluster_ids": torch.arange(4), "pos_mask": torch.eye(4, dtype=torch.bool)},
            "not cluster_ids and pos_mask",
        ),
        (torch.randn(4, 2, 3), {"pos_mask": torch.eye(4)}, "bool tensor"),
        (torch.randn(4, 2, 3), {"pos_mask": torch.eye(3, dtype=torch.bool)}, r"shape \[4, 4\]"),
        (torch.randn(1, 1, 3), {}, "at least two embeddings"),
    ],
)
def test_clear_errors(features: torch.Tensor, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClInfoNCELoss()(features, **kwargs)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        ClInfoNCELoss(temperature=0)
    with pytest.raises(ValueError, match="chunk_size"):
        ClInfoNCELoss(chunk_size=0)


def _gather_worker(
    rank: int, world: int, init_file: str, features: torch.Tensor, ids: torch.Tensor, out: str
) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        n = features.shape[0] // world
        local = features[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        loss_fn = ClInfoNCELoss(temperature=0.2, gather_distributed=True)
        loss = loss_fn(local, ids[rank * n : (rank + 1) * n])
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": local.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_gather_distributed_two_processes_matches_one_big_batch(tmp_path) -> None:
    """Two gloo ranks, each with half the batch: the mean of their losses is the full-batch loss, and
    each rank's gradient (summed back through the gather) is world_size x the full-batch gradient."""
    import torch.multiprocessing as mp

    gen = torch.Generator().manual_seed(9)
    features = torch.randn(12, 2, 8, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, 4, (12,), generator=gen)
    out = str(tmp_path / "result")
    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), features, ids, out), nprocs=2, join=True)
    results = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]

    full = features.clone().requires_grad_(True)
    loss = ClInfoNCELoss(temperature=0.2)(full, ids)
    loss.backward()
    assert (results[0]["loss"] + results[1]["loss"]).item() / 2 == pytest.approx(loss.item(), rel=1e-10)
    gathered_grad = torch.cat([results[0]["grad"], results[1]["grad"]]) / 2
    torch.testing.assert_close(gathered_grad, full.grad)
