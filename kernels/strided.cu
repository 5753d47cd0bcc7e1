// Strided twins of the vector kernels: the same element-wise ops, fill and copy over operands of
// any layout (views: offsets, steps, negative steps, transposes), after the host has collapsed
// the layout to at most 4 dimensions (d0, d1, d2, d3), d3 the output's fastest.
//
// Entry points (extern "C", found by name from Python):
//   <op>_<dtype>_s   op in add, sub, mul, axpy, scale; dtype f32, f64, f16, bf16
//   fill_<w>_s, copy_<w>_s   w in b8, b16, b32, b64 (bit moves, any dtype of that width)
//   ..._sv           the same over rows of whole 16-byte vectors (strides count vectors)
//   <op>_<dtype>_t, copy_<w>_t   inputs transposed relative to the output, via shared memory
//                    (tiles of Shape<T>, see tmap)
// Strides are signed and in elements. A block covers a tile of blockDim.x elements along d3
// and kRows * blockDim.y along d2 (each thread kRows rows); blocks loop over tiles (grid-stride)
// so any size fits the grid.

#include "elementwise.cuh"

namespace {

using namespace kit;

constexpr int kRows = 8;  // rows of the tile per thread (the host's tile arithmetic mirrors it)

struct Dims {
  int64_t d0, d1, d2, d3;
};
struct Str {
  int64_t s0, s1, s2, s3;
};

// Tile index t -> (t3, t2, i1, i0), 32-bit arithmetic when ``small`` (the counts fit): 32-bit
// division is several times cheaper than 64-bit on the GPU.
__device__ __forceinline__ void decode(int64_t t, int64_t nt3, int64_t nt2, int64_t d1, bool small,
                                       int64_t& t3, int64_t& t2, int64_t& i1, int64_t& i0) {
  if (small) {
    uint32_t b = static_cast<uint32_t>(t);
    const uint32_t n3 = static_cast<uint32_t>(nt3), n2 = static_cast<uint32_t>(nt2), n1 = static_cast<uint32_t>(d1);
    t3 = b % n3; b /= n3;
    t2 = b % n2; b /= n2;
    i1 = b % n1; i0 = b / n1;
  } else {
    t3 = t % nt3; t /= nt3;
    t2 = t % nt2; t /= nt2;
    i1 = t % d1; i0 = t / d1;
  }
}

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
    decode(t, nt3, nt2, d.d1, small, t3, t2, i1, i0);
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


// Vectorized twins: every operand unit-stride along d3 with d3, the pointers and the other
// strides in whole 16-byte vectors (offsets and strides below count vectors).
template <typename T, typename F>
__device__ __forceinline__ void smap2v(const T* x, const T* y, T* out, Dims d, Str sx, Str sy, Str so, F f) {
  using Cv = Conv<T>;
  constexpr int N = Vec<T>::N;
  const Str s[3] = {sx, sy, so};
  for_each<3>(d, s, [&](const int64_t* o) {
    Vec<T> a = load16(x + o[0] * N);
    const Vec<T> b = load16(y + o[1] * N);
#pragma unroll
    for (int k = 0; k < N; ++k) a.v[k] = Cv::out(f(Cv::in(a.v[k]), Cv::in(b.v[k])));
    store16(out + o[2] * N, a);
  });
}

template <typename T, typename F>
__device__ __forceinline__ void smap1v(const T* x, T* out, Dims d, Str sx, Str so, F f) {
  using Cv = Conv<T>;
  constexpr int N = Vec<T>::N;
  const Str s[2] = {sx, so};
  for_each<2>(d, s, [&](const int64_t* o) {
    Vec<T> a = load16(x + o[0] * N);
#pragma unroll
    for (int k = 0; k < N; ++k) a.v[k] = Cv::out(f(Cv::in(a.v[k])));
    store16(out + o[1] * N, a);
  });
}

// Transposed twins: operands whose unit stride is along d2 (transposed relative to the output,
// whose fastest dimension is d3) are read through a shared-memory tile, so that every global
// load is coalesced along that operand's own fastest dimension. A block of 32 x BY threads
// covers a tile of TD2 (along d2) x TD3 (along d3) elements: staged inputs are read in runs of
// TD2 elements, direct inputs and the output in runs of TD3. ``MASK`` (bit k: input k is staged)
// is a template argument, so each combination compiles without per-element branches; inputs
// read directly are loaded into registers before the barrier, with the staged loads, so every
// load of a tile is in flight at once. The shipped shape is Shape<T> (the host's tile_shape()
// mirrors it); tools/tune_transposed.py measures the others (built with -DKIT_TUNE).
template <int TD2_, int TD3_, int BY_> struct TShape {
  static constexpr int TD2 = TD2_, TD3 = TD3_, BY = BY_;
};
// 32 x 32 tiles on 32 x 4 threads: the best of 12 shapes measured on an H200 (8192 x 4096
// float32: transposed copy 0.80x the D2D memcpy, x + y -> out.T 0.72x and x.T + y 0.68x the
// contiguous add; wider tiles or more threads per block measured 0.27x-0.71x; tools/tune_transposed.py)
template <typename T> struct Shape : TShape<32, 32, 4> {};

template <typename T, int NIN, typename S> struct Tiles {
  T t[NIN][S::TD3][S::TD2 + 1];
};

template <typename T, int NIN, unsigned MASK, typename S, typename F>
__device__ __forceinline__ void tmap(const T* const (&in)[NIN], T* out, Dims d, const Str (&s)[NIN + 1], F f,
                                     Tiles<T, NIN, S>& sm) {
  using Cv = Conv<T>;
  using C = typename Cv::C;
  constexpr int TD2 = S::TD2, TD3 = S::TD3, BY = S::BY;
  constexpr int G2 = TD2 / 32, G3 = TD3 / 32;  // warp-wide column groups along d2 / d3
  constexpr int R3 = TD3 / BY, R2 = TD2 / BY;  // rows per thread along d3 / d2
  auto& tile = sm.t;
  const int64_t nt3 = (d.d3 + TD3 - 1) / TD3, nt2 = (d.d2 + TD2 - 1) / TD2;
  const int64_t tiles = nt3 * nt2 * d.d1 * d.d0;
  const bool small = tiles < (int64_t(1) << 32) && d.d1 < (int64_t(1) << 32);
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    int64_t t3, t2, i1, i0;
    decode(t, nt3, nt2, d.d1, small, t3, t2, i1, i0);
    const int64_t b2 = t2 * TD2, b3 = t3 * TD3;
    C direct[NIN][G3][R2];
#pragma unroll
    for (int k = 0; k < NIN; ++k) {
      const int64_t base = i0 * s[k].s0 + i1 * s[k].s1;
      if ((MASK >> k) & 1u) {
        // thread (tx, ty) loads d2 index b2 + 32g + tx of rows i3 = b3 + ty + BY r: consecutive
        // addresses across tx (and across g) for an operand whose unit stride is along d2
#pragma unroll
        for (int g = 0; g < G2; ++g)
#pragma unroll
          for (int r = 0; r < R3; ++r) {
            const int64_t i2 = b2 + 32 * g + tx, i3 = b3 + ty + BY * r;
            if (i2 < d.d2 && i3 < d.d3) tile[k][ty + BY * r][32 * g + tx] = in[k][base + i2 * s[k].s2 + i3 * s[k].s3];
          }
      } else {
#pragma unroll
        for (int g = 0; g < G3; ++g)
#pragma unroll
          for (int r = 0; r < R2; ++r) {
            const int64_t i2 = b2 + ty + BY * r, i3 = b3 + 32 * g + tx;
            if (i2 < d.d2 && i3 < d.d3) direct[k][g][r] = Cv::in(in[k][base + i2 * s[k].s2 + i3 * s[k].s3]);
          }
      }
    }
    __syncthreads();
    const int64_t obase = i0 * s[NIN].s0 + i1 * s[NIN].s1;
#pragma unroll
    for (int g = 0; g < G3; ++g)
#pragma unroll
      for (int r = 0; r < R2; ++r) {
        const int64_t i2 = b2 + ty + BY * r, i3 = b3 + 32 * g + tx;
        if (i2 < d.d2 && i3 < d.d3) {
          C v[NIN];
#pragma unroll
          for (int k = 0; k < NIN; ++k)
            v[k] = ((MASK >> k) & 1u) ? Cv::in(tile[k][32 * g + tx][ty + BY * r]) : direct[k][g][r];
          out[obase + i2 * s[NIN].s2 + i3 * s[NIN].s3] = Cv::out(f(v));
        }
      }
    __syncthreads();
  }
}

