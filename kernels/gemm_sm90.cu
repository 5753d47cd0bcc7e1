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
// TMA zero-fills the parts of a box outside the matrix, so ragged M, N, K need no special code;
// the epilogue bounds-checks every store.
//
// Operand layouts in shared memory (SW128 = the 128-byte swizzle the tensor maps request):
//   K-major  (A stored M x K, or B stored N x K): rows of 128 bytes of K, 8-row groups 1024 B apart
//   MN-major (A stored K x M, or B stored K x N): 64-element-wide column chunks of BK rows, one TMA
//            box each, chunks 8 KiB apart; 16-bit types only (wgmma transposes only those).
// Host side: cudart_kit/ops/gemm.py builds the tensor maps (cuda.core TensorMapDescriptor).

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "wgmma_sm90.cuh"

namespace {

constexpr int BM = 128, STAGES = 4, GROUP_M = 16, THREADS = 384;

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

template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static constexpr int K = 16;
  template <int BN, int TA, int TB>
  __device__ static void run(float (&d)[BN / 2], uint64_t a, uint64_t b) {
    if constexpr (BN == 256) wgmma_m64n256k16_bf16<TA, TB>(d, a, b);
    else wgmma_m64n128k16_bf16<TA, TB>(d, a, b);
  }
  __device__ static float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static void store2(__nv_bfloat16* p, float x, float y) { *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x, y); }
  __device__ static void store1(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }
};
template <> struct Mma<__half> {
  static constexpr int K = 16;
  template <int BN, int TA, int TB>
  __device__ static void run(float (&d)[BN / 2], uint64_t a, uint64_t b) {
    if constexpr (BN == 256) wgmma_m64n256k16_f16<TA, TB>(d, a, b);
    else wgmma_m64n128k16_f16<TA, TB>(d, a, b);
  }
  __device__ static float to_f(__half v) { return __half2float(v); }
  __device__ static void store2(__half* p, float x, float y) { *reinterpret_cast<__half2*>(p) = __floats2half2_rn(x, y); }
  __device__ static void store1(__half* p, float x) { *p = __float2half_rn(x); }
};
template <> struct Mma<float> {  // TF32 inputs (the tensor cores read the top 19 bits of each float)
  static constexpr int K = 8;
  template <int BN, int TA, int TB>
  __device__ static void run(float (&d)[BN / 2], uint64_t a, uint64_t b) {
    static_assert(TA == 0 && TB == 0, "wgmma reads TF32 operands K-major only");
    if constexpr (BN == 256) wgmma_m64n256k8_tf32(d, a, b);
    else wgmma_m64n128k8_tf32(d, a, b);
  }
  __device__ static float to_f(float v) { return v; }
  __device__ static void store2(float* p, float x, float y) { *reinterpret_cast<float2*>(p) = make_float2(x, y); }
  __device__ static void store1(float* p, float x) { *p = x; }
};

