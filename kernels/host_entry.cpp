// recordgpu host build of the kernels: the same per-pixel code (the .cuh headers, with __host__ __device__
// mapped to nothing) run by plain loops, with the same packed RgStep structs as the GPU launches.
// Built by recordgpu/kernels/host.py: c++ -O2 -ffp-contract=off -shared -fPIC.
#include <stddef.h>

#include "rg_step.cuh"

#define RG_MEAN_THREADS 256  // the GPU mean pass's block size: the host sums in the same order

namespace {

template <typename T>
void host_step(const RgStep* steps, int n, const void* tabs) {
    for (int s = 0; s < n; s++) {
        const RgStep& st = steps[s];
        if (st.out_kind == RG_OUT_NONE) continue;
        for (int y = 0; y < st.geom.out_h; y++)
            for (int x = 0; x < st.geom.out_w; x++) rg_step_pixel<T>(st, tabs, y, x);
    }
}

template <typename T>
void host_gray_mean(RgStep& st, int slot, int upto, const void* tabs) {
    typedef typename RgGray<T>::GT GT;
    int W = st.geom.out_w;
    rg_i64 count = (rg_i64)W * st.geom.out_h;
    rg_i64 ipart[RG_MEAN_THREADS];
    double fpart[RG_MEAN_THREADS];
    for (int t = 0; t < RG_MEAN_THREADS; t++) {
        ipart[t] = 0;
        fpart[t] = 0.0;
        for (rg_i64 i = t; i < count; i += RG_MEAN_THREADS) {
            GT g = rg_gray_before<T>(st, tabs, (int)(i / W), (int)(i % W), upto);
            if (RgT<T>::is_int) ipart[t] += (rg_i64)g;
            else fpart[t] += (double)g;
        }
    }
    for (int w = RG_MEAN_THREADS / 2; w > 0; w >>= 1)
        for (int t = 0; t < w; t++) {
            ipart[t] += ipart[t + w];
            fpart[t] += fpart[t + w];
        }
    st.means[slot] = rg_mean_of<T>(RgT<T>::is_int ? (double)ipart[0] : fpart[0], count);
}

// The GPU block's sum (rg_fint_block_sum in augment.cu), in its order: thread t's pixels, then the tree.
template <typename T, bool SQUARES>
double host_fint_sum(const RgStep& st, int owner, const void* tabs, double mean) {
    const RgColour& col = st.colour[owner];
    int W = st.geom.out_w;
    rg_i64 npix = (rg_i64)W * st.geom.out_h;
    double part[RG_MEAN_THREADS];
    T v[RG_MAX_C];
    for (int t = 0; t < RG_MEAN_THREADS; t++) {
        double acc = 0.0;
        for (rg_i64 i = t; i < npix; i += RG_MEAN_THREADS) {
            rg_eval_pixel<T>(st, tabs, (int)(i / W), (int)(i % W), owner, v);
            for (int k = 0; k < st.c; k++) {
                double x = (double)rg_fint_input(v[k], col);
                if (SQUARES) {
                    double d = x - mean;
                    acc += d * d;
                } else {
                    acc += x;
                }
            }
        }
        part[t] = acc;
    }
    for (int w = RG_MEAN_THREADS / 2; w > 0; w >>= 1)
        for (int t = 0; t < w; t++) part[t] += part[t + w];
    return part[0];
}

template <typename T>
void host_fint_stats(RgStep& st, int owner, const void* tabs) {
    RgColour& col = st.colour[owner];
    int W = st.geom.out_w;
    rg_i64 npix = (rg_i64)W * st.geom.out_h;
    rg_i64 count = npix * st.c;
    float A, D;
    if (col.ival == RG_FINT_ZSCORE) {
        double mean = host_fint_sum<T, false>(st, owner, tabs, 0.0) / (double)count;
        double var = host_fint_sum<T, true>(st, owner, tabs, mean) / (double)count;
        rg_zscore_constants(mean, var, &A, &D);
    } else {
        // the same radix selection as the GPU (histogram counts do not depend on the order of the adds)
        rg_i64 rank[RG_PCT_TARGETS];
        double gamma[2];
        unsigned int prefix[RG_PCT_TARGETS] = {0u, 0u, 0u, 0u};
        static thread_local unsigned int hist[RG_PCT_TARGETS][RG_RADIX_BINS];
        rg_percentile_targets(col, count, rank, gamma);
        T v[RG_MAX_C];
        for (int pass = 0; pass < 4; pass++) {
            int shift = 24 - 8 * pass;
            unsigned int high = pass == 0 ? 0u : (0xffffffffu << (shift + 8));
            for (int r = 0; r < RG_PCT_TARGETS; r++)
                for (int d = 0; d < RG_RADIX_BINS; d++) hist[r][d] = 0u;
            for (rg_i64 i = 0; i < npix; i++) {
                rg_eval_pixel<T>(st, tabs, (int)(i / W), (int)(i % W), owner, v);
                for (int k = 0; k < st.c; k++) {
                    unsigned int key = rg_float_key(rg_fint_input(v[k], col));
                    int d = (int)((key >> shift) & 255u);
                    for (int r = 0; r < RG_PCT_TARGETS; r++)
                        if ((key & high) == prefix[r]) hist[r][d]++;
                }
            }
            for (int r = 0; r < RG_PCT_TARGETS; r++)
                prefix[r] |= (unsigned int)rg_select_bin(hist[r], &rank[r]) << shift;
        }
        rg_percentile_constants(prefix, gamma, &A, &D);
    }
    col.a = A;
    col.b = D;
}

template <typename T>
void host_mean(RgStep* steps, int n, int slot, const void* tabs) {
    for (int s = 0; s < n; s++) {
        RgStep& st = steps[s];
        if (st.out_kind == RG_OUT_NONE) continue;
        int owner = rg_slot_owner(st, slot);
        if (owner < 0) continue;
        if (st.colour[owner].kind == RG_COL_CONTRAST) host_gray_mean<T>(st, slot, owner, tabs);
        else host_fint_stats<T>(st, owner, tabs);
    }
}

}  // namespace

