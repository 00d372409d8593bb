"""ClInfoNCELoss with soft positives (``pos_vectors``) against a float64 brute force of the formula, the
cluster loss for one-hot vectors, gradcheck, and two gloo processes against one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clinfonce.losses import ClInfoNCELoss


def brute_force_soft(features: torch.Tensor, vectors: torch.Tensor, tau: float) -> float:
    """The weighted L_out literally, in float64: w_ab = 1 within a sample, else <u_i, u_j> of the
    L2-normalised rows; anchors without positive weight are left out of the mean."""
    n, v, _ = features.shape
    z = F.normalize(features.double(), dim=-1).reshape(n * v, -1)
    u = vectors.double()
    norms = u.norm(dim=1)
    u = torch.where(norms[:, None] > 0, u / norms.clamp(min=1e-300)[:, None], 0.0)
    total, anchors = 0.0, 0
    for a in range(n * v):
        i = a // v
        denominator = sum(math.exp(float(z[a] @ z[b]) / tau) for b in range(n * v) if b != a)
        weighted, weight = 0.0, 0.0
        for b in range(n * v):
            if b == a:
                continue
            j = b // v
            w = 1.0 if j == i else float(u[i] @ u[j])
            if w > 0:
                weighted += w * math.log(math.exp(float(z[a] @ z[b]) / tau) / denominator)
                weight += w
        if weight > 0:
            total += -weighted / weight
            anchors += 1
    return total / anchors if anchors else 0.0


def tag_vectors(n: int, k: int, seed: int, zero_rows: tuple[int, ...] = ()) -> torch.Tensor:
    """``[n, k]`` non-negative weights, about a third non-zero, some rows all zero."""
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.rand(n, k, generator=gen, dtype=torch.float64) * (torch.rand(n, k, generator=gen) < 0.35)
    vectors[list(zero_rows)] = 0
    return vectors


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
@pytest.mark.parametrize("n_views", [1, 2, 3])
def test_matches_brute_force(layout: str, n_views: int) -> None:
    gen = torch.Generator().manual_seed(n_views)
    features = torch.randn(9, n_views, 5, generator=gen, dtype=torch.float64) * 2
    vectors = tag_vectors(9, 6, seed=n_views, zero_rows=(2, 7))
    given = {"dense": vectors, "coo": vectors.to_sparse_coo(), "csr": vectors.to_sparse_csr()}[layout]
    got = ClInfoNCELoss(temperature=0.3)(features, pos_vectors=given)
    assert got.item() == pytest.approx(brute_force_soft(features, vectors, 0.3), rel=1e-10)


@pytest.mark.parametrize("layout", ["dense", "coo"])
def test_one_hot_vectors_are_the_cluster_loss(layout: str) -> None:
    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(0, 5, (20,), generator=gen)
    one_hot = F.one_hot(ids, 5).float()
    given = one_hot if layout == "dense" else one_hot.to_sparse_coo()
    for n_views in (1, 2):
        features = torch.randn(20, n_views, 8, generator=gen, dtype=torch.float64)
        losses, grads = [], []
        for kwargs in ({"cluster_ids": ids}, {"pos_vectors": given}):
            leaf = features.clone().requires_grad_(True)
            loss_fn = ClInfoNCELoss(temperature=0.2)
            loss = loss_fn(leaf, **kwargs)
            loss.backward()
            losses.append(loss.item())
            grads.append(leaf.grad)
            counted = int(loss_fn.anchors_without_positive)
        assert losses[1] == pytest.approx(losses[0], rel=1e-12)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)
        singletons = int((torch.bincount(ids)[ids] == 1).sum()) if n_views == 1 else 0
        assert counted == singletons


def test_scale_of_a_row_does_not_matter_and_zero_rows_keep_their_own_views() -> None:
    gen = torch.Generator().manual_seed(12)
    features = torch.randn(8, 2, 4, generator=gen, dtype=torch.float64)
    vectors = tag_vectors(8, 5, seed=3)
    scaled = vectors * torch.arange(1, 9, dtype=torch.float64)[:, None] * 10
    loss_fn = ClInfoNCELoss(temperature=0.25)
    assert loss_fn(features, pos_vectors=scaled).item() == pytest.approx(
        loss_fn(features, pos_vectors=vectors).item(), rel=1e-12
    )
    # all rows zero: every sample's positives are its own views, which is SimCLR
    assert loss_fn(features, pos_vectors=torch.zeros(8, 5)).item() == pytest.approx(
        loss_fn(features).item(), rel=1e-12
    )


def test_an_uncoalesced_coo_tensor_adds_its_duplicates() -> None:
    gen = torch.Generator().manual_seed(16)
    features = torch.randn(5, 2, 4, generator=gen, dtype=torch.float64)
    indices = torch.tensor([[0, 0, 1, 2, 2, 4], [1, 1, 0, 1, 2, 2]])  # (0, 1) twice
    values = torch.tensor([0.5, 1.5, 1.0, 2.0, 1.0, 3.0], dtype=torch.float64)
    uncoalesced = torch.sparse_coo_tensor(indices, values, (5, 3))
    assert not uncoalesced.is_coalesced()
    loss_fn = ClInfoNCELoss(temperature=0.2)
    expected = brute_force_soft(features, uncoalesced.to_dense(), 0.2)
    assert loss_fn(features, pos_vectors=uncoalesced).item() == pytest.approx(expected, rel=1e-10)


def test_one_view_without_overlap_is_left_out_and_counted() -> None:
    features = torch.randn(4, 1, 3, dtype=torch.float64)
    vectors = torch.tensor([[1.0, 0, 0], [0.5, 0, 0], [0, 0, 2.0], [0, 0, 0]])  # rows 2, 3 share with no one
    loss_fn = ClInfoNCELoss(temperature=0.2)
    loss = loss_fn(features, pos_vectors=vectors)
    assert int(loss_fn.anchors_without_positive) == 2
    assert loss.item() == pytest.approx(brute_force_soft(features, vectors, 0.2), rel=1e-10)


def test_gradcheck_dense_and_sparse_across_chunks() -> None:
    gen = torch.Generator().manual_seed(13)
    features = torch.randn(7, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    vectors = tag_vectors(7, 4, seed=5, zero_rows=(1,))
    for chunk in (1, 4, None):
        loss_fn = ClInfoNCELoss(temperature=0.3, chunk_size=chunk)
        for given in (vectors, vectors.to_sparse_coo()):
            assert torch.autograd.gradcheck(lambda f, fn=loss_fn, u=given: fn(f, pos_vectors=u), (features,))


def test_float32_features_and_integer_counts() -> None:
    gen = torch.Generator().manual_seed(14)
    features = torch.randn(16, 2, 8, generator=gen)
    counts = torch.randint(0, 3, (16, 10), generator=gen)  # tag counts, as integers
    got = ClInfoNCELoss(temperature=0.1)(features, pos_vectors=counts)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(brute_force_soft(features, counts.double(), 0.1), rel=1e-5)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (torch.ones(3, 2), r"shape \[N, K\] = \[4, K\]"),
        (torch.ones(4), r"shape \[N, K\]"),
        (-torch.ones(4, 2), "non-negative"),
        (torch.tensor([[1.0, float("nan")]] * 4), "finite"),
        (-torch.ones(4, 2).to_sparse_coo(), "non-negative"),
    ],
)
def test_clear_errors(vectors: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClInfoNCELoss()(torch.randn(4, 2, 3), pos_vectors=vectors)
    with pytest.raises(ValueError, match="not cluster_ids and pos_vectors"):
        ClInfoNCELoss()(torch.randn(4, 2, 3), torch.arange(4), pos_vectors=torch.ones(4, 2))


def _soft_gather_worker(
    rank: int, world: int, init_file: str, features: torch.Tensor, vectors: torch.Tensor, out: str
) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        n = features.shape[0] // world
        local = features[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        rows = vectors[rank * n : (rank + 1) * n]
        results = {}
        for name, given in (("dense", rows), ("sparse", rows.to_sparse_coo())):
            local.grad = None
            loss = ClInfoNCELoss(temperature=0.2, gather_distributed=True)(local, pos_vectors=given)
            loss.backward()
            results[name] = {"loss": loss.detach(), "grad": local.grad.clone()}
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_big_batch(tmp_path) -> None:
    """Each rank's vectors are gathered like its features; rank 1's rows hold fewer stored values than
    rank 0's, so the sparse gather must handle unequal sizes."""
    import torch.multiprocessing as mp

    gen = torch.Generator().manual_seed(15)
    features = torch.randn(12, 2, 8, generator=gen, dtype=torch.float64)
    vectors = tag_vectors(12, 5, seed=7, zero_rows=(6, 7, 8, 9))
    out = str(tmp_path / "result")
    mp.spawn(
        _soft_gather_worker, args=(2, str(tmp_path / "init"), features, vectors, out), nprocs=2, join=True
    )
    results = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    full = features.clone().requires_grad_(True)
    loss = ClInfoNCELoss(temperature=0.2)(full, pos_vectors=vectors)
    loss.backward()
    assert loss.item() == pytest.approx(brute_force_soft(features, vectors, 0.2), rel=1e-10)
    for name in ("dense", "sparse"):
        mean = (results[0][name]["loss"] + results[1][name]["loss"]).item() / 2
        assert mean == pytest.approx(loss.item(), rel=1e-10), name
        gathered_grad = torch.cat([results[0][name]["grad"], results[1][name]["grad"]]) / 2
        torch.testing.assert_close(gathered_grad, full.grad)
