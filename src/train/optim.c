#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

mrw_adam_config mrw_adam_config_default(void) {
    return (mrw_adam_config){.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.0, .decoupled = 1};
}

mrw_status mrw_adam_init(mrw_adam *o, const mrw_adam_config *cfg, mrw_param_set *const *sets, int n_sets,
                         int groups, mrw_error *err) {
    memset(o, 0, sizeof *o);
    if (n_sets < 1 || n_sets > MRW_OPTIM_MAX_SETS)
        return mrw_err(err, MRW_E_ARG, "the optimizer takes 1 to %d parameter sets, not %d", MRW_OPTIM_MAX_SETS,
                       n_sets);
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1 && cfg->eps >= 0 &&
          cfg->weight_decay >= 0))
        return mrw_err(err, MRW_E_ARG, "bad Adam hyper-parameters (betas in [0,1), eps and weight decay >= 0)");
    o->cfg = *cfg;
    o->n_sets = n_sets;
    o->groups = groups;
    size_t total = 0;
    for (int s = 0; s < n_sets; s++) {
        const mrw_param_set *ps = sets[s];
        if (!ps->w || !ps->g) {
            mrw_adam_free(o);
            return mrw_err(err, MRW_E_ARG, "parameter set %d is not allocated", s);
        }
        o->sets[s] = sets[s];
        o->moff[s] = malloc((size_t)(ps->n ? ps->n : 1) * sizeof(size_t));
        if (!o->moff[s]) {
            mrw_adam_free(o);
            return mrw_err(err, MRW_E_NOMEM, "out of memory");
        }
        for (int i = 0; i < ps->n; i++) {
            if (ps->p[i].group & groups) {
                o->moff[s][i] = total;
                total += ps->p[i].n;
            } else {
                o->moff[s][i] = SIZE_MAX;
            }
        }
    }
    o->n_moment = total;
    o->m = calloc(total ? total : 1, sizeof(float));
    o->v = calloc(total ? total : 1, sizeof(float));
    if (!o->m || !o->v) {
        mrw_adam_free(o);
        return mrw_err(err, MRW_E_NOMEM, "cannot allocate %zu MiB of Adam moments", (2 * total * sizeof(float)) >> 20);
    }
    return MRW_OK;
}

void mrw_adam_free(mrw_adam *o) {
    for (int s = 0; s < MRW_OPTIM_MAX_SETS; s++) free(o->moff[s]);
    free(o->m), free(o->v);
    memset(o, 0, sizeof *o);
}

int mrw_adam_trains(const mrw_adam *o, int s, int i) { return o->moff[s][i] != SIZE_MAX; }

double mrw_grad_norm(const mrw_adam *o) {
    double sum = 0;
    for (int s = 0; s < o->n_sets; s++) {
        const mrw_param_set *ps = o->sets[s];
        for (int i = 0; i < ps->n; i++) {
            if (!mrw_adam_trains(o, s, i)) continue;
            const float *g = mrw_param_g(ps, i);
            for (size_t j = 0; j < ps->p[i].n; j++) sum += (double)g[j] * g[j];
        }
    }
    return sqrt(sum);
}

double mrw_clip_grad_norm(mrw_adam *o, double max_norm) {
    double norm = mrw_grad_norm(o);
    if (max_norm <= 0) return norm;
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.0, and always multiplied in (x1 is exact) */
    /* in float32, as torch computes it from the float32 norm */
    const float c = (float)max_norm / ((float)norm + 1e-6f);
    if (c >= 1.0f) return norm;
    for (int s = 0; s < o->n_sets; s++) {
        mrw_param_set *ps = o->sets[s];
        for (int i = 0; i < ps->n; i++) {
            if (!mrw_adam_trains(o, s, i)) continue;
            float *g = mrw_param_g(ps, i);
            const size_t n = ps->p[i].n;
#pragma omp parallel for schedule(static) if (n > 65536)
            for (size_t j = 0; j < n; j++) g[j] *= c;
        }
    }
    return norm;
}

void mrw_adam_step(mrw_adam *o, double lr) {
    o->t++;
    const double b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    /* Bias corrections in double, as torch computes these Python scalars. */
    const double bc1 = 1.0 - pow(b1, (double)o->t), bc2 = 1.0 - pow(b2, (double)o->t);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->cfg.eps;
    const float fb1 = (float)b1, fb2 = (float)b2, omb1 = (float)(1.0 - b1), omb2 = (float)(1.0 - b2);
    for (int s = 0; s < o->n_sets; s++) {
        mrw_param_set *ps = o->sets[s];
        for (int i = 0; i < ps->n; i++) {
            if (!mrw_adam_trains(o, s, i)) continue;
            const size_t n = ps->p[i].n;
            float *w = mrw_param_w(ps, i), *g = mrw_param_g(ps, i);
            float *m = o->m + o->moff[s][i], *v = o->v + o->moff[s][i];
            const int decay = !ps->p[i].no_decay && o->cfg.weight_decay > 0;
            const float wd = (float)o->cfg.weight_decay;
            const float shrink = (float)(1.0 - lr * o->cfg.weight_decay);
            const int decoupled = o->cfg.decoupled;
#pragma omp parallel for schedule(static) if (n > 65536)
            for (size_t j = 0; j < n; j++) {
                float gj = g[j], wj = w[j];
                if (decay && !decoupled) gj = gj + wd * wj;
                float mj = m[j] * fb1 + gj * omb1;
                float vj = v[j] * fb2 + (gj * gj) * omb2;
                m[j] = mj, v[j] = vj;
                if (decay && decoupled) wj = wj * shrink;
                float denom = sqrtf(vj) / bc2_sqrt + eps;
                w[j] = wj - step_size * (mj / denom);
            }
        }
    }
}

void mrw_adam_zero_grad(mrw_adam *o) {
    for (int s = 0; s < o->n_sets; s++) mrw_param_zero_grad(o->sets[s]);
}
