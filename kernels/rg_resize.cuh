// recordgpu kernels: cv::resize, one output pixel at a time.
//
// OpenCV resizes separably (a horizontal pass into a row buffer of the working type WT, then a vertical
// pass); recomputing the horizontal sums a pixel needs gives the same numbers, so each output pixel is
// computed on its own with OpenCV's coefficients, tap clamping, working types and final casts:
//   8-bit: 11-bit fixed-point coefficients, int sums (bilinear: OpenCV's >>4 / >>16 / +2>>2 vertical step;
//          cubic / Lanczos-4: (sum + 2^21) >> 22);
//   16-bit and float32: float coefficients and sums, saturate_cast rounding half to even.
// INTER_AREA: integer factors average blocks; fractional factors use OpenCV's area tables; enlarging uses
// bilinear with area coefficients. Nearest uses floor(x * (1 / inv_scale)).
#ifndef RG_RESIZE_CUH
#define RG_RESIZE_CUH

#include "rg_params.cuh"

#define RG_COEF_BITS 11
#define RG_COEF_SCALE 2048

template <typename T>
struct RgImg {  // a (h, w, c) image view: element (y, x, k) at p[y * stride + x * c + k]
    const T* p;
    int stride, w, h, c;
    RG_HD T at(int y, int x, int k) const { return p[(rg_i64)y * stride + x * c + k]; }
};

RG_HD void rg_cubic_coeffs(float x, float* c) {
    const float A = -0.75f;
    c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    c[3] = 1.f - c[0] - c[1] - c[2];
}

// resize's Lanczos-4 (OpenCV >= 4.8 form: a tap at distance < 1e-6 takes all the weight)
RG_HD_COLD void rg_lanczos4_coeffs(float x, float* c) {
    const double s45 = 0.70710678118654752440084436210485;
    const double cs[8][2] = {{1, 0}, {-s45, -s45}, {0, 1}, {s45, -s45}, {-1, 0}, {s45, s45}, {0, -1}, {-s45, s45}};
    const double pi = 3.1415926535897932384626433832795;
    float sum = 0;
    double y0 = -(x + 3) * pi * 0.25, s0 = sin(y0), c0 = cos(y0);
    for (int i = 0; i < 8; i++) {
        float y0_ = (x + 3 - i);
        if (fabsf(y0_) >= 1e-6f) {
            double y = -y0_ * pi * 0.25;
            c[i] = (float)((cs[i][0] * s0 + cs[i][1] * c0) / (y * y));
        } else {
            c[i] = 1e30f;
        }
        sum += c[i];
    }
    sum = 1.f / sum;
    for (int i = 0; i < 8; i++) c[i] *= sum;
}

// Coefficients of one axis for output index d (OpenCV's resize() table loop). K taps starting at s-K/2+1.
// For x (clamp_linear = 1) a bilinear tap that falls off the image is moved onto it with weight 0.
RG_HD int rg_axis_coeffs(int mode, int d, double scale, double inv_scale, int ssize, bool clamp_linear,
                         float* cbuf) {
    int s;
    float f;
    if (mode == RG_RZ_LINEAR_AREA) {
        s = rg_floor(d * scale);
        f = (float)((d + 1) - (s + 1) * inv_scale);
        f = f <= 0 ? 0.f : f - (float)rg_floor(f);
    } else {
        f = (float)((d + 0.5) * scale - 0.5);
        s = rg_floor(f);
        f -= s;
    }
    bool linear = mode == RG_RZ_LINEAR || mode == RG_RZ_LINEAR_AREA;
    if (clamp_linear && linear) {
        if (s < 0) { f = 0; s = 0; }
        if (s >= ssize - 1) { f = 0; s = ssize - 1; }
    }
    if (mode == RG_RZ_CUBIC) rg_cubic_coeffs(f, cbuf);
    else if (mode == RG_RZ_LANCZOS4) rg_lanczos4_coeffs(f, cbuf);
    else { cbuf[0] = 1.f - f; cbuf[1] = f; }
    return s;
}

