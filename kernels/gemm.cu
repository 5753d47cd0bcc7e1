// Matrix multiply of cudart_kit: C = alpha * op(A) @ op(B) + beta * C, all row-major.
//
// op(A) is M x K: A[m * lda + k], or with ta != 0 A is stored K x M and op(A)(m, k) = A[k * lda + m].
// op(B) is K x N: B[k * ldb + n], or with tb != 0 B is stored N x K and op(B)(k, n) = B[n * ldb + k].
// beta == 0 never reads C (it may hold NaN). Every kernel handles any M, N, K >= 1.
// Every gemm kernel ends with the parameters KIT_EPI_PARAMS (epilogue.cuh): a bias broadcast
// over C and an activation, fused into the store: C = act(alpha * op(A) @ op(B) + beta * C + bias).
//
// Layout vocabulary (the same in gemm_sm90.cu and cudart_kit/ops/_gemm_geometry.py): a kernel
// name's two letters are the stored layouts of A then B, row-major terms.
//   n  stored as op() reads it: A stored M x K (K contiguous), B stored K x N (N contiguous)
//   t  stored transposed:       A stored K x M (M contiguous), B stored N x K (K contiguous)
// So "nn" is plain row-major A @ B, "nt" is A @ B^T with B stored N x K, "tn" A^T @ B, "tt" both.
//
//   gemm_naive_f32   one thread per output (the GPU reference)
//   gemm_tiled_f32   16x16 shared-memory tiles, one output per thread (the textbook kernel)
//   gemm_simt128_f32 FP32 SIMT, 128x128x16 block tile, 8x8 outputs per thread, double-buffered
//                    shared memory fed through registers, two CTAs per SM (layout nn only)
//   gemm_simt256_{nn,nt,tn,tt}_f32
//                    FP32 SIMT, 128x256x16 block tile, 16x8 outputs per thread, 3-stage cp.async
//                    ring, one CTA per SM, every stored layout: the fast one where the grid fills the GPU
//   gemm_tf32        tensor cores (WMMA m16n16k8, TF32 inputs, FP32 accumulation), fp32 in/out
//   gemm_bf16/_fp16  tensor cores (WMMA m16n16k16, FP32 accumulation), 16-bit in/out
//   gemm_{tf32,bf16,fp16}_cp_{nn,nt,tn,tt}
//                    the same WMMA tiles fed by a cp.async pipeline, one kernel per stored layout
//
// Geometry: each kernel family states its tiles, threads and shared-memory bytes once, in a
// `<geometry NAME>` block (a struct in namespace geo) next to its kernels, with static_asserts
// tying the numbers to the code. cudart_kit/ops/_gemm_geometry.py mirrors every block field by
// field; tests/test_gemm_cpu.py parses the blocks and fails when the two sides differ. The
// blocks hold integer literals only (products of literals at most), so no C parser is needed.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>

#include <type_traits>

#include "epilogue.cuh"

namespace geo {
// <geometry limits>
struct limits {
  // opt-in dynamic shared memory per block on the smallest GPUs these portable kernels target
  // (sm_86 / sm_89: 99 KiB; sm_80 has 163 KiB), and the static limit of every GPU
  static constexpr int PORTABLE_SMEM_OPTIN = 99 * 1024;
  static constexpr int STATIC_SMEM = 48 * 1024;
};
// </geometry>
}  // namespace geo

namespace {

__device__ __forceinline__ float load_a(const float* A, int lda, int ta, int m, int k) {
  return ta ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
}
__device__ __forceinline__ float load_b(const float* B, int ldb, int tb, int k, int n) {
  return tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
}
__device__ __forceinline__ void store_c(float* C, int ldc, int m, int n, float alpha, float acc, float beta,
                                        const kit_epi::Epi<float>& e) {
  float* p = C + (size_t)m * ldc + n;
  const float v = beta == 0.0f ? alpha * acc : fmaf(alpha, acc, beta * *p);
  *p = e.plain() ? v : e(v, m, n);
}
// four consecutive columns n..n+3 of row m: one 16-byte access where C allows it (vec_c), else
// element by element up to column N - 1; the epilogue once per element, between the two
__device__ __forceinline__ void store_c4(float* C, int ldc, int m, int n, int N, float alpha, const float* acc,
                                         float beta, bool vec_c, const kit_epi::Epi<float>& e) {
  float* p = C + (size_t)m * ldc + n;
  const bool vec = vec_c && n + 3 < N;
  float r[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) r[j] = alpha * acc[j];
  if (beta != 0.0f) {
    if (vec) {
      const float4 c = *reinterpret_cast<const float4*>(p);
      r[0] = fmaf(beta, c.x, r[0]); r[1] = fmaf(beta, c.y, r[1]); r[2] = fmaf(beta, c.z, r[2]); r[3] = fmaf(beta, c.w, r[3]);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (n + j < N) r[j] = fmaf(beta, p[j], r[j]);
    }
  }
  if (!e.plain()) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (n + j < N) r[j] = e(r[j], m, n + j);
  }
  if (vec) {
    *reinterpret_cast<float4*>(p) = make_float4(r[0], r[1], r[2], r[3]);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (n + j < N) p[j] = r[j];
  }
}

}  // namespace

namespace geo {
// <geometry naive>
struct naive {  // one thread per output: block THREADS_X x THREADS_Y, grid (ceil(N / X), ceil(M / Y))
  static constexpr int THREADS_X = 16;
  static constexpr int THREADS_Y = 16;
};
// </geometry>
}  // namespace geo

extern "C" __global__ void __launch_bounds__(geo::naive::THREADS_X * geo::naive::THREADS_Y) gemm_naive_f32(int M, int N, int K, float alpha, const float* A, int lda, int ta,
                                          const float* B, int ldb, int tb, float beta, float* C, int ldc, KIT_EPI_PARAMS(float)) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  const int m = blockIdx.y * blockDim.y + threadIdx.y;
  if (m >= M || n >= N) return;
  float acc = 0.0f;
  for (int k = 0; k < K; ++k) acc = fmaf(load_a(A, lda, ta, m, k), load_b(B, ldb, tb, k, n), acc);
  store_c(C, ldc, m, n, alpha, acc, beta, KIT_EPI(float));
}

namespace geo {
// <geometry tiled>
struct tiled {  // TILE x TILE outputs per block, one per thread; grid (ceil(N / TILE), ceil(M / TILE))
  static constexpr int TILE = 16;
  static constexpr int THREADS_X = 16;
  static constexpr int THREADS_Y = 16;
  static constexpr int STATIC_SMEM = 2176;  // As + Bs, TILE x (TILE + 1) floats each
};
// </geometry>
static_assert(tiled::THREADS_X == tiled::TILE && tiled::THREADS_Y == tiled::TILE, "one thread per tile element");
static_assert(tiled::STATIC_SMEM == 2 * tiled::TILE * (tiled::TILE + 1) * 4, "tiled: shared-memory formula");
static_assert(tiled::STATIC_SMEM <= limits::STATIC_SMEM, "tiled: static shared memory limit");
}  // namespace geo

