// Hopper matmul (built for sm_90a only: wgmma and setmaxnreg exist nowhere else).
// C = alpha * op(A) @ op(B) + beta * C, row-major C, FP32 accumulation; same contract as gemm.cu
// (any M, N, K >= 1; beta == 0 never reads C).
//
// One CTA computes a 128 x BN tile of C with 3 warpgroups (384 threads):
//   warpgroup 0      producer: one thread issues TMA bulk-tensor copies of the A and B tiles
//                    into a STAGES-deep ring of shared-memory stages (128-byte swizzled rows)
//   warpgroups 1, 2  consumers: each multiplies its 64 rows of the A tile by the B tile with
//                    wgmma.mma_async (m64 x BN x k16, or k8 for TF32), accumulators in registers
// Each stage has two mbarriers: `full` (the producer's expect-tx; the copy engine completes it)
// and `empty` (one arrive per consumer warp once its wgmmas on the stage have finished).
// TMA zero-fills the parts of a box outside the matrix, so ragged M, N, K need no special code.
// Epilogue (both twins): alpha * acc of the whole tile goes to the freed ring (fp32, rows padded
// by TILE_PAD floats), then the 256 consumer threads walk it row by row (epilogue_pass): beta * C
// and, in the _epi twin, the bias and activation of epilogue.cuh (KIT_EPI_PARAMS, the kernels'
// last four parameters) in FP32, rounded once, with 16-byte coalesced loads and stores. A bias
// with one value per row or column is staged in shared memory by producer warp 1 during the MMAs.
// (Storing each fragment straight from the registers, 4 bytes per access, was slower: the plain
// product ran 0.93x / 0.95x of cuBLAS at 4096^3 / 8192^3 that way on the H200.)
// Persistent twins (gemm_sm90_<type>_256p_<layout>, wide tiles): min(tiles, SMs) CTAs, each
// walking tiles blockIdx.x, + gridDim.x, ...; the ring's barriers count stages across a CTA's
// tiles, so the producer loads the next tile while the consumers finish one; their epilogue
// (epilogue_staged) has its own staging buffer and stores through TMA where out allows it.
//
// Layout vocabulary (as in gemm.cu and cudart_kit/ops/_gemm_geometry.py): a kernel name's two
// letters are the stored layouts of A then B, n = stored as op() reads it (A M x K, B K x N),
// t = stored transposed (A K x M, B N x K). In wgmma's terms:
//   K-major  (A "n": stored M x K, or B "t": stored N x K): rows of 128 bytes of K, 8-row groups
//            1024 B apart
//   MN-major (A "t": stored K x M, or B "n": stored K x N): 64-element-wide column chunks of BK
//            rows, one TMA box each, chunks 8 KiB apart; 16-bit types only (wgmma transposes only
//            those), so the TF32 kernel exists for layout "nt" only.
// Host side: cudart_kit/ops/_gemm_sm90.py builds the tensor maps (cuda.core TensorMapDescriptor).
// Geometry: the <geometry sm90> block below, mirrored field by field in
// cudart_kit/ops/_gemm_geometry.py (tests/test_gemm_cpu.py compares them).

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "epilogue.cuh"
#include "wgmma_sm90.cuh"