extern "C" {

// dtype codes: 0 uint8, 1 uint16, 2 int16, 3 float32 (recordgpu/kernels/params.py SRC_DTYPE_CODES)
int rg_host_step(int dtype, const RgStep* steps, int n, const void* tabs) {
    switch (dtype) {
        case 0: host_step<rg_u8>(steps, n, tabs); return 0;
        case 1: host_step<rg_u16>(steps, n, tabs); return 0;
        case 2: host_step<rg_i16>(steps, n, tabs); return 0;
        case 3: host_step<float>(steps, n, tabs); return 0;
        default: return -1;
    }
}

int rg_host_mean(int dtype, RgStep* steps, int n, int slot, const void* tabs) {
    switch (dtype) {
        case 0: host_mean<rg_u8>(steps, n, slot, tabs); return 0;
        case 1: host_mean<rg_u16>(steps, n, slot, tabs); return 0;
        case 2: host_mean<rg_i16>(steps, n, slot, tabs); return 0;
        case 3: host_mean<float>(steps, n, slot, tabs); return 0;
        default: return -1;
    }
}

// Layout check against params.py: sizes and a few offsets of the structs.
int rg_host_layout(long long* out, int n) {
    long long v[] = {
        (long long)sizeof(RgGeom), (long long)sizeof(RgColour), (long long)sizeof(RgNorm),
        (long long)sizeof(RgStep), (long long)offsetof(RgStep, norm), (long long)offsetof(RgStep, means),
        (long long)offsetof(RgStep, dst), (long long)offsetof(RgStep, colour),
        (long long)offsetof(RgGeom, src), (long long)offsetof(RgGeom, fill), (long long)offsetof(RgNorm, imean),
    };
    int m = (int)(sizeof(v) / sizeof(v[0]));
    for (int i = 0; i < n && i < m; i++) out[i] = v[i];
    return m;
}

}  // extern "C"