// MN_A: A stored K x M (M contiguous); MN_B: B stored K x N (N contiguous, the row-major default)
template <typename T, int BN, int MN_A, int MN_B>
__device__ __forceinline__ void gemm_sm90(const CUtensorMap* tmA, const CUtensorMap* tmB, int M, int N, int K,
                                          float alpha, float beta, T* C, int ldc) {
  using X = Mma<T>;
  constexpr int BK = 128 / sizeof(T);  // one swizzled 128-byte row of K (K-major) / BK rows (MN-major)
  constexpr int A_BYTES = BM * BK * sizeof(T), B_BYTES = BN * BK * sizeof(T), STAGE = A_BYTES + B_BYTES;
  constexpr int CHUNK = 64 * BK * sizeof(T);  // one 64-wide MN-major box (8 KiB)
  constexpr int NACC = BN / 2;

  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + STAGES * STAGE);
  uint64_t* empty = full + STAGES;

  // grouped tile order: GROUP_M row-tiles side by side share B tiles in L2
  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int id = blockIdx.x, group = GROUP_M * tiles_n;
  const int first_m = (id / group) * GROUP_M, gsize = min(tiles_m - first_m, GROUP_M);
  const int m0 = (first_m + (id % group) % gsize) * BM, n0 = ((id % group) / gsize) * BN;
  const int ktiles = (K + BK - 1) / BK;
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 8);  // the 8 consumer warps
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {  // ---- producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
    if (threadIdx.x == 0) {
      for (int kt = 0; kt < ktiles; ++kt) {
        const int s = kt % STAGES;
        if (kt >= STAGES) mbar_wait(&empty[s], ((kt / STAGES) - 1) & 1);
        uint8_t* a = smem + s * STAGE;
        uint8_t* b = a + A_BYTES;
        const int k0 = kt * BK;
        mbar_expect_tx(&full[s], STAGE);
        if constexpr (MN_A) {
#pragma unroll
          for (int j = 0; j < BM / 64; ++j) tma_load_2d(a + j * CHUNK, tmA, &full[s], m0 + 64 * j, k0);
        } else {
          tma_load_2d(a, tmA, &full[s], k0, m0);
        }
        if constexpr (MN_B) {
#pragma unroll
          for (int j = 0; j < BN / 64; ++j) tma_load_2d(b + j * CHUNK, tmB, &full[s], n0 + 64 * j, k0);
        } else {
          tma_load_2d(b, tmB, &full[s], k0, n0);
        }
      }
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
  const int cw = wg - 1;  // rows cw*64 .. cw*64+63 of the tile
  const int warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;
  float d[NACC];
#pragma unroll
  for (int i = 0; i < NACC; ++i) d[i] = 0.0f;

  for (int kt = 0; kt < ktiles; ++kt) {
    const int s = kt % STAGES;
    mbar_wait(&full[s], (kt / STAGES) & 1);
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
    wgmma_wait<1>();  // the MMAs of stage kt-1 are done: hand that stage back to the producer
    fence_acc(d);
    if (kt > 0 && lane == 0) mbar_arrive(&empty[(kt - 1) % STAGES]);
  }
  wgmma_wait<0>();
  fence_acc(d);

  // ---- epilogue: accumulator fragment (row 16*warp + lane/4 (+8), columns 8j + 2*(lane%4) (+1))
  const int row0 = m0 + cw * 64 + warp * 16 + lane / 4;
  const bool pairs = (ldc % 2 == 0) && (reinterpret_cast<uintptr_t>(C) % (2 * sizeof(T)) == 0);
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const int col = n0 + 8 * j + 2 * (lane % 4);
    if (col >= N) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = row0 + 8 * h;
      if (row >= M) continue;
      T* p = C + (size_t)row * ldc + col;
      float x = alpha * d[4 * j + 2 * h], y = alpha * d[4 * j + 2 * h + 1];
      const bool two = col + 1 < N;
      if (beta != 0.0f) {
        x = fmaf(beta, X::to_f(p[0]), x);
        if (two) y = fmaf(beta, X::to_f(p[1]), y);
      }
      if (two && pairs) {
        X::store2(p, x, y);
      } else {
        X::store1(p, x);
        if (two) X::store1(p + 1, y);
      }
    }
  }
}

}  // namespace

// Dynamic shared memory per launch: STAGES * (128 + BN) * 128 bytes + 1024 (alignment) + barriers;
// grid = ceil(M / 128) * ceil(N / BN) CTAs (1-D), 384 threads.
#define KIT_SM90_KERNEL(NAME, T, BN, MNA, MNB)                                                              \
  extern "C" __global__ void __launch_bounds__(THREADS, 1)                                                   \
      NAME(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB, int M, int N, \
           int K, float alpha, float beta, T* C, int ldc) {                                                  \
    gemm_sm90<T, BN, MNA, MNB>(&tmA, &tmB, M, N, K, alpha, beta, C, ldc);                                  \
  }

// name: gemm_sm90_<type>_<BN>_<A layout><B layout>, layout k = K-major (row-major A / transposed B),
// m = MN-major (transposed A / row-major B)
KIT_SM90_KERNEL(gemm_sm90_bf16_256_kk, __nv_bfloat16, 256, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_256_km, __nv_bfloat16, 256, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_bf16_256_mk, __nv_bfloat16, 256, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_256_mm, __nv_bfloat16, 256, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_kk, __nv_bfloat16, 128, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_km, __nv_bfloat16, 128, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_mk, __nv_bfloat16, 128, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_bf16_128_mm, __nv_bfloat16, 128, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_256_kk, __half, 256, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_256_km, __half, 256, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_256_mk, __half, 256, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_256_mm, __half, 256, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_128_kk, __half, 128, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_128_km, __half, 128, 0, 1)
KIT_SM90_KERNEL(gemm_sm90_f16_128_mk, __half, 128, 1, 0)
KIT_SM90_KERNEL(gemm_sm90_f16_128_mm, __half, 128, 1, 1)
KIT_SM90_KERNEL(gemm_sm90_tf32_256_kk, float, 256, 0, 0)
KIT_SM90_KERNEL(gemm_sm90_tf32_128_kk, float, 128, 0, 0)
