// Empty kernels for measuring launch overhead (host cost per launch), nothing else.
#include <stdint.h>

extern "C" __global__ void kit_noop() {}

// Same signature as the vector ops' binary kernels, so argument packing is measured too.
extern "C" __global__ void kit_noop4(const float* x, const float* y, float* out, uint64_t n) {
  if (n == 0xFFFFFFFFFFFFFFFFull) out[0] = x[0] + y[0];  // never true: keeps the parameters live
}