extern "C" __global__ void __launch_bounds__(geo::tiled::THREADS_X * geo::tiled::THREADS_Y)
gemm_tiled_f32(int M, int N, int K, float alpha, const float* A, int lda, int ta, const float* B, int ldb, int tb,
               float beta, float* C, int ldc, KIT_EPI_PARAMS(float)) {
  constexpr int TILE = geo::tiled::TILE;
  __shared__ float As[TILE][TILE + 1];  // +1: no bank conflicts on the column reads
  __shared__ float Bs[TILE][TILE + 1];
  static_assert(sizeof(As) + sizeof(Bs) == geo::tiled::STATIC_SMEM, "tiled: the table's shared-memory bytes");
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int m = blockIdx.y * TILE + ty, n = blockIdx.x * TILE + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    As[ty][tx] = (m < M && k0 + tx < K) ? load_a(A, lda, ta, m, k0 + tx) : 0.0f;
    Bs[ty][tx] = (k0 + ty < K && n < N) ? load_b(B, ldb, tb, k0 + ty, n) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; ++k) acc = fmaf(As[ty][k], Bs[k][tx], acc);
    __syncthreads();
  }
  if (m < M && n < N) store_c(C, ldc, m, n, alpha, acc, beta, KIT_EPI(float));
}

// ---- simt128: 256 threads, 128x128 block tile, BK = 16 ----------------------------------
// Thread (ty, tx) of a 16x16 grid owns the 8x8 block of C made of rows {4ty..4ty+3, 64+4ty..}
// and the same pattern of columns, so its shared-memory reads are two float4 per operand per k.
// (Warp-tiled layouts with fewer shared-memory wavefronts measured no faster: tools/matmul_notes.md
// v10.) Each thread stages BK/2 elements of A and of B per tile through registers (16-byte loads
// where aligned), so A lands transposed in shared memory. 128 registers: two CTAs per SM.
// vec_ok bit 0: A, B and their pitches are 16-byte aligned; bit 1: the same for C.
namespace geo {
// <geometry simt128>
struct simt128 {  // grid (ceil(N / BN), ceil(M / BM)), THREADS threads, static shared memory only
  static constexpr int BM = 128;
  static constexpr int BN = 128;
  static constexpr int BK = 16;
  static constexpr int STAGES = 2;        // double-buffered shared memory
  static constexpr int THREADS = 256;     // a 16 x 16 grid of threads
  static constexpr int THREAD_M = 8;      // outputs per thread: THREAD_M x THREAD_N
  static constexpr int THREAD_N = 8;
  static constexpr int MIN_BLOCKS = 2;    // __launch_bounds__: 128 registers, two CTAs per SM
  static constexpr int STATIC_SMEM = 32768;  // As + Bs: STAGES x BK x (BM + BN) floats
};
// </geometry>
static_assert(simt128::THREADS * simt128::THREAD_M * simt128::THREAD_N == simt128::BM * simt128::BN,
              "simt128: the threads' outputs tile the block");
static_assert(simt128::THREAD_M == 8 && simt128::THREAD_N == 8 && simt128::BM == 128 && simt128::BN == 128,
              "simt128: two 4x4 quadrants 64 apart per thread (16 x 16 threads)");
static_assert(simt128::THREADS == 2 * simt128::BM, "simt128: two threads stage each row of the A tile");
static_assert(simt128::THREADS / (simt128::BN / (simt128::BK / 2)) == simt128::BK,
              "simt128: the threads staging B cover BK rows");
static_assert(simt128::STATIC_SMEM == simt128::STAGES * simt128::BK * (simt128::BM + simt128::BN) * 4,
              "simt128: shared-memory formula");
static_assert(simt128::STATIC_SMEM <= limits::STATIC_SMEM, "simt128: static shared memory limit");
}  // namespace geo

namespace {
__device__ __forceinline__ void simt_gemm(int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                                          int ldb, float beta, float* C, int ldc, int vec_ok,
                                          const kit_epi::Epi<float> e) {
  using G = geo::simt128;
  constexpr int BK = G::BK, SBM = G::BM, SBN = G::BN;
  constexpr int PER = BK / 2;                 // elements of A (and of B) each thread stages
  constexpr int BT = SBN / PER;               // threads per row of the B tile
  constexpr int DM = 64, DN = 64;  // distance between a thread's two row (column) groups
  __shared__ __align__(16) float As[G::STAGES][BK][SBM];  // A tile stored transposed: As[k][m]
  __shared__ __align__(16) float Bs[G::STAGES][BK][SBN];
  static_assert(sizeof(As) + sizeof(Bs) == G::STATIC_SMEM, "simt128: the table's shared-memory bytes");
  static_assert(G::STAGES == 2, "simt128: buffers alternate by tile parity");
  const int tid = threadIdx.x;
  const int r0 = (tid >> 4) * 4, c0 = (tid & 15) * 4;
  const int m0 = blockIdx.y * SBM, n0 = blockIdx.x * SBN;
  const int a_row = m0 + (tid >> 1), a_k = (tid & 1) * PER;
  const int b_k = tid / BT, b_c = (tid % BT) * PER, b_col = n0 + b_c;
  const bool vec_ab = vec_ok & 1;
  float ra[PER], rb[PER];

  auto load = [&](int k0) {
    const int ka = k0 + a_k;
    if (vec_ab && a_row < M && ka + PER - 1 < K) {
#pragma unroll
      for (int v = 0; v < PER / 4; ++v) {
        const float4 x = *reinterpret_cast<const float4*>(A + (size_t)a_row * lda + ka + 4 * v);
        ra[4 * v] = x.x; ra[4 * v + 1] = x.y; ra[4 * v + 2] = x.z; ra[4 * v + 3] = x.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < PER; ++i) ra[i] = (a_row < M && ka + i < K) ? A[(size_t)a_row * lda + ka + i] : 0.0f;
    }
    const int kb = k0 + b_k;
    if (vec_ab && kb < K && b_col + PER - 1 < N) {
#pragma unroll
      for (int v = 0; v < PER / 4; ++v) {
        const float4 x = *reinterpret_cast<const float4*>(B + (size_t)kb * ldb + b_col + 4 * v);
        rb[4 * v] = x.x; rb[4 * v + 1] = x.y; rb[4 * v + 2] = x.z; rb[4 * v + 3] = x.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < PER; ++i) rb[i] = (kb < K && b_col + i < N) ? B[(size_t)kb * ldb + b_col + i] : 0.0f;
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int i = 0; i < PER; ++i) As[buf][a_k + i][tid >> 1] = ra[i];
#pragma unroll
    for (int v = 0; v < PER / 4; ++v)
      *reinterpret_cast<float4*>(&Bs[buf][b_k][b_c + 4 * v]) =
          make_float4(rb[4 * v], rb[4 * v + 1], rb[4 * v + 2], rb[4 * v + 3]);
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  load(0);
  store(0);
  __syncthreads();
  const int ntiles = (K + BK - 1) / BK;
  for (int t = 0; t < ntiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < ntiles) load((t + 1) * BK);  // global loads in flight while we compute
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][r0]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][r0 + DM]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][c0]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][c0 + DN]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    // the other buffer was last read in iteration t-1, which ended with a barrier
    if (t + 1 < ntiles) store(cur ^ 1);
    __syncthreads();
  }
  const bool vec_c = (vec_ok & 2) != 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + r0 + (i < 4 ? i : DM + i - 4);
    if (m >= M) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) store_c4(C, ldc, m, n0 + c0 + h * DN, N, alpha, &acc[i][4 * h], beta, vec_c, e);
  }
}
}  // namespace

