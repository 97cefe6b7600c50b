/* test-cuda-scorers.c - every scorer's kernels (and ODIN's perturbation
 * step) compile with NVRTC for sm_80 and sm_90 without spills: the second
 * half of test-cuda-models.c, which holds the code. */
#define CUDA_MODELS_SCORERS 1
#include "test-cuda-models.c"
