// Strided twins of the vector kernels: the same element-wise ops, fill and copy over operands of
// any layout (views: offsets, steps, negative steps, transposes), after the host has collapsed
// the layout to at most 4 dimensions (d0, d1, d2, d3), d3 the output's fastest.
//
// Entry points (extern "C", found by name from Python):
//   <op>_<dtype>_s   op in add, sub, mul, axpy, scale; dtype f32, f64, f16, bf16
//   fill_<w>_s, copy_<w>_s   w in b8, b16, b32, b64 (bit moves, any dtype of that width)
// Strides are signed and in elements. A block covers a tile of blockDim.x elements along d3
// and 4 * blockDim.y along d2 (each thread 4 rows), so an operand that is transposed relative to
// the output still reads whole cache lines across the tile; blocks loop over tiles (grid-stride)
// so any size fits the grid.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace {

constexpr int kRows = 8;  // rows of the tile per thread (the host's tile arithmetic mirrors it)

template <typename T> struct Conv {
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

struct Dims {
  int64_t d0, d1, d2, d3;
};
struct Str {
  int64_t s0, s1, s2, s3;
};

// Calls f(off) for every element of the tiles this thread owns, ``off[k]`` being the element
// offset of operand k. A pure 1-D layout (d0 = d1 = d2 = 1) runs a flat grid-stride loop; other
// layouts decode each tile index once (32-bit arithmetic when the counts allow it) and then step
// the offsets by additions only, row by row.
template <int N, typename F>
__device__ __forceinline__ void for_each(const Dims d, const Str (&s)[N], F f) {
  if (d.d0 == 1 && d.d1 == 1 && d.d2 == 1) {
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x * blockDim.y;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x * blockDim.y +
                          threadIdx.y * blockDim.x + threadIdx.x;
    for (int64_t i = first; i < d.d3; i += step) {
      int64_t off[N];
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] = i * s[k].s3;
      f(off);
    }
    return;
  }
  const int64_t bx = blockDim.x;
  const int64_t rows = static_cast<int64_t>(blockDim.y) * kRows;
  const int64_t nt3 = (d.d3 + bx - 1) / bx;
  const int64_t nt2 = (d.d2 + rows - 1) / rows;
  const int64_t tiles = nt3 * nt2 * d.d1 * d.d0;
  const bool small = tiles < (int64_t(1) << 32) && d.d1 < (int64_t(1) << 32);
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    int64_t t3, t2, i1, i0;
    if (small) {  // 32-bit division is several times cheaper than 64-bit on the GPU
      uint32_t b = static_cast<uint32_t>(t);
      const uint32_t n3 = static_cast<uint32_t>(nt3), n2 = static_cast<uint32_t>(nt2);
      const uint32_t n1 = static_cast<uint32_t>(d.d1);
      t3 = b % n3; b /= n3;
      t2 = b % n2; b /= n2;
      i1 = b % n1; i0 = b / n1;
    } else {
      int64_t b = t;
      t3 = b % nt3; b /= nt3;
      t2 = b % nt2; b /= nt2;
      i1 = b % d.d1; i0 = b / d.d1;
    }
    const int64_t i3 = t3 * bx + threadIdx.x;
    if (i3 >= d.d3) continue;
    int64_t i2 = t2 * rows + threadIdx.y;
    int64_t off[N], step[N];
#pragma unroll
    for (int k = 0; k < N; ++k) {
      off[k] = i0 * s[k].s0 + i1 * s[k].s1 + i2 * s[k].s2 + i3 * s[k].s3;
      step[k] = static_cast<int64_t>(blockDim.y) * s[k].s2;
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (i2 < d.d2) f(off);
      i2 += blockDim.y;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += step[k];
    }
  }
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

template <typename T, typename F>
__device__ __forceinline__ void smap2(const T* x, const T* y, T* out, Dims d, Str sx, Str sy, Str so, F f) {
  using Cv = Conv<T>;
  const Str s[3] = {sx, sy, so};
  for_each<3>(d, s, [&](const int64_t* o) { out[o[2]] = Cv::out(f(Cv::in(x[o[0]]), Cv::in(y[o[1]]))); });
}

template <typename T, typename F>
__device__ __forceinline__ void smap1(const T* x, T* out, Dims d, Str sx, Str so, F f) {
  using Cv = Conv<T>;
  const Str s[2] = {sx, so};
  for_each<2>(d, s, [&](const int64_t* o) { out[o[1]] = Cv::out(f(Cv::in(x[o[0]]))); });
}

}  // namespace

#define KIT_DIMS int64_t d0, int64_t d1, int64_t d2, int64_t d3
#define KIT_STR(P) int64_t P##0, int64_t P##1, int64_t P##2, int64_t P##3
#define KIT_D Dims{d0, d1, d2, d3}
#define KIT_S(P) Str{P##0, P##1, P##2, P##3}

#define KIT_SBINARY(NAME, OP, SUF, T)                                                              \
  extern "C" __global__ void NAME##_##SUF##_s(const T* x, const T* y, T* out, KIT_DIMS, KIT_STR(sx), \
                                              KIT_STR(sy), KIT_STR(so)) {                           \
    smap2<T>(x, y, out, KIT_D, KIT_S(sx), KIT_S(sy), KIT_S(so), OP{});                              \
  }

#define KIT_STYPED(SUF, T)                                                                         \
  KIT_SBINARY(add, AddOp, SUF, T)                                                                  \
  KIT_SBINARY(sub, SubOp, SUF, T)                                                                  \
  KIT_SBINARY(mul, MulOp, SUF, T)                                                                  \
  extern "C" __global__ void axpy_##SUF##_s(Conv<T>::C a, const T* x, const T* y, T* out, KIT_DIMS, \
                                            KIT_STR(sx), KIT_STR(sy), KIT_STR(so)) {                \
    smap2<T>(x, y, out, KIT_D, KIT_S(sx), KIT_S(sy), KIT_S(so), AxpyOp<Conv<T>::C>{a});            \
  }                                                                                                \
  extern "C" __global__ void scale_##SUF##_s(Conv<T>::C a, const T* x, T* out, KIT_DIMS, KIT_STR(sx), \
                                             KIT_STR(so)) {                                         \
    smap1<T>(x, out, KIT_D, KIT_S(sx), KIT_S(so), ScaleOp<Conv<T>::C>{a});                         \
  }

KIT_STYPED(f32, float)
KIT_STYPED(f64, double)
KIT_STYPED(f16, __half)
KIT_STYPED(bf16, __nv_bfloat16)

#define KIT_SWIDTH(SUF, T)                                                                         \
  extern "C" __global__ void fill_##SUF##_s(T value, T* out, KIT_DIMS, KIT_STR(so)) {              \
    const Str s[1] = {KIT_S(so)};                                                                  \
    for_each<1>(KIT_D, s, [&](const int64_t* o) { out[o[0]] = value; });                           \
  }                                                                                                \
  extern "C" __global__ void copy_##SUF##_s(const T* src, T* dst, KIT_DIMS, KIT_STR(ss), KIT_STR(ds)) { \
    const Str s[2] = {KIT_S(ss), KIT_S(ds)};                                                       \
    for_each<2>(KIT_D, s, [&](const int64_t* o) { dst[o[1]] = src[o[0]]; });                      \
  }

KIT_SWIDTH(b8, uint8_t)
KIT_SWIDTH(b16, uint16_t)
KIT_SWIDTH(b32, uint32_t)
KIT_SWIDTH(b64, unsigned long long)