namespace geo {
// <geometry sm90>
struct sm90 {  // grid ceil(M / BM) * ceil(N / BN) CTAs (1-D), THREADS threads, SMEM_BN<BN> dynamic bytes;
                // the persistent wide kernels: min(tiles, SMs) CTAs, SMEM_BN256P bytes
  static constexpr int BM = 128;
  static constexpr int BN_NARROW = 128;   // the two tile widths: one kernel each
  static constexpr int BN_WIDE = 256;
  static constexpr int STAGES = 4;        // shared-memory ring of A and B tiles
  static constexpr int THREADS = 384;     // warpgroup 0 produces, the CONSUMERS others multiply
  static constexpr int CONSUMERS = 2;     // each 64 rows of the A tile
  static constexpr int GROUP_M = 16;      // row tiles side by side in the tile order (L2 reuse of B)
  static constexpr int PRODUCER_REGS = 40;   // setmaxnreg per thread of the producer warpgroup
  static constexpr int CONSUMER_REGS = 232;  // ... of each consumer warpgroup
  static constexpr int ROW_BYTES = 128;   // one 128-byte swizzled row: BK = ROW_BYTES / itemsize
  static constexpr int BK_B16 = 64;       // BF16 / FP16
  static constexpr int BK_TF32 = 32;
  static constexpr int MN_BOX = 64;       // elements per MN-major TMA box (ROW_BYTES of 16-bit)
  static constexpr int ALIGN_SLACK = 1024;  // the ring is aligned to 1024 bytes inside the allocation
  static constexpr int BIAS_FLOATS = 256;   // the epilogue's staged bias vector: max(BM, BN_WIDE) floats
  static constexpr int SMEM_BN128 = 133184;  // STAGES x (BM + BN) x ROW_BYTES + ALIGN_SLACK + 2 x STAGES barriers + 4 x BIAS_FLOATS
  static constexpr int SMEM_BN256 = 198720;
  static constexpr int STAGING_BYTES = 32768;  // the persistent kernels' epilogue buffer (a pass of the tile)
  static constexpr int SMEM_BN256P = 231488;   // SMEM_BN256 + STAGING_BYTES: the persistent wide kernels
  static constexpr int SMEM_OPTIN = 227 * 1024;  // the H100 / H200 per-block opt-in limit
  __host__ __device__ static constexpr int smem(int bn) { return bn == BN_WIDE ? SMEM_BN256 : SMEM_BN128; }
};
// </geometry>
static_assert(sm90::THREADS == 128 * (1 + sm90::CONSUMERS) && sm90::BM == 64 * sm90::CONSUMERS,
              "sm90: one producer warpgroup, one consumer warpgroup per 64 rows (wgmma m64)");
static_assert(sm90::PRODUCER_REGS * 128 + sm90::CONSUMER_REGS * 128 * sm90::CONSUMERS <= 65536 &&
              sm90::PRODUCER_REGS % 8 == 0 && sm90::CONSUMER_REGS % 8 == 0,
              "sm90: setmaxnreg counts fit the register file (multiples of 8)");
static_assert(sm90::BK_B16 * 2 == sm90::ROW_BYTES && sm90::BK_TF32 * 4 == sm90::ROW_BYTES &&
              sm90::MN_BOX * 2 == sm90::ROW_BYTES, "sm90: a K slice or MN box is one 128-byte swizzled row");
static_assert(sm90::BM % sm90::MN_BOX == 0 && sm90::BN_NARROW % sm90::MN_BOX == 0 && sm90::BN_WIDE % sm90::MN_BOX == 0 &&
              sm90::BN_WIDE <= 256, "sm90: tiles are whole MN boxes; wgmma N <= 256 (also the TMA box limit)");
static_assert(sm90::SMEM_BN128 == sm90::STAGES * (sm90::BM + sm90::BN_NARROW) * sm90::ROW_BYTES + sm90::ALIGN_SLACK +
                                      2 * sm90::STAGES * 8 + 4 * sm90::BIAS_FLOATS &&
              sm90::SMEM_BN256 == sm90::STAGES * (sm90::BM + sm90::BN_WIDE) * sm90::ROW_BYTES + sm90::ALIGN_SLACK +
                                      2 * sm90::STAGES * 8 + 4 * sm90::BIAS_FLOATS, "sm90: shared-memory formula");
static_assert(sm90::BIAS_FLOATS >= sm90::BM && sm90::BIAS_FLOATS >= sm90::BN_WIDE, "sm90: the staged bias holds a row or column of a tile");
static_assert(sm90::SMEM_BN256P == sm90::SMEM_BN256 + sm90::STAGING_BYTES && sm90::STAGING_BYTES % 1024 == 0,
              "sm90: the persistent kernels' shared memory: the wide kernel's and the staging buffer");
static_assert(sm90::SMEM_BN256P <= sm90::SMEM_OPTIN && sm90::SMEM_BN256 <= sm90::SMEM_OPTIN && sm90::SMEM_BN128 <= sm90::SMEM_OPTIN,
              "sm90: fits the 227 KiB opt-in shared memory");
}  // namespace geo

namespace {

constexpr int BM = geo::sm90::BM, STAGES = geo::sm90::STAGES, GROUP_M = geo::sm90::GROUP_M,
              THREADS = geo::sm90::THREADS;
constexpr int BIAS_BAR = 1;  // named barrier: the producer's staged bias -> the consumers' epilogue
constexpr int TILE_BAR = 2;  // named barrier of the consumer warpgroups: the epilogue tile in shared memory
constexpr int TILE_PAD = 8;  // floats of padding per tile row: the fragments' float2 stores hit 32 distinct banks

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_u32(bar)), "r"(parity)
        : "memory");
  } while (!done);
}
// box at coordinates (c0 = innermost / contiguous dimension, c1 = rows) into shared memory
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}
// a box of shared memory (SW128 layout) to global memory at coordinates (c0 = column, c1 = row);
// the copy engine clips what lies outside the matrix. Committed as one bulk group per call site.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, const void* src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(smem_u32(src)), "r"(c0), "r"(c1)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// the committed bulk stores have finished reading shared memory (READ) or completed entirely
template <bool READ>
__device__ __forceinline__ void bulk_wait() {
  if constexpr (READ) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
  else asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}
