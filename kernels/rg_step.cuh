// recordgpu kernels: one step of a sample's plan, on one pixel. A step is one geometric operation (whose
// output may be cropped: a crop only selects which pixels to compute) followed by a chain of colour stages
// and written either as an intermediate (h, w, c) image in the source dtype or as the sample's normalised
// (c, h, w) output (channel swap, mirror, mean/scale, cast). The common plan (resize + crop + mirror +
// normalise + cast) is a single step.
#ifndef RG_STEP_CUH
#define RG_STEP_CUH

#include "rg_colour.cuh"
#include "rg_intensity.cuh"
#include "rg_warp.cuh"

// Geometric value of computed-region pixel (y, x), all channels, rounded to T.
template <typename T>
RG_HD void rg_geom_pixel(const RgStep& st, const void* tabs, int y, int x, T* v) {
    const RgGeom& g = st.geom;
    RgImg<T> src;
    src.p = (const T*)g.src;
    src.stride = g.src_stride;
    src.w = g.win_w;
    src.h = g.win_h;
    src.c = st.c;
    int X = g.crop_x + x, Y = g.crop_y + y;
    switch (g.kind) {
        case RG_GEOM_PAD: {
            int sx = X - g.pad, sy = Y - g.pad;
            bool in = sx >= 0 && sx < src.w && sy >= 0 && sy < src.h;
            for (int k = 0; k < st.c; k++) v[k] = in ? src.at(sy, sx, k) : RgT<T>::from_float(g.fill[k]);
            break;
        }
        case RG_GEOM_RESIZE: rg_resize_pixel(src, g, X, Y, v); break;
        case RG_GEOM_WARP: rg_warp_pixel(src, g, tabs, X, Y, v); break;
        default:
            for (int k = 0; k < st.c; k++) v[k] = src.at(Y, X, k);
            break;
    }
}

// The pixel after the geometric op and the first `upto` colour stages (shared by the step and mean kernels).
template <typename T>
RG_HD_COLD void rg_eval_pixel(const RgStep& st, const void* tabs, int y, int x, int upto, T* v) {
    rg_geom_pixel<T>(st, tabs, y, x, v);
    for (int i = 0; i < upto; i++) {
        const RgColour& col = st.colour[i];
        double mean = col.kind == RG_COL_CONTRAST ? st.means[col.slot] : 0.0;
        rg_colour_apply<T>(v, st.c, col, mean);
    }
}

// Index of the colour stage that owns statistics slot `slot` (a Contrast gray mean, or the statistics of a
// zscore / percentile FloatIntensity), or -1.
RG_HD int rg_slot_owner(const RgStep& st, int slot) {
    for (int i = 0; i < st.n_colour; i++) {
        const RgColour& col = st.colour[i];
        bool stats = col.kind == RG_COL_CONTRAST ||
                     (col.kind == RG_COL_FLOAT_INTENSITY && col.ival != RG_FINT_RANGE);
        if (stats && col.slot == slot) return i;
    }
    return -1;
}

// The step's FloatIntensity stage (always its last colour entry), or null.
RG_HD const RgColour* rg_float_intensity(const RgStep& st) {
    int nc = st.n_colour;
    return nc > 0 && st.colour[nc - 1].kind == RG_COL_FLOAT_INTENSITY ? &st.colour[nc - 1] : 0;
}

// Gray value (for the contrast mean) of pixel (y, x) just before colour stage `upto`.
template <typename T>
RG_HD typename RgGray<T>::GT rg_gray_before(const RgStep& st, const void* tabs, int y, int x, int upto) {
    T v[RG_MAX_C];
    rg_eval_pixel<T>(st, tabs, y, x, upto, v);
    return RgGray<T>::gray(v);
}

// Mean of the gray sum over `count` pixels: cv::mean multiplies by 1/N; int16 goes through numpy (sum / N).
template <typename T>
RG_HD double rg_mean_of(double sum, rg_i64 count) {
    if (sizeof(T) == 2 && (T)(-1) < (T)0) return sum / (double)count;
    return sum * (1.0 / (double)count);
}

// `fint`: the step's FloatIntensity, applied to each value on its way into the float32/float16 output.
template <typename T>
RG_HD void rg_write_normalized(const RgStep& st, int y, int x, const T* v, const RgColour* fint) {
    const RgNorm& n = st.norm;
    int H = st.geom.out_h, W = st.geom.out_w;
    int xo = n.mirror ? W - 1 - x : x;
    const float* mi = (const float*)n.mean_img;
    for (int k = 0; k < st.c; k++) {
        T p = v[n.swap[k]];
        rg_i64 o = ((rg_i64)k * H + y) * W + xo;
        rg_i64 mo = ((rg_i64)k * H + y) * W + x;  // the mean image is indexed before the mirror
        switch (n.out_dtype) {
            case RG_DT_FLOAT32:
            case RG_DT_FLOAT16: {
                float mean = mi ? mi[mo] : n.mean[k];
                float pf = fint ? rg_fint_apply(rg_fint_input(p, *fint), *fint) : (float)p;
                float f = (pf - mean) * n.mult[k] + n.bias[k];
                if (n.out_dtype == RG_DT_FLOAT32) ((float*)n.dst)[o] = f;
                else ((rg_u16*)n.dst)[o] = rg_float_to_half(f);
                break;
            }
            case RG_DT_UINT8: ((rg_u8*)n.dst)[o] = (rg_u8)p; break;
            case RG_DT_UINT16: ((rg_u16*)n.dst)[o] = (rg_u16)p; break;
            default: {
                rg_i64 m = n.imean[k];
                if (mi) {
                    float a = floorf(fabsf(mi[mo]) + 0.5f);
                    m = (rg_i64)(mi[mo] < 0.f ? -a : a);
                }
                rg_i64 d = (rg_i64)p - m;
                if (n.out_dtype == RG_DT_INT8) ((rg_i8*)n.dst)[o] = (rg_i8)rg_clampl(d, -128, 127);
                else ((rg_i16*)n.dst)[o] = (rg_i16)rg_clampl(d, -32768, 32767);
                break;
            }
        }
    }
}

// Computes and writes computed-region pixel (y, x) of step `st`.
template <typename T>
RG_HD void rg_step_pixel(const RgStep& st, const void* tabs, int y, int x) {
    T v[RG_MAX_C];
    const RgColour* fint = rg_float_intensity(st);
    rg_eval_pixel<T>(st, tabs, y, x, fint ? st.n_colour - 1 : st.n_colour, v);
    if (st.out_kind == RG_OUT_IMAGE) {
        T* d = (T*)st.dst + ((rg_i64)y * st.geom.out_w + x) * st.c;
        for (int k = 0; k < st.c; k++) d[k] = v[k];
    } else {
        rg_write_normalized<T>(st, y, x, v, fint);
    }
}

#endif  // RG_STEP_CUH
