// The last block of a launch, found without a second launch (CUDA's threadFenceReduction sample):
// every block, after its own work, counts itself on `blocks_done` (an unsigned int, 0 before the
// launch); the block that counts last knows that every other block has finished its work (each
// fenced its memory accesses before counting), so it can do the launch's one closing write, and
// it puts the counter back to 0 for the next launch. Every thread of the block calls it (it holds a
// barrier); it returns true in thread 0 of the last block only. Inlined once into the
// translation unit by gpubackprop.backends.cuda_kernels.kernel_source, in place of each #include.
#ifndef GB_LAST_BLOCK_CUH
#define GB_LAST_BLOCK_CUH

__device__ __forceinline__ bool last_block_done(unsigned int* blocks_done) {
    __syncthreads();  // the block's work (and its reads) before its count
    if (threadIdx.x != 0) return false;
    __threadfence();
    if (atomicAdd(blocks_done, 1u) != gridDim.x - 1) return false;
    __threadfence();
    blocks_done[0] = 0u;  // for the next launch (stream order: nothing else reads it now)
    return true;
}
#endif
