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
//   <op>_f32_tv, copy_b32_tv   the same for 4-byte types with 16-byte accesses (VShape tiles,
//                    dynamic shared memory; see "Vectorized transposed twins"), for layouts
//                    whose pointers and strides allow them (vec_ok)
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
// mirrors it); tools/tune_transposed.py measures the others (built with -DKIT_TUNE). For 4-byte
// types on layouts that allow 16-byte accesses the host picks the _tv twins below instead.
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


// ---------------------------------------------------------------------------------------------
// Vectorized transposed twins, 4-byte types: <op>_f32_tv (add, sub, mul, axpy, scale) and
// copy_b32_tv, arguments as the <op>_t twins. Blocks of 32 x BY threads, tiles of TD2 x TD3
// elements (VShape), grid-stride over tiles as tmap, and DYNAMIC shared memory: the launch
// passes 4 * vshared_elems<MODE>(TD2 * TD3, inputs, staged inputs) bytes (the kernel does
// nothing when it gets fewer, so a host mistake shows as wrong results; more than 48 KiB needs
// the kernel's dynamic shared limit raised first). The host (cudart_kit/memory/strided.py:
// VTILE, VMODES, vshared_bytes, tv_ok) mirrors VShape, kVMode*, vshared_elems and vec_ok.
//
// What they change against tmap, which moves 4-byte elements with a 64-bit offset and a bounds
// test computed per element, and holds every tile between two barriers:
//  - 16-byte accesses. Direct inputs and the output move float4 runs along d3, staged inputs
//    float4 runs along d2. A warp's access is a patch of 4 rows x 8 vectors: 4 whole 128-byte
//    lines, a quarter of tmap's memory instructions for the same bytes.
//  - The shared tile of a staged input holds its 16-byte chunks XOR-swizzled: element (i3, i2)
//    at i3 * TD2 + (i2 ^ (i3 & 28)). The 16-byte stores of a staged patch and the 4-byte
//    transposed loads behind one output vector are both free of bank conflicts, and every
//    chunk stays 16-byte aligned (cp.async can write it).
//  - Index arithmetic once per launch: a thread's K vectors sit at the same 32-bit offsets from
//    the tile's base in every tile; a tile costs one decode and one 64-bit base per operand.
//    Interior tiles run with no bounds test at all; an edge tile (d2 or d3 not a multiple of
//    the tile) runs a guarded copy of the same code in which a vector across the edge moves
//    element by element, so every extent is exact.
//  - MODE 0 (TAG v):  tmap's order, vectorized: all inputs of a tile -> registers (staged ones
//    -> shared), barrier, transposed reads and stores, barrier.
//    MODE 1 (TAG p):  MODE 0 with the loads of the block's next tile issued right after the
//    barrier, before this tile's stores; two shared buffers, one barrier per tile.
//    MODE S >= 2 (TAG a2, a3): a cp.async (sm_80+) ring of S stages: every input of a tile,
//    direct ones too (into per-thread 16-byte slots), is copied global -> shared S - 1 tiles
//    ahead of the tile being stored; one barrier per tile, few registers.
// The vector path needs (vec_ok, checked on entry; the host mirrors it and sends other layouts
// to <op>_t): every pointer 16-byte aligned; staged inputs s2 == 1, direct inputs and the
// output s3 == 1; every other stride a multiple of 4 elements; |s2| < 2^30 / TD2 and |s3| <
// 2^30 / TD3 (32-bit offsets within a tile). Other layouts run a plain element loop (correct,
// slow). 4-byte element types only. tools/tune_transposed.py (-DKIT_TUNE) measures the
// candidate modes and shapes.

