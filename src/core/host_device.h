// Marks the pure integer code of src/core callable from host and device alike.
#pragma once

#if defined(__CUDACC__)
#define CCATTN_HD __host__ __device__ __forceinline__
#else
#define CCATTN_HD inline
#endif
