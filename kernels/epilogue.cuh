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
  const T* bias;
  long long bias_sm, bias_sn;
  int act;

  __device__ __forceinline__ bool plain() const { return !ON || (bias == nullptr && act == ACT_NONE); }
  // the value alpha * acc + beta * C of element (m, n) -> what is stored (before rounding)
  // Branch-free (a predicated load and selects), so the compiler keeps one copy of an unrolled
  // epilogue instead of one per bias / activation combination.
  __device__ __forceinline__ float operator()(float v, int m, int n) const {
    const T* p = bias + ((long long)m * bias_sm + (long long)n * bias_sn);
    v += bias != nullptr ? to_f(*p) : 0.0f;
    const float g = gelu_tanh(v), r = v < 0.0f ? 0.0f : v;
    return act == ACT_GELU ? g : act == ACT_RELU ? r : v;
  }
};

}  // namespace kit_epi

// bias pointer, its element strides along M and N, activation
#define KIT_EPI_PARAMS(T) const T *bias, long long bias_sm, long long bias_sn, int act
#define KIT_EPI(T) kit_epi::Epi<T, true>{bias, bias_sm, bias_sn, act}
#define KIT_EPI_OFF(T) kit_epi::Epi<T, false>{bias, bias_sm, bias_sn, act}