namespace {

template <typename T, typename S> struct VGeo {
  static_assert(sizeof(T) == 4, "the vectorized transposed twins move 4-byte elements");
  static constexpr int TD2 = S::TD2, TD3 = S::TD3, BY = S::BY, NT = 32 * BY;
  static constexpr int TILE = TD2 * TD3;     // elements of one operand's tile
  static constexpr int K = TILE / (4 * NT);  // 16-byte vectors per thread, operand and tile
  static constexpr int PC = TD2 / 32;        // patch columns of a staged tile (rows along d3)
  static constexpr int QC = TD3 / 32;        // patch columns of a direct tile (rows along d2)
  static_assert(TD2 % 32 == 0 && TD3 % 32 == 0 && K >= 1 && K * 4 * NT == TILE, "tiles of whole 4 x 32 patches");
  static_assert((BY % PC == 0 || PC % BY == 0) && (BY % QC == 0 || QC % BY == 0), "power-of-two shapes");
  // Warp w takes patches p = w + BY * k (k < K) of a grid with NC patch columns: column p % NC,
  // row p / NC; in elements, (column 32 * (p % NC), row 4 * (p / NC)) = warp part + k part.
  template <int NC> __host__ __device__ static constexpr int kcol(int k) {
    return BY % NC == 0 ? 0 : 32 * BY * (k % (NC / BY));
  }
  template <int NC> __host__ __device__ static constexpr int krow(int k) {
    return BY % NC == 0 ? 4 * (BY / NC) * k : 4 * (k / (NC / BY));
  }
  template <int NC> __device__ static int wcol(int w) { return BY % NC == 0 ? 32 * (w % NC) : 32 * w; }
  template <int NC> __device__ static int wrow(int w) { return BY % NC == 0 ? 4 * (w / NC) : 0; }
};

__host__ __device__ constexpr int popcount(unsigned m) { return m ? int(m & 1u) + popcount(m >> 1) : 0; }

// shared-memory elements a launch of the vector path needs: staged tiles (MODE 0: one buffer,
// MODE 1: two) or, MODE >= 2, MODE stages of every input's tile
template <int MODE> __host__ __device__ constexpr int vshared_elems(int tile, int nin, int nstaged) {
  return MODE == 0 ? nstaged * tile : MODE == 1 ? 2 * nstaged * tile : MODE * nin * tile;
}

__device__ __forceinline__ uint32_t dyn_smem_bytes() {
  uint32_t n;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(n));
  return n;
}

// 16 bytes global -> shared, asynchronously: ``bytes`` (0..16) are read, the rest zero-filled
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// 16-byte stores of four 4-byte values held in registers, spelled in PTX: when the values come
// from several paths (a full tile's vector load, an edge tile's element loads) the compiler
// splits store16's aggregate copy into four 4-byte stores.
template <typename T> __device__ __forceinline__ uint32_t bits32(T v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}
template <typename T> __device__ __forceinline__ void st_global16(T* p, const Vec<T>& v) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "r"(bits32(v.v[0])), "r"(bits32(v.v[1])),
               "r"(bits32(v.v[2])), "r"(bits32(v.v[3])) : "memory");
}
template <typename T> __device__ __forceinline__ void st_shared16(T* p, const Vec<T>& v) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(bits32(v.v[0])), "r"(bits32(v.v[1])),
               "r"(bits32(v.v[2])), "r"(bits32(v.v[3])) : "memory");
}

// the first n (0..4) elements of a vector (the others are zero; they are never stored)
template <typename T> __device__ __forceinline__ Vec<T> load_n(const T* p, int n) {
  Vec<T> v{};
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < n) v.v[e] = p[e];
  return v;
}
template <typename T> __device__ __forceinline__ void store_n(T* p, const Vec<T>& v, int n) {
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < n) p[e] = v.v[e];
}
__device__ __forceinline__ int clamp4(int n) { return n < 0 ? 0 : n > 4 ? 4 : n; }

// Whether the vector path can run this layout (see above); ``mask`` bit o: input o is staged.
template <int NIN, typename S, typename T>
__device__ __forceinline__ bool vec_ok(const T* const (&in)[NIN], const T* out, const Str (&s)[NIN + 1],
                                       unsigned mask) {
  uintptr_t a = reinterpret_cast<uintptr_t>(out);
  bool ok = true;
  const int64_t l2 = (int64_t(1) << 30) / S::TD2, l3 = (int64_t(1) << 30) / S::TD3;
#pragma unroll
  for (int o = 0; o <= NIN; ++o) {
    if (o < NIN) a |= reinterpret_cast<uintptr_t>(in[o]);
    const bool staged = o < NIN && ((mask >> o) & 1u);
    const Str& t = s[o];
    const int64_t unit = staged ? t.s2 : t.s3, other = staged ? t.s3 : t.s2;
    ok = ok && unit == 1 && ((other | t.s0 | t.s1) & 3) == 0 && t.s2 > -l2 && t.s2 < l2 && t.s3 > -l3 && t.s3 < l3;
  }
  return ok && (a & 15) == 0;
}

