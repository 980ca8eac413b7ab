// recordgpu kernels: the colour stages on one pixel, as the host reference executor computes them
// (recordgpu/augment/cpu.py): OpenCV's convertTo / addWeighted / cvtColor arithmetic in float32, each
// stage's result rounded (half to even) and saturated to the source dtype; float32 images stay unrounded.
#ifndef RG_COLOUR_CUH
#define RG_COLOUR_CUH

#include "rg_params.cuh"

// cvtColor(COLOR_RGB2GRAY) applied to BGR data, as MXNet does: channel 0 gets the R weight.
template <typename T> struct RgGray {
    typedef int GT;  // integer sources: OpenCV's 14-bit fixed point
    RG_HD static int gray(const T* v) {
        return ((int)v[0] * 4899 + (int)v[1] * 9617 + (int)v[2] * 1868 + (1 << 13)) >> 14;
    }
};
template <> struct RgGray<float> {
    typedef float GT;
    RG_HD static float gray(const float* v) { return v[0] * 0.299f + v[1] * 0.587f + v[2] * 0.114f; }
};

// convertTo(alpha, beta): saturate(rint(float(v) * alpha + beta))
template <typename T>
RG_HD T rg_linear(T v, float a, float b) { return RgT<T>::from_float((float)v * a + b); }

// OpenCV's float RGB2HLS on values in [0, 1] (blue first); h in degrees * hscale.
RG_HD void rg_bgr2hls(float b, float g, float r, float hscale, float* hls) {
    float h = 0.f, s = 0.f, l;
    float vmin, vmax, diff;
    vmax = vmin = r;
    if (vmax < g) vmax = g;
    if (vmax < b) vmax = b;
    if (vmin > g) vmin = g;
    if (vmin > b) vmin = b;
    diff = vmax - vmin;
    l = (vmax + vmin) * 0.5f;
    if (diff > 1.1920928955078125e-07f) {  // FLT_EPSILON
        s = l < 0.5f ? diff / (vmax + vmin) : diff / (2 - vmax - vmin);
        diff = 60.f / diff;
        if (vmax == r) h = (g - b) * diff;
        else if (vmax == g) h = (b - r) * diff + 120.f;
        else h = (r - g) * diff + 240.f;
        if (h < 0.f) h += 360.f;
    }
    hls[0] = h * hscale;
    hls[1] = l;
    hls[2] = s;
}

// OpenCV's float HLS2RGB; hscale = 6 / hrange. Writes b, g, r.
RG_HD void rg_hls2bgr(float h, float l, float s, float hscale, float* bgr) {
    if (s == 0) {
        bgr[0] = bgr[1] = bgr[2] = l;
        return;
    }
    const int sector_data[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1}, {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};
    float tab[4];
    float p2 = l <= 0.5f ? l * (1 + s) : l + s - l * s;
    float p1 = 2 * l - p2;
    h *= hscale;
    if (h < 0) {
        do h += 6; while (h < 0);
    } else if (h >= 6) {
        do h -= 6; while (h >= 6);
    }
    int sector = rg_floor(h);
    h -= sector;
    tab[0] = p2;
    tab[1] = p1;
    tab[2] = p1 + (p2 - p1) * (1 - h);
    tab[3] = p1 + (p2 - p1) * h;
    bgr[0] = tab[sector_data[sector][0]];
    bgr[1] = tab[sector_data[sector][1]];
    bgr[2] = tab[sector_data[sector][2]];
}

template <typename T>
RG_HD_COLD void rg_hsl(T* v, const RgColour& col) {
    if (sizeof(T) == 1) {
        // 8-bit cvtColor BGR2HLS (H in half degrees), shift, clip, HLS2BGR
        float hls[3];
        rg_bgr2hls((float)v[0] * (1.f / 255.f), (float)v[1] * (1.f / 255.f), (float)v[2] * (1.f / 255.f), 0.5f, hls);
        int H = RgT<rg_u8>::from_float(hls[0]);
        int L = RgT<rg_u8>::from_float(hls[1] * 255.f);
        int S = RgT<rg_u8>::from_float(hls[2] * 255.f);
        H = rg_clampi(H + col.ival, 0, 180);
        L = rg_clampi(L + (int)col.v[0], 0, 255);
        S = rg_clampi(S + (int)col.b, 0, 255);
        float bgr[3];
        rg_hls2bgr((float)H, (float)L * (1.f / 255.f), (float)S * (1.f / 255.f), 6.f / 180.f, bgr);
        for (int k = 0; k < 3; k++) v[k] = RgT<T>::from_float(bgr[k] * 255.f);
    } else {
        // 16-bit: float HLS on v / 65535 (H in degrees), shifted by 2*dh degrees and dl, ds / 65535
        const float scale = 65535.f;
        float hls[3];
        rg_bgr2hls((float)v[0] / scale, (float)v[1] / scale, (float)v[2] / scale, 1.f, hls);
        float dh = (float)(2 * col.ival);
        float dl = (float)((double)col.v[0] / 65535.0);
        float ds = (float)((double)col.b / 65535.0);
        float H = hls[0] + dh, L = hls[1] + dl, S = hls[2] + ds;
        H = H < 0.f ? 0.f : (H > 360.f ? 360.f : H);
        L = L < 0.f ? 0.f : (L > 1.f ? 1.f : L);
        S = S < 0.f ? 0.f : (S > 1.f ? 1.f : S);
        float bgr[3];
        rg_hls2bgr(H, L, S, 6.f / 360.f, bgr);
        for (int k = 0; k < 3; k++) v[k] = RgT<T>::from_float(bgr[k] * scale);
    }
}

// Applies colour stage `col` to the pixel's channels v[0..c). `mean` is the stage's gray mean (Contrast).
template <typename T>
RG_HD void rg_colour_apply(T* v, int c, const RgColour& col, double mean) {
    switch (col.kind) {
        case RG_COL_BRIGHTNESS:
            for (int k = 0; k < c; k++) v[k] = rg_linear(v[k], col.a, 0.f);
            break;
        case RG_COL_CONTRAST: {
            float beta = (1.f - col.a) * (float)mean;
            for (int k = 0; k < c; k++) v[k] = rg_linear(v[k], col.a, beta);
            break;
        }
        case RG_COL_SATURATION: {
            typename RgGray<T>::GT g = RgGray<T>::gray(v);
            float gt = (float)(T)g;  // the gray image has the source dtype
            float b = 1.f - col.a;
            for (int k = 0; k < c; k++) v[k] = RgT<T>::from_float((float)v[k] * col.a + gt * b + 0.f);
            break;
        }
        case RG_COL_HSL:
            rg_hsl(v, col);
            break;
        case RG_COL_PCA:
            for (int k = 0; k < c; k++) v[k] = RgT<T>::trunc_float((float)v[k] + col.v[k]);
            break;
        case RG_COL_INTENSITY:
            for (int k = 0; k < c; k++) v[k] = rg_linear(v[k], col.a, col.b);
            break;
        default:
            break;
    }
}

#endif  // RG_COLOUR_CUH
