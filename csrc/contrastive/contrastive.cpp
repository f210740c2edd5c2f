// Contrastive-loss tile loop (device generic) with CPU epilogues (OpenMP via at::parallel_for).
//
// Each primitive walks the gathered rows k in column tiles: one GEMM per tile through at::mm
// (MKL/OpenBLAS on CPU, cuBLAS on CUDA) into a reused (n, w) fp32 buffer, then a fused epilogue
// over that tile (online LSE merge, or gradient tile + logit-scale partials). The buffer holds
// at most ~2^24 floats on CPU (2^25 on CUDA), so memory stays O((n + m) * d).
#include "contrastive.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <bit>
#include <limits>

#ifdef MEDTRAIN_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "contrastive_cuda.h"
#endif

namespace medtrain::contrastive {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Epilogue row loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (GCC ifunc); elsewhere one generic version.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MEDTRAIN_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MEDTRAIN_CPU_CLONES
#endif

// exp(x) for the epilogues, written as straight-line arithmetic so the row loops vectorize
// (libm's expf does not without -ffast-math, which would also break the -inf handling; the
// clamps need -fno-trapping-math to become selects). exp(x) = 2^k exp(r), k = round(x / ln 2),
// r = x - k ln 2 (two-part ln 2), |r| <= 0.35; exp(r) by its degree-7 Taylor polynomial
// (truncation < 6e-9 relative). Max relative error ~1e-7 on [-87, 88]; inputs below -87 give
// ~1e-38 instead of 0 (harmless in the sums here).
inline float fast_exp(float x) {
  x = std::max(x, -87.0f);
  x = std::min(x, 88.0f);
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float kf = x * 1.44269504f + kShift;
  const int32_t k = std::bit_cast<int32_t>(kf) - std::bit_cast<int32_t>(kShift);
  const float kr = kf - kShift;
  float r = x - kr * 0.693359375f;  // ln 2 = 0.693359375 - 2.12194440e-4
  r = r + kr * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((k + 127) << 23);
}

void check_pair(const at::Tensor& q, const at::Tensor& k, const at::Tensor& scale) {
  TORCH_CHECK(q.dim() == 2 && k.dim() == 2 && q.size(1) == k.size(1),
              "contrastive tiles: q (n, d) and k (m, d) expected, got ", q.sizes(), " and ",
              k.sizes());
  TORCH_CHECK(q.device() == k.device() && scale.device() == q.device(),
              "contrastive tiles: q, k and scale must share a device");
  TORCH_CHECK(scale.numel() == 1, "contrastive tiles: scale must have one element");
  TORCH_CHECK(at::isFloatingType(q.scalar_type()) && at::isFloatingType(k.scalar_type()),
              "contrastive tiles: floating-point inputs expected");
}

// Columns per tile: explicit block_n, else enough to keep the (n, w) buffer near `target`
// elements (multiple of 64, in [64, 8192]).
int64_t tile_width(int64_t block_n, int64_t n, int64_t m, bool cuda) {
  int64_t w = block_n;
  if (w <= 0) {
    const int64_t target = cuda ? (int64_t{1} << 25) : (int64_t{1} << 24);
    w = std::clamp<int64_t>(target / std::max<int64_t>(n, 1) / 64 * 64, 64, 8192);
  }
  return std::max<int64_t>(std::min(w, m), 1);
}

// Rows [r0, r1) of an (n, w) tile of dot products: merge s * dot into the running (max, sum).
MEDTRAIN_CPU_CLONES void lse_update_rows(float* dot, int64_t r0, int64_t r1, int64_t w, float s,
                                         float* run_max, float* run_sum) {
  for (int64_t i = r0; i < r1; ++i) {
    float* x = dot + i * w;  // (w,)
    float mx = kNegInf;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < w; ++j) {
      x[j] *= s;
      mx = std::max(mx, x[j]);
    }
    const float m_new = std::max(run_max[i], mx);
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < w; ++j) acc += fast_exp(x[j] - m_new);
    run_sum[i] = run_sum[i] * fast_exp(run_max[i] - m_new) + acc;
    run_max[i] = m_new;
  }
}

// Rows [r0, r1): dot tile -> g tile in place, ds partials added to ds_rows.
MEDTRAIN_CPU_CLONES void grad_tile_rows(float* dot, int64_t r0, int64_t r1, int64_t w, float s,
                                        const float* lse_q, const float* lse_k, int64_t diag0,
                                        float* ds_rows) {
  for (int64_t i = r0; i < r1; ++i) {
    float* x = dot + i * w;  // (w,) dot products in, g out
    const float lq = lse_q[i];
    const int64_t jd = i + diag0;  // tile column of the positive
    const bool has_pos = jd >= 0 && jd < w;
    const float d_pos = has_pos ? x[jd] : 0.0f;
    float ds = 0.0f;
#pragma omp simd reduction(+ : ds)
    for (int64_t j = 0; j < w; ++j) {
      const float d = x[j];
      const float xs = d * s;
      const float pa = fast_exp(xs - lq);
      ds += pa * d;
      x[j] = pa + fast_exp(xs - lse_k[j]);
    }
    if (has_pos) {
      x[jd] -= 2.0f;
      ds -= d_pos;
    }
    ds_rows[i] += ds;
  }
}

void lse_update_cpu(float* dot, int64_t n, int64_t w, float s, float* run_max, float* run_sum) {
  at::parallel_for(0, n, std::max<int64_t>(1, 16384 / w), [&](int64_t r0, int64_t r1) {
    lse_update_rows(dot, r0, r1, w, s, run_max, run_sum);
  });
}