// wgmma shared-memory matrix descriptor: start address, leading / stride byte offsets, SW128
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((smem_u32(p) & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
         (1ull << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// keep the compiler from moving accumulator reads/writes across the asynchronous MMAs
template <int NACC>
__device__ __forceinline__ void fence_acc(float (&d)[NACC]) {
#pragma unroll
  for (int i = 0; i < NACC; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// 16 bytes of a 16-bit type (8 elements, as 4 pairs) <-> floats
template <typename Pair>
__device__ __forceinline__ void load16_pairs(const void* p, float (&v)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const Pair h = *reinterpret_cast<const Pair*>(&w[k]);
    v[2 * k] = __low2float(h);
    v[2 * k + 1] = __high2float(h);
  }
}
template <class X>
__device__ __forceinline__ void store16_pairs(void* p, const float (&v)[8]) {
  uint32_t w[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const typename X::Pair h = X::pair(v[2 * k], v[2 * k + 1]);
    w[k] = *reinterpret_cast<const uint32_t*>(&h);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static constexpr int K = 16;
  template <int BN, int MNA, int MNB>  // wgmma's transpose bits: MN-major operands
  __device__ static void run(float (&d)[BN / 2], uint64_t a, uint64_t b) {
    if constexpr (BN == 256) wgmma_m64n256k16_bf16<MNA, MNB>(d, a, b);
    else wgmma_m64n128k16_bf16<MNA, MNB>(d, a, b);
  }
  __device__ static float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 round(float x) { return __float2bfloat16_rn(x); }
  using Pair = __nv_bfloat162;
  __device__ static Pair pair(float x, float y) { return __floats2bfloat162_rn(x, y); }
  __device__ static void load16(const __nv_bfloat16* p, float (&v)[8]) { load16_pairs<Pair>(p, v); }
  __device__ static void store16(__nv_bfloat16* p, const float (&v)[8]) { store16_pairs<Mma>(p, v); }
};
template <> struct Mma<__half> {
  static constexpr int K = 16;
  template <int BN, int MNA, int MNB>  // wgmma's transpose bits: MN-major operands
  __device__ static void run(float (&d)[BN / 2], uint64_t a, uint64_t b) {
    if constexpr (BN == 256) wgmma_m64n256k16_f16<MNA, MNB>(d, a, b);
    else wgmma_m64n128k16_f16<MNA, MNB>(d, a, b);
  }
  __device__ static float to_f(__half v) { return __half2float(v); }
  __device__ static __half round(float x) { return __float2half_rn(x); }
  using Pair = __half2;
  __device__ static Pair pair(float x, float y) { return __floats2half2_rn(x, y); }
  __device__ static void load16(const __half* p, float (&v)[8]) { load16_pairs<Pair>(p, v); }
  __device__ static void store16(__half* p, const float (&v)[8]) { store16_pairs<Mma>(p, v); }
};
template <> struct Mma<float> {  // TF32 inputs (the tensor cores read the top 19 bits of each float)
  static constexpr int K = 8;
  template <int BN, int MNA, int MNB>  // wgmma's transpose bits: MN-major operands
  __device__ static void run(float (&d)[BN / 2], uint64_t a, uint64_t b) {
    static_assert(MNA == 0 && MNB == 0, "wgmma reads TF32 operands K-major only (layout nt)");
    if constexpr (BN == 256) wgmma_m64n256k8_tf32(d, a, b);
    else wgmma_m64n128k8_tf32(d, a, b);
  }
  __device__ static float to_f(float v) { return v; }
  __device__ static float round(float x) { return x; }
  __device__ static void load16(const float* p, float (&v)[4]) {
    const float4 u = *reinterpret_cast<const float4*>(p);
    v[0] = u.x; v[1] = u.y; v[2] = u.z; v[3] = u.w;
  }
  __device__ static void store16(float* p, const float (&v)[4]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};

// The _epi twins' epilogue over a 128 x BN tile of alpha * acc in shared memory (ts, row pitch
// BN + TILE_PAD floats), by the 256 consumer threads (ct): each row is walked by BN / VEC threads,
// VEC = one 16-byte chunk of T per thread, so the loads of C and the stores of out are whole
// 16-byte accesses side by side wherever out allows it (16-byte aligned rows, the chunk inside N),
// element by element otherwise. ACT and the bias source (kit_epi::NoBias / StagedBias /
// DirectBias) are chosen once per tile; the loop is unrolled twice only, so the code stays small.
template <typename T, int BN, int ACT, class B>
__device__ __forceinline__ void epilogue_pass(const float* ts, int ct, int m0, int n0, int M, int N, float beta,
                                              T* C, int ldc, const B& bias) {
  using X = Mma<T>;
  constexpr int VEC = 16 / sizeof(T), TPR = BN / VEC, ROWS = 128 * geo::sm90::CONSUMERS / TPR;
  constexpr int S = BN + TILE_PAD;
  static_assert(BN % VEC == 0 && (128 * geo::sm90::CONSUMERS) % TPR == 0 && BM % ROWS == 0, "sm90: the pass covers the tile");
  const int cc = (ct % TPR) * VEC, col = n0 + cc;
  if (col >= N) return;
  const bool vec = col + VEC <= N && (ldc * sizeof(T)) % 16 == 0 && reinterpret_cast<uintptr_t>(C) % 16 == 0;
#pragma unroll 2
  for (int r = ct / TPR; r < BM; r += ROWS) {
    const int row = m0 + r;
    if (row >= M) break;
    float v[VEC];
    const float4* src = reinterpret_cast<const float4*>(ts + r * S + cc);
#pragma unroll
    for (int q = 0; q < VEC / 4; ++q) {
      const float4 t = src[q];
      v[4 * q] = t.x; v[4 * q + 1] = t.y; v[4 * q + 2] = t.z; v[4 * q + 3] = t.w;
    }
    T* p = C + (size_t)row * ldc + col;
    if (vec) {
      if (beta != 0.0f) {
        float c[VEC];
        X::load16(p, c);
#pragma unroll
        for (int i = 0; i < VEC; ++i) v[i] = fmaf(beta, c[i], v[i]);
      }
#pragma unroll
      for (int i = 0; i < VEC; ++i) v[i] = kit_epi::activation<ACT>(v[i] + bias(row, col + i));
      X::store16(p, v);
    } else {
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        if (col + i >= N) break;
        float x = v[i];
        if (beta != 0.0f) x = fmaf(beta, X::to_f(p[i]), x);
        p[i] = X::round(kit_epi::activation<ACT>(x + bias(row, col + i)));  // never reads bias past column N - 1
      }
    }
  }
}

// The persistent kernels' epilogue: the 128 x BN tile in passes of PW columns through a staging
// buffer of out's type (STAGING_BYTES, next to the ring, which keeps filling with the next tile's
// stages meanwhile), laid out as the copy engine's 128-byte swizzle: sub-boxes of 128 rows x 128
// bytes (64 16-bit or 32 FP32 columns), each row's 16-byte chunks XOR-ed with the row's low 3
// bits (so the fragments' stores and the row reads below hit distinct banks). Per pass, each
// consumer thread finishes its fragment values in place (rows r, r + 8, r = 64 cw + 16 warp +
// lane / 4; columns 8j + 2 (lane % 4) (+1)): alpha * acc + beta * C, the _epi twin's bias and
// activation (Epi::operator(): bias from global memory, activation by selects), then, once the
// buffer is free, writes them into it with one rounding (d holds the finished values afterwards).
// Passes wholly right of N are skipped. Then either (tmC != nullptr: out 16-byte aligned with 16-byte row pitch) one thread
// hands the pass to the copy engine (TMA stores, which clip the matrix edges) and the consumers
// go on — the next pass or tile waits only until the engine has read the buffer — or the 256
// consumer threads copy it out, 16 bytes each, element by element where out's rows are not
// 16-byte aligned or at the N edge. ct: the thread's index over the consumer warpgroups (0 .. 255).
template <typename T, int BN, class E>
__device__ __forceinline__ void epilogue_staged(float (&d)[BN / 2], uint8_t* buf, const CUtensorMap* tmC,
                                                int ct, int m0, int n0, int M, int N, float alpha, float beta, T* C,
                                                int ldc, const E& epi) {
  using X = Mma<T>;
  constexpr int PW = geo::sm90::STAGING_BYTES / (BM * (int)sizeof(T));  // columns per pass: 128 (16-bit), 64 (FP32)
  constexpr int SUB = 128 / (int)sizeof(T);                               // columns per 128-byte sub-box
  constexpr int SUBS = PW / SUB, SUB_BYTES = BM * 128, VEC = 16 / (int)sizeof(T);
  constexpr int CT = 128 * geo::sm90::CONSUMERS, CHUNKS = PW / VEC;      // 16-byte chunks per pass row
  static_assert(BN % PW == 0 && SUBS == 2 && CT % CHUNKS == 0 && SUB_BYTES * SUBS == geo::sm90::STAGING_BYTES,
                "sm90: the staged passes cover the tile");
  const int warp = (ct % 128) / 32, lane = ct % 32;
  const int r0 = (ct / 128) * 64 + warp * 16 + lane / 4;
  // byte address in the buffer of column x (0 .. PW - 1) of tile row r
  auto at = [&](int r, int x) {
    const int byte = x * (int)sizeof(T);
    return buf + (byte / 128) * SUB_BYTES + r * 128 + ((((byte % 128) / 16) ^ (r & 7)) * 16) + byte % 16;
  };
  const bool vec = (ldc * sizeof(T)) % 16 == 0 && reinterpret_cast<uintptr_t>(C) % 16 == 0;
#pragma unroll
  for (int p = 0; p < BN / PW; ++p) {
    if (n0 + p * PW >= N) break;  // a pass wholly right of the matrix (the last column tile): nothing to store
    // the pass's values, finished in place in the accumulators (their loads of C and the bias
    // need not wait for the buffer)
#pragma unroll
    for (int jj = 0; jj < PW / 8; ++jj) {
      const int j = p * (PW / 8) + jj;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + r0 + 8 * h, col = n0 + 8 * j + 2 * (lane % 4);
        float& v0 = d[4 * j + 2 * h];
        float& v1 = d[4 * j + 2 * h + 1];
        v0 *= alpha;
        v1 *= alpha;
        if (row < M) {  // C and the bias are read inside the matrix only
          const T* c = C + (size_t)row * ldc + col;
          if (beta != 0.0f) {
            if (col < N) v0 = fmaf(beta, X::to_f(c[0]), v0);
            if (col + 1 < N) v1 = fmaf(beta, X::to_f(c[1]), v1);
          }
          if constexpr (E::enabled) {
            if (col < N) v0 = epi(v0, row, col);
            if (col + 1 < N) v1 = epi(v1, row, col + 1);
          }
        }
      }
    }
    // the buffer is free: the previous pass (or the previous tile's last one) has been copied
    // out by the threads, or read by the copy engine (its issuing thread waited for that)
    if (tmC != nullptr && ct == 0) bulk_wait<true>();
    asm volatile("bar.sync %0, %1;" ::"n"(TILE_BAR), "n"(CT) : "memory");
#pragma unroll
    for (int jj = 0; jj < PW / 8; ++jj) {
      const int j = p * (PW / 8) + jj;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint8_t* dst = at(r0 + 8 * h, 8 * jj + 2 * (lane % 4));
        const float v0 = d[4 * j + 2 * h], v1 = d[4 * j + 2 * h + 1];
        if constexpr (sizeof(T) == 4) *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
        else *reinterpret_cast<typename X::Pair*>(dst) = X::pair(v0, v1);
      }
    }
    if (tmC != nullptr) {
      // the threads' shared-memory writes, visible to the copy engine (the async proxy)
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      asm volatile("bar.sync %0, %1;" ::"n"(TILE_BAR), "n"(CT) : "memory");
      if (ct == 0) {
#pragma unroll
        for (int sb = 0; sb < SUBS; ++sb) {
          const int col = n0 + p * PW + sb * SUB;
          if (col < N) tma_store_2d(tmC, buf + sb * SUB_BYTES, col, m0);
        }
        bulk_commit();
      }
      continue;
    }
    asm volatile("bar.sync %0, %1;" ::"n"(TILE_BAR), "n"(CT) : "memory");
    const int q = ct % CHUNKS, x = q * VEC, col = n0 + p * PW + x;
    if (col < N) {
#pragma unroll 2
      for (int r = ct / CHUNKS; r < BM; r += CT / CHUNKS) {
        const int row = m0 + r;
        if (row >= M) break;
        const uint4 u = *reinterpret_cast<const uint4*>(at(r, x));
        T* o = C + (size_t)row * ldc + col;
        if (vec && col + VEC <= N) {
          *reinterpret_cast<uint4*>(o) = u;
        } else {
          const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
          for (int i = 0; i < VEC; ++i)
            if (col + i < N) o[i] = e[i];
        }
      }
    }
  }
}

// TA: A stored K x M (layout "t": MN-major); TB: B stored N x K (layout "t": K-major).
// PERSIST: a persistent grid (gridDim.x <= the tile count, typically one CTA per SM): each CTA
// walks the tiles blockIdx.x, blockIdx.x + gridDim.x, ... in the same grouped order; the producer
// runs on into the next tile's stages while the consumers finish a tile (the ring's barriers count
// stages over all of a CTA's tiles) and the epilogue goes through its own staging buffer
// (epilogue_staged), not the ring.
template <typename T, int BN, int TA, int TB, bool PERSIST, class E>
__device__ __forceinline__ void gemm_sm90(const CUtensorMap* tmA, const CUtensorMap* tmB, const CUtensorMap* tmC,
                                          int M, int N, int K, float alpha, float beta, T* C, int ldc, const E epi) {
  using X = Mma<T>;
  using G = geo::sm90;
  constexpr int MN_A = TA, MN_B = !TB;  // which operands wgmma reads MN-major (transposed)
  constexpr int BK = G::ROW_BYTES / sizeof(T);  // one swizzled 128-byte row of K (K-major) / BK rows (MN-major)
  static_assert(BK == (sizeof(T) == 4 ? G::BK_TF32 : G::BK_B16), "sm90: the table's BK");
  static_assert(BN == G::BN_NARROW || BN == G::BN_WIDE, "sm90: a tile width of the table");
  constexpr int A_BYTES = BM * BK * sizeof(T), B_BYTES = BN * BK * sizeof(T), STAGE = A_BYTES + B_BYTES;
  constexpr int CHUNK = G::MN_BOX * BK * sizeof(T);  // one 64-wide MN-major box (8 KiB)
  constexpr int NACC = BN / 2;
  constexpr int STAGING = PERSIST ? G::STAGING_BYTES : 0;  // the persistent epilogue's buffer, after the ring
  static_assert(!PERSIST || BN == G::BN_WIDE, "sm90: the persistent kernels have the wide tiles");
  static_assert(STAGES * STAGE + STAGING + G::ALIGN_SLACK + 2 * STAGES * sizeof(uint64_t) + 4 * G::BIAS_FLOATS ==
                    (PERSIST ? G::SMEM_BN256P : G::smem(BN)),
                "sm90: the table's shared-memory bytes");

  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + STAGES * STAGE + STAGING);
  uint64_t* empty = full + STAGES;
  float* sv = reinterpret_cast<float*>(empty + STAGES);  // the staged bias (E::vector())

  // grouped tile order: GROUP_M row-tiles side by side share B tiles in L2
  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN, tiles = tiles_m * tiles_n;
  const int group = GROUP_M * tiles_n;
  auto origin = [&](int id, int& tm0, int& tn0) {
    const int first_m = (id / group) * GROUP_M, gsize = min(tiles_m - first_m, GROUP_M);
    tm0 = (first_m + (id % group) % gsize) * BM;
    tn0 = ((id % group) / gsize) * BN;
  };
  int m0, n0;
  origin(blockIdx.x, m0, n0);
  const int ktiles = (K + BK - 1) / BK;
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 4 * G::CONSUMERS);  // the consumer warps
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(G::PRODUCER_REGS));
    if (!PERSIST && epi.vector() && threadIdx.x / 32 == 1) {
      // warp 1, idle otherwise: the tile's bias values into shared memory while the MMAs run;
      // bar.arrive releases them to the consumers' bar.sync before their epilogue
      epi.stage(sv, m0, n0, BM, BN, M, N, threadIdx.x % 32, 32);
      asm volatile("bar.arrive %0, %1;" ::"n"(BIAS_BAR), "n"(32 + 128 * G::CONSUMERS) : "memory");
    }
    if (threadIdx.x == 0) {
      // stage `it` of the CTA's sequence (over all its tiles): k-tile kt of the tile at (tm0, tn0)
      auto load = [&](int it, int kt, int tm0, int tn0) {
        const int s = it % STAGES;
        if (it >= STAGES) mbar_wait(&empty[s], ((it / STAGES) - 1) & 1);
        uint8_t* a = smem + s * STAGE;
        uint8_t* b = a + A_BYTES;
        const int k0 = kt * BK;
        mbar_expect_tx(&full[s], STAGE);
        if constexpr (MN_A) {
#pragma unroll
          for (int j = 0; j < BM / G::MN_BOX; ++j) tma_load_2d(a + j * CHUNK, tmA, &full[s], tm0 + G::MN_BOX * j, k0);
        } else {
          tma_load_2d(a, tmA, &full[s], k0, tm0);
        }
        if constexpr (MN_B) {
#pragma unroll
          for (int j = 0; j < BN / G::MN_BOX; ++j) tma_load_2d(b + j * CHUNK, tmB, &full[s], tn0 + G::MN_BOX * j, k0);
        } else {
          tma_load_2d(b, tmB, &full[s], k0, tn0);
        }
      };
      if constexpr (PERSIST) {
        int it = 0;
        for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
          int tm0, tn0;
          origin(tile, tm0, tn0);
          for (int kt = 0; kt < ktiles; ++kt, ++it) load(it, kt, tm0, tn0);
        }
      } else {
        for (int kt = 0; kt < ktiles; ++kt) load(kt, kt, m0, n0);
      }
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(G::CONSUMER_REGS));
  const int cw = wg - 1;  // rows cw*64 .. cw*64+63 of the tile
  const int warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;
  float d[NACC];
  // the k-tiles of one tile, stages it0 .. it0 + ktiles - 1 of the CTA's sequence, into d (zeroed
  // first); each stage but the last is handed back to the producer as soon as its MMAs are done
  auto mma_tile = [&](int it0) {
#pragma unroll
    for (int i = 0; i < NACC; ++i) d[i] = 0.0f;
    for (int kt = 0; kt < ktiles; ++kt) {
      const int it = it0 + kt, s = it % STAGES;
      mbar_wait(&full[s], (it / STAGES) & 1);
      const uint8_t* a = smem + s * STAGE + cw * (BM / 2) * 128;  // 64 rows of 128 B (K-major) == one chunk (MN-major)
      const uint8_t* b = smem + s * STAGE + A_BYTES;
      fence_acc(d);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BK / X::K; ++kk) {
        // K-major: the next k-slice starts 32 bytes further along the swizzled row;
        // MN-major: X::K rows of 128 bytes further down each chunk
        const uint64_t da = MN_A ? smem_desc(a + kk * X::K * 128, CHUNK, 1024) : smem_desc(a + kk * 32, 16, 1024);
        const uint64_t db = MN_B ? smem_desc(b + kk * X::K * 128, CHUNK, 1024) : smem_desc(b + kk * 32, 16, 1024);
        X::template run<BN, MN_A, MN_B>(d, da, db);
      }
      wgmma_commit();
      wgmma_wait<1>();  // the MMAs of stage it-1 are done: hand that stage back to the producer
      fence_acc(d);
      if (kt > 0 && lane == 0) mbar_arrive(&empty[(it - 1) % STAGES]);
    }
    wgmma_wait<0>();
    fence_acc(d);
  };

  if constexpr (PERSIST) {
    int it = 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, it += ktiles) {
      int tm0, tn0;
      origin(tile, tm0, tn0);
      mma_tile(it);
      if (lane == 0) mbar_arrive(&empty[(it + ktiles - 1) % STAGES]);  // the tile's last stage, too
      epilogue_staged<T, BN>(d, smem + STAGES * STAGE, tmC, threadIdx.x - 128, tm0, tn0, M, N, alpha, beta, C, ldc,
                             epi);
    }
    if (tmC != nullptr && threadIdx.x == 128) bulk_wait<false>();  // the last stores, before the CTA ends
    return;
  }
  mma_tile(0);

  // ---- epilogue: every consumer's MMAs are done (so is every TMA load: each was waited for),
  // the ring is free: alpha * acc of the whole tile goes there (accumulator fragment: row
  // 16*warp + lane/4 (+8), columns 8j + 2*(lane%4) (+1)), then one compact pass over its rows
  asm volatile("bar.sync %0, %1;" ::"n"(TILE_BAR), "n"(128 * G::CONSUMERS) : "memory");
  float* ts = reinterpret_cast<float*>(smem);
  constexpr int S = BN + TILE_PAD;
  static_assert(BM * S * sizeof(float) <= STAGES * STAGE, "sm90: the epilogue tile fits in the ring");
  const int r0 = cw * 64 + warp * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      *reinterpret_cast<float2*>(ts + (r0 + 8 * h) * S + 8 * j + 2 * (lane % 4)) =
          make_float2(alpha * d[4 * j + 2 * h], alpha * d[4 * j + 2 * h + 1]);
  asm volatile("bar.sync %0, %1;" ::"n"(TILE_BAR), "n"(128 * G::CONSUMERS) : "memory");
  const int ct = threadIdx.x - 128;  // 0 .. 255 over the consumer warpgroups
  if constexpr (!E::enabled) {  // the plain twin: alpha * acc + beta * C
    epilogue_pass<T, BN, kit_epi::ACT_NONE>(ts, ct, m0, n0, M, N, beta, C, ldc, kit_epi::NoBias{});
  } else {  // the _epi twin: activation and bias source chosen once per tile
    auto run = [&](const auto& bias) {
      if (epi.act == kit_epi::ACT_GELU) epilogue_pass<T, BN, kit_epi::ACT_GELU>(ts, ct, m0, n0, M, N, beta, C, ldc, bias);
      else if (epi.act == kit_epi::ACT_RELU) epilogue_pass<T, BN, kit_epi::ACT_RELU>(ts, ct, m0, n0, M, N, beta, C, ldc, bias);
      else epilogue_pass<T, BN, kit_epi::ACT_NONE>(ts, ct, m0, n0, M, N, beta, C, ldc, bias);
    };
    if (epi.bias == nullptr) {
      run(kit_epi::NoBias{});
    } else if (epi.vector()) {
      asm volatile("bar.sync %0, %1;" ::"n"(BIAS_BAR), "n"(32 + 128 * G::CONSUMERS) : "memory");
      run(kit_epi::StagedBias{sv, epi.per_col() ? n0 : m0, epi.per_col()});
    } else {
      run(kit_epi::DirectBias<T>{epi.bias, epi.bias_sm, epi.bias_sn});
    }
  }
}

}  // namespace

