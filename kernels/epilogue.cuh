// The matmul epilogue shared by every kernel of gemm.cu and gemm_sm90.cu:
//   out(m, n) = act(alpha * acc(m, n) + beta * C(m, n) + bias(m, n))
// in FP32, rounded once to the output type. bias(m, n) = bias[m * bias_sm + n * bias_sn] (element
// strides; 0 along a broadcast dimension: a per-column bias has bias_sm = 0, a per-row one
// bias_sn = 0), bias of the output's type; no bias when the pointer is null. act: ACT_NONE,
// ACT_RELU (NaN stays NaN), ACT_GELU (tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
// as cuBLASLt's GELU epilogue and torch's gelu(approximate="tanh")).
// Every kernel takes the four trailing parameters KIT_EPI_PARAMS(T). The kernels of gemm.cu build
// an Epi<T> (KIT_EPI) and switch at run time: plain() is two uniform branches. The Hopper kernels
// come as twins instead: NAME never reads the parameters (KIT_EPI_OFF), NAME_epi applies them
// (KIT_EPI); with the run-time switch the plain Hopper product ran 0.72x of cuBLAS instead of 0.88x.
// The Hopper _epi twins put a finished tile's accumulators in shared memory and apply the epilogue
// in a compact pass over its rows (coalesced 16-byte loads and stores, activation and bias source
// chosen once per tile); a bias with one value per column or per row (or one value:
// Epi::vector()) is staged in shared memory by the producer warpgroup meanwhile (Epi::stage).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace kit_epi {

enum : int { ACT_NONE = 0, ACT_RELU = 1, ACT_GELU = 2 };

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

// 0.5 x (1 + tanh(u)) == x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): one ex2.approx and
// one approximate reciprocal (relative error ~1e-6 for |x| < 10, exact limits: exp(-2u) overflowing
// to inf gives -0, for large negative x) instead of tanhf's ~30 instructions, at each of a kernel's
// unrolled epilogue sites.
__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = -2.0f * 0.7978845608028654f;  // -2 sqrt(2 / pi)
  return __fdividef(x, 1.0f + __expf(k * fmaf(0.044715f * x, x * x, x)));
}

// ON = false: the plain twin of a kernel — plain() is a constant, so the compiler drops every
// epilogue instruction and the kernel is the alpha / beta store alone (the four parameters unread).
template <typename T, bool ON = true> struct Epi {
  static constexpr bool enabled = ON;
  const T* bias;
  long long bias_sm, bias_sn;
  int act;

  __device__ __forceinline__ bool plain() const { return !ON || (bias == nullptr && act == ACT_NONE); }
  // A bias with one value per column (bias_sm == 0; a scalar too) or per row (bias_sn == 0): the
  // Hopper kernels stage a tile's values in shared memory once (stage()) and read them from there
  // (StagedBias).
  __device__ __forceinline__ bool vector() const { return ON && bias != nullptr && (bias_sm == 0 || bias_sn == 0); }
  __device__ __forceinline__ bool per_col() const { return bias_sm == 0; }
  // sv[i] = bias of column n0 + i (per_col) or row m0 + i, for i < bn (bm), 0 past the matrix;
  // thread t of the nt that share the work
  __device__ __forceinline__ void stage(float* sv, int m0, int n0, int bm, int bn, int M, int N, int t,
                                        int nt) const {
    const bool col = per_col();
    const int len = col ? bn : bm, first = col ? n0 : m0, limit = col ? N : M;
    const long long step = col ? bias_sn : bias_sm;
    for (int i = t; i < len; i += nt) sv[i] = first + i < limit ? to_f(bias[(long long)(first + i) * step]) : 0.0f;
  }
  // the activation alone: act(v); branch-free (selects), so the compiler keeps one copy of an
  // unrolled epilogue instead of one per activation
  __device__ __forceinline__ float activate(float v) const {
    const float g = gelu_tanh(v), r = v < 0.0f ? 0.0f : v;
    return act == ACT_GELU ? g : act == ACT_RELU ? r : v;
  }
  // the value alpha * acc + beta * C of element (m, n) -> what is stored (before rounding), the
  // bias read from global memory (a predicated load)
  __device__ __forceinline__ float operator()(float v, int m, int n) const {
    const T* p = bias + ((long long)m * bias_sm + (long long)n * bias_sn);
    v += bias != nullptr ? to_f(*p) : 0.0f;
    return activate(v);
  }
};

// For the Hopper kernels' epilogue pass (a tile in shared memory, walked row by row): the
// activation as a compile-time choice, and the bias as one of three sources.
template <int ACT> __device__ __forceinline__ float activation(float v) {
  if constexpr (ACT == ACT_GELU) return gelu_tanh(v);
  else if constexpr (ACT == ACT_RELU) return v < 0.0f ? 0.0f : v;  // NaN stays NaN
  else return v;
}
struct NoBias {
  __device__ __forceinline__ float operator()(int, int) const { return 0.0f; }
};
// a vector() bias staged by Epi::stage for the tile whose first row is m0, first column n0
struct StagedBias {
  const float* sv;
  int first;  // n0 (per column) or m0
  bool col;
  __device__ __forceinline__ float operator()(int m, int n) const { return sv[(col ? n : m) - first]; }
};
// any other bias: bias[m * sm + n * sn] from global memory
template <typename T> struct DirectBias {
  const T* bias;
  long long sm, sn;
  __device__ __forceinline__ float operator()(int m, int n) const {
    return to_f(bias[(long long)m * sm + (long long)n * sn]);
  }
};

}  // namespace kit_epi

// bias pointer, its element strides along M and N, activation
#define KIT_EPI_PARAMS(T) const T *bias, long long bias_sm, long long bias_sn, int act
#define KIT_EPI(T) kit_epi::Epi<T, true>{bias, bias_sm, bias_sn, act}
#define KIT_EPI_OFF(T) kit_epi::Epi<T, false>{bias, bias_sm, bias_sn, act}
