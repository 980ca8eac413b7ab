// recordgpu CUDA kernels for plan execution (loaded with cupy.RawModule, or checked with NVRTC).
//
// rg_step_<dt>:  grid (ceil(max_w / 32), ceil(max_h / 8), n), block (32, 8): one thread per output pixel of
//                step steps[blockIdx.z]; samples without this step (out_kind == RG_OUT_NONE) exit at once.
// rg_mean_<dt>:  grid (n), block (RG_MEAN_THREADS): the statistics of slot `slot` of each sample's step,
//                reduced in a fixed order (deterministic): the gray mean feeding a Contrast stage (written to
//                steps[i].means[slot]), or a zscore / percentile FloatIntensity's statistics (written as its
//                A and D).
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

// Contrast: the gray mean of the pixels just before colour stage `upto`, into steps[s].means[slot].
template <typename T>
__device__ __forceinline__ void rg_gray_mean_block(RgStep* steps, int s, const RgStep& sh, int slot, int upto,
                                                   const void* tabs) {
    __shared__ double part[RG_MEAN_THREADS];
    __shared__ long long ipart[RG_MEAN_THREADS];
    int W = sh.geom.out_w;
    rg_i64 count = (rg_i64)W * sh.geom.out_h;
    // integer grays sum exactly in 64-bit integers; float grays in double, in a fixed order
    rg_i64 isum = 0;
    double fsum = 0.0;
    for (rg_i64 i = threadIdx.x; i < count; i += blockDim.x) {
        typename RgGray<T>::GT g = rg_gray_before<T>(sh, tabs, (int)(i / W), (int)(i % W), upto);
        if (RgT<T>::is_int) isum += (rg_i64)g;
        else fsum += (double)g;
    }
    if (RgT<T>::is_int) {
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

// The block's sum of f(value) over every channel of every pixel before colour stage `owner`: thread t takes
// pixels t, t + 256, ... in order, then a fixed tree (the host build adds in the same order).
template <typename T, bool SQUARES>
__device__ __forceinline__ double rg_fint_block_sum(const RgStep& sh, int owner, const void* tabs, double mean,
                                                    double* part) {
    const RgColour& col = sh.colour[owner];
    int W = sh.geom.out_w;
    rg_i64 npix = (rg_i64)W * sh.geom.out_h;
    double acc = 0.0;
    T v[RG_MAX_C];
    for (rg_i64 i = threadIdx.x; i < npix; i += blockDim.x) {
        rg_eval_pixel<T>(sh, tabs, (int)(i / W), (int)(i % W), owner, v);
        for (int k = 0; k < sh.c; k++) {
            double x = (double)rg_fint_input(v[k], col);
            if (SQUARES) {
                double d = x - mean;
                acc += d * d;
            } else {
                acc += x;
            }
        }
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int w = RG_MEAN_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    double total = part[0];
    __syncthreads();
    return total;
}

// FloatIntensity statistics (zscore: mean and deviation; percentile: radix selection of the four order
// statistics, 8 bits per pass), turned into the stage's A and D in steps[s].colour[owner].
template <typename T>
__device__ __forceinline__ void rg_fint_stats_block(RgStep* steps, int s, const RgStep& sh, int owner,
                                                    const void* tabs) {
    __shared__ double part[RG_MEAN_THREADS];
    const RgColour& col = sh.colour[owner];
    int W = sh.geom.out_w;
    rg_i64 npix = (rg_i64)W * sh.geom.out_h;
    rg_i64 count = npix * sh.c;
    float A, D;
    if (col.ival == RG_FINT_ZSCORE) {
        double mean = rg_fint_block_sum<T, false>(sh, owner, tabs, 0.0, part) / (double)count;
        double var = rg_fint_block_sum<T, true>(sh, owner, tabs, mean, part) / (double)count;
        rg_zscore_constants(mean, var, &A, &D);
    } else {
        __shared__ unsigned int hist[RG_PCT_TARGETS][RG_RADIX_BINS];
        __shared__ unsigned int prefix[RG_PCT_TARGETS];
        __shared__ rg_i64 rank[RG_PCT_TARGETS];
        __shared__ double gamma[2];
        if (threadIdx.x == 0) {
            rg_percentile_targets(col, count, rank, gamma);
            for (int r = 0; r < RG_PCT_TARGETS; r++) prefix[r] = 0u;
        }
        T v[RG_MAX_C];
        for (int pass = 0; pass < 4; pass++) {
            int shift = 24 - 8 * pass;
            unsigned int high = pass == 0 ? 0u : (0xffffffffu << (shift + 8));  // digits already chosen
            for (int j = threadIdx.x; j < RG_PCT_TARGETS * RG_RADIX_BINS; j += blockDim.x) (&hist[0][0])[j] = 0u;
            __syncthreads();
            for (rg_i64 i = threadIdx.x; i < npix; i += blockDim.x) {
                rg_eval_pixel<T>(sh, tabs, (int)(i / W), (int)(i % W), owner, v);
                for (int k = 0; k < sh.c; k++) {
                    unsigned int key = rg_float_key(rg_fint_input(v[k], col));
                    int d = (int)((key >> shift) & 255u);
                    for (int r = 0; r < RG_PCT_TARGETS; r++)
                        if ((key & high) == prefix[r]) atomicAdd(&hist[r][d], 1u);
                }
            }
            __syncthreads();
            if ((int)threadIdx.x < RG_PCT_TARGETS) {
                int r = threadIdx.x;
                rg_i64 rk = rank[r];
                int d = rg_select_bin(hist[r], &rk);
                rank[r] = rk;
                prefix[r] |= (unsigned int)d << shift;
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) rg_percentile_constants(prefix, gamma, &A, &D);
    }
    if (threadIdx.x == 0) {
        steps[s].colour[owner].a = A;
        steps[s].colour[owner].b = D;
    }
}

template <typename T>
__device__ __forceinline__ void rg_mean_kernel(RgStep* steps, int n, int slot, const void* tabs) {
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
    int owner = rg_slot_owner(sh, slot);
    if (owner < 0) return;
    if (sh.colour[owner].kind == RG_COL_CONTRAST) rg_gray_mean_block<T>(steps, s, sh, slot, owner, tabs);
    else rg_fint_stats_block<T>(steps, s, sh, owner, tabs);
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
