// CUDA epilogues of the contrastive tile loop: one warp per row of an (n, w) fp32 tile of dot
// products produced by cuBLAS (at::mm in contrastive.cpp). Online LSE merge in the forward,
// in-place gradient tile plus logit-scale partials in the backward. No ATen headers here.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "contrastive_cuda.h"

namespace medtrain::contrastive::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // block (32, 8): one warp per row

__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void lse_update_kernel(const float* __restrict__ dot, int64_t n, int64_t w,
                                  const float* __restrict__ scale, float* __restrict__ run_max,
                                  float* __restrict__ run_sum) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= n) return;  // uniform per warp
  const float s = *scale;
  const float* x = dot + row * w;  // (w,)
  // Per-lane online (max, sum) over the lane's columns, then a warp merge.
  float m = -INFINITY, l = 0.f;
  for (int64_t j = threadIdx.x; j < w; j += kWarp) {
    const float v = x[j] * s;
    if (v > m) {
      l = l * expf(m - v) + 1.f;
      m = v;
    } else {
      l += expf(v - m);
    }
  }
  const float mw = warp_max(m);
  l = warp_sum(m == -INFINITY ? 0.f : l * expf(m - mw));
  if (threadIdx.x == 0) {
    const float m_old = run_max[row];
    const float m_new = fmaxf(m_old, mw);
    run_sum[row] = run_sum[row] * expf(m_old - m_new) + l * expf(mw - m_new);
    run_max[row] = m_new;
  }
}

__global__ void grad_tile_kernel(float* __restrict__ dot, int64_t n, int64_t w,
                                 const float* __restrict__ scale, const float* __restrict__ lse_q,
                                 const float* __restrict__ lse_k, int64_t diag0,
                                 float* __restrict__ ds_rows) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= n) return;
  const float s = *scale;
  const float lq = lse_q[row];
  const int64_t jd = row + diag0;  // tile column of this row's positive (may be outside)
  float* x = dot + row * w;        // (w,) dot products in, g out
  float ds = 0.f;
  for (int64_t j = threadIdx.x; j < w; j += kWarp) {
    const float d = x[j];
    const float xs = d * s;
    const float pa = expf(xs - lq);
    float g = pa + expf(xs - lse_k[j]);
    float c = pa * d;
    if (j == jd) {
      g -= 2.f;
      c -= d;
    }
    x[j] = g;
    ds += c;
  }
  ds = warp_sum(ds);
  if (threadIdx.x == 0) ds_rows[row] += ds;
}

dim3 grid_for(int64_t n) { return dim3(static_cast<unsigned>((n + kRowsPerBlock - 1) / kRowsPerBlock)); }

}  // namespace

cudaError_t lse_update(const float* dot, int64_t n, int64_t w, const float* scale, float* run_max,
                       float* run_sum, cudaStream_t stream) {
  if (n == 0 || w == 0) return cudaSuccess;
  lse_update_kernel<<<grid_for(n), dim3(kWarp, kRowsPerBlock), 0, stream>>>(dot, n, w, scale,
                                                                            run_max, run_sum);
  return cudaGetLastError();
}

cudaError_t grad_tile(float* dot, int64_t n, int64_t w, const float* scale, const float* lse_q,
                      const float* lse_k, int64_t diag0, float* ds_rows, cudaStream_t stream) {
  if (n == 0 || w == 0) return cudaSuccess;
  grad_tile_kernel<<<grid_for(n), dim3(kWarp, kRowsPerBlock), 0, stream>>>(
      dot, n, w, scale, lse_q, lse_k, diag0, ds_rows);
  return cudaGetLastError();
}

}  // namespace medtrain::contrastive::cuda
