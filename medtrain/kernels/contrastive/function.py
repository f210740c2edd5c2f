"""Fused global-batch contrastive loss: the all-gather / LSE exchange as an autograd.Function.

Notation (DESIGN.md section 3): rank k of W holds b rows, B = W * b, global rows k*b .. k*b+b-1.
x_ij = s <I_i, T_j>; row LSE r_i = logsumexp_j x_ij; column LSE c_j = logsumexp_i x_ij.
    L = (1/2B) sum_i (r_i - x_ii) + (1/2B) sum_j (c_j - x_jj)          (same on every rank)

Forward on rank k: all-gather T then I without autograd (async; the text gather is consumed
first, the image gather overlaps pass A); pass A: r for local rows = lse_rows(I_loc, T_all);
pass B: c for local columns = lse_rows(T_loc, I_all); all-gather (r, c, x_ii) (3b floats per
rank). Only LSEs, positives and the gathered embeddings are kept: memory O((b + B) d).

Backward, recomputing tiles from the saved LSEs (no collective):
    G_ij = (exp(x_ij - r_i) + exp(x_ij - c_j) - 2 delta_ij) / 2B
    dI_loc = W s G[loc, :] @ T_all,  dT_loc = W s G[:, loc]^T @ I_all
The factor W gives each rank what open_clip's gather-with-grad delivers (DDP/DeepSpeed then
average over ranks). The logit-scale gradient on rank k is d(loss_k)/ds of open_clip's per-rank
loss, (1/2b) [sum_{i loc, j} (p^r_ij - delta_ij) <I_i, T_j> + sum_{j loc, i} (p^c_ij - delta_ij)
<I_i, T_j>], so its mean over ranks is dL/ds, exactly as in reference.py.

A backend supplies the two tile primitives (TileBackend); cpp.py and triton_kernels.py do.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor

from medtrain.kernels.contrastive.reference import _check, world_info


class TileBackend(Protocol):
    """Tile primitives over local rows q (n, d) and gathered rows k (m, d), x_ij = s <q_i, k_j>.

    lse_rows  -> (n,) fp32 logsumexp_j x_ij
    grad_rows -> dq (n, d) fp32 = sum_j g_ij k_j and ds (n,) fp32 = sum_j (p_ij - delta_ij)
                 <q_i, k_j>, with p_ij = exp(x_ij - lse_q_i),
                 g_ij = p_ij + exp(x_ij - lse_k_j) - 2 delta_ij, delta_ij = [j == offset + i].
    Inputs may be any float dtype; math is fp32; nothing (n, m)-sized is allocated.
    """

    name: str

    def lse_rows(self, q: Tensor, k: Tensor, scale: Tensor) -> Tensor: ...

    def grad_rows(
        self, q: Tensor, k: Tensor, scale: Tensor, lse_q: Tensor, lse_k: Tensor, offset: int
    ) -> tuple[Tensor, Tensor]: ...


# all_gather_into_tensor under its torch >= 2.14 name (the old one warns FutureWarning per call).
all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _start_gather(x: Tensor, world: int, group) -> tuple[Tensor, dist.Work | None]:
    """(world * n, ...) gathered copy of x and the pending work (None when world == 1)."""
    if world == 1:
        return x, None
    out = x.new_empty((world * x.shape[0], *x.shape[1:]))
    return out, all_gather_flat(out, x, group=group, async_op=True)


class FusedContrastive(torch.autograd.Function):
    """Global symmetric InfoNCE from (b, E) embeddings of any float dtype and a scalar scale.

    Returns an fp32 scalar; gradients come back in the inputs' dtypes and shapes. Inputs are not
    modified. Not re-entrant under torch.compile (collectives inside a Function).
    """

    @staticmethod
    def forward(ctx, image_emb, text_emb, logit_scale, backend: TileBackend, group):
        world, rank = world_info(group)
        img = image_emb.detach().contiguous()  # (b, E)
        txt = text_emb.detach().contiguous()  # (b, E)
        b = img.shape[0]
        n_global = world * b
        scale = logit_scale.detach().float().reshape(())  # ()

        txt_all, txt_work = _start_gather(txt, world, group)  # (B, E)
        img_all, img_work = _start_gather(img, world, group)  # (B, E)
        pos = scale * (img.float() * txt.float()).sum(-1)  # (b,) x_ii, while gathering
        if txt_work is not None:
            txt_work.wait()
        row_lse = backend.lse_rows(img, txt_all, scale)  # (b,) r_i, local rows
        if img_work is not None:
            img_work.wait()
        col_lse = backend.lse_rows(txt, img_all, scale)  # (b,) c_j, local columns

        stats = torch.stack([row_lse, col_lse, pos])  # (3, b)
        if world > 1:
            gathered = stats.new_empty(world * 3, b)  # (W * 3, b)
            all_gather_flat(gathered, stats, group=group)
            stats = gathered.view(world, 3, b).transpose(0, 1).reshape(3, n_global)  # (3, B)
        row_all, col_all, pos_all = stats.unbind(0)  # (B,) each, in global order
        loss = ((row_all - pos_all).sum() + (col_all - pos_all).sum()) / (2 * n_global)

        ctx.save_for_backward(img, txt, img_all, txt_all, scale, row_lse, col_lse, row_all, col_all)
        ctx.backend = backend
        ctx.offset = rank * b
        ctx.scale_meta = (logit_scale.shape, logit_scale.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        img, txt, img_all, txt_all, scale, row_lse, col_lse, row_all, col_all = ctx.saved_tensors
        backend: TileBackend = ctx.backend
        # W / (2B) = 1 / (2b): open_clip's per-rank normalization.
        coef = grad_loss.detach().float() / (2 * img.shape[0])  # ()
        d_img, ds_rows = backend.grad_rows(img, txt_all, scale, row_lse, col_all, ctx.offset)
        d_txt, ds_cols = backend.grad_rows(txt, img_all, scale, col_lse, row_all, ctx.offset)
        g_img = d_img.mul_(coef * scale).to(img.dtype)  # (b, E)
        g_txt = d_txt.mul_(coef * scale).to(txt.dtype)  # (b, E)
        shape, dtype = ctx.scale_meta
        g_scale = (coef * (ds_rows.sum() + ds_cols.sum())).reshape(shape).to(dtype)
        return g_img, g_txt, g_scale, None, None


def fused_contrastive_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
    backend: TileBackend,
) -> Tensor:
    """Same value and gradients as reference.contrastive_loss_reference, in O((b + B) d) memory."""
    _check(image_emb, text_emb, logit_scale)
    return FusedContrastive.apply(image_emb, text_emb, logit_scale, backend, group)