// The staging flags of a launch -> the compiled mask (flags 0, 0 never come from the host; the
// staged path is correct for any layout, so it would still compute the right values).
template <typename T, typename S, typename F>
__device__ __forceinline__ void tmap2(const T* x, const T* y, T* out, int fx, int fy, Dims d, const Str (&s)[3], F f) {
  const T* in[2] = {x, y};
  __shared__ Tiles<T, 2, S> sm;  // one allocation shared by the three instantiations
  if (fx && !fy) tmap<T, 2, 1u, S>(in, out, d, s, f, sm);
  else if (!fx && fy) tmap<T, 2, 2u, S>(in, out, d, s, f, sm);
  else tmap<T, 2, 3u, S>(in, out, d, s, f, sm);
}

template <typename T, typename S, typename F>
__device__ __forceinline__ void tmap1(const T* x, T* out, Dims d, const Str (&s)[2], F f) {
  const T* in[1] = {x};
  __shared__ Tiles<T, 1, S> sm;
  tmap<T, 1, 1u, S>(in, out, d, s, f, sm);  // one input: it is the staged one
}

template <typename F> struct Binary {
  F f;
  template <typename C> __device__ C operator()(const C (&v)[2]) const { return f(v[0], v[1]); }
};
template <typename F> struct Unary {
  F f;
  template <typename C> __device__ C operator()(const C (&v)[1]) const { return f(v[0]); }
};
struct Ident {
  template <typename C> __device__ C operator()(C a) const { return a; }
};

}  // namespace