// Any layout, one element per thread and step, no shared memory: the vector path's fallback.
template <typename T, int NIN, typename F>
__device__ __forceinline__ void naive_map(const T* const (&in)[NIN], T* out, Dims d, const Str (&s)[NIN + 1], F f) {
  using Cv = Conv<T>;
  const int64_t n = d.d0 * d.d1 * d.d2 * d.d3;
  const int64_t nt = static_cast<int64_t>(blockDim.x) * blockDim.y;
  for (int64_t e = blockIdx.x * nt + threadIdx.y * blockDim.x + threadIdx.x; e < n; e += gridDim.x * nt) {
    int64_t r = e;
    const int64_t i3 = r % d.d3;
    r /= d.d3;
    const int64_t i2 = r % d.d2;
    r /= d.d2;
    const int64_t i1 = r % d.d1, i0 = r / d.d1;
    typename Cv::C x[NIN];
#pragma unroll
    for (int o = 0; o < NIN; ++o) x[o] = Cv::in(in[o][i0 * s[o].s0 + i1 * s[o].s1 + i2 * s[o].s2 + i3 * s[o].s3]);
    out[i0 * s[NIN].s0 + i1 * s[NIN].s1 + i2 * s[NIN].s2 + i3 * s[NIN].s3] = Cv::out(f(x));
  }
}

// n / d for 0 <= n < 2^31 by a multiply and a shift (d fixed for the launch): m = ceil(2^(31 + L)
// / d), L = ceil(log2 d), is exact there (m * d - 2^(31 + L) < d <= 2^L, so n's error term
// stays below 1 / d). Three of these decode a tile index in ~12 instructions instead of ~60.
struct FastDiv {
  uint32_t d, m, s;
  __device__ __forceinline__ void init(uint32_t d_) {
    d = d_;
    m = s = 0;
    if (d > 1) {
      const int L = 32 - __clz(d - 1);
      m = static_cast<uint32_t>(((uint64_t(1) << (31 + L)) + d - 1) / d);
      s = L - 1;
    }
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return d > 1 ? __umulhi(n, m) >> s : n; }
};

template <int NIN> struct TileRef {
  int64_t base[NIN + 1];  // element offset of the tile's corner in each operand (the output last)
  int r2, r3;             // the tile's extent along d2 / d3: TD2 / TD3 inside, less at an edge
};

