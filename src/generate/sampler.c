/* Token sampling: penalties, temperature, top-k, top-p, seeded RNG. Greedy when temperature is 0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "modrwkv.h"

struct mrw_sampler {
    mrw_sampler_params p;
    int n_vocab;
    uint32_t *count; /* occurrences of each token seen so far */
    uint64_t rng[4];
    int32_t *idx;    /* scratch: candidate ids */
    float *prob;     /* scratch: candidate probabilities */
};

mrw_sampler_params mrw_sampler_params_default(void) {
    mrw_sampler_params p = {.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .repetition_penalty = 1.0f,
                            .presence_penalty = 0.0f, .frequency_penalty = 0.0f, .seed = 42};
    return p;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t *s) { /* xoshiro256** */
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static double uniform(uint64_t *s) { return (next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

mrw_sampler *mrw_sampler_new(const mrw_sampler_params *params, int n_vocab) {
    if (n_vocab <= 0) return NULL;
    mrw_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = params ? *params : mrw_sampler_params_default();
    s->n_vocab = n_vocab;
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    if (!s->count || !s->idx || !s->prob) {
        mrw_sampler_free(s);
        return NULL;
    }
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix(&x);
    return s;
}

void mrw_sampler_free(mrw_sampler *s) {
    if (!s) return;
    free(s->count);
    free(s->idx);
    free(s->prob);
    free(s);
}

void mrw_sampler_accept(mrw_sampler *s, int32_t token) {
    if (token >= 0 && token < s->n_vocab && s->count[token] < UINT32_MAX) s->count[token]++;
}

static void apply_penalties(const mrw_sampler *s, float *logits) {
    const mrw_sampler_params *p = &s->p;
    if (p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f) return;
    for (int i = 0; i < s->n_vocab; i++) {
        if (!s->count[i]) continue;
        float l = logits[i];
        if (p->repetition_penalty != 1.0f) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        l -= p->presence_penalty + p->frequency_penalty * (float)s->count[i];
        logits[i] = l;
    }
}

/* Moves the k largest-probability candidates to the front (unordered), O(n) on average. */
static void select_top(int32_t *idx, float *prob, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = prob[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (prob[i] > pivot) i++;
            while (prob[j] < pivot) j--;
            if (i <= j) {
                float tp = prob[i]; prob[i] = prob[j]; prob[j] = tp;
                int32_t ti = idx[i]; idx[i] = idx[j]; idx[j] = ti;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static void sort_desc(int32_t *idx, float *prob, int n) { /* insertion sort on the (small) candidate set */
    for (int i = 1; i < n; i++) {
        float p = prob[i];
        int32_t id = idx[i];
        int j = i - 1;
        while (j >= 0 && prob[j] < p) {
            prob[j + 1] = prob[j];
            idx[j + 1] = idx[j];
            j--;
        }
        prob[j + 1] = p;
        idx[j + 1] = id;
    }
}

int32_t mrw_sample(mrw_sampler *s, float *logits, int allow_eot) {
    const int V = s->n_vocab;
    apply_penalties(s, logits);
    if (!allow_eot) logits[0] = -INFINITY;
    int best = allow_eot ? 0 : (V > 1 ? 1 : 0);
    for (int i = 0; i < V; i++)
        if (logits[i] > logits[best] || (logits[best] != logits[best])) best = i;
    if (s->p.temperature <= 0.0f || V == 1) return best;
    /* softmax at temperature over all tokens */
    const float inv_t = 1.0f / s->p.temperature, mx = logits[best];
    double sum = 0;
    int n = 0;
    for (int i = 0; i < V; i++) {
        float e = (logits[i] == -INFINITY || logits[i] != logits[i]) ? 0.0f : expf((logits[i] - mx) * inv_t);
        if (e > 0) {
            s->idx[n] = i;
            s->prob[n++] = e;
            sum += e;
        }
    }
    for (int i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / sum);
    if (s->p.top_k > 0 && s->p.top_k < n) {
        select_top(s->idx, s->prob, n, s->p.top_k);
        n = s->p.top_k;
    }
    if (s->p.top_p < 1.0f && s->p.top_p > 0.0f) {
        /* nucleus: sort a candidate set that is large enough, growing it if needed */
        int m = n < 64 ? n : 64;
        for (;;) {
            select_top(s->idx, s->prob, n, m);
            sort_desc(s->idx, s->prob, m);
            double c = 0;
            int cut = -1;
            for (int i = 0; i < m; i++) {
                c += s->prob[i];
                if (c >= s->p.top_p) { cut = i + 1; break; }
            }
            if (cut > 0) { n = cut; break; }
            if (m == n) break;
            m = m * 4 < n ? m * 4 : n;
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += s->prob[i];
    double r = uniform(s->rng) * total;
    for (int i = 0; i < n; i++) {
        r -= s->prob[i];
        if (r <= 0) return s->idx[i];
    }
    return s->idx[n - 1];
}