#define KIT_DIMS int64_t d0, int64_t d1, int64_t d2, int64_t d3
#define KIT_STR(P) int64_t P##0, int64_t P##1, int64_t P##2, int64_t P##3
#define KIT_D Dims{d0, d1, d2, d3}
#define KIT_S(P) Str{P##0, P##1, P##2, P##3}

#define KIT_SBINARY(NAME, OP, SUF, T)                                                              \
  extern "C" __global__ void NAME##_##SUF##_s(const T* x, const T* y, T* out, KIT_DIMS, KIT_STR(sx), \
                                              KIT_STR(sy), KIT_STR(so)) {                           \
    smap2<T>(x, y, out, KIT_D, KIT_S(sx), KIT_S(sy), KIT_S(so), OP{});                              \
  }                                                                                                 \
  extern "C" __global__ void NAME##_##SUF##_sv(const T* x, const T* y, T* out, KIT_DIMS, KIT_STR(sx), \
                                               KIT_STR(sy), KIT_STR(so)) {                          \
    smap2v<T>(x, y, out, KIT_D, KIT_S(sx), KIT_S(sy), KIT_S(so), OP{});                             \
  }                                                                                                 \
  extern "C" __global__ void __launch_bounds__(32 * Shape<T>::BY) NAME##_##SUF##_t(                               \
      const T* x, const T* y, T* out, int tx_, int ty_, KIT_DIMS, KIT_STR(sx), KIT_STR(sy), KIT_STR(so)) { \
    const Str s[3] = {KIT_S(sx), KIT_S(sy), KIT_S(so)};                                             \
    tmap2<T, Shape<T>>(x, y, out, tx_, ty_, KIT_D, s, Binary<OP>{OP{}});                                      \
  }

#define KIT_STYPED(SUF, T)                                                                         \
  KIT_SBINARY(add, AddOp, SUF, T)                                                                  \
  KIT_SBINARY(sub, SubOp, SUF, T)                                                                  \
  KIT_SBINARY(mul, MulOp, SUF, T)                                                                  \
  extern "C" __global__ void axpy_##SUF##_s(Conv<T>::C a, const T* x, const T* y, T* out, KIT_DIMS, \
                                            KIT_STR(sx), KIT_STR(sy), KIT_STR(so)) {                \
    smap2<T>(x, y, out, KIT_D, KIT_S(sx), KIT_S(sy), KIT_S(so), AxpyOp<Conv<T>::C>{a});            \
  }                                                                                                \
  extern "C" __global__ void axpy_##SUF##_sv(Conv<T>::C a, const T* x, const T* y, T* out, KIT_DIMS, \
                                             KIT_STR(sx), KIT_STR(sy), KIT_STR(so)) {               \
    smap2v<T>(x, y, out, KIT_D, KIT_S(sx), KIT_S(sy), KIT_S(so), AxpyOp<Conv<T>::C>{a});           \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(32 * Shape<T>::BY) axpy_##SUF##_t(                                \
      Conv<T>::C a, const T* x, const T* y, T* out, int tx_, int ty_, KIT_DIMS, KIT_STR(sx), KIT_STR(sy), \
      KIT_STR(so)) {                                                                               \
    const Str s[3] = {KIT_S(sx), KIT_S(sy), KIT_S(so)};                                            \
    tmap2<T, Shape<T>>(x, y, out, tx_, ty_, KIT_D, s, Binary<AxpyOp<Conv<T>::C>>{AxpyOp<Conv<T>::C>{a}});    \
  }                                                                                                \
  extern "C" __global__ void scale_##SUF##_s(Conv<T>::C a, const T* x, T* out, KIT_DIMS, KIT_STR(sx), \
                                             KIT_STR(so)) {                                         \
    smap1<T>(x, out, KIT_D, KIT_S(sx), KIT_S(so), ScaleOp<Conv<T>::C>{a});                         \
  }                                                                                                \
  extern "C" __global__ void scale_##SUF##_sv(Conv<T>::C a, const T* x, T* out, KIT_DIMS, KIT_STR(sx), \
                                              KIT_STR(so)) {                                        \
    smap1v<T>(x, out, KIT_D, KIT_S(sx), KIT_S(so), ScaleOp<Conv<T>::C>{a});                        \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(32 * Shape<T>::BY) scale_##SUF##_t(                               \
      Conv<T>::C a, const T* x, T* out, int tx_, KIT_DIMS, KIT_STR(sx), KIT_STR(so)) {             \
    const Str s[2] = {KIT_S(sx), KIT_S(so)};                                                       \
    (void)tx_;                                                                                     \
    tmap1<T, Shape<T>>(x, out, KIT_D, s, Unary<ScaleOp<Conv<T>::C>>{ScaleOp<Conv<T>::C>{a}});                \
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
  extern "C" __global__ void fill_##SUF##_sv(T value, T* out, KIT_DIMS, KIT_STR(so)) {             \
    const Str s[1] = {KIT_S(so)};                                                                  \
    Vec<T> v;                                                                                      \
    for (int k = 0; k < Vec<T>::N; ++k) v.v[k] = value;                                            \
    for_each<1>(KIT_D, s, [&](const int64_t* o) { store16(out + o[0] * Vec<T>::N, v); });          \
  }                                                                                                \
  extern "C" __global__ void copy_##SUF##_s(const T* src, T* dst, KIT_DIMS, KIT_STR(ss), KIT_STR(ds)) { \
    const Str s[2] = {KIT_S(ss), KIT_S(ds)};                                                       \
    for_each<2>(KIT_D, s, [&](const int64_t* o) { dst[o[1]] = src[o[0]]; });                      \
  }                                                                                                \
  extern "C" __global__ void copy_##SUF##_sv(const T* src, T* dst, KIT_DIMS, KIT_STR(ss), KIT_STR(ds)) { \
    const Str s[2] = {KIT_S(ss), KIT_S(ds)};                                                       \
    for_each<2>(KIT_D, s, [&](const int64_t* o) {                                                  \
      store16(dst + o[1] * Vec<T>::N, load16(src + o[0] * Vec<T>::N));                             \
    });                                                                                            \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(32 * Shape<T>::BY) copy_##SUF##_t(const T* src, T* dst, int ts_, KIT_DIMS, \
                                                                   KIT_STR(ss), KIT_STR(ds)) {     \
    const Str s[2] = {KIT_S(ss), KIT_S(ds)};                                                       \
    (void)ts_;                                                                                     \
    tmap1<T, Shape<T>>(src, dst, KIT_D, s, Unary<Ident>{Ident{}});                                           \
  }