template <typename T, int NIN, unsigned MASK, int MODE, typename S, typename F> struct VTmap {
  using G = VGeo<T, S>;
  using Cv = Conv<T>;
  using C = typename Cv::C;
  static constexpr int TD2 = G::TD2, TD3 = G::TD3, NT = G::NT, K = G::K, TILE = G::TILE;
  static constexpr int PC = G::PC, QC = G::QC;
  static constexpr int NST = popcount(MASK);  // staged inputs
  static_assert(NST >= 1 && MODE >= 0, "a transposed twin stages at least one input");
  __host__ __device__ static constexpr bool staged(int o) { return o < NIN && ((MASK >> o) & 1u); }
  __host__ __device__ static constexpr int slot(int o) { return popcount(MASK & ((1u << o) - 1u)); }

  const T* in[NIN];
  T* out;
  Dims d;
  Str s[NIN + 1];
  F f;
  T* sm;
  int64_t nt3, nt2, tiles;
  bool small, fast;       // tile counts below 2^32 (decode's 32-bit path) / 2^31 (FastDiv)
  FastDiv f3, f2, f1;     // by nt3, nt2, d1
  // This thread's vectors: local coordinates of vector 0 in the staged phase (a staged tile's
  // rows run along d3, its vectors along d2) and the direct phase (rows along d2, vectors along
  // d3); vector k adds G::kcol / G::krow. off0: offset of vector 0 from a tile's corner.
  int s2_, s3_, d2_, d3_;
  int off0[NIN + 1], u[NIN + 1];  // u: the operand's row stride (s3 staged, s2 otherwise)

  __device__ __forceinline__ VTmap(const T* const (&in_)[NIN], T* out_, Dims d_, const Str (&s_)[NIN + 1], F f_, T* sm_)
      : out(out_), d(d_), f(f_), sm(sm_) {
#pragma unroll
    for (int o = 0; o < NIN; ++o) in[o] = in_[o];
#pragma unroll
    for (int o = 0; o <= NIN; ++o) s[o] = s_[o];
    nt3 = (d.d3 + TD3 - 1) / TD3;
    nt2 = (d.d2 + TD2 - 1) / TD2;
    tiles = nt3 * nt2 * d.d1 * d.d0;
    small = tiles < (int64_t(1) << 32) && d.d1 < (int64_t(1) << 32);
    fast = tiles < (int64_t(1) << 31);
    if (fast) {
      f3.init(static_cast<uint32_t>(nt3));
      f2.init(static_cast<uint32_t>(nt2));
      f1.init(static_cast<uint32_t>(d.d1));
    }
    const int lane = threadIdx.x, w = threadIdx.y, lr = lane >> 3, lc = lane & 7;
    s2_ = G::template wcol<PC>(w) + 4 * lc;
    s3_ = G::template wrow<PC>(w) + lr;
    d2_ = G::template wrow<QC>(w) + lr;
    d3_ = G::template wcol<QC>(w) + 4 * lc;
#pragma unroll
    for (int o = 0; o <= NIN; ++o) {
      // vec_ok: a staged input has s2 == 1, the others s3 == 1
      u[o] = static_cast<int>(staged(o) ? s[o].s3 : s[o].s2);
      off0[o] = staged(o) ? s2_ + s3_ * u[o] : d2_ * u[o] + d3_;
    }
  }

  // local coordinates of vector k: staged phase (l2 along d2, l3 along d3) and direct phase
  __device__ __forceinline__ int sl2(int k) const { return s2_ + G::template kcol<PC>(k); }
  __device__ __forceinline__ int sl3(int k) const { return s3_ + G::template krow<PC>(k); }
  __device__ __forceinline__ int dl2(int k) const { return d2_ + G::template krow<QC>(k); }
  __device__ __forceinline__ int dl3(int k) const { return d3_ + G::template kcol<QC>(k); }
  __device__ __forceinline__ int off(int o, int k) const {
    return staged(o) ? off0[o] + G::template kcol<PC>(k) + G::template krow<PC>(k) * u[o]
                     : off0[o] + G::template krow<QC>(k) * u[o] + G::template kcol<QC>(k);
  }
  // swizzled shared index of (i3, i2) in a staged tile
  __device__ __forceinline__ static int swz(int i3, int i2) { return i3 * TD2 + (i2 ^ (i3 & 28)); }
  // elements (0..4) of vector k of operand o inside a tile of extent r2 x r3
  __device__ __forceinline__ int valid(int o, int k, int r2, int r3) const {
    return staged(o) ? (sl3(k) < r3 ? clamp4(r2 - sl2(k)) : 0) : (dl2(k) < r2 ? clamp4(r3 - dl3(k)) : 0);
  }

  __device__ __forceinline__ void at(int64_t t, TileRef<NIN>& a) const {
    int64_t t3, t2, i1, i0;
    if (fast) {
      const uint32_t n = static_cast<uint32_t>(t), q3 = f3.div(n), q2 = f2.div(q3), q1 = f1.div(q2);
      t3 = n - q3 * f3.d;
      t2 = q3 - q2 * f2.d;
      i1 = q2 - q1 * f1.d;
      i0 = q1;
    } else {
      decode(t, nt3, nt2, d.d1, small, t3, t2, i1, i0);
    }
    const int64_t b2 = t2 * TD2, b3 = t3 * TD3;
#pragma unroll
    for (int o = 0; o <= NIN; ++o) a.base[o] = i0 * s[o].s0 + i1 * s[o].s1 + b2 * s[o].s2 + b3 * s[o].s3;
    a.r2 = static_cast<int>(d.d2 - b2 < TD2 ? d.d2 - b2 : TD2);
    a.r3 = static_cast<int>(d.d3 - b3 < TD3 ? d.d3 - b3 : TD3);
  }
  __device__ __forceinline__ static bool full(const TileRef<NIN>& a) { return a.r2 == TD2 && a.r3 == TD3; }

  // MODE 0 / 1: a tile's inputs -> registers
  __device__ __forceinline__ void load(const TileRef<NIN>& a, Vec<T> (&v)[NIN][K]) const {
    if (full(a)) {
#pragma unroll
      for (int o = 0; o < NIN; ++o)
#pragma unroll
        for (int k = 0; k < K; ++k) v[o][k] = load16(in[o] + a.base[o] + off(o, k));
    } else {
#pragma unroll
      for (int o = 0; o < NIN; ++o)
#pragma unroll
        for (int k = 0; k < K; ++k) v[o][k] = load_n(in[o] + a.base[o] + off(o, k), valid(o, k, a.r2, a.r3));
    }
  }
  // MODE 0 / 1: staged inputs' registers -> their shared tiles in buffer ``buf``
  __device__ __forceinline__ void put(const Vec<T> (&v)[NIN][K], T* buf) const {
#pragma unroll
    for (int o = 0; o < NIN; ++o)
      if (staged(o))
#pragma unroll
        for (int k = 0; k < K; ++k) st_shared16(buf + slot(o) * TILE + swz(sl3(k), sl2(k)), v[o][k]);
  }
  // MODE >= 2: a tile's inputs -> stage ``st`` (input o's tile at st + o * TILE: swizzled when
  // staged, else vector k of thread tid in slot k * NT + tid)
  template <bool FULL> __device__ __forceinline__ void issue_(const TileRef<NIN>& a, T* st) const {
    const int tid = threadIdx.y * 32 + threadIdx.x;
#pragma unroll
    for (int o = 0; o < NIN; ++o)
#pragma unroll
      for (int k = 0; k < K; ++k) {
        T* dst = st + o * TILE + (staged(o) ? swz(sl3(k), sl2(k)) : (k * NT + tid) * 4);
        const T* src = in[o] + a.base[o];
        if (FULL) {
          cp_async16(dst, src + off(o, k), 16);
        } else {
          const int n = valid(o, k, a.r2, a.r3);
          cp_async16(dst, n ? src + off(o, k) : src, 4 * n);  // a tile's corner is always in bounds
        }
      }
  }
  __device__ __forceinline__ void issue(const TileRef<NIN>& a, T* st) const {
    if (full(a)) issue_<true>(a, st);
    else issue_<false>(a, st);
  }

  // A tile's output: staged inputs from their shared tiles at ``buf`` (MODE 0 / 1: buf + slot
  // * TILE; MODE >= 2: the stage, buf + o * TILE), direct ones from ``dv`` (MODE 0 / 1) or the
  // stage's slots (MODE >= 2).
  template <bool FULL>
  __device__ __forceinline__ void emit_(const TileRef<NIN>& a, const Vec<T> (&dv)[NIN][K], const T* buf) const {
    const int tid = threadIdx.y * 32 + threadIdx.x;
    T* const ob = out + a.base[NIN];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      Vec<T> dk[NIN];
#pragma unroll
      for (int o = 0; o < NIN; ++o)
        if (!staged(o)) dk[o] = MODE >= 2 ? load16(buf + o * TILE + (k * NT + tid) * 4) : dv[o][k];
      const int rd = swz(dl3(k), dl2(k));  // element j of the output vector: row dl3 + j
      Vec<T> r;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        C x[NIN];
#pragma unroll
        for (int o = 0; o < NIN; ++o)
          x[o] = Cv::in(staged(o) ? buf[(MODE >= 2 ? o : slot(o)) * TILE + rd + j * TD2] : dk[o].v[j]);
        r.v[j] = Cv::out(f(x));
      }
      if (FULL) st_global16(ob + off(NIN, k), r);
      else store_n(ob + off(NIN, k), r, valid(NIN, k, a.r2, a.r3));
    }
  }
  __device__ __forceinline__ void emit(const TileRef<NIN>& a, const Vec<T> (&dv)[NIN][K], const T* buf) const {
    if (full(a)) emit_<true>(a, dv, buf);
    else emit_<false>(a, dv, buf);
  }

  __device__ __forceinline__ void run() {
    const int64_t step = gridDim.x;
    int64_t t = blockIdx.x;
    if (t >= tiles) return;
    if constexpr (MODE == 0) {
      for (; t < tiles; t += step) {
        TileRef<NIN> a;
        Vec<T> v[NIN][K];
        at(t, a);
        load(a, v);
        put(v, sm);
        __syncthreads();
        emit(a, v, sm);
        __syncthreads();
      }
    } else if constexpr (MODE == 1) {
      TileRef<NIN> a;
      Vec<T> v[NIN][K];
      at(t, a);
      load(a, v);
      for (int b = 0;; b ^= 1) {
        T* const buf = sm + b * NST * TILE;
        put(v, buf);
        Vec<T> dv[NIN][K];  // this tile's direct inputs: v takes the next tile's loads
#pragma unroll
        for (int o = 0; o < NIN; ++o)
          if (!staged(o))
#pragma unroll
            for (int k = 0; k < K; ++k) dv[o][k] = v[o][k];
        // one barrier per tile: buffer b was last read two tiles ago, before the previous one
        __syncthreads();
        const int64_t tn = t + step;
        TileRef<NIN> an;
        if (tn < tiles) {
          at(tn, an);
          load(an, v);
        }
        emit(a, dv, buf);
        if (tn >= tiles) break;
        t = tn;
        a = an;
      }
    } else {
      constexpr int NS = MODE;
#pragma unroll
      for (int i = 0; i < NS - 1; ++i) {  // prologue: the block's first NS - 1 tiles
        const int64_t ti = t + i * step;
        if (ti < tiles) {
          TileRef<NIN> a;
          at(ti, a);
          issue(a, sm + i * NIN * TILE);
        }
        cp_async_commit();  // one group per tile, empty ones too: the wait count stays NS - 2
      }
      const Vec<T> none[NIN][K] = {};
      int cur = 0;
      for (; t < tiles; t += step) {
        cp_async_wait<NS - 2>();  // this thread's copies of tile t have landed ...
        __syncthreads();          // ... everyone's; and the stage refilled next was read a tile ago
        const int64_t tn = t + (NS - 1) * step;
        if (tn < tiles) {
          TileRef<NIN> an;
          at(tn, an);
          issue(an, sm + (cur == 0 ? NS - 1 : cur - 1) * NIN * TILE);
        }
        cp_async_commit();
        TileRef<NIN> a;
        at(t, a);
        emit(a, none, sm + cur * NIN * TILE);
        cur = cur == NS - 1 ? 0 : cur + 1;
      }
    }
  }
};

