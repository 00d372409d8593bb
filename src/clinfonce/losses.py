"""Stage 2: the Cl-InfoNCE loss. SimCLR (NT-Xent) and SupCon are special cases of the same function.

For a batch of N samples with V views each there are M = N·V embeddings ``z_a`` (L2-normalised inside the
loss), and ``c(a)`` is the cluster of the sample behind view ``a``. With positives
``P(a) = {p != a : c(p) = c(a)}``, the loss is the "L_out" form of the supervised contrastive loss::

    l_a  = -(1/|P(a)|) * sum_{p in P(a)} log( exp(z_a.z_p / t) / sum_{b != a} exp(z_a.z_b / t) )
    loss = mean over anchors a with |P(a)| > 0 of l_a

Because the average over positives sits outside the log it splits into two terms::

    l_a = logsumexp_{b != a}(z_a.z_b / t)  -  z_a . (sum_{p in P(a)} z_p) / (t |P(a)|)

The second needs only per-cluster sums of embeddings (O(M·D), no M x M mask). The first is computed by a
chunked log-sum-exp with a hand-written backward that recomputes each block of logits, so memory grows as
``chunk x M`` instead of ``M x M`` and no dense mask is ever built.

Soft positives (``pos_vectors``, e.g. tag vectors) weight every other view b of anchor a by ``w_ab``: 1 for
the anchor's own sample, else ``<u_i, u_j>`` of the L2-normalised vectors of the two samples::

    l_a = -sum_{b != a} w_ab log softmax_a(b) / sum_{b != a} w_ab
        = logsumexp_{b != a}(z_a.z_b / t)  -  z_a . (sum_{b != a} w_ab z_b) / (t sum_{b != a} w_ab)

and ``sum_j <u_i, u_j> s_j = u_i (U^T S)`` (``S`` the per-sample sums of views) needs no M x M weights:
O(M·(D + nnz)) with sparse ``U``. One-hot rows give exactly the cluster loss.

Beware: public libraries use "SupCon" for three different formulas (L_out; L_in, the log of the summed
positive probability; and a per-pair form with the other positives removed from the denominator). This
module implements L_out only, as the paper does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from clinfonce import dist

#: Logits per block of the chunked log-sum-exp: 4M float32 = 16 MiB, small enough to stay in cache-friendly
#: sizes on CPU and large enough to keep a GPU busy.
_BLOCK_ELEMENTS = 1 << 22


class ClInfoNCELoss(nn.Module):
    """Cluster-level InfoNCE (Cl-InfoNCE) over ``[N, V, D]`` features and ``[N]`` cluster ids.

    Args:
        temperature: softmax temperature t > 0 (the paper: 0.1 for auxiliary clusters, 0.2 for K-means).
        base_temperature: if given, the loss is multiplied by ``temperature / base_temperature``, as the
            authors' code does with 0.07. It only rescales the learning rate; ``None`` (default) leaves the
            loss unscaled.
        gather_distributed: gather features (with gradients) and ids from every rank of the default process
            group, so each rank's anchors are contrasted with the global batch. Every rank must hold the
            same number of samples. The loss is the mean over this rank's anchors; DDP's gradient averaging
            then gives the gradient of the global mean.
        chunk_size: anchors per block of logits; ``None`` picks about 4M logits per block. Memory of the
            loss grows as ``chunk_size x M``.

    After every call, ``anchors_without_positive`` holds (as a 0-d tensor) how many anchors had no positive
    and were left out of the mean; this can only happen with V = 1.

    Example:
        >>> loss_fn = ClInfoNCELoss(temperature=0.1)
        >>> features = torch.randn(8, 2, 128)   # 8 images, 2 views, 128-d projections
        >>> clusters = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
        >>> loss = loss_fn(features, clusters)   # cluster_ids=None gives SimCLR, labels give SupCon
    """

    anchors_without_positive: Tensor

    def __init__(
        self,
        temperature: float = 0.1,
        base_temperature: float | None = None,
        gather_distributed: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if base_temperature is not None and not base_temperature > 0:
            raise ValueError(f"base_temperature must be > 0 or None, got {base_temperature}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        if gather_distributed and not torch.distributed.is_available():
            raise ValueError("gather_distributed=True needs torch.distributed, which this torch build lacks")
        self.temperature = float(temperature)
        self.base_temperature = base_temperature
        self.gather_distributed = gather_distributed
        self.chunk_size = chunk_size
        self.register_buffer("anchors_without_positive", torch.zeros((), dtype=torch.long), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"gather_distributed={self.gather_distributed}"
        )

    def forward(
        self,
        features: Tensor,
        cluster_ids: Tensor | None = None,
        pos_mask: Tensor | None = None,
        pos_vectors: Tensor | None = None,
    ) -> Tensor:
        """Compute the loss.

        Args:
            features: ``[N, V, D]`` floating point, any scale (normalised here). Low-precision inputs
                (fp16/bf16, e.g. under autocast) are computed in float32.
            cluster_ids: ``[N]`` integers of any values; samples with equal ids are positives. ``None``: every
                sample is its own cluster (SimCLR / NT-Xent). Downstream labels give SupCon.
            pos_mask: ``bool [N, N]`` (``[N, world_size * N]`` with ``gather_distributed``): ``pos_mask[i, j]``
                makes sample j a positive of sample i, for positive structures that are not a partition
                (multi-label). A sample's own other views are always positives, whatever its diagonal says.
                Exclusive with ``cluster_ids``.
            pos_vectors: ``[N, K]`` non-negative, dense or torch sparse (COO or CSR), e.g. tag counts or
                tf-idf weights: soft positives. View b of sample j weighs ``<u_i, u_j>`` as a positive of
                an anchor of sample i (``u``: the L2-normalised rows; a sample's own other views weigh 1; a
                zero row has its own views only). With ``gather_distributed`` each rank's rows are gathered
                (the same K on every rank). One-hot rows are exactly ``cluster_ids``. Exclusive with the
                other two.

        Returns:
            Scalar loss, in the dtype of the computation (float32, or float64 for float64 features).
        """
        n_local, n_views = _check_inputs(
            features, cluster_ids, pos_mask, pos_vectors, self.gather_distributed
        )
        with torch.autocast(device_type=features.device.type, enabled=False):
            z = features if features.dtype == torch.float64 else features.float()
            z = nn.functional.normalize(z, dim=-1).reshape(n_local * n_views, -1)  # [M, D], sample-major
            gather = self.gather_distributed and dist.world_size() > 1
            bank = dist.gather_with_grad(z) if gather else z  # [M_all, D]
            offset = dist.rank() * n_local if gather else 0  # first sample of this rank in the bank
            if pos_vectors is not None:
                positive_sum, positive_count = _soft_positive_sums(
                    z, bank, n_views, offset, pos_vectors, gather
                )
            else:
                positive_sum, positive_count = _positive_sums(
                    z, bank, n_views, offset, cluster_ids, pos_mask, gather
                )
            self_index = torch.arange(z.shape[0], device=z.device) + offset * n_views
            chunk = self.chunk_size or max(1, _BLOCK_ELEMENTS // bank.shape[0])
            lse = _ExcludeSelfLogSumExp.apply(z, bank, self_index, 1.0 / self.temperature, chunk)  # [M]
            positive_logit = (z * positive_sum).sum(dim=1) / self.temperature  # [M]
            has_positive = positive_count > 0
            per_anchor = lse - positive_logit / torch.where(has_positive, positive_count, 1)
            n_valid = has_positive.sum()
            self.anchors_without_positive = has_positive.numel() - n_valid
            # Mean over anchors with a positive, without a host sync; a batch where no anchor has one
            # gives 0 with a graph attached, so backward() still works.
            loss = torch.where(has_positive, per_anchor, 0.0).sum() / n_valid.clamp(min=1)
            if self.base_temperature is not None:
                loss = loss * (self.temperature / self.base_temperature)
            return loss


def _check_inputs(
    features: Tensor,
    cluster_ids: Tensor | None,
    pos_mask: Tensor | None,
    pos_vectors: Tensor | None,
    gather: bool,
) -> tuple[int, int]:
    """Validate shapes and dtypes; return (N, V)."""
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a tensor of shape [N, V, D], got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got {features.dtype}")
    n, v, d = features.shape
    if n < 1 or v < 1 or d < 1:
        raise ValueError(f"features must have N, V, D >= 1, got shape {tuple(features.shape)}")
    if not gather and n * v < 2:
        raise ValueError("the contrast set is empty: a batch needs at least two embeddings (N * V >= 2)")
    given = [
        name
        for name, value in (
            ("cluster_ids", cluster_ids),
            ("pos_mask", pos_mask),
            ("pos_vectors", pos_vectors),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give one of cluster_ids, pos_mask and pos_vectors, not {' and '.join(given)}")
    if cluster_ids is not None:
        if not isinstance(cluster_ids, Tensor) or cluster_ids.shape != (n,):
            shape = (
                tuple(cluster_ids.shape) if isinstance(cluster_ids, Tensor) else type(cluster_ids).__name__
            )
            raise ValueError(f"cluster_ids must have shape [N] = [{n}], got {shape}")
        if cluster_ids.is_floating_point() or cluster_ids.is_complex() or cluster_ids.dtype == torch.bool:
            raise ValueError(f"cluster_ids must be an integer tensor, got {cluster_ids.dtype}")
    if pos_mask is not None:
        if not isinstance(pos_mask, Tensor) or pos_mask.dtype != torch.bool:
            raise ValueError("pos_mask must be a bool tensor")
        columns = n * dist.world_size() if gather else n
        if pos_mask.shape != (n, columns):
            raise ValueError(f"pos_mask must have shape [{n}, {columns}], got {tuple(pos_mask.shape)}")
    if pos_vectors is not None:
        _check_pos_vectors(pos_vectors, n)
    return n, v


def _check_pos_vectors(pos_vectors: Tensor, n: int) -> None:
    """``pos_vectors`` is a real ``[n, K]`` tensor, dense, COO or CSR, with finite non-negative values."""
    if not isinstance(pos_vectors, Tensor) or pos_vectors.dim() != 2 or pos_vectors.shape[0] != n:
        shape = tuple(pos_vectors.shape) if isinstance(pos_vectors, Tensor) else type(pos_vectors).__name__
        raise ValueError(f"pos_vectors must have shape [N, K] = [{n}, K], got {shape}")
    if pos_vectors.layout not in (torch.strided, torch.sparse_coo, torch.sparse_csr):
        raise ValueError(f"pos_vectors must be dense, sparse COO or sparse CSR, got {pos_vectors.layout}")
    if pos_vectors.is_complex():
        raise ValueError(f"pos_vectors must be real, got {pos_vectors.dtype}")
    if pos_vectors.layout == torch.sparse_coo:
        values = pos_vectors._values()  # also of an uncoalesced tensor (whose duplicates add up)
    else:
        values = pos_vectors.values() if pos_vectors.layout == torch.sparse_csr else pos_vectors
    if values.is_floating_point() and not torch.isfinite(values).all():
        raise ValueError("pos_vectors must be finite")
    if (values < 0).any():
        raise ValueError("pos_vectors must be non-negative (weights such as tag counts or tf-idf)")


def _positive_sums(
    z: Tensor,
    bank: Tensor,
    n_views: int,
    offset: int,
    cluster_ids: Tensor | None,
    pos_mask: Tensor | None,
    gather: bool,
) -> tuple[Tensor, Tensor]:
    """For each anchor, the sum of its positives' embeddings and their number.

    Args:
        z: ``[M, D]`` this rank's anchors (sample-major: row ``i * V + v`` is view v of sample i).
        bank: ``[M_all, D]`` the contrast set (``z`` itself without gathering).
        offset: index of this rank's first sample in the bank.

    Returns:
        ``([M, D], [M])``: ``sum_{p in P(a)} z_p`` and ``|P(a)|``.
    """
    n_bank = bank.shape[0] // n_views
    sample_sums = bank.reshape(n_bank, n_views, -1).sum(dim=1)  # [N_all, D]
    n_local = z.shape[0] // n_views
    if pos_mask is not None:
        own = torch.arange(n_local, device=z.device)
        mask = pos_mask.to(z.device).clone()
        mask[own, own + offset] = True  # a sample's other views are always positives
        sums = mask.to(bank.dtype) @ sample_sums  # [N, D]
        counts = mask.sum(dim=1) * n_views  # [N]
    else:
        if cluster_ids is None:
            bank_ids = torch.arange(n_bank, device=z.device)
        else:
            ids = cluster_ids.to(z.device)
            bank_ids = dist.gather_no_grad(ids) if gather else ids
        _, inverse = torch.unique(bank_ids, return_inverse=True)  # [N_all] in 0..K-1
        n_clusters = int(inverse.max()) + 1
        cluster_sums = sample_sums.new_zeros(n_clusters, sample_sums.shape[1]).index_add_(
            0, inverse, sample_sums
        )
        cluster_counts = torch.bincount(inverse, minlength=n_clusters) * n_views
        local = inverse[offset : offset + n_local]
        sums, counts = cluster_sums[local], cluster_counts[local]
    # Expand samples to their views and take each anchor itself out of its own positives.
    sums = sums.repeat_interleave(n_views, dim=0) - z
    counts = counts.repeat_interleave(n_views, dim=0) - 1
    return sums, counts


def _soft_positive_sums(
    z: Tensor, bank: Tensor, n_views: int, offset: int, pos_vectors: Tensor, gather: bool
) -> tuple[Tensor, Tensor]:
    """For each anchor a of sample i, ``sum_{b != a} w_ab z_b`` and ``sum_{b != a} w_ab`` with the soft
    weights of ``pos_vectors`` (``w_ab = 1`` within sample i, else ``<u_i, u_j>``), without an M x M matrix.

    Args:
        z: ``[M, D]`` this rank's anchors (sample-major).
        bank: ``[M_all, D]`` the contrast set.
        offset: index of this rank's first sample in the bank.
        pos_vectors: ``[N, K]`` this rank's vectors, dense or sparse, checked.

    Returns:
        ``([M, D], [M])``, as :func:`_positive_sums` (the weight sums are real, not counts).
    """
    n_local = z.shape[0] // n_views
    sample_sums = bank.reshape(bank.shape[0] // n_views, n_views, -1).sum(dim=1)  # [N_all, D]
    u = _normalised_rows(pos_vectors.to(z.device), z.dtype)  # [N, K]
    u_all = (dist.gather_sparse_rows(u) if u.is_sparse else dist.gather_no_grad(u)) if gather else u
    own = sample_sums[offset : offset + n_local]  # [N, D]
    # u_i . u_i is 1, or 0 for a zero row; computed, not assumed, so that taking sample i out of the sums
    # over all samples removes exactly what the products put in.
    self_weight = _row_dot(u)  # [N]
    # One product for the weighted sums and the weight totals: [N_all, D + 1] with a column of ones.
    summed = _overlap_product(u, u_all, torch.cat([sample_sums, own.new_ones(len(sample_sums), 1)], 1))
    weighted, total_weight = summed[:, :-1], summed[:, -1]  # [N, D]: sum_j <u_i, u_j> s_j; [N]
    sums = weighted + (1 - self_weight)[:, None] * own
    # Weights of the other samples: >= 0 exactly, but the subtraction leaves rounding where it should be 0
    # (a sample that shares nothing); below a few ulps of the total it is 0, so such an anchor with one
    # view has no positive and is left out, as for cluster ids.
    others = total_weight - self_weight
    others = torch.where(others > 16 * torch.finfo(z.dtype).eps * total_weight, others, 0.0)
    weights = (others + 1) * n_views  # [N]
    sums = sums.repeat_interleave(n_views, dim=0) - z
    return sums, weights.repeat_interleave(n_views, dim=0) - 1


def _normalised_rows(matrix: Tensor, dtype: torch.dtype) -> Tensor:
    """``matrix`` ``[N, K]`` in ``dtype`` with L2-normalised rows (zero rows stay zero); sparse input gives
    coalesced COO."""
    if matrix.layout == torch.strided:
        return nn.functional.normalize(matrix.to(dtype), dim=1)
    coo = matrix.to_sparse_coo().coalesce()
    values = coo.values().to(dtype)
    rows = coo.indices()[0]
    norms = torch.zeros(coo.shape[0], dtype=dtype, device=values.device).index_add_(0, rows, values * values)
    values = values / norms.sqrt().clamp(min=1e-12)[rows]  # the floor of nn.functional.normalize
    return torch.sparse_coo_tensor(
        coo.indices(), values, coo.shape, is_coalesced=True, check_invariants=False
    )


def _row_dot(u: Tensor) -> Tensor:
    """``[N]``: the squared norm of each row of ``u`` (dense or COO)."""
    if not u.is_sparse:
        return (u * u).sum(dim=1)
    values = u.values()
    return values.new_zeros(u.shape[0]).index_add_(0, u.indices()[0], values * values)


def _overlap_product(u: Tensor, u_all: Tensor, x: Tensor) -> Tensor:
    """``u @ (u_all^T @ x)``: ``[N, C]`` for ``u`` ``[N, K]``, ``u_all`` ``[N_all, K]``, ``x`` ``[N_all, C]``
    (autograd flows into ``x``), without an ``N x N_all`` matrix.

    Sparse vectors go through the tags present in the batch only (gathers and scatter-adds over the stored
    values), so neither time nor memory grows with the vocabulary K: O(nnz x C).
    """
    if not u.is_sparse:
        return u @ (u_all.T @ x)
    rows_all, columns_all = u_all.indices()
    present, column_of = torch.unique(columns_all, return_inverse=True)  # [T] tags of the batch
    per_tag = x.new_zeros(len(present), x.shape[1]).index_add(
        0, column_of, u_all.values()[:, None] * x[rows_all]
    )  # [T, C]: sum_j u_jk x_j
    rows, columns = u.indices()
    mine = torch.searchsorted(present, columns)  # this rank's tags are among the batch's
    return x.new_zeros(u.shape[0], x.shape[1]).index_add(0, rows, u.values()[:, None] * per_tag[mine])


class _ExcludeSelfLogSumExp(torch.autograd.Function):
    """``lse[a] = logsumexp_{b != self_index[a]}(anchors[a] . bank[b] * inv_tau)``, in blocks of anchors.

    Forward keeps only the inputs and the ``[A]`` result; backward recomputes each ``[chunk, B]`` block of
    logits, so peak memory is ``O(chunk x B)`` rather than ``O(A x B)``. When ``anchors`` and ``bank`` are
    the same tensor autograd adds the two gradients, as it should.
    """

    @staticmethod
    def forward(ctx, anchors: Tensor, bank: Tensor, self_index: Tensor, inv_tau: float, chunk: int) -> Tensor:
        lse = anchors.new_empty(anchors.shape[0])
        for start in range(0, anchors.shape[0], chunk):
            stop = min(start + chunk, anchors.shape[0])
            logits = _block_logits(anchors, bank, self_index, inv_tau, start, stop)
            lse[start:stop] = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(anchors, bank, self_index, lse)
        ctx.inv_tau, ctx.chunk = inv_tau, chunk
        return lse

    @staticmethod
    def backward(ctx, grad_lse: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        anchors, bank, self_index, lse = ctx.saved_tensors
        inv_tau, chunk = ctx.inv_tau, ctx.chunk
        grad_anchors = torch.empty_like(anchors) if ctx.needs_input_grad[0] else None
        grad_bank = torch.zeros_like(bank) if ctx.needs_input_grad[1] else None
        for start in range(0, anchors.shape[0], chunk):
            stop = min(start + chunk, anchors.shape[0])
            weights = _block_logits(anchors, bank, self_index, inv_tau, start, stop)
            # softmax over b != a, scaled by the incoming gradient and the 1/t of the logits
            weights.sub_(lse[start:stop, None]).exp_().mul_(grad_lse[start:stop, None] * inv_tau)
            if grad_anchors is not None:
                torch.mm(weights, bank, out=grad_anchors[start:stop])
            if grad_bank is not None:
                grad_bank.addmm_(weights.T, anchors[start:stop])
        return grad_anchors, grad_bank, None, None, None


def _block_logits(
    anchors: Tensor, bank: Tensor, self_index: Tensor, inv_tau: float, start: int, stop: int
) -> Tensor:
    """``[stop - start, B]`` logits of anchors ``start:stop`` against the bank, self set to ``-inf``."""
    logits = anchors[start:stop] @ bank.T
    logits.mul_(inv_tau)
    rows = torch.arange(stop - start, device=anchors.device)
    logits[rows, self_index[start:stop]] = float("-inf")
    return logits


def image_attribute_infonce(
    image: Tensor, attributes: Tensor, attribute_of: Tensor, temperature: float = 0.1
) -> Tensor:
    """Symmetric InfoNCE between images and embeddings of their attribute vectors (CMC / CLIP style), the
    ``attr_infonce`` baseline.

    Images that share an attribute vector share one attribute embedding, so no image is pushed away from
    its own vector: image -> attributes is a softmax over the U distinct vectors of the batch, and
    attributes -> image a softmax over the M = N·V image views whose positives are all views of images with
    that vector (averaged outside the log, as in the L_out form of :class:`ClInfoNCELoss`).

    Args:
        image: ``[N, V, D]`` image projections (normalised here).
        attributes: ``[U, D]`` embeddings of the distinct attribute vectors (normalised here).
        attribute_of: ``int64 [N]`` in ``0..U-1``: the vector of each image.
        temperature: softmax temperature > 0.

    Returns:
        Scalar: the mean of the two directions.
    """
    n, v, _ = image.shape
    z = nn.functional.normalize(image.float(), dim=-1).reshape(n * v, -1)  # [M, D], sample-major
    e = nn.functional.normalize(attributes.float(), dim=-1)  # [U, D]
    logits = z @ e.T / temperature  # [M, U]
    target = attribute_of.repeat_interleave(v)  # [M]
    image_to_attributes = nn.functional.cross_entropy(logits, target)
    log_p = logits.log_softmax(dim=0).gather(1, target[:, None]).squeeze(1)  # [M] log p(view | its vector)
    count = torch.bincount(target, minlength=e.shape[0]).to(log_p.dtype)  # [U] views per vector
    attributes_to_image = -(log_p / count[target]).sum() / (count > 0).sum()
    return (image_to_attributes + attributes_to_image) / 2