void grad_tile_cpu(float* dot, int64_t n, int64_t w, float s, const float* lse_q,
                   const float* lse_k, int64_t diag0, float* ds_rows) {
  at::parallel_for(0, n, std::max<int64_t>(1, 8192 / w), [&](int64_t r0, int64_t r1) {
    grad_tile_rows(dot, r0, r1, w, s, lse_q, lse_k, diag0, ds_rows);
  });
}

}  // namespace

at::Tensor lse_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& scale,
                    int64_t block_n) {
  check_pair(q, k, scale);
  const bool cuda = q.is_cuda();
#ifdef MEDTRAIN_WITH_CUDA
  const c10::OptionalDeviceGuard guard(cuda ? std::optional<c10::Device>(q.device())
                                            : std::nullopt);
#else
  TORCH_CHECK(!cuda, "medtrain extension was built without CUDA");
#endif
  const at::Tensor qf = q.to(at::kFloat).contiguous();                   // (n, d)
  const at::Tensor kf = k.to(at::kFloat).contiguous();                   // (m, d)
  const at::Tensor sf = scale.to(at::kFloat).reshape({}).contiguous();   // ()
  const int64_t n = qf.size(0), m = kf.size(0);
  at::Tensor run_max = at::full({n}, kNegInf, qf.options());  // (n,)
  at::Tensor run_sum = at::zeros({n}, qf.options());           // (n,)
  if (n == 0 || m == 0) return run_max;

  const int64_t bn = tile_width(block_n, n, m, cuda);
  at::Tensor buf = at::empty({n * bn}, qf.options());
  const float s = cuda ? 0.0f : sf.item<float>();
  for (int64_t c0 = 0; c0 < m; c0 += bn) {
    const int64_t w = std::min(bn, m - c0);
    at::Tensor tile = buf.narrow(0, 0, n * w).view({n, w});  // (n, w) <q_i, k_j>
    at::mm_out(tile, qf, kf.narrow(0, c0, w).t());
    if (cuda) {
#ifdef MEDTRAIN_WITH_CUDA
      C10_CUDA_CHECK(cuda::lse_update(tile.data_ptr<float>(), n, w, sf.data_ptr<float>(),
                                      run_max.data_ptr<float>(), run_sum.data_ptr<float>(),
                                      c10::cuda::getCurrentCUDAStream()));
#endif
    } else {
      lse_update_cpu(tile.data_ptr<float>(), n, w, s, run_max.data_ptr<float>(),
                     run_sum.data_ptr<float>());
    }
  }
  return run_sum.log_().add_(run_max);  // (n,)
}

std::tuple<at::Tensor, at::Tensor> grad_rows(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& scale, const at::Tensor& lse_q,
                                             const at::Tensor& lse_k, int64_t offset,
                                             int64_t block_n) {
  check_pair(q, k, scale);
  TORCH_CHECK(lse_q.numel() == q.size(0) && lse_k.numel() == k.size(0),
              "contrastive grad tiles: lse_q (n,) and lse_k (m,) expected");
  const bool cuda = q.is_cuda();
#ifdef MEDTRAIN_WITH_CUDA
  const c10::OptionalDeviceGuard guard(cuda ? std::optional<c10::Device>(q.device())
                                            : std::nullopt);
#else
  TORCH_CHECK(!cuda, "medtrain extension was built without CUDA");
#endif
  const at::Tensor qf = q.to(at::kFloat).contiguous();                   // (n, d)
  const at::Tensor kf = k.to(at::kFloat).contiguous();                   // (m, d)
  const at::Tensor sf = scale.to(at::kFloat).reshape({}).contiguous();   // ()
  const at::Tensor lq = lse_q.to(at::kFloat).reshape({-1}).contiguous();  // (n,)
  const at::Tensor lk = lse_k.to(at::kFloat).reshape({-1}).contiguous();  // (m,)
  const int64_t n = qf.size(0), m = kf.size(0), d = qf.size(1);
  at::Tensor dq = at::zeros({n, d}, qf.options());  // (n, d)
  at::Tensor ds = at::zeros({n}, qf.options());     // (n,)
  if (n == 0 || m == 0) return {dq, ds};

  const int64_t bn = tile_width(block_n, n, m, cuda);
  at::Tensor buf = at::empty({n * bn}, qf.options());
  const float s = cuda ? 0.0f : sf.item<float>();
  for (int64_t c0 = 0; c0 < m; c0 += bn) {
    const int64_t w = std::min(bn, m - c0);
    const at::Tensor kt = kf.narrow(0, c0, w);                // (w, d)
    at::Tensor tile = buf.narrow(0, 0, n * w).view({n, w});  // (n, w)
    at::mm_out(tile, qf, kt.t());
    if (cuda) {
#ifdef MEDTRAIN_WITH_CUDA
      C10_CUDA_CHECK(cuda::grad_tile(tile.data_ptr<float>(), n, w, sf.data_ptr<float>(),
                                     lq.data_ptr<float>(), lk.data_ptr<float>() + c0,
                                     offset - c0, ds.data_ptr<float>(),
                                     c10::cuda::getCurrentCUDAStream()));
#endif
    } else {
      grad_tile_cpu(tile.data_ptr<float>(), n, w, s, lq.data_ptr<float>(),
                    lk.data_ptr<float>() + c0, offset - c0, ds.data_ptr<float>());
    }
    dq.addmm_(tile, kt);  // (n, w) @ (w, d)
  }
  return {dq, ds};
}

bool built_with_cuda() {
#ifdef MEDTRAIN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace medtrain::contrastive
