// Fused contrastive-loss tile primitives (LSE exchange; see DESIGN.md section 3).
//
// Both primitives score local rows q (n, d) against gathered rows k (m, d) with
// x_ij = s * <q_i, k_j>, walking k in column tiles of width block_n so that only an
// (n, block_n) fp32 tile ever exists; nothing of size (n, m) is allocated.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

namespace medtrain::contrastive {

// lse_i = logsumexp_j s * <q_i, k_j>. q (n, d), k (m, d), scale () -> (n,) fp32.
at::Tensor lse_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& scale,
                    int64_t block_n);

// Gradient tiles recomputed from saved LSEs:
//   g_ij = exp(x_ij - lse_q_i) + exp(x_ij - lse_k_j) - 2 [j == offset + i]
//   dq_i = sum_j g_ij k_j                                   -> (n, d) fp32
//   ds_i = sum_j (exp(x_ij - lse_q_i) - [j == offset + i]) <q_i, k_j>   -> (n,) fp32
// The caller applies s / (2B) and the rank factor.
std::tuple<at::Tensor, at::Tensor> grad_rows(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& scale, const at::Tensor& lse_q,
                                             const at::Tensor& lse_k, int64_t offset,
                                             int64_t block_n);

bool built_with_cuda();

}  // namespace medtrain::contrastive
