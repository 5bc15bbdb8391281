/* The GPU vision encoder (vit_gpu.cu) filled from a weight file: every tensor of the tower, by Hugging Face name
 * under the prefix the CPU loader found (mrw_vit_config.prefix), converted to fp32 (mrw_to_f32) and uploaded
 * (matrices are rounded to bf16 there). Compiled into the library only with MRW_CUDA (make CUDA=1). */
#ifdef MRW_CUDA
#include <stdio.h>
#include <stdlib.h>

#include "base/error.h"
#include "formats/tensorfile.h"
#include "kernels/cuda/vit_gpu.h"
#include "tensor/dtype.h"

mrw_status mrw_vit_gpu_from_file(const mrw_tfile *f, const mrw_vit_config *cfg, int max_images, void *stream,
                                 mrw_vit_gpu **out, mrw_error *err) {
    *out = NULL;
    if (!f || !cfg) return mrw_err(err, MRW_E_ARG, "vit (cuda): NULL file or config");
    mrw_vit_gpu *v;
    mrw_status s = mrw_vit_gpu_new(cfg, max_images, stream, &v, err);
    if (s) return s;
    size_t n;
    const char *name;
    for (int i = 0; !s && (name = mrw_vit_gpu_tensor(v, i, &n)) != NULL; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s%s", cfg->prefix, name);
        const mrw_tensor_info *t = mrw_tfile_find(f, full);
        if (!t) {
            s = mrw_err(err, MRW_E_MISSING, "vit (cuda): the file has no tensor %s", full);
            break;
        }
        if ((size_t)mrw_tensor_numel(t) != n) {
            s = mrw_err(err, MRW_E_SHAPE, "vit (cuda): %s has %lld elements, %zu expected", full,
                        (long long)mrw_tensor_numel(t), n);
            break;
        }
        float *buf = malloc(n * sizeof *buf);
        if (!buf) {
            s = mrw_err(err, MRW_E_NOMEM, "out of memory");
            break;
        }
        mrw_to_f32(t->dtype, t->data, buf, (int64_t)n);
        s = mrw_vit_gpu_set(v, name, buf, n, err);
        free(buf);
    }
    if (s) {
        mrw_vit_gpu_free(v);
        return s;
    }
    *out = v;
    return MRW_OK;
}
#endif