KIT_SWIDTH(b8, uint8_t)
KIT_SWIDTH(b16, uint16_t)
KIT_SWIDTH(b32, uint32_t)
KIT_SWIDTH(b64, unsigned long long)

#ifdef KIT_TUNE
// Tile shapes measured by tools/tune_transposed.py: add_f32_t / copy_b32_t over TD2 x TD3 tiles
// on 32 x BY threads, arguments as the shipped twins.
#define KIT_TUNE_SHAPE(TD2, TD3, BY)                                                               \
  extern "C" __global__ void __launch_bounds__(32 * BY) add_f32_t_##TD2##_##TD3##_##BY(            \
      const float* x, const float* y, float* out, int tx_, int ty_, KIT_DIMS, KIT_STR(sx), KIT_STR(sy), \
      KIT_STR(so)) {                                                                               \
    const Str s[3] = {KIT_S(sx), KIT_S(sy), KIT_S(so)};                                            \
    tmap2<float, TShape<TD2, TD3, BY>>(x, y, out, tx_, ty_, KIT_D, s, Binary<AddOp>{AddOp{}});     \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(32 * BY) copy_b32_t_##TD2##_##TD3##_##BY(           \
      const uint32_t* src, uint32_t* dst, int ts_, KIT_DIMS, KIT_STR(ss), KIT_STR(ds)) {           \
    const Str s[2] = {KIT_S(ss), KIT_S(ds)};                                                       \
    (void)ts_;                                                                                     \
    tmap1<uint32_t, TShape<TD2, TD3, BY>>(src, dst, KIT_D, s, Unary<Ident>{Ident{}});              \
  }
KIT_TUNE_SHAPE(32, 32, 8)
KIT_TUNE_SHAPE(32, 64, 8)
KIT_TUNE_SHAPE(64, 32, 8)
KIT_TUNE_SHAPE(64, 64, 8)
KIT_TUNE_SHAPE(64, 64, 16)
KIT_TUNE_SHAPE(32, 64, 16)
KIT_TUNE_SHAPE(64, 32, 16)
KIT_TUNE_SHAPE(32, 128, 8)
KIT_TUNE_SHAPE(32, 128, 16)
KIT_TUNE_SHAPE(32, 32, 4)
KIT_TUNE_SHAPE(64, 64, 32)
KIT_TUNE_SHAPE(128, 32, 8)
#endif