extern "C" __global__ void __launch_bounds__(geo::simt128::THREADS, geo::simt128::MIN_BLOCKS)
gemm_simt128_f32(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                 float* C, int ldc, int vec_ok, KIT_EPI_PARAMS(float)) {
  simt_gemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, vec_ok, KIT_EPI(float));
}

// ---- simt256: 128x256 block tile, 16x8 outputs per thread, cp.async pipeline --------------
// The shape of cuBLAS's own SGEMM on sm_80/sm_90 (Nsight Compute on the H200 shows its kernel
// "tilesize256x128x8_stage3_warpsize4x2x1_ffma": 256 threads, 254 registers, one CTA per SM, 3
// stages of 4-byte cp.async), written from scratch here. 256 threads = 8 warps as 2 (M) x 4 (N)
// warp tiles of 64x64; lane (lm, ln) = (lane / 8, lane % 8) owns rows {wm*64 + 4lm + 16g + i}
// (g, i = 0..3) and columns {wn*64 + 4ln + 32h + j} (h = 0..1, j = 0..3): per k-step 4 LDS.128 of
// A and 2 of B feed 128 FFMA, each LDS.128 one shared-memory wavefront per half-warp.
// Global -> shared by cp.async only, STAGES tiles in flight, no register staging; shared memory
// holds As[k][m] (pitch 132 floats) and Bs[k][n]. How each operand gets there depends on its
// stored layout (TransLoader / DirectLoader below). The first K tile holds the K residue and is
// loaded with bounds checks in the prologue; every tile of the main loop is a full one.
// Fragments are double-buffered in registers: the loads of k + 1 are issued before the FMAs of k,
// and the FMAs run in strips of two B columns, the order that lets ptxas feed both multiplicands
// from the operand reuse caches (8 % faster than row by row: tools/matmul_notes.md v13).
namespace geo {
// <geometry simt256>
struct simt256 {  // grid (ceil(N / BN), ceil(M / BM)), THREADS threads, SMEM_<layout> dynamic bytes
  static constexpr int BM = 128;
  static constexpr int BN = 256;
  static constexpr int BK = 16;
  static constexpr int STAGES = 3;        // cp.async ring
  static constexpr int THREADS = 256;
  static constexpr int WARPS_M = 2;       // 8 warps as 2 (M) x 4 (N) warp tiles of 64 x 64
  static constexpr int WARPS_N = 4;
  static constexpr int THREAD_M = 16;     // outputs per thread: THREAD_M x THREAD_N
  static constexpr int THREAD_N = 8;
  static constexpr int A_PITCH = 132;     // floats per k-row of the A tile (As[k][m])
  static constexpr int B_PITCH_N = 256;   // of the B tile, B stored K x N (16-byte copies)
  static constexpr int B_PITCH_T = 260;   // of the B tile, B stored N x K (transposing copies)
  static constexpr int MIN_BLOCKS = 1;    // __launch_bounds__: up to 255 registers
  static constexpr int SMEM_NN = 74496;   // STAGES x BK x (A_PITCH + B pitch) floats
  static constexpr int SMEM_NT = 75264;
  static constexpr int SMEM_TN = 74496;
  static constexpr int SMEM_TT = 75264;
  __host__ __device__ static constexpr int smem(bool ta, bool tb) { return ta ? (tb ? SMEM_TT : SMEM_TN) : (tb ? SMEM_NT : SMEM_NN); }
};
// </geometry>
static_assert(simt256::WARPS_M * simt256::WARPS_N * 32 == simt256::THREADS, "simt256: warps fill the block");
static_assert(simt256::BM == simt256::WARPS_M * 4 * simt256::THREAD_M, "simt256: 4 lanes of 16 rows per warp tile");
static_assert(simt256::BN == simt256::WARPS_N * 8 * simt256::THREAD_N, "simt256: 8 lanes of 8 columns per warp tile");
static_assert(simt256::A_PITCH == simt256::BM + 4 && simt256::B_PITCH_N == simt256::BN &&
              simt256::B_PITCH_T == simt256::BN + 4, "simt256: tile pitches");
static_assert(simt256::SMEM_NN == simt256::STAGES * simt256::BK * (simt256::A_PITCH + simt256::B_PITCH_N) * 4 &&
              simt256::SMEM_TN == simt256::SMEM_NN &&
              simt256::SMEM_NT == simt256::STAGES * simt256::BK * (simt256::A_PITCH + simt256::B_PITCH_T) * 4 &&
              simt256::SMEM_TT == simt256::SMEM_NT, "simt256: shared-memory formula");
static_assert(simt256::SMEM_NT <= limits::PORTABLE_SMEM_OPTIN && simt256::SMEM_NN <= limits::PORTABLE_SMEM_OPTIN,
              "simt256: fits every target GPU's opt-in shared memory");
}  // namespace geo

namespace {
constexpr int XBM = geo::simt256::BM, XBN = geo::simt256::BN, XLDA = geo::simt256::A_PITCH;  // tile rows, columns; A pitch

__device__ __forceinline__ void cp_async4(float* dst, const float* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(src) : "memory");
}
// the same on shared-memory addresses; cp_async4z copies `size` bytes (4, or 0 = store a zero)
__device__ __forceinline__ void cp_async4z(uint32_t dst, const float* src, int size) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(size) : "memory");
}
__device__ __forceinline__ void cp_async16s(uint32_t dst, const float* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}

// One operand's BK x C tile (k rows; C = 128 columns of M for A, 256 of N for B) in shared
// memory with a pitch of P floats. Trans: the matrix stores element (k, c) at G[c * ld + k]
// (rows along k: row-major A, B stored N x K) and 4-byte copies land it transposed, 8 lanes per
// 32-byte row segment; Direct: (k, c) at G[k * ld + c] (row-major B, A stored K x M), 16-byte
// copies of 4 consecutive columns where the operand is 16-byte aligned (vec), else 4-byte copies.
// full(): a whole K tile from per-thread pointers set up once and bumped by BK; a column past the
// matrix copies 0 bytes from its last column. first(): the first tile, which holds the K residue
// (K - (ntiles - 1) * BK rows, the rest zero), element by element with bounds checks, from the
// prologue only, so the main loop carries no bounds-checked path.
template <int BK, int C, int P>
struct TransLoader {
  const float* p[C / 32];
  int sz[C / 32];
  uint32_t dst;
  __device__ __forceinline__ void init(const float* G, int ld, int c0, int climit, int k1, int tid) {
#pragma unroll
    for (int q = 0; q < C / 32; ++q) {
      const int c = c0 + (tid >> 3) + 32 * q;
      p[q] = G + (size_t)min(c, climit - 1) * ld + k1 + (tid & 7);
      sz[q] = c < climit ? 4 : 0;
    }
    dst = ((tid & 7) * P + (tid >> 3)) * 4;
  }
  __device__ __forceinline__ void full(uint32_t so, int, int, int, int, bool) {
#pragma unroll
    for (int pp = 0; pp < BK / 8; ++pp)
#pragma unroll
      for (int q = 0; q < C / 32; ++q) cp_async4z(so + dst + (pp * 8 * P + q * 32) * 4, p[q] + 8 * pp, sz[q]);
#pragma unroll
    for (int q = 0; q < C / 32; ++q) p[q] += BK;
  }
  __device__ __forceinline__ static void first(float* s, const float* G, int ld, int c0, int climit, int kr, int tid) {
#pragma unroll
    for (int i = 0; i < BK * C / 256; ++i) {
      const int e = tid + 256 * i, k = 8 * (e / (8 * C)) + (e & 7), c = (e >> 3) % C;
      float* d = s + k * P + c;
      if (c0 + c < climit && k < kr) cp_async4(d, G + (size_t)(c0 + c) * ld + k);
      else *d = 0.0f;
    }
  }
};

