// recordgpu kernels: cv::warpAffine as OpenCV 3.4/4.x computes it (the algorithm inside MXNet), one output
// pixel at a time: the inverse matrix in double, source coordinates quantised to 1/1024 per column and per
// row (cvRound), shifted to 1/32 pixel (INTER_BITS = 5), then cv::remap with OpenCV's 32x32 interpolation
// tables (15-bit fixed-point weights for 8-bit, float otherwise) and a constant border.
#ifndef RG_WARP_CUH
#define RG_WARP_CUH

#include "rg_resize.cuh"

#define RG_AB_BITS 10
#define RG_INTER_BITS 5
#define RG_REMAP_BITS 15

// Interpolation tables (made by recordgpu/kernels/tables.py): float part, then the int16 part.
#define RG_TAB_F_LINEAR 0          // [1024][2][2] float
#define RG_TAB_F_CUBIC 4096        // [1024][4][4] float
#define RG_TAB_F_LANCZOS4 20480    // [1024][8][8] float
#define RG_TAB_F_COUNT 86016
#define RG_TAB_I_LINEAR 0          // same layout, int16, after the float part
#define RG_TAB_I_CUBIC 4096
#define RG_TAB_I_LANCZOS4 20480

template <bool FIX> struct RgTap { typedef float WT; };
template <> struct RgTap<true> { typedef int WT; };

RG_HD int rg_clip16(rg_i64 v) { return (int)rg_clampl(v, -32768, 32767); }

template <typename T>
RG_HD T rg_border_value(const RgGeom& g, int ch) { return RgT<T>::from_float(g.fill[ch]); }

// K x K taps at (ix0, iy0) (top-left tap). FIX: 15-bit int16 weights and int sums (8-bit bilinear and
// Lanczos-4), else float weights and sums (OpenCV >= 4.x runs 8-bit bicubic in float too).
template <typename T, int K, bool FIX, typename AT>
RG_HD_COLD void rg_remap_taps(const RgImg<T>& src, const RgGeom& g, int ix0, int iy0, const AT* w, T* out) {
    typedef typename RgTap<FIX>::WT WT;
    const int ONE = FIX ? (1 << RG_REMAP_BITS) : 1;
    int lim_w = src.w - (K - 1), lim_h = src.h - (K - 1);
    if (lim_w < 0) lim_w = 0;
    if (lim_h < 0) lim_h = 0;
    bool inner = (unsigned)ix0 < (unsigned)lim_w && (unsigned)iy0 < (unsigned)lim_h;
    if (!inner && (ix0 >= src.w || ix0 + K <= 0 || iy0 >= src.h || iy0 + K <= 0)) {
        for (int ch = 0; ch < src.c; ch++) out[ch] = rg_border_value<T>(g, ch);
        return;
    }
#ifdef RG_DEVICE
#pragma unroll 1
#endif
    for (int ch = 0; ch < src.c; ch++) {
        WT sum;
        if (inner) {
            if (K == 2) {
                sum = (WT)src.at(iy0, ix0, ch) * (WT)w[0] + (WT)src.at(iy0, ix0 + 1, ch) * (WT)w[1] +
                      (WT)src.at(iy0 + 1, ix0, ch) * (WT)w[2] + (WT)src.at(iy0 + 1, ix0 + 1, ch) * (WT)w[3];
            } else {
                sum = 0;
                for (int r = 0; r < K; r++) {
                    WT row = (WT)src.at(iy0 + r, ix0, ch) * (WT)w[r * K];
                    for (int j = 1; j < K; j++) row = row + (WT)src.at(iy0 + r, ix0 + j, ch) * (WT)w[r * K + j];
                    sum = (K == 4 && r == 0) ? row : sum + row;
                }
            }
        } else if (K == 2) {
            // bilinear border: a tap outside the image reads the border value
            WT cv = (WT)rg_border_value<T>(g, ch);
            WT v[4];
            for (int t = 0; t < 4; t++) {
                int x = ix0 + (t & 1), y = iy0 + (t >> 1);
                v[t] = (x >= 0 && x < src.w && y >= 0 && y < src.h) ? (WT)src.at(y, x, ch) : cv;
            }
            sum = v[0] * (WT)w[0] + v[1] * (WT)w[1] + v[2] * (WT)w[2] + v[3] * (WT)w[3];
        } else {
            // cubic / Lanczos border: start from the border value, add (tap - border) * weight
            WT cv = (WT)rg_border_value<T>(g, ch);
            sum = cv * (WT)ONE;
            for (int r = 0; r < K; r++) {
                int y = iy0 + r;
                if (y < 0 || y >= src.h) continue;
                for (int j = 0; j < K; j++) {
                    int x = ix0 + j;
                    if (x < 0 || x >= src.w) continue;
                    sum = sum + ((WT)src.at(y, x, ch) - cv) * (WT)w[r * K + j];
                }
            }
        }
        if (FIX) out[ch] = RgT<T>::from_int(((int)sum + (1 << (RG_REMAP_BITS - 1))) >> RG_REMAP_BITS);
        else out[ch] = RgT<T>::from_float((float)sum);
    }
}