template <typename T, int NIN, unsigned MASK, int MODE, typename S, typename F>
__device__ __forceinline__ void vtmap_go(const T* const (&in)[NIN], T* out, Dims d, const Str (&s)[NIN + 1], F f,
                                         T* sm) {
  if (dyn_smem_bytes() < sizeof(T) * vshared_elems<MODE>(S::TD2 * S::TD3, NIN, popcount(MASK))) return;
  VTmap<T, NIN, MASK, MODE, S, F> m(in, out, d, s, f, sm);
  m.run();
}

template <typename T, typename S, int MODE, typename F>
__device__ __forceinline__ void vtmap2(const T* x, const T* y, T* out, int fx, int fy, Dims d, const Str (&s)[3], F f) {
  extern __shared__ __align__(16) unsigned char kit_dyn_smem[];
  T* const sm = reinterpret_cast<T*>(kit_dyn_smem);
  const T* in[2] = {x, y};
  const unsigned mask = fx && !fy ? 1u : !fx && fy ? 2u : 3u;
  if (!vec_ok<2, S>(in, out, s, mask)) naive_map<T, 2>(in, out, d, s, f);
  else if (mask == 1u) vtmap_go<T, 2, 1u, MODE, S>(in, out, d, s, f, sm);
  else if (mask == 2u) vtmap_go<T, 2, 2u, MODE, S>(in, out, d, s, f, sm);
  else vtmap_go<T, 2, 3u, MODE, S>(in, out, d, s, f, sm);
}

