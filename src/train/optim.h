/* Adam / AdamW and global gradient-norm clipping over the trainer's parameter tables (train/params.h).
 *
 * The math is torch.optim.Adam / torch.optim.AdamW (single-tensor path, amsgrad off, maximize off) and
 * torch.nn.utils.clip_grad_norm_ (L2, error_if_nonfinite off), so a step here matches a PyTorch step to float
 * rounding (tests/test_optim.c against tests/fixtures/optim/, made by tests/reference/make_optim_fixtures.py):
 *     clip:  total = ||g||_2 over every selected tensor; g *= min(1, max_norm / (total + 1e-6))
 *     Adam:  g += wd * w (Adam only, wd on no_decay == 0 tensors)
 *            m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2          (t = t + 1)
 *            AdamW only: w *= 1 - lr * wd (no_decay == 0 tensors)
 *            w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * Only tensors whose group is in the optimizer's group mask are touched (clip, update, moments); moments are
 * allocated for those tensors only, in one block. Every loop is element-wise or reduced in a fixed order, so
 * the result does not depend on the thread count. */
#ifndef MRW_TRAIN_OPTIM_H
#define MRW_TRAIN_OPTIM_H

#include <stdint.h>

#include "train/params.h"

#define MRW_OPTIM_MAX_SETS 8

typedef struct {
    double beta1, beta2, eps; /* 0.9, 0.99, 1e-8 (the ModRWKV recipe) */
    double weight_decay;      /* 0 = plain Adam (the recipe) */
    int decoupled;            /* 1: AdamW (decoupled decay); 0: Adam's L2 decay added to the gradient */
} mrw_adam_config;

mrw_adam_config mrw_adam_config_default(void);

typedef struct {
    mrw_adam_config cfg;
    int n_sets;
    mrw_param_set *sets[MRW_OPTIM_MAX_SETS];
    int groups;        /* mrw_param_group mask of the trained tensors */
    int64_t t;         /* optimizer steps taken (bias correction) */
    size_t n_moment;   /* floats in m and v */
    float *m, *v;      /* first and second moments, selected tensors one after another (set order, table order) */
    size_t *moff[MRW_OPTIM_MAX_SETS]; /* per set, per tensor: offset into m/v, or SIZE_MAX if not trained */
} mrw_adam;

/* The sets must be allocated (mrw_param_set_alloc) and stay alive; moments start at zero, t at 0. */
mrw_status mrw_adam_init(mrw_adam *o, const mrw_adam_config *cfg, mrw_param_set *const *sets, int n_sets,
                         int groups, mrw_error *err);
void mrw_adam_free(mrw_adam *o);
/* 1 if tensor i of set s is trained by this optimizer. */
int mrw_adam_trains(const mrw_adam *o, int s, int i);
/* L2 norm of the selected gradients (double accumulation, fixed order). */
double mrw_grad_norm(const mrw_adam *o);
/* torch.nn.utils.clip_grad_norm_(selected params, max_norm): scales the gradients, returns the norm before
 * clipping. max_norm <= 0 only measures. */
double mrw_clip_grad_norm(mrw_adam *o, double max_norm);
/* One Adam(W) step at learning rate lr over the selected tensors (t increments first). */
void mrw_adam_step(mrw_adam *o, double lr);
/* Zero the gradients of every tensor of every set (frozen ones included, they may have been written). */
void mrw_adam_zero_grad(mrw_adam *o);

#endif
