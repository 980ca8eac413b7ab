// recordgpu CUDA kernels for plan execution (loaded with cupy.RawModule, or checked with NVRTC).
//
// rg_step_<dt>:  grid (ceil(max_w / 32), ceil(max_h / 8), n), block (32, 8): one thread per output pixel of
//                step steps[blockIdx.z]; samples without this step (out_kind == RG_OUT_NONE) exit at once.
// rg_mean_<dt>:  grid (n), block (RG_MEAN_THREADS): the gray mean feeding Contrast slot `slot` of each
//                sample's step, reduced in a fixed order (deterministic), written to steps[i].means[slot].
// <dt> is the source dtype: u8, u16, i16, f32. `tabs` holds the warp interpolation tables.
#include "rg_step.cuh"

#define RG_MEAN_THREADS 256

// The block's step, staged in shared memory once (every thread of a block works on the same sample).
__device__ __forceinline__ const RgStep* rg_load_step(const RgStep* steps, RgStep* sh) {
    const int words = (int)(sizeof(RgStep) / sizeof(int));
    const int* srcw = (const int*)(steps + blockIdx.z);
    int* dstw = (int*)sh;
    int tid = threadIdx.y * blockDim.x + threadIdx.x, nt = blockDim.x * blockDim.y;
    for (int i = tid; i < words; i += nt) dstw[i] = srcw[i];
    __syncthreads();
    return sh;
}

template <typename T>
__device__ __forceinline__ void rg_step_kernel(const RgStep* steps, int n, const void* tabs) {
    __shared__ RgStep sh;
    if ((int)blockIdx.z >= n) return;
    const RgStep* st = rg_load_step(steps, &sh);
    if (st->out_kind == RG_OUT_NONE) return;
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= st->geom.out_w || y >= st->geom.out_h) return;
    rg_step_pixel<T>(*st, tabs, y, x);
}

template <typename T>
__device__ __forceinline__ void rg_mean_kernel(RgStep* steps, int n, int slot, const void* tabs) {
    typedef typename RgGray<T>::GT GT;
    __shared__ double part[RG_MEAN_THREADS];
    __shared__ RgStep sh;
    int s = blockIdx.x;
    if (s >= n) return;
    {
        const int words = (int)(sizeof(RgStep) / sizeof(int));
        const int* srcw = (const int*)(steps + s);
        for (int i = threadIdx.x; i < words; i += blockDim.x) ((int*)&sh)[i] = srcw[i];
        __syncthreads();
    }
    if (sh.out_kind == RG_OUT_NONE) return;
    int upto = rg_contrast_index(sh, slot);
    if (upto < 0) return;
    int W = sh.geom.out_w;
    rg_i64 count = (rg_i64)W * sh.geom.out_h;
    // integer grays sum exactly in 64-bit integers; float grays in double, in a fixed order
    rg_i64 isum = 0;
    double fsum = 0.0;
    for (rg_i64 i = threadIdx.x; i < count; i += blockDim.x) {
        GT g = rg_gray_before<T>(sh, tabs, (int)(i / W), (int)(i % W), upto);
        if (RgT<T>::is_int) isum += (rg_i64)g;
        else fsum += (double)g;
    }
    if (RgT<T>::is_int) {
        __shared__ long long ipart[RG_MEAN_THREADS];
        ipart[threadIdx.x] = isum;
        __syncthreads();
        for (int w = RG_MEAN_THREADS / 2; w > 0; w >>= 1) {
            if ((int)threadIdx.x < w) ipart[threadIdx.x] += ipart[threadIdx.x + w];
            __syncthreads();
        }
        if (threadIdx.x == 0) steps[s].means[slot] = rg_mean_of<T>((double)ipart[0], count);
    } else {
        part[threadIdx.x] = fsum;
        __syncthreads();
        for (int w = RG_MEAN_THREADS / 2; w > 0; w >>= 1) {
            if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
            __syncthreads();
        }
        if (threadIdx.x == 0) steps[s].means[slot] = rg_mean_of<T>(part[0], count);
    }
}

#define RG_INSTANTIATE(NAME, T)                                                                         \
    extern "C" __global__ void __launch_bounds__(256) rg_step_##NAME(const RgStep* steps, int n,        \
                                                                      const void* tabs) {               \
        rg_step_kernel<T>(steps, n, tabs);                                                              \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(RG_MEAN_THREADS, 1) rg_mean_##NAME(RgStep* steps, int n,  \
                                                                                 int slot,              \
                                                                                 const void* tabs) {    \
        rg_mean_kernel<T>(steps, n, slot, tabs);                                                        \
    }

RG_INSTANTIATE(u8, rg_u8)
RG_INSTANTIATE(u16, rg_u16)
RG_INSTANTIATE(i16, rg_i16)
RG_INSTANTIATE(f32, float)