template <typename T, typename S, int MODE, typename F>
__device__ __forceinline__ void vtmap1(const T* x, T* out, Dims d, const Str (&s)[2], F f) {
  extern __shared__ __align__(16) unsigned char kit_dyn_smem[];
  T* const sm = reinterpret_cast<T*>(kit_dyn_smem);
  const T* in[1] = {x};
  if (!vec_ok<1, S>(in, out, s, 1u)) naive_map<T, 1>(in, out, d, s, f);
  else vtmap_go<T, 1, 1u, MODE, S>(in, out, d, s, f, sm);
}

}  // namespace

namespace {
// The shipped shape and modes, measured on an H200 (8192 x 4096 float32, tools/tune_transposed.py;
// ratios to the contiguous add / the D2D memcpy in the same run): MODE 1 on 64 x 64 tiles of
// 32 x 8 threads for the ops (x + y -> out.T 0.94x, x.T + y 0.95x; tmap 32 x 32 x 4: 0.72x,
// 0.68x); copy a 2-stage cp.async ring on the same tiles (0.93x; MODE 1 0.87x, tmap 0.80x).
using VShape = TShape<64, 64, 8>;
constexpr int kVModeOp = 1, kVModeCopy = 2;
constexpr int kVMinBlocksOp = 2, kVMinBlocksCopy = 3;  // __launch_bounds__' blocks per SM (a register cap)
}  // namespace

