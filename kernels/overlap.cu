// Kernels of the stream-overlap experiment (cudart_kit.experiments.overlap).
//
//   fma_loop_f32  out[i] = iters dependent fmaf steps starting from in[i]: a kernel
//                 whose cost per byte is set by `iters`, so a workload can be swept from
//                 copy-bound (iters = 0, a plain copy) to compute-bound.
//   gate_wait     holds a stream until the host opens a flag in pinned memory (or a timeout),
//                 so a whole schedule can be queued before the GPU starts on it.
//
// Entry points are extern "C" so the Python side finds them by name. Indexing is 64-bit.

#include <stdint.h>

// Step k computes y = fmaf(y, a, c) with c = b + k * db, kept by one add per step. Each
// element's steps form one dependent chain, so the compiler can neither vectorize nor shorten
// it; occupancy (thousands of independent chains per SM) hides the latency, and the kernel runs
// at the FP32 throughput (two operations per step) once `iters` is large. With `a` a power of
// two (the Python side uses -1) the product is exact, so fmaf(y, a, c) rounds once exactly like
// numpy's float32 `y * a + c`, and the host reproduces every output bit for bit. The drifting c
// makes the result depend on every step (with a = -1 and a constant c, y would just alternate
// between two values). A grid-stride loop keeps any grid size correct.
extern "C" __global__ void fma_loop_f32(const float* __restrict__ in, float* __restrict__ out,
                                        uint64_t n, int iters, float a, float b, float db) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float y = in[i];
    float c = b;
#pragma unroll 8
    for (int k = 0; k < iters; ++k) {
      y = fmaf(y, a, c);
      c = __fadd_rn(c, db);  // __fadd_rn: never contracted with anything around it
    }
    out[i] = y;
  }
}

namespace {
__device__ __forceinline__ uint64_t globaltimer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
}  // namespace

// flags[0]: written by the host (non-zero = open); flags[1]: set to 1 here when the gate gave up
// after timeout_ns. flags lives in pinned host memory, read through volatile loads over the bus.
// The timeout matters: if the host blocks while queuing (a full command queue, a pageable copy)
// it can never open the gate, and without one the GPU would spin forever.
extern "C" __global__ void gate_wait(volatile uint32_t* flags, uint64_t timeout_ns) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const uint64_t t0 = globaltimer_ns();
  while (flags[0] == 0u) {
    if (globaltimer_ns() - t0 > timeout_ns) {
      flags[1] = 1u;
      return;
    }
    __nanosleep(1000);  // poll the bus about once a microsecond, not in a tight loop
  }
}