template <int BK, int C, int P>
struct DirectLoader {
  static constexpr int CH = C / 4, RP = 256 / CH;  // 16-byte chunks per row, rows per pass
  const float* p;  // row k1 + tid / CH, column c0 + 4 (tid % CH) clamped to the matrix
  __device__ __forceinline__ void init(const float* G, int ld, int c0, int climit, int k1, int tid) {
    p = G + (size_t)(k1 + tid / CH) * ld + min(c0 + (tid % CH) * 4, climit - 1);
  }
  __device__ __forceinline__ void full(uint32_t so, int ld, int c0, int climit, int tid, bool vec) {
    const int gc = c0 + (tid % CH) * 4;
    const uint32_t dst = so + ((tid / CH) * P + (tid % CH) * 4) * 4;
    if (vec && gc + 3 < climit) {
#pragma unroll
      for (int i = 0; i < BK / RP; ++i) cp_async16s(dst + i * (RP * P * 4), p + (size_t)i * RP * ld);
    } else {  // unaligned operand or the matrix edge: one 4-byte copy per column, 0 bytes outside
#pragma unroll
      for (int i = 0; i < BK / RP; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const bool in = gc + j < climit;
          cp_async4z(dst + (i * RP * P + j) * 4, p + (size_t)i * RP * ld + (in ? j : 0), in ? 4 : 0);
        }
    }
    p += (size_t)BK * ld;
  }
  __device__ __forceinline__ static void first(float* s, const float* G, int ld, int c0, int climit, int kr, int tid) {
#pragma unroll
    for (int i = 0; i < BK * C / 256; ++i) {
      const int e = tid + 256 * i, k = e / C, col = e % C;
      float* d = s + k * P + col;
      if (k < kr && c0 + col < climit) cp_async4(d, G + (size_t)k * ld + c0 + col);
      else *d = 0.0f;
    }
  }
};

// TA: A stored K x M (op(A) = stored^T); TB: B stored N x K. The B tile's pitch is 260 floats when
// it arrives through transposing copies (conflict-free stores), 256 otherwise.
template <int BK, int STAGES, bool TA, bool TB>
__device__ __forceinline__ void simt256_gemm(int M, int N, int K, float alpha, const float* __restrict__ A, int lda,
                                           const float* __restrict__ B, int ldb, float beta, float* C, int ldc,
                                           int vec_ok, const kit_epi::Epi<float> e) {
  using G = geo::simt256;
  static_assert(BK == G::BK && STAGES == G::STAGES, "simt256: instantiated with the table's BK and STAGES");
  constexpr int PB = TB ? G::B_PITCH_T : G::B_PITCH_N;
  constexpr int A_ELEMS = BK * XLDA, B_ELEMS = BK * PB, STAGE = A_ELEMS + B_ELEMS;
  static_assert(STAGES * STAGE * sizeof(float) == G::smem(TA, TB), "simt256: the table's shared-memory bytes");
  static_assert(G::THREADS == 256, "simt256: the loaders spread each tile over 256 threads");
  using LA = typename std::conditional<TA, DirectLoader<BK, XBM, XLDA>, TransLoader<BK, XBM, XLDA>>::type;
  using LB = typename std::conditional<TB, TransLoader<BK, XBN, PB>, DirectLoader<BK, XBN, PB>>::type;
  extern __shared__ __align__(16) float smem_x[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ar = (warp >> 2) * 64 + (lane >> 3) * 4;  // first of the thread's A rows in the tile
  const int bc = (warp & 3) * 64 + (lane & 7) * 4;    // first of its B columns
  const int m0 = blockIdx.y * XBM, n0 = blockIdx.x * XBN;
  const bool vec = (vec_ok & 1) != 0;  // 16-byte copies allowed for A and B
  const int ntiles = (K + BK - 1) / BK;
  const int kr = K - (ntiles - 1) * BK;  // k-steps in tile 0; tile t >= 1 covers kr + (t - 1) * BK ..

  LA la;
  LB lb;
  la.init(A, lda, m0, M, kr, tid);
  lb.init(B, ldb, n0, N, kr, tid);
  const uint32_t s_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_x));
  auto load_full = [&](int slot) {  // the next full tile (tiles are loaded in order)
    const uint32_t so = s_base + slot * (STAGE * 4);
    la.full(so, lda, m0, M, tid, vec);
    lb.full(so + A_ELEMS * 4, ldb, n0, N, tid, vec);
  };

  float acc[16][8];
#pragma unroll
  for (int i = 0; i < 16; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  float fa[2][16], fb[2][8];
  auto frag = [&](int buf, const float* as, const float* bs) {  // as, bs: row k of the A / B tile
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const float4 v = *reinterpret_cast<const float4*>(as + ar + 16 * g);
      fa[buf][4 * g] = v.x; fa[buf][4 * g + 1] = v.y; fa[buf][4 * g + 2] = v.z; fa[buf][4 * g + 3] = v.w;
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float4 v = *reinterpret_cast<const float4*>(bs + bc + 32 * h);
      fb[buf][4 * h] = v.x; fb[buf][4 * h + 1] = v.y; fb[buf][4 * h + 2] = v.z; fb[buf][4 * h + 3] = v.w;
    }
  };

  LA::first(smem_x, A, lda, m0, M, kr, tid);
  LB::first(smem_x + A_ELEMS, B, ldb, n0, N, kr, tid);
  asm volatile("cp.async.commit_group;" ::: "memory");