// gemm_sm90_<type>_<BN>_<layout> (layout: nn, nt, tn, tt, as above); dynamic shared memory
// geo::sm90::SMEM_BN<BN>, grid ceil(M / BM) * ceil(N / BN) CTAs (1-D), THREADS threads.
#define KIT_SM90_KERNEL(NAME, T, BN, TA, TB)                                                                \
  extern "C" __global__ void __launch_bounds__(THREADS, 1)                                                   \
      NAME(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB, int M, int N, \
           int K, float alpha, float beta, T* C, int ldc, KIT_EPI_PARAMS(T)) {                               \
    gemm_sm90<T, BN, TA, TB, false>(&tmA, &tmB, nullptr, M, N, K, alpha, beta, C, ldc, KIT_EPI_OFF(T));    \
  }                                                                                                          \
  extern "C" __global__ void __launch_bounds__(THREADS, 1)                                                   \
      NAME##_epi(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB, int M,  \
                 int N, int K, float alpha, float beta, T* C, int ldc, KIT_EPI_PARAMS(T)) {                  \
    gemm_sm90<T, BN, TA, TB, false>(&tmA, &tmB, nullptr, M, N, K, alpha, beta, C, ldc, KIT_EPI(T));        \
  }
// gemm_sm90_<type>_256p_<layout>: the persistent twins (PERSIST), wide tiles, any grid of 1 ..
// tile-count CTAs (the host launches min(tiles, multiprocessors)), dynamic shared memory
// geo::sm90::SMEM_BN256P. Two more parameters: tmC, a tensor map of out (SW128, boxes of 128 rows
// x 128 bytes), and tma_store: 1 when out is 16-byte aligned with a 16-byte row pitch, so the
// epilogue stores through tmC; 0: the threads store (tmC is then any valid map, never read).
#define KIT_SM90_PERSISTENT(NAME, T, TA, TB)                                                                \
  extern "C" __global__ void __launch_bounds__(THREADS, 1)                                                   \
      NAME(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB,               \
           const __grid_constant__ CUtensorMap tmC, int M, int N, int K, float alpha, float beta, T* C,     \
           int ldc, int tma_store, KIT_EPI_PARAMS(T)) {                                                      \
    gemm_sm90<T, geo::sm90::BN_WIDE, TA, TB, true>(&tmA, &tmB, tma_store ? &tmC : nullptr, M, N, K, alpha,  \
                                                   beta, C, ldc, KIT_EPI_OFF(T));                            \
  }                                                                                                          \
  extern "C" __global__ void __launch_bounds__(THREADS, 1)                                                   \
      NAME##_epi(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB,         \
                 const __grid_constant__ CUtensorMap tmC, int M, int N, int K, float alpha, float beta,     \
                 T* C, int ldc, int tma_store, KIT_EPI_PARAMS(T)) {                                          \
    gemm_sm90<T, geo::sm90::BN_WIDE, TA, TB, true>(&tmA, &tmB, tma_store ? &tmC : nullptr, M, N, K, alpha,  \
                                                   beta, C, ldc, KIT_EPI(T));                                \
  }