// --- separable bilinear / cubic / Lanczos-4 ----------------------------------------------------------
template <typename T, int K>
RG_HD_COLD void rg_resize_sep(const RgImg<T>& src, const RgGeom& g, int X, int Y, T* out) {
    typedef typename RgT<T>::WT WT;
    float cx[8], cy[8];
    int sx = rg_axis_coeffs(g.mode, X, g.scale_x, g.inv_scale_x, src.w, true, cx);
    int sy = rg_axis_coeffs(g.mode, Y, g.scale_y, g.inv_scale_y, src.h, false, cy);
    WT ax[K], by[K];
    for (int k = 0; k < K; k++) {
        if (RgT<T>::fixpt) {
            ax[k] = (WT)rg_sat_short(cx[k] * RG_COEF_SCALE);
            by[k] = (WT)rg_sat_short(cy[k] * RG_COEF_SCALE);
        } else {
            ax[k] = (WT)cx[k];
            by[k] = (WT)cy[k];
        }
    }
    int xs[K], ys[K];
    bool x_one_tap = false;
    if (K == 2) {
        // bilinear: a tap clamped to the last column uses only the first weight (OpenCV's xmax branch)
        x_one_tap = sx + 1 >= src.w;
        xs[0] = sx;
        xs[1] = x_one_tap ? sx : sx + 1;
    } else {
        for (int k = 0; k < K; k++) xs[k] = rg_clampi(sx - K / 2 + 1 + k, 0, src.w - 1);
    }
    for (int k = 0; k < K; k++) ys[k] = rg_clampi(sy - K / 2 + 1 + k, 0, src.h - 1);

#ifdef RG_DEVICE
#pragma unroll 1
#endif
    for (int ch = 0; ch < src.c; ch++) {
        WT row[K];
        for (int r = 0; r < K; r++) {
            WT v;
            if (K == 2 && x_one_tap) {
                v = (WT)src.at(ys[r], xs[0], ch) * (RgT<T>::fixpt ? (WT)RG_COEF_SCALE : (WT)1);
            } else {
                v = (WT)src.at(ys[r], xs[0], ch) * ax[0];
                for (int k = 1; k < K; k++) v = v + (WT)src.at(ys[r], xs[k], ch) * ax[k];
            }
            row[r] = v;
        }
        if (RgT<T>::fixpt) {
            if (K == 2) {  // VResizeLinear<uchar, int, short, FixedPtCast<...>> specialisation
                int b0 = (int)by[0], b1 = (int)by[1];
                int s0 = (int)row[0], s1 = (int)row[1];
                int v = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
                out[ch] = RgT<T>::from_int(v);
            } else {
                int v = (int)row[0] * (int)by[0];
                for (int k = 1; k < K; k++) v += (int)row[k] * (int)by[k];
                out[ch] = RgT<T>::from_int((v + (1 << (2 * RG_COEF_BITS - 1))) >> (2 * RG_COEF_BITS));
            }
        } else {
            float v = (float)row[0] * (float)by[0];
            for (int k = 1; k < K; k++) v = v + (float)row[k] * (float)by[k];
            out[ch] = RgT<T>::from_float(v);
        }
    }
}

// --- INTER_AREA, fractional scale (OpenCV's computeResizeAreaTab + ResizeArea_Invoker) ----------------
// The table entries of output index d along one axis, in table order: an optional partial first cell
// (source mid0 - 1), full cells [mid0, mid1), an optional partial last cell (source mid1).
struct RgAreaAxis {
    float a_first, a_mid, a_last;
    bool has_first, has_last;
    int mid0, mid1;   // [mid0, mid1) full cells
};

RG_HD RgAreaAxis rg_area_axis(int d, double scale, int ssize) {
    RgAreaAxis t;
    double fsx1 = d * scale;
    double fsx2 = fsx1 + scale;
    double cellWidth = scale < ssize - fsx1 ? scale : ssize - fsx1;
    int sx1 = rg_ceil(fsx1), sx2 = rg_floor(fsx2);
    sx2 = sx2 < ssize - 1 ? sx2 : ssize - 1;
    sx1 = sx1 < sx2 ? sx1 : sx2;
    t.has_first = sx1 - fsx1 > 1e-3;
    t.a_first = (float)((sx1 - fsx1) / cellWidth);
    t.mid0 = sx1;
    t.mid1 = sx2;
    t.a_mid = (float)(1.0 / cellWidth);
    t.has_last = fsx2 - sx2 > 1e-3;
    double tail = fsx2 - sx2;
    tail = tail < 1. ? tail : 1.;
    tail = tail < cellWidth ? tail : cellWidth;
    t.a_last = (float)(tail / cellWidth);
    return t;
}

template <typename T>
RG_HD float rg_area_row(const RgImg<T>& src, int y, const RgAreaAxis& ax, int ch) {
    float buf = 0.f;
    if (ax.has_first) buf = buf + (float)src.at(y, ax.mid0 - 1, ch) * ax.a_first;
    for (int x = ax.mid0; x < ax.mid1; x++) buf = buf + (float)src.at(y, x, ch) * ax.a_mid;
    if (ax.has_last) buf = buf + (float)src.at(y, ax.mid1, ch) * ax.a_last;
    return buf;
}