#pragma unroll
  for (int st = 1; st < STAGES - 1; ++st) {
    if (st < ntiles) load_full(st);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2) : "memory");
  __syncthreads();
  frag(0, smem_x, smem_x + A_ELEMS);
  int rd = 0, wr = STAGES - 1;  // slot read in this tile, slot written by this tile's copies
  for (int t = 0; t < ntiles; ++t) {
    const float* as = smem_x + rd * STAGE;
    const float* bs = as + A_ELEMS;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      if (k == BK - 1) {
        // tile t + 1 complete for everyone; every read of slot rd - 1 is behind us
        asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2) : "memory");
        __syncthreads();
        rd = rd + 1 == STAGES ? 0 : rd + 1;
        if (t + 1 < ntiles) frag((k + 1) & 1, smem_x + rd * STAGE, smem_x + rd * STAGE + A_ELEMS);
      } else {
        frag((k + 1) & 1, as + (k + 1) * XLDA, bs + (k + 1) * PB);
      }
      if (k == 0) {  // slot wr was last read in tile t - 1, which ended with the barrier above
        if (t + STAGES - 1 < ntiles) load_full(wr);
        asm volatile("cp.async.commit_group;" ::: "memory");
        wr = wr + 1 == STAGES ? 0 : wr + 1;
      }
#pragma unroll
      for (int jp = 0; jp < 8; jp += 2)
#pragma unroll
        for (int i = 0; i < 16; ++i)
#pragma unroll
          for (int j = jp; j < jp + 2; ++j) acc[i][j] = fmaf(fa[k & 1][i], fb[k & 1][j], acc[i][j]);
    }
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");

  const bool vec_c = (vec_ok & 2) != 0;
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const int m = m0 + ar + 16 * (i >> 2) + (i & 3);
    if (m >= M) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) store_c4(C, ldc, m, n0 + bc + 32 * h, N, alpha, &acc[i][4 * h], beta, vec_c, e);
  }
}
}  // namespace

// gemm_simt256_<layout>_f32 (layout: nn, nt, tn, tt, as at the top of this file); dynamic shared
// memory geo::simt256::SMEM_<layout>.
#define SIMT256_KERNEL(NAME, TA, TB)                                                                           \
  extern "C" __global__ void __launch_bounds__(geo::simt256::THREADS, geo::simt256::MIN_BLOCKS)               \
  NAME(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, \
       int ldc, int vec_ok, KIT_EPI_PARAMS(float)) {                                                           \
    simt256_gemm<geo::simt256::BK, geo::simt256::STAGES, TA, TB>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,  \
                                                                  vec_ok, KIT_EPI(float));                     \
  }
SIMT256_KERNEL(gemm_simt256_nn_f32, false, false)
SIMT256_KERNEL(gemm_simt256_tn_f32, true, false)
SIMT256_KERNEL(gemm_simt256_nt_f32, false, true)
SIMT256_KERNEL(gemm_simt256_tt_f32, true, true)

// ---- tensor cores through WMMA: 256 threads = 8 warps as 2 (M) x 4 (N), warp tile 64x32 ----
namespace geo {
// <geometry wmma_tf32>
struct wmma_tf32 {  // gemm_tf32, gemm_tf32_cp_<layout>: grid (ceil(N / BN), ceil(M / BM)); 2 stages fit 99 KiB
  static constexpr int BM = 128;
  static constexpr int BN = 128;
  static constexpr int BK = 32;
  static constexpr int THREADS = 256;
  static constexpr int WARPS_M = 2;       // 8 warps as 2 x 4 warp tiles of WARP_M x WARP_N
  static constexpr int WARPS_N = 4;
  static constexpr int WARP_M = 64;       // 4 x 2 fragments of 16 x 16
  static constexpr int WARP_N = 32;
  static constexpr int WK = 8;        // fragment depth: m16n16k8
  static constexpr int ITEMSIZE = 4;
  static constexpr int PAD = 4;        // elements of row padding (16 bytes)
  static constexpr int SCRATCH = 8192;    // epilogue: a 16 x 16 float tile per warp
  static constexpr int STATIC_SMEM = 43520;  // single-stage kernel: As + Bs + scratch
  static constexpr int CP_STAGES = 2;      // cp.async kernels: ring depth
  static constexpr int CP_SMEM_NN = 78848;  // CP_STAGES x (A tile + B tile, padded rows) + SCRATCH
  static constexpr int CP_SMEM_NT = 81920;
  static constexpr int CP_SMEM_TN = 75776;
  static constexpr int CP_SMEM_TT = 78848;
  __host__ __device__ static constexpr int cp_smem(bool ta, bool tb) {
    return ta ? (tb ? CP_SMEM_TT : CP_SMEM_TN) : (tb ? CP_SMEM_NT : CP_SMEM_NN);
  }
};
// </geometry>
// <geometry wmma_b16>
struct wmma_b16 {  // gemm_{bf16,fp16}, gemm_{bf16,fp16}_cp_<layout>: as wmma_tf32, 16-bit elements
  static constexpr int BM = 128;
  static constexpr int BN = 128;
  static constexpr int BK = 32;
  static constexpr int THREADS = 256;
  static constexpr int WARPS_M = 2;       // 8 warps as 2 x 4 warp tiles of WARP_M x WARP_N
  static constexpr int WARPS_N = 4;
  static constexpr int WARP_M = 64;       // 4 x 2 fragments of 16 x 16
  static constexpr int WARP_N = 32;
  static constexpr int WK = 16;       // fragment depth: m16n16k16
  static constexpr int ITEMSIZE = 2;
  static constexpr int PAD = 8;        // elements of row padding (16 bytes)
  static constexpr int SCRATCH = 8192;    // epilogue: a 16 x 16 float tile per warp
  static constexpr int STATIC_SMEM = 27136;  // single-stage kernel: As + Bs + scratch
  static constexpr int CP_STAGES = 3;      // cp.async kernels: ring depth
  static constexpr int CP_SMEM_NN = 65024;  // CP_STAGES x (A tile + B tile, padded rows) + SCRATCH
  static constexpr int CP_SMEM_NT = 69632;
  static constexpr int CP_SMEM_TN = 60416;
  static constexpr int CP_SMEM_TT = 65024;
  __host__ __device__ static constexpr int cp_smem(bool ta, bool tb) {
    return ta ? (tb ? CP_SMEM_TT : CP_SMEM_TN) : (tb ? CP_SMEM_NT : CP_SMEM_NN);
  }
};
// </geometry>
// the formulas, for both element widths
template <typename G>
constexpr bool wmma_geometry_ok() {
  constexpr int A_N = G::BM * (G::BK + G::PAD), A_T = G::BK * (G::BM + G::PAD);  // A tile elements, as stored
  constexpr int B_N = G::BK * (G::BN + G::PAD), B_T = G::BN * (G::BK + G::PAD);
  return G::WARPS_M * G::WARPS_N * 32 == G::THREADS && G::WARPS_M * G::WARP_M == G::BM &&
         G::WARPS_N * G::WARP_N == G::BN && G::WARP_M == 4 * 16 && G::WARP_N == 2 * 16 && G::BK % G::WK == 0 &&
         G::PAD * G::ITEMSIZE == 16 && G::SCRATCH == (G::THREADS / 32) * 16 * 16 * 4 &&
         G::STATIC_SMEM == (A_N + B_N) * G::ITEMSIZE + G::SCRATCH &&
         G::CP_SMEM_NN == G::CP_STAGES * (A_N + B_N) * G::ITEMSIZE + G::SCRATCH &&
         G::CP_SMEM_NT == G::CP_STAGES * (A_N + B_T) * G::ITEMSIZE + G::SCRATCH &&
         G::CP_SMEM_TN == G::CP_STAGES * (A_T + B_N) * G::ITEMSIZE + G::SCRATCH &&
         G::CP_SMEM_TT == G::CP_STAGES * (A_T + B_T) * G::ITEMSIZE + G::SCRATCH &&
         G::STATIC_SMEM <= limits::STATIC_SMEM && G::CP_SMEM_NN <= limits::PORTABLE_SMEM_OPTIN &&
         G::CP_SMEM_NT <= limits::PORTABLE_SMEM_OPTIN && G::CP_SMEM_TN <= limits::PORTABLE_SMEM_OPTIN &&
         G::CP_SMEM_TT <= limits::PORTABLE_SMEM_OPTIN;
}
static_assert(wmma_geometry_ok<wmma_tf32>(), "wmma_tf32: warp layout, shared-memory formulas or limits");
static_assert(wmma_geometry_ok<wmma_b16>(), "wmma_b16: warp layout, shared-memory formulas or limits");
static_assert(wmma_tf32::BM == wmma_b16::BM && wmma_tf32::BN == wmma_b16::BN && wmma_tf32::BK == wmma_b16::BK &&
              wmma_tf32::THREADS == wmma_b16::THREADS, "the WMMA kernels share one block tile");
}  // namespace geo

