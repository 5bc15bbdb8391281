/* The WaveNet's configuration: the default layer table, dilations, receptive field and the range check
 * (see wavenet.h). A file of its own because the GPU WaveNet (src/kernels/cuda/wavenet_gpu.cu) needs these and
 * the standalone GPU test drivers link only a few host files (Makefile, CU_HOST_SRC), not the whole library. */
#include "ts/wavenet.h"

#include "base/error.h"

void mrw_wavenet_config_default(mrw_wavenet_config *c, int lookback) {
    c->res_ch = 64, c->skip_ch = 64, c->out_dim = 128;
    int n = 1;
    while (n < MRW_WAVENET_MAX_LAYERS && ((int64_t)1 << n) < (int64_t)lookback) n++; /* 1 + (2^n - 1) = 2^n >= L */
    if (n < 10 && lookback > 512) n = 10;
    c->n_layers = n, c->cycle = n;
}

int mrw_wavenet_dilation(const mrw_wavenet_config *c, int layer) { return 1 << (layer % c->cycle); }

int64_t mrw_wavenet_receptive_field(const mrw_wavenet_config *c) {
    int64_t rf = 1;
    for (int i = 0; i < c->n_layers; i++) rf += mrw_wavenet_dilation(c, i);
    return rf;
}

mrw_status mrw_wavenet_config_check(const mrw_wavenet_config *c, mrw_error *err) {
    if (c->n_layers < 1 || c->n_layers > MRW_WAVENET_MAX_LAYERS)
        return mrw_err(err, MRW_E_ARG, "WaveNet: n_layers must be 1..%d (got %d)", MRW_WAVENET_MAX_LAYERS, c->n_layers);
    if (c->cycle < 1 || c->cycle > 24) return mrw_err(err, MRW_E_ARG, "WaveNet: dilation cycle must be 1..24");
    if (c->res_ch < 1 || c->skip_ch < 1 || c->out_dim < 1 || c->res_ch > 4096 || c->skip_ch > 4096 ||
        c->out_dim > 65536)
        return mrw_err(err, MRW_E_ARG, "WaveNet: channel counts out of range");
    return MRW_OK;
}