// Pixel (X, Y) of the whole warped output.
template <typename T>
RG_HD void rg_warp_pixel(const RgImg<T>& src, const RgGeom& g, const void* tabs, int X, int Y, T* out) {
    const double* M = g.m;
    int interp = g.mode == 3 ? 1 : g.mode;  // warpAffine treats INTER_AREA as bilinear
    bool nearest = interp == 0;
    rg_i64 round_delta = nearest ? (1 << (RG_AB_BITS - 1)) : (1 << (RG_AB_BITS - RG_INTER_BITS - 1));
    rg_i64 adelta = rg_round_sat_i32(M[0] * X * 1024.0);
    rg_i64 bdelta = rg_round_sat_i32(M[3] * X * 1024.0);
    rg_i64 X0 = rg_round_sat_i32((M[1] * Y + M[2]) * 1024.0) + round_delta;
    rg_i64 Y0 = rg_round_sat_i32((M[4] * Y + M[5]) * 1024.0) + round_delta;
    if (nearest) {
        int sx = rg_clip16((X0 + adelta) >> RG_AB_BITS);
        int sy = rg_clip16((Y0 + bdelta) >> RG_AB_BITS);
        bool in = sx >= 0 && sx < src.w && sy >= 0 && sy < src.h;
        for (int ch = 0; ch < src.c; ch++) out[ch] = in ? src.at(sy, sx, ch) : rg_border_value<T>(g, ch);
        return;
    }
    rg_i64 xs = (X0 + adelta) >> (RG_AB_BITS - RG_INTER_BITS);
    rg_i64 ys = (Y0 + bdelta) >> (RG_AB_BITS - RG_INTER_BITS);
    int ix = rg_clip16(xs >> RG_INTER_BITS), iy = rg_clip16(ys >> RG_INTER_BITS);
    int idx = (int)(((ys & 31) << RG_INTER_BITS) + (xs & 31));
    const float* ftab = (const float*)tabs;
    const short* itab = (const short*)(ftab + RG_TAB_F_COUNT);
    const bool fix = RgT<T>::fixpt;
    if (interp == 2) {
        rg_remap_taps<T, 4, false>(src, g, ix - 1, iy - 1, ftab + RG_TAB_F_CUBIC + idx * 16, out);
    } else if (interp == 4) {
        if (fix) rg_remap_taps<T, 8, true>(src, g, ix - 3, iy - 3, itab + RG_TAB_I_LANCZOS4 + idx * 64, out);
        else rg_remap_taps<T, 8, false>(src, g, ix - 3, iy - 3, ftab + RG_TAB_F_LANCZOS4 + idx * 64, out);
    } else {
        if (fix) rg_remap_taps<T, 2, true>(src, g, ix, iy, itab + RG_TAB_I_LINEAR + idx * 4, out);
        else rg_remap_taps<T, 2, false>(src, g, ix, iy, ftab + RG_TAB_F_LINEAR + idx * 4, out);
    }
}

#endif  // RG_WARP_CUH