KIT_SM90_KERNEL(gemm_sm90_bf16_256_nn, __nv_bfloat16, 256, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_256_nt, __nv_bfloat16, 256, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_bf16_256_tn, __nv_bfloat16, 256, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_256_tt, __nv_bfloat16, 256, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_nn, __nv_bfloat16, 128, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_nt, __nv_bfloat16, 128, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_tn, __nv_bfloat16, 128, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_tt, __nv_bfloat16, 128, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_256_nn, __half, 256, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_256_nt, __half, 256, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_256_tn, __half, 256, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_256_tt, __half, 256, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_128_nn, __half, 128, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_128_nt, __half, 128, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_128_tn, __half, 128, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_128_tt, __half, 128, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_tf32_256_nt, float, 256, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_tf32_128_nt, float, 128, 0, 1)
KIT_SM90_PERSISTENT(gemm_sm90_bf16_256p_nn, __nv_bfloat16, 0, 0)
KIT_SM90_PERSISTENT(gemm_sm90_bf16_256p_nt, __nv_bfloat16, 0, 1)
KIT_SM90_PERSISTENT(gemm_sm90_bf16_256p_tn, __nv_bfloat16, 1, 0)
KIT_SM90_PERSISTENT(gemm_sm90_bf16_256p_tt, __nv_bfloat16, 1, 1)
KIT_SM90_PERSISTENT(gemm_sm90_f16_256p_nn, __half, 0, 0)
KIT_SM90_PERSISTENT(gemm_sm90_f16_256p_nt, __half, 0, 1)
KIT_SM90_PERSISTENT(gemm_sm90_f16_256p_tn, __half, 1, 0)
KIT_SM90_PERSISTENT(gemm_sm90_f16_256p_tt, __half, 1, 1)
KIT_SM90_PERSISTENT(gemm_sm90_tf32_256p_nt, float, 0, 1)