#define KIT_TV_BOUNDS(WHAT) __launch_bounds__(32 * VShape::BY, kVMinBlocks##WHAT)
#define KIT_TV_BINARY(NAME, OP, SUF, T)                                                            \
  extern "C" __global__ void KIT_TV_BOUNDS(Op) NAME##_##SUF##_tv(                                  \
      const T* x, const T* y, T* out, int tx_, int ty_, KIT_DIMS, KIT_STR(sx), KIT_STR(sy), KIT_STR(so)) { \
    const Str s[3] = {KIT_S(sx), KIT_S(sy), KIT_S(so)};                                            \
    vtmap2<T, VShape, kVModeOp>(x, y, out, tx_, ty_, KIT_D, s, Binary<OP>{OP{}});                  \
  }

#define KIT_VTYPED(SUF, T)                                                                         \
  KIT_TV_BINARY(add, AddOp, SUF, T)                                                                \
  KIT_TV_BINARY(sub, SubOp, SUF, T)                                                                \
  KIT_TV_BINARY(mul, MulOp, SUF, T)                                                                \
  extern "C" __global__ void KIT_TV_BOUNDS(Op) axpy_##SUF##_tv(                                    \
      Conv<T>::C a, const T* x, const T* y, T* out, int tx_, int ty_, KIT_DIMS, KIT_STR(sx), KIT_STR(sy), \
      KIT_STR(so)) {                                                                               \
    const Str s[3] = {KIT_S(sx), KIT_S(sy), KIT_S(so)};                                            \
    vtmap2<T, VShape, kVModeOp>(x, y, out, tx_, ty_, KIT_D, s, Binary<AxpyOp<Conv<T>::C>>{AxpyOp<Conv<T>::C>{a}}); \
  }                                                                                                \
  extern "C" __global__ void KIT_TV_BOUNDS(Op) scale_##SUF##_tv(                                   \
      Conv<T>::C a, const T* x, T* out, int tx_, KIT_DIMS, KIT_STR(sx), KIT_STR(so)) {             \
    const Str s[2] = {KIT_S(sx), KIT_S(so)};                                                       \
    (void)tx_;                                                                                     \
    vtmap1<T, VShape, kVModeOp>(x, out, KIT_D, s, Unary<ScaleOp<Conv<T>::C>>{ScaleOp<Conv<T>::C>{a}}); \
  }

