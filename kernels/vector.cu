// Vector ops of cudart_kit: memory-bound element-wise kernels and a dot reduction.
//
// Entry points are extern "C" so the Python wrappers find them by name:
//   <op>_<dtype>     16-byte vectorized (every pointer 16-byte aligned; checked in Python)
//   <op>_<dtype>_u   scalar fallback for unaligned pointers
// dtypes: f32, f64, f16, bf16. Half types compute in float, others natively.
// Indexing is 64-bit everywhere: arrays may hold more than 2^31 elements.

#include "elementwise.cuh"

namespace {

using namespace kit;

__device__ __forceinline__ uint64_t global_index() {
  return static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// out[i] = f(x[i], y[i]). Vectorized: thread i handles vector i; the n % N tail elements go to
// the first threads of the grid (the launch always has at least N threads).
template <typename T, bool VEC, typename F>
__device__ __forceinline__ void map2(const T* x, const T* y, T* out, uint64_t n, F f) {
  using Cv = Conv<T>;
  const uint64_t i = global_index();
  if (VEC) {
    constexpr int N = Vec<T>::N;
    const uint64_t nv = n / N;
    if (i < nv) {
      Vec<T> a = load16(x + i * N);
      const Vec<T> b = load16(y + i * N);
#pragma unroll
      for (int k = 0; k < N; ++k) a.v[k] = Cv::out(f(Cv::in(a.v[k]), Cv::in(b.v[k])));
      store16(out + i * N, a);
    }
    const uint64_t j = nv * N + i;
    if (j < n) out[j] = Cv::out(f(Cv::in(x[j]), Cv::in(y[j])));
  } else if (i < n) {
    out[i] = Cv::out(f(Cv::in(x[i]), Cv::in(y[i])));
  }
}

template <typename T, bool VEC, typename F>
__device__ __forceinline__ void map1(const T* x, T* out, uint64_t n, F f) {
  using Cv = Conv<T>;
  const uint64_t i = global_index();
  if (VEC) {
    constexpr int N = Vec<T>::N;
    const uint64_t nv = n / N;
    if (i < nv) {
      Vec<T> a = load16(x + i * N);
#pragma unroll
      for (int k = 0; k < N; ++k) a.v[k] = Cv::out(f(Cv::in(a.v[k])));
      store16(out + i * N, a);
    }
    const uint64_t j = nv * N + i;
    if (j < n) out[j] = Cv::out(f(Cv::in(x[j])));
  } else if (i < n) {
    out[i] = Cv::out(f(Cv::in(x[i])));
  }
}

template <typename T, bool VEC>
__device__ __forceinline__ void fill_impl(T value, T* out, uint64_t n) {
  const uint64_t i = global_index();
  if (VEC) {
    constexpr int N = Vec<T>::N;
    const uint64_t nv = n / N;
    if (i < nv) {
      Vec<T> a;
#pragma unroll
      for (int k = 0; k < N; ++k) a.v[k] = value;
      store16(out + i * N, a);
    }
    const uint64_t j = nv * N + i;
    if (j < n) out[j] = value;
  } else if (i < n) {
    out[i] = value;
  }
}

template <typename T, bool VEC>
__device__ __forceinline__ void copy_impl(const T* src, T* dst, uint64_t n) {
  const uint64_t i = global_index();
  if (VEC) {
    constexpr int N = Vec<T>::N;
    const uint64_t nv = n / N;
    if (i < nv) store16(dst + i * N, load16(src + i * N));
    const uint64_t j = nv * N + i;
    if (j < n) dst[j] = src[j];
  } else if (i < n) {
    dst[i] = src[i];
  }
}

// ---- dot: one pass, deterministic ---------------------------------------------------------
// Each thread accumulates x*y in double over a grid-stride loop; blocks reduce to one partial
// each; the last block to finish (atomic ticket) sums the partials in a fixed order, writes
// the result and resets the ticket so the workspace can be reused.

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__device__ double block_sum(double v) {
  __shared__ double warp_totals[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // warp_totals may still be read by a previous call
  if (lane == 0) warp_totals[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  v = (threadIdx.x < nwarps) ? warp_totals[threadIdx.x] : 0.0;
  if (warp == 0) v = warp_sum(v);
  return v;  // valid in thread 0
}

template <typename T, bool VEC>
__device__ void dot_impl(const T* x, const T* y, double* partials, unsigned int* ticket, T* out, uint64_t n) {
  using Cv = Conv<T>;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  double acc = 0.0;
  uint64_t start = 0;
  if (VEC) {
    constexpr int N = Vec<T>::N;
    const uint64_t nv = n / N;
    for (uint64_t i = global_index(); i < nv; i += stride) {
      const Vec<T> a = load16(x + i * N);
      const Vec<T> b = load16(y + i * N);
#pragma unroll
      for (int k = 0; k < N; ++k)
        acc = fma(static_cast<double>(Cv::in(a.v[k])), static_cast<double>(Cv::in(b.v[k])), acc);
    }
    start = nv * N;
  }
  for (uint64_t j = start + global_index(); j < n; j += stride)
    acc = fma(static_cast<double>(Cv::in(x[j])), static_cast<double>(Cv::in(y[j])), acc);

  const double total = block_sum(acc);
  __shared__ bool last;
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = total;
    __threadfence();  // the partial must be visible before the ticket says so
    last = (atomicAdd(ticket, 1u) == gridDim.x - 1);
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  double s = 0.0;
  for (unsigned int b = threadIdx.x; b < gridDim.x; b += blockDim.x) s += __ldcg(partials + b);
  s = block_sum(s);
  if (threadIdx.x == 0) {
    out[0] = Cv::out(static_cast<typename Cv::C>(s));
    *ticket = 0u;
  }
}

}  // namespace

#define KIT_BINARY(NAME, OP, SUF, T)                                                                \
  extern "C" __global__ void NAME##_##SUF(const T* x, const T* y, T* out, uint64_t n) {             \
    map2<T, true>(x, y, out, n, OP{});                                                              \
  }                                                                                                 \
  extern "C" __global__ void NAME##_##SUF##_u(const T* x, const T* y, T* out, uint64_t n) {         \
    map2<T, false>(x, y, out, n, OP{});                                                             \
  }

#define KIT_TYPED(SUF, T)                                                                           \
  KIT_BINARY(add, AddOp, SUF, T)                                                                    \
  KIT_BINARY(sub, SubOp, SUF, T)                                                                    \
  KIT_BINARY(mul, MulOp, SUF, T)                                                                    \
  extern "C" __global__ void axpy_##SUF(Conv<T>::C a, const T* x, const T* y, T* out, uint64_t n) {  \
    map2<T, true>(x, y, out, n, AxpyOp<Conv<T>::C>{a});                                             \
  }                                                                                                 \
  extern "C" __global__ void axpy_##SUF##_u(Conv<T>::C a, const T* x, const T* y, T* out, uint64_t n) { \
    map2<T, false>(x, y, out, n, AxpyOp<Conv<T>::C>{a});                                            \
  }                                                                                                 \
  extern "C" __global__ void scale_##SUF(Conv<T>::C a, const T* x, T* out, uint64_t n) {            \
    map1<T, true>(x, out, n, ScaleOp<Conv<T>::C>{a});                                               \
  }                                                                                                 \
  extern "C" __global__ void scale_##SUF##_u(Conv<T>::C a, const T* x, T* out, uint64_t n) {        \
    map1<T, false>(x, out, n, ScaleOp<Conv<T>::C>{a});                                              \
  }                                                                                                 \
  extern "C" __global__ void dot_##SUF(const T* x, const T* y, double* partials, unsigned int* ticket, \
                                       T* out, uint64_t n) {                                        \
    dot_impl<T, true>(x, y, partials, ticket, out, n);                                              \
  }                                                                                                 \
  extern "C" __global__ void dot_##SUF##_u(const T* x, const T* y, double* partials,                \
                                           unsigned int* ticket, T* out, uint64_t n) {              \
    dot_impl<T, false>(x, y, partials, ticket, out, n);                                             \
  }

KIT_TYPED(f32, float)
KIT_TYPED(f64, double)
KIT_TYPED(f16, __half)
KIT_TYPED(bf16, __nv_bfloat16)

// fill and copy only move bits, so they exist per element width and serve every dtype.
#define KIT_WIDTH(SUF, T)                                                                           \
  extern "C" __global__ void fill_##SUF(T value, T* out, uint64_t n) { fill_impl<T, true>(value, out, n); } \
  extern "C" __global__ void fill_##SUF##_u(T value, T* out, uint64_t n) { fill_impl<T, false>(value, out, n); } \
  extern "C" __global__ void copy_##SUF(const T* src, T* dst, uint64_t n) { copy_impl<T, true>(src, dst, n); } \
  extern "C" __global__ void copy_##SUF##_u(const T* src, T* dst, uint64_t n) { copy_impl<T, false>(src, dst, n); }

KIT_WIDTH(b8, uint8_t)
KIT_WIDTH(b16, uint16_t)
KIT_WIDTH(b32, uint32_t)
KIT_WIDTH(b64, unsigned long long)
