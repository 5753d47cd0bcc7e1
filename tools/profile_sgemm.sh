#!/usr/bin/env bash
# Device machine: Nsight Compute profile of kit SIMT kernels (arguments, default simt256) next to
# cuBLAS SGEMM (CuPy) at 4096^3, and the SASS of all of them (cuobjdump), packed into
# $OUT/prof.tgz. Needs built artifacts:  bash tools/profile_sgemm.sh simt128 simt256
set -u
ALGOS=("${@:-simt256}")
export PYTHONPATH=$PWD; N=/usr/local/cuda/bin/ncu; C=/usr/local/cuda/bin/cuobjdump
timeout 300 $N --section LaunchStats --section Occupancy --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section InstructionStats --section SchedulerStats --section MemoryWorkloadAnalysis_Tables --section SourceCounters -k regex:gemm -c $(( 2 * ${#ALGOS[@]} + 2 )) -o $OUT/prof python3 tools/profile_gemm.py "${ALGOS[@]}" cupy --n 4096 > $OUT/ncu_run.txt 2>&1
$N -i $OUT/prof.ncu-rep --print-details all > $OUT/ncu_details.txt 2>&1
for a in "${ALGOS[@]}"; do k=gemm_${a}_f32; [ "$a" = simt256 ] && k=gemm_simt256_nn_f32  # row-major inputs
  $C -sass -fun $k -arch sm_90 cudart_kit/_artifacts/gemm.fatbin > $OUT/${a}_sass.txt 2>&1; done
name=$(grep -o '[a-zA-Z0-9_]*sgemm[a-zA-Z0-9_]*\|[a-zA-Z0-9_]*xmma_gemm[a-zA-Z0-9_]*' $OUT/ncu_details.txt | head -1); echo "cublas kernel: $name"
lib=$(python3 -c "import nvidia.cublas,os;print(os.path.dirname(nvidia.cublas.__file__)+'/lib')" 2>/dev/null); ls $lib; ls /usr/local/cuda/lib64 | grep -i cublasLt
for L in $lib/libcublasLt.so* /usr/local/cuda/lib64/libcublasLt.so.13*; do [ -f "$L" ] && timeout 200 $C -sass -fun "$name" "$L" > $OUT/cublas_sass.txt 2>&1 && break; done
ls -la $OUT; wc -l $OUT/*.txt; grep -c FFMA $OUT/cublas_sass.txt
cd $OUT && tar czf prof.tgz *.txt prof.ncu-rep && rm -f *.txt prof.ncu-rep