#define KIT_VWIDTH(SUF, T)                                                                         \
  extern "C" __global__ void KIT_TV_BOUNDS(Copy) copy_##SUF##_tv(const T* src, T* dst, int ts_, KIT_DIMS, \
                                                                 KIT_STR(ss), KIT_STR(ds)) {       \
    const Str s[2] = {KIT_S(ss), KIT_S(ds)};                                                       \
    (void)ts_;                                                                                     \
    vtmap1<T, VShape, kVModeCopy>(src, dst, KIT_D, s, Unary<Ident>{Ident{}});                      \
  }

KIT_VTYPED(f32, float)
KIT_VWIDTH(b32, uint32_t)

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



// The candidates as measured: <op>_t<TAG>_<TD2>_<TD3>_<BY>, TAG v / p / a2 / a3 for MODE 0 / 1 /
// 2 / 3 (see "Vectorized transposed twins" above); MINB is __launch_bounds__' blocks per SM (a
// register cap: 65536 / (32 * BY * MINB) per thread)
#define KIT_TUNE_VEC(TAG, MODE, TD2, TD3, BY, MINB)                                                \
  extern "C" __global__ void __launch_bounds__(32 * BY, MINB) add_f32_t##TAG##_##TD2##_##TD3##_##BY( \
      const float* x, const float* y, float* out, int tx_, int ty_, KIT_DIMS, KIT_STR(sx), KIT_STR(sy), \
      KIT_STR(so)) {                                                                               \
    const Str s[3] = {KIT_S(sx), KIT_S(sy), KIT_S(so)};                                            \
    vtmap2<float, TShape<TD2, TD3, BY>, MODE>(x, y, out, tx_, ty_, KIT_D, s, Binary<AddOp>{AddOp{}}); \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(32 * BY, MINB) copy_b32_t##TAG##_##TD2##_##TD3##_##BY( \
      const uint32_t* src, uint32_t* dst, int ts_, KIT_DIMS, KIT_STR(ss), KIT_STR(ds)) {           \
    const Str s[2] = {KIT_S(ss), KIT_S(ds)};                                                       \
    (void)ts_;                                                                                     \
    vtmap1<uint32_t, TShape<TD2, TD3, BY>, MODE>(src, dst, KIT_D, s, Unary<Ident>{Ident{}});        \
  }

// MODE 0: vectorized tmap order
KIT_TUNE_VEC(v, 0, 32, 32, 2, 12)
KIT_TUNE_VEC(v, 0, 32, 32, 4, 8)
KIT_TUNE_VEC(v, 0, 32, 32, 8, 4)
KIT_TUNE_VEC(v, 0, 64, 64, 8, 3)
KIT_TUNE_VEC(v, 0, 32, 64, 4, 5)
KIT_TUNE_VEC(v, 0, 64, 32, 4, 6)
KIT_TUNE_VEC(v, 0, 32, 128, 8, 2)
KIT_TUNE_VEC(v, 0, 128, 32, 8, 3)
// MODE 1: next tile's loads before this tile's stores, double-buffered shared tiles
KIT_TUNE_VEC(p, 1, 32, 32, 4, 8)
KIT_TUNE_VEC(p, 1, 32, 64, 8, 3)
KIT_TUNE_VEC(p, 1, 64, 64, 8, 2)
// MODE 2 / 3: cp.async rings
KIT_TUNE_VEC(a2, 2, 32, 32, 4, 8)
KIT_TUNE_VEC(a3, 3, 32, 32, 4, 8)
KIT_TUNE_VEC(a3, 3, 32, 32, 2, 16)
KIT_TUNE_VEC(a3, 3, 64, 32, 4, 6)
KIT_TUNE_VEC(a3, 3, 32, 64, 4, 6)
KIT_TUNE_VEC(a2, 2, 64, 64, 8, 3)
#endif
