// CUDA epilogue launchers for the contrastive tile loop (raw pointers; no ATen here so the
// .cu file compiles quickly with nvcc). Tiles are row-major (n, w) fp32 with row stride w.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace medtrain::contrastive::cuda {

// Online row LSE update with one tile of dot products:
//   run_max, run_sum <- merge(run_max, run_sum, {s * dot_ij}_j). scale: device pointer to s.
cudaError_t lse_update(const float* dot, int64_t n, int64_t w, const float* scale, float* run_max,
                float* run_sum, cudaStream_t stream);

// Overwrites the dot tile with g_ij (see contrastive.h) and adds the row ds partials.
// lse_k points at the tile's first column; the positive of row i is column i + diag0.
cudaError_t grad_tile(float* dot, int64_t n, int64_t w, const float* scale, const float* lse_q,
               const float* lse_k, int64_t diag0, float* ds_rows, cudaStream_t stream);

}  // namespace medtrain::contrastive::cuda