template <typename T>
RG_HD_COLD void rg_resize_area(const RgImg<T>& src, const RgGeom& g, int X, int Y, T* out) {
    RgAreaAxis ax = rg_area_axis(X, g.scale_x, src.w);
    RgAreaAxis ay = rg_area_axis(Y, g.scale_y, src.h);
    for (int ch = 0; ch < src.c; ch++) {
        float sum = 0.f;
        if (ay.has_first) sum = sum + ay.a_first * rg_area_row(src, ay.mid0 - 1, ax, ch);
        for (int y = ay.mid0; y < ay.mid1; y++) sum = sum + ay.a_mid * rg_area_row(src, y, ax, ch);
        if (ay.has_last) sum = sum + ay.a_last * rg_area_row(src, ay.mid1, ax, ch);
        out[ch] = RgT<T>::from_float(sum);
    }
}

// --- INTER_AREA, integer factors (ResizeAreaFast_Invoker; 2x2 has its own rounding) -----------------
template <typename T>
RG_HD_COLD void rg_resize_area_fast(const RgImg<T>& src, const RgGeom& g, int X, int Y, T* out) {
    int fx = g.iscale_x, fy = g.iscale_y;
    int sx0 = X * fx, sy0 = Y * fy;
    bool fast2 = fx == 2 && fy == 2 && (src.c != 2);
    for (int ch = 0; ch < src.c; ch++) {
        if (RgT<T>::is_int && fast2) {
            int s = (int)src.at(sy0, sx0, ch) + (int)src.at(sy0, sx0 + 1, ch) + (int)src.at(sy0 + 1, sx0, ch) +
                    (int)src.at(sy0 + 1, sx0 + 1, ch);
            out[ch] = (T)((s + 2) >> 2);
            continue;
        }
        float scale = 1.f / (fx * fy);
        if (RgT<T>::fixpt) {
            int s = 0;
            for (int dy = 0; dy < fy; dy++)
                for (int dx = 0; dx < fx; dx++) s += (int)src.at(sy0 + dy, sx0 + dx, ch);
            out[ch] = RgT<T>::from_float((float)s * scale);
        } else {
            // OpenCV adds four taps at a time, sum += ((a + b) + c) + d (in int for 16-bit sources,
            // float for float32), then the remaining taps one by one.
            typedef typename RgT<T>::WT WT;
            float s = 0.f;
            int area = fx * fy, full = area & ~3;
            for (int k = 0; k < area;) {
                if (k < full) {
                    WT part = 0;
                    for (int j = 0; j < 4; j++, k++) {
                        WT v = (WT)src.at(sy0 + k / fx, sx0 + k % fx, ch);
                        if (RgT<T>::is_int) part = (WT)((int)part + (int)v);
                        else part = j == 0 ? v : part + v;
                    }
                    s = s + (float)part;
                } else {
                    s = s + (float)src.at(sy0 + k / fx, sx0 + k % fx, ch);
                    k++;
                }
            }
            out[ch] = RgT<T>::from_float(s * scale);
        }
    }
}

// --- nearest -----------------------------------------------------------------------------------------
template <typename T>
RG_HD void rg_resize_nearest(const RgImg<T>& src, const RgGeom& g, int X, int Y, T* out) {
    // resizeNN: ifx = 1 / inv_scale (== scale_x as computed by OpenCV)
    int sx = rg_floor(X * g.scale_x);
    int sy = rg_floor(Y * g.scale_y);
    sx = sx < src.w - 1 ? sx : src.w - 1;
    sy = sy < src.h - 1 ? sy : src.h - 1;
    for (int ch = 0; ch < src.c; ch++) out[ch] = src.at(sy, sx, ch);
}

// Pixel (X, Y) of the whole resized window.
template <typename T>
RG_HD void rg_resize_pixel(const RgImg<T>& src, const RgGeom& g, int X, int Y, T* out) {
    switch (g.mode) {
        case RG_RZ_COPY:
            for (int ch = 0; ch < src.c; ch++) out[ch] = src.at(Y, X, ch);
            break;
        case RG_RZ_NEAREST: rg_resize_nearest(src, g, X, Y, out); break;
        case RG_RZ_LINEAR:
        case RG_RZ_LINEAR_AREA: rg_resize_sep<T, 2>(src, g, X, Y, out); break;
        case RG_RZ_CUBIC: rg_resize_sep<T, 4>(src, g, X, Y, out); break;
        case RG_RZ_LANCZOS4: rg_resize_sep<T, 8>(src, g, X, Y, out); break;
        case RG_RZ_AREA: rg_resize_area(src, g, X, Y, out); break;
        default: rg_resize_area_fast(src, g, X, Y, out); break;
    }
}

#endif  // RG_RESIZE_CUH
