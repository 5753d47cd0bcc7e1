// Shared pieces of the element-wise kernels (vector.cu: contiguous; strided.cu: any layout):
// storage -> compute type conversion, the 16-byte vector type, and the op functors.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace kit {


template <typename T> struct Conv {  // storage type -> compute type and back
  using C = T;
  __device__ __forceinline__ static C in(T v) { return v; }
  __device__ __forceinline__ static T out(C v) { return v; }
};
template <> struct Conv<__half> {
  using C = float;
  __device__ __forceinline__ static C in(__half v) { return __half2float(v); }
  __device__ __forceinline__ static __half out(C v) { return __float2half_rn(v); }
};
template <> struct Conv<__nv_bfloat16> {
  using C = float;
  __device__ __forceinline__ static C in(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ __forceinline__ static __nv_bfloat16 out(C v) { return __float2bfloat16_rn(v); }
};

// Exactly 16 bytes, so one load or store is a single 128-bit transaction per thread.
template <typename T> struct alignas(16) Vec {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

template <typename T> __device__ __forceinline__ Vec<T> load16(const T* p) {
  uint4 raw = *reinterpret_cast<const uint4*>(p);
  return *reinterpret_cast<Vec<T>*>(&raw);
}
template <typename T> __device__ __forceinline__ void store16(T* p, const Vec<T>& v) {
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&v);
}

struct AddOp { template <typename C> __device__ C operator()(C a, C b) const { return a + b; } };
struct SubOp { template <typename C> __device__ C operator()(C a, C b) const { return a - b; } };
struct MulOp { template <typename C> __device__ C operator()(C a, C b) const { return a * b; } };
template <typename C> struct AxpyOp {
  C alpha;
  __device__ C operator()(C a, C b) const { return fma(alpha, a, b); }
};
template <typename C> struct ScaleOp {
  C alpha;
  __device__ C operator()(C a) const { return alpha * a; }
};

}  // namespace kit