namespace {
using namespace nvcuda;

template <typename T> struct Elem;
template <> struct Elem<float> {  // TF32: fp32 storage, rounded to tf32 when staged
  using Frag = wmma::precision::tf32;
  using G = geo::wmma_tf32;
  static constexpr int WK = G::WK, PAD = G::PAD;
  __device__ static float in(float v) { return wmma::__float_to_tf32(v); }
  __device__ static float out(float v) { return v; }
  __device__ static float to_f(float v) { return v; }
  __device__ static float zero() { return 0.0f; }
};
template <> struct Elem<__nv_bfloat16> {
  using Frag = __nv_bfloat16;
  using G = geo::wmma_b16;
  static constexpr int WK = G::WK, PAD = G::PAD;
  __device__ static __nv_bfloat16 in(__nv_bfloat16 v) { return v; }
  __device__ static __nv_bfloat16 out(float v) { return __float2bfloat16_rn(v); }
  __device__ static float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 zero() { return __float2bfloat16_rn(0.0f); }
};
template <> struct Elem<__half> {
  using Frag = __half;
  using G = geo::wmma_b16;
  static constexpr int WK = G::WK, PAD = G::PAD;
  __device__ static __half in(__half v) { return v; }
  __device__ static __half out(float v) { return __float2half_rn(v); }
  __device__ static float to_f(__half v) { return __half2float(v); }
  __device__ static __half zero() { return __float2half_rn(0.0f); }
};

constexpr int TBM = geo::wmma_tf32::BM, TBN = geo::wmma_tf32::BN, TBK = geo::wmma_tf32::BK;  // both widths

// A warp's 64x32 accumulator tile to C through a 16x16 float scratch tile: alpha, beta, bounds,
// conversion to T (beta == 0 never reads C).
template <typename T, typename Acc>
__device__ __forceinline__ void wmma_epilogue(Acc (&acc)[4][2], float* s, int mw, int nw, int M, int N, float alpha,
                                              float beta, T* C, int ldc, int lane, const kit_epi::Epi<T>& ep) {
  using E = Elem<T>;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(s, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll 1  // 8 trips; unrolled, each would inline the epilogue once more
      for (int e = lane; e < 256; e += 32) {
        const int m = mw + i * 16 + e / 16, n = nw + j * 16 + e % 16;
        if (m < M && n < N) {
          T* p = C + (size_t)m * ldc + n;
          const float v = beta == 0.0f ? alpha * s[e] : fmaf(alpha, s[e], beta * E::to_f(*p));
          *p = E::out(ep.plain() ? v : ep(v, m, n));
        }
      }
      __syncwarp();
    }
}

template <typename T>
__device__ void wmma_gemm(int M, int N, int K, float alpha, const T* A, int lda, int ta, const T* B, int ldb,
                          int tb, float beta, T* C, int ldc, const kit_epi::Epi<T> epi) {
  using E = Elem<T>;
  constexpr int WK = E::WK, PAD = E::PAD;
  __shared__ __align__(32) T As[TBM][TBK + PAD];  // op(A) tile, row-major m x k
  __shared__ __align__(32) T Bs[TBK][TBN + PAD];  // op(B) tile, row-major k x n
  __shared__ __align__(32) float scratch[8][16 * 16];
  static_assert(sizeof(T) == E::G::ITEMSIZE, "Elem<T>::G is T's geometry");
  static_assert(sizeof(As) + sizeof(Bs) + sizeof(scratch) == E::G::STATIC_SMEM, "wmma: the table's shared-memory bytes");
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile origin: rows wm*64, cols wn*32
  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;

  wmma::fragment<wmma::accumulator, 16, 16, WK, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < K; k0 += TBK) {
    // stage op(A) (128 x 32) and op(B) (32 x 128): 4096 elements each, 16 per thread
    for (int e = tid; e < TBM * TBK; e += 256) {
      const int r = e / TBK, c = e % TBK, m = m0 + r, k = k0 + c;
      T v = E::zero();
      if (m < M && k < K) v = ta ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
      As[r][c] = E::in(v);
    }
    for (int e = tid; e < TBK * TBN; e += 256) {
      const int r = e / TBN, c = e % TBN, k = k0 + r, n = n0 + c;
      T v = E::zero();
      if (k < K && n < N) v = tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
      Bs[r][c] = E::in(v);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TBK; kk += WK) {
      wmma::fragment<wmma::matrix_a, 16, 16, WK, typename E::Frag, wmma::row_major> fa[4];
      wmma::fragment<wmma::matrix_b, 16, 16, WK, typename E::Frag, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(fa[i], &As[wm * 64 + i * 16][kk], TBK + PAD);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &Bs[kk][wn * 32 + j * 16], TBN + PAD);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
  wmma_epilogue<T>(acc, scratch[warp], m0 + wm * 64, n0 + wn * 32, M, N, alpha, beta, C, ldc, lane, epi);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(geo::wmma_tf32::THREADS)
gemm_tf32(int M, int N, int K, float alpha, const float* A, int lda, int ta, const float* B, int ldb, int tb,
          float beta, float* C, int ldc, KIT_EPI_PARAMS(float)) {
  wmma_gemm<float>(M, N, K, alpha, A, lda, ta, B, ldb, tb, beta, C, ldc, KIT_EPI(float));
}
extern "C" __global__ void __launch_bounds__(geo::wmma_b16::THREADS)
gemm_bf16(int M, int N, int K, float alpha, const __nv_bfloat16* A, int lda, int ta, const __nv_bfloat16* B,
          int ldb, int tb, float beta, __nv_bfloat16* C, int ldc, KIT_EPI_PARAMS(__nv_bfloat16)) {
  wmma_gemm<__nv_bfloat16>(M, N, K, alpha, A, lda, ta, B, ldb, tb, beta, C, ldc, KIT_EPI(__nv_bfloat16));
}
extern "C" __global__ void __launch_bounds__(geo::wmma_b16::THREADS)
gemm_fp16(int M, int N, int K, float alpha, const __half* A, int lda, int ta, const __half* B, int ldb, int tb,
          float beta, __half* C, int ldc, KIT_EPI_PARAMS(__half)) {
  wmma_gemm<__half>(M, N, K, alpha, A, lda, ta, B, ldb, tb, beta, C, ldc, KIT_EPI(__half));
}

// ---- wmma_cp: the WMMA kernels fed by a cp.async pipeline (sm_80+) -------------------------
// Same 128x128x32 block tile and 8 warps of 64x32 as wmma_gemm, but the tiles arrive through
// STAGES-deep cp.async copies of 16 bytes (no register staging, no scalar loads), so loads of
// the next tiles overlap the MMAs of this one. Each operand is copied in its stored layout and
// read by WMMA as row_major or col_major: A_COL = A stored K x M (layout letter t), B_COL = B stored
// N x K. Rows are padded by 16 bytes against bank conflicts. Needs 16-byte-aligned operands with
// pitches a multiple of 16 bytes (gemm.py falls back to wmma_gemm otherwise). Chunks at the matrix
// edge are filled by plain loads and zeros, so no copy reads past the matrix (memcheck flags a
// 16-byte cp.async that starts inside a smaller allocation, src-size or not).
namespace {
template <typename T, bool A_COL, bool B_COL>
struct CpTile {
  static constexpr int STAGES = Elem<T>::G::CP_STAGES;
  static constexpr int E = 16 / sizeof(T);  // elements per 16-byte chunk (= the row padding)
  static constexpr int A_ROWS = A_COL ? TBK : TBM, A_LD = (A_COL ? TBM : TBK) + E;
  static constexpr int B_ROWS = B_COL ? TBN : TBK, B_LD = (B_COL ? TBK : TBN) + E;
  static constexpr int A_ELEMS = A_ROWS * A_LD, B_ELEMS = B_ROWS * B_LD;
  static constexpr size_t STAGE_BYTES = (size_t)(A_ELEMS + B_ELEMS) * sizeof(T);
};

// one rows x cols tile (row-major in memory, pitch ld, origin r0/c0 of a R x Cn matrix) into dst
template <typename T, int ROWS, int COLS, int LD>
__device__ __forceinline__ void cp_tile(T* dst, const T* src, int R, int Cn, int ld, int r0, int c0) {
  constexpr int E = 16 / sizeof(T), CH = COLS / E, TOTAL = ROWS * CH;
  static_assert(TOTAL % 256 == 0, "chunks spread evenly over 256 threads");
#pragma unroll
  for (int i = 0; i < TOTAL / 256; ++i) {
    const int e = threadIdx.x + 256 * i, r = e / CH, c = (e % CH) * E;
    const int gr = r0 + r, gc = c0 + c;
    const int valid = gr < R ? max(0, min(E, Cn - gc)) : 0;
    T* d = dst + r * LD + c;
    if (valid == E) {  // a whole chunk inside the matrix: asynchronous copy
      cp_async16(d, src + (size_t)gr * ld + gc);
    } else {  // the edge: plain loads of the elements that exist (never a byte past the matrix), zeros
      const T* p = src + (size_t)gr * ld + gc;
#pragma unroll
      for (int i = 0; i < E; ++i) d[i] = i < valid ? p[i] : T(0.0f);
    }
  }
}

template <typename T, bool A_COL, bool B_COL>
__device__ void wmma_cp_gemm(int M, int N, int K, float alpha, const T* A, int lda, const T* B, int ldb, float beta,
                             T* C, int ldc, const kit_epi::Epi<T> epi) {
  using E = Elem<T>;
  using Tile = CpTile<T, A_COL, B_COL>;
  constexpr int STAGES = Tile::STAGES;
  static_assert(STAGES * Tile::STAGE_BYTES + E::G::SCRATCH == E::G::cp_smem(A_COL, B_COL),
                "wmma_cp: the table's shared-memory bytes");
  constexpr int WK = E::WK;
  using LayA = typename std::conditional<A_COL, wmma::col_major, wmma::row_major>::type;
  using LayB = typename std::conditional<B_COL, wmma::col_major, wmma::row_major>::type;
  extern __shared__ __align__(128) unsigned char smem_cp[];
  T* stage0 = reinterpret_cast<T*>(smem_cp);
  float* scratch = reinterpret_cast<float*>(smem_cp + STAGES * Tile::STAGE_BYTES);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = warp >> 2, wn = warp & 3;
  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;
  const int ktiles = (K + TBK - 1) / TBK;

  auto load = [&](int t, int slot) {
    T* as = stage0 + slot * (Tile::A_ELEMS + Tile::B_ELEMS);
    T* bs = as + Tile::A_ELEMS;
    const int k0 = t * TBK;
    if constexpr (A_COL) cp_tile<T, TBK, TBM, Tile::A_LD>(as, A, K, M, lda, k0, m0);   // A stored K x M
    else cp_tile<T, TBM, TBK, Tile::A_LD>(as, A, M, K, lda, m0, k0);
    if constexpr (B_COL) cp_tile<T, TBN, TBK, Tile::B_LD>(bs, B, N, K, ldb, n0, k0);   // B stored N x K
    else cp_tile<T, TBK, TBN, Tile::B_LD>(bs, B, K, N, ldb, k0, n0);
  };

  wmma::fragment<wmma::accumulator, 16, 16, WK, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < ktiles) load(st, st);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  for (int t = 0; t < ktiles; ++t) {
    asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2) : "memory");
    __syncthreads();  // tile t is in for everyone, and slot (t - 1) % STAGES is free again
    if (t + STAGES - 1 < ktiles) load(t + STAGES - 1, (t + STAGES - 1) % STAGES);
    asm volatile("cp.async.commit_group;" ::: "memory");
    const T* as = stage0 + (t % STAGES) * (Tile::A_ELEMS + Tile::B_ELEMS);
    const T* bs = as + Tile::A_ELEMS;
#pragma unroll
    for (int kk = 0; kk < TBK; kk += WK) {
      wmma::fragment<wmma::matrix_a, 16, 16, WK, typename E::Frag, LayA> fa[4];
      wmma::fragment<wmma::matrix_b, 16, 16, WK, typename E::Frag, LayB> fb[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = wm * 64 + i * 16;
        wmma::load_matrix_sync(fa[i], A_COL ? as + kk * Tile::A_LD + r : as + r * Tile::A_LD + kk, Tile::A_LD);
        if constexpr (sizeof(T) == 4)
#pragma unroll
          for (int x = 0; x < fa[i].num_elements; ++x) fa[i].x[x] = wmma::__float_to_tf32(fa[i].x[x]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int c = wn * 32 + j * 16;
        wmma::load_matrix_sync(fb[j], B_COL ? bs + c * Tile::B_LD + kk : bs + kk * Tile::B_LD + c, Tile::B_LD);
        if constexpr (sizeof(T) == 4)
#pragma unroll
          for (int x = 0; x < fb[j].num_elements; ++x) fb[j].x[x] = wmma::__float_to_tf32(fb[j].x[x]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  wmma_epilogue<T>(acc, scratch + warp * 256, m0 + wm * 64, n0 + wn * 32, M, N, alpha, beta, C, ldc, lane, epi);
}
}  // namespace

// gemm_<type>_cp_<layout> (layout: nn, nt, tn, tt, as at the top of this file); dynamic shared
// memory geo::wmma_tf32 / wmma_b16::CP_SMEM_<layout>.
#define KIT_WMMA_CP(NAME, T, TA, TB)                                                                      \
  extern "C" __global__ void __launch_bounds__(geo::wmma_tf32::THREADS)                                   \
  NAME(int M, int N, int K, float alpha, const T* A, int lda, const T* B, int ldb, float beta, T* C, int ldc, \
       KIT_EPI_PARAMS(T)) {                                                                              \
    wmma_cp_gemm<T, TA, TB>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, KIT_EPI(T));                   \
  }
KIT_WMMA_CP(gemm_tf32_cp_nn, float, false, false)
KIT_WMMA_CP(gemm_tf32_cp_nt, float, false, true)
KIT_WMMA_CP(gemm_tf32_cp_tn, float, true, false)
KIT_WMMA_CP(gemm_tf32_cp_tt, float, true, true)
KIT_WMMA_CP(gemm_bf16_cp_nn, __nv_bfloat16, false, false)
KIT_WMMA_CP(gemm_bf16_cp_nt, __nv_bfloat16, false, true)
KIT_WMMA_CP(gemm_bf16_cp_tn, __nv_bfloat16, true, false)
KIT_WMMA_CP(gemm_bf16_cp_tt, __nv_bfloat16, true, true)
KIT_WMMA_CP(gemm_fp16_cp_nn, __half, false, false)
KIT_WMMA_CP(gemm_fp16_cp_nt, __half, false, true)
KIT_WMMA_CP(gemm_fp16_cp_tn, __half, true, false)
KIT_WMMA_CP(gemm_fp16_cp_tt, __half, true, true)

// ---- transpose: out (cols x rows, leading dimension ldo) = in (rows x cols, ldi)^T --------------
// Feeds the Hopper TF32 kernel, whose wgmma reads both operands K-major only. 32x32 tiles through
// shared memory (+1 column: no bank conflicts), 32x8 threads; blockIdx.x over rows, .y over columns.
namespace geo {
// <geometry transpose>
struct transpose {  // grid (ceil(rows / TILE), ceil(cols / TILE)), block THREADS_X x THREADS_Y
  static constexpr int TILE = 32;
  static constexpr int THREADS_X = 32;
  static constexpr int THREADS_Y = 8;
  static constexpr int STATIC_SMEM = 4224;  // TILE x (TILE + 1) floats
};
// </geometry>
static_assert(transpose::THREADS_X == transpose::TILE && transpose::TILE % transpose::THREADS_Y == 0,
              "transpose: a row of threads per tile row, THREADS_Y rows at a time");
static_assert(transpose::STATIC_SMEM == transpose::TILE * (transpose::TILE + 1) * 4, "transpose: shared-memory formula");
}  // namespace geo

extern "C" __global__ void __launch_bounds__(geo::transpose::THREADS_X * geo::transpose::THREADS_Y)
transpose_f32(const float* in, int rows, int cols, int ldi, float* out, int ldo) {
  constexpr int TILE = geo::transpose::TILE, STEP = geo::transpose::THREADS_Y;
  __shared__ float t[TILE][TILE + 1];
  static_assert(sizeof(t) == geo::transpose::STATIC_SMEM, "transpose: the table's shared-memory bytes");
  const int r0 = blockIdx.x * TILE, c0 = blockIdx.y * TILE;
  for (int i = threadIdx.y; i < TILE; i += STEP) {
    const int r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) t[i][threadIdx.x] = in[(size_t)r * ldi + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < TILE; i += STEP) {
    const int c = c0 + i, r = r0 + threadIdx.x;
    if (c < cols && r < rows) out[(size_t)c * ldo + r] = t[threadIdx.x][i];
  }
}

// ---- re-pitch: copy a rows x cols matrix to a new leading dimension (16-byte-aligned rows for
// the Hopper kernels' TMA copies). Grid-stride over the elements.
namespace geo {
// <geometry repitch>
struct repitch {  // 1-D: THREADS per block, one element per thread per pass
  static constexpr int THREADS = 256;
  static constexpr int BLOCKS_PER_SM = 32;  // the host's grid cap: 8 resident blocks x 4 waves
};
// </geometry>
}  // namespace geo

namespace {
template <typename T>
__device__ __forceinline__ void repitch(const T* in, int rows, int cols, int ldi, T* out, int ldo) {
  const long long n = (long long)rows * cols;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / cols;
    const int c = (int)(i - r * cols);
    out[r * ldo + c] = in[r * ldi + c];
  }
}
}  // namespace
extern "C" __global__ void __launch_bounds__(geo::repitch::THREADS)
repitch_b16(const uint16_t* in, int rows, int cols, int ldi, uint16_t* out, int ldo) {
  repitch(in, rows, cols, ldi, out, ldo);
}
extern "C" __global__ void __launch_bounds__(geo::repitch::THREADS)
repitch_b32(const uint32_t* in, int rows, int cols, int ldi, uint32_t* out, int ldo) {
  repitch(in, rows, cols, ldi, out, ldo);
}

// ---- epilogue_<type>: C = act(C + bias) in place, the epilogue as a pass of its own ----------
// For a product computed elsewhere (cuBLAS): the same FP32 math as the fused epilogues
// (epilogue.cuh), with C read back from the output type. Grid-stride over the M x N elements.
namespace geo {
// <geometry epilogue>
struct epilogue {  // 1-D: THREADS per block, one element per thread per pass
  static constexpr int THREADS = 256;
  static constexpr int BLOCKS_PER_SM = 32;  // the host's grid cap
};
// </geometry>
}  // namespace geo

namespace {
template <typename T>
__device__ __forceinline__ void epilogue_pass(int M, int N, T* C, int ldc, const kit_epi::Epi<T> e) {
  const long long n = (long long)M * N;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const int r = (int)(i / N), c = (int)(i - (long long)r * N);
    T* p = C + (size_t)r * ldc + c;
    *p = Elem<T>::out(e(kit_epi::to_f(*p), r, c));
  }
}
}  // namespace
#define KIT_EPILOGUE_PASS(NAME, T)                                                    \
  extern "C" __global__ void __launch_bounds__(geo::epilogue::THREADS)                \
  NAME(int M, int N, T* C, int ldc, KIT_EPI_PARAMS(T)) { epilogue_pass<T>(M, N, C, ldc, KIT_EPI(T)); }
KIT_EPILOGUE_PASS(epilogue_f32, float)
KIT_EPILOGUE_PASS(epilogue_bf16, __nv_bfloat16)
KIT_EPILOGUE_PASS(epilogue_fp16, __half)
