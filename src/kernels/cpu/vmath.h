/* Vectorised exp / sigmoid / tanh for the element-wise parts of the forward pass (AVX-512), with scalar
 * versions for other machines. exp: Cody-Waite range reduction and a degree-6 polynomial (Cephes
 * coefficients), within 2 ulp of expf over the clamped range; sigmoid = 1/(1+e^-x); tanh = 1 - 2/(e^2x + 1)
 * (absolute error ~1e-7 near 0, which is what its users need). */
#ifndef MRW_KERNELS_CPU_VMATH_H
#define MRW_KERNELS_CPU_VMATH_H

#include <math.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define MRW_VMATH_AVX512 1

static inline __m512 mrw_v_exp(__m512 x) {
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-103.972076416f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

static inline __m512 mrw_v_sigmoid(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, mrw_v_exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

static inline __m512 mrw_v_tanh(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 e = mrw_v_exp(_mm512_add_ps(x, x));
    return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}
#endif

static inline float mrw_s_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

#endif
