/* The generation loop shared by the command line and the server: prompt in sequence mode, then one token at a
 * time in RNN mode. */
#include <stdlib.h>

#include "base/error.h"
#include "modrwkv.h"

static const int32_t k_default_stop[] = {24};

mrw_generate_params mrw_generate_params_default(void) {
    mrw_generate_params p = {.max_tokens = 256, .stop_tokens = k_default_stop, .n_stop = 1, .feed_last = 1};
    return p;
}

mrw_status mrw_generate_continue(mrw_context *ctx, mrw_state *state, mrw_sampler *sampler, float *logits,
                                 const mrw_generate_params *params, mrw_token_cb cb, void *user, int *n_generated,
                                 mrw_error *err) {
    mrw_generate_params p = params ? *params : mrw_generate_params_default();
    if (p.max_tokens <= 0) p.max_tokens = 256;
    if (n_generated) *n_generated = 0;
    mrw_status s = MRW_OK;
    int n = 0;
    while (s == MRW_OK && n < p.max_tokens) {
        int32_t tok = mrw_sample(sampler, logits, 0);
        mrw_sampler_accept(sampler, tok);
        n++;
        int stop = 0;
        for (int i = 0; i < p.n_stop; i++) stop |= tok == p.stop_tokens[i];
        if (cb && cb(user, tok)) stop = 1;
        if (stop || n == p.max_tokens) {
            if (p.feed_last) s = mrw_eval_tokens(ctx, state, &tok, 1, MRW_LOGITS_NONE, NULL, err);
            break;
        }
        s = mrw_eval_tokens(ctx, state, &tok, 1, MRW_LOGITS_LAST, logits, err);
    }
    if (n_generated) *n_generated = n;
    return s;
}

mrw_status mrw_generate(mrw_context *ctx, mrw_state *state, mrw_sampler *sampler, const int32_t *prompt, int n_prompt,
                        const mrw_generate_params *params, mrw_token_cb cb, void *user, int *n_generated,
                        mrw_error *err) {
    if (n_generated) *n_generated = 0;
    if (n_prompt <= 0) return mrw_err(err, MRW_E_ARG, "empty prompt: give at least one token");
    const int V = mrw_model_get_info(mrw_context_model(ctx)).n_vocab;
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!logits) return mrw_err(err, MRW_E_NOMEM, "out of memory");
    for (int i = 0; i < n_prompt; i++) mrw_sampler_accept(sampler, prompt[i]);
    mrw_status s = mrw_eval_tokens(ctx, state, prompt, n_prompt, MRW_LOGITS_LAST, logits, err);
    if (s == MRW_OK) s = mrw_generate_continue(ctx, state, sampler, logits, params, cb, user, n_generated, err);
    free(logits);
    return s;
}
