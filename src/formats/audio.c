/* Audio decoding through libsndfile (virtual I/O over memory) and resampling through soxr. See audio.h. */
#include "formats/audio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sndfile.h>
#include <soxr.h>

#include "base/error.h"
#include "base/mapfile.h"

#define MIN_RATE 1000   /* below this it is not audio we can use (and soxr ratios get extreme) */
#define MAX_RATE 768000 /* the highest rate in common use */
#define MAX_OUT_SAMPLES ((size_t)1 << 28) /* 1 GiB of float samples, whatever the limits say */
#define CHUNK_FRAMES 4096

mrw_audio_limits mrw_audio_limits_default(void) {
    mrw_audio_limits l = {MRW_AUDIO_MAX_BYTES, MRW_AUDIO_MAX_SECONDS};
    return l;
}

void mrw_audio_free(mrw_audio *a) {
    if (!a) return;
    free(a->samples);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------------------------ format detection */

typedef enum { CT_UNKNOWN = 0, CT_WAV, CT_AIFF, CT_AU, CT_FLAC, CT_OGG, CT_MP3 } container;

static int starts(const uint8_t *p, size_t n, const char *magic, size_t m) {
    return n >= m && memcmp(p, magic, m) == 0;
}

/* An MPEG audio frame header: 11 sync bits, then a version and a layer that are not "reserved". */
static int mpeg_sync(const uint8_t *p, size_t n, int *layer) {
    if (n < 4 || p[0] != 0xFF || (p[1] & 0xE0) != 0xE0) return 0;
    *layer = (p[1] >> 1) & 3; /* 3: layer I, 2: layer II, 1: layer III, 0: reserved (AAC ADTS uses 0) */
    return ((p[1] >> 3) & 3) != 1;
}

/* Only these containers reach libsndfile; its many rarely used formats stay out of reach of untrusted
 * input. */
static container detect(const uint8_t *p, size_t n) {
    int layer;
    if ((starts(p, n, "RIFF", 4) || starts(p, n, "RIFX", 4) || starts(p, n, "RF64", 4)) && n >= 12 &&
        memcmp(p + 8, "WAVE", 4) == 0)
        return CT_WAV;
    if (starts(p, n, "FORM", 4) && n >= 12 &&
        (memcmp(p + 8, "AIFF", 4) == 0 || memcmp(p + 8, "AIFC", 4) == 0))
        return CT_AIFF;
    if (starts(p, n, ".snd", 4)) return CT_AU;
    if (starts(p, n, "fLaC", 4)) return CT_FLAC;
    if (starts(p, n, "OggS", 4)) return CT_OGG;
    if (starts(p, n, "ID3", 3)) return CT_MP3;
    if (mpeg_sync(p, n, &layer) && layer != 0) return CT_MP3;
    return CT_UNKNOWN;
}

static const char *other_format_name(const uint8_t *p, size_t n) {
    int layer;
    if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0) return "MP4/M4A (AAC)";
    if (starts(p, n, "\x1a\x45\xdf\xa3", 4)) return "WebM/Matroska";
    if (mpeg_sync(p, n, &layer) && layer == 0) return "AAC (ADTS)";
    if (starts(p, n, "#!AMR", 5)) return "AMR";
    if (starts(p, n, "wvpk", 4)) return "WavPack";
    if (starts(p, n, "MAC ", 4)) return "Monkey's Audio";
    if (starts(p, n, "MThd", 4)) return "MIDI";
    if (starts(p, n, "caff", 4)) return "Core Audio (CAF)";
    if (starts(p, n, "RIFF", 4)) return "a RIFF file that is not WAVE (e.g. AVI)";
    return NULL;
}

static int major_matches(container ct, int format) {
    int major = format & SF_FORMAT_TYPEMASK;
    switch (ct) {
    case CT_WAV: return major == SF_FORMAT_WAV || major == SF_FORMAT_WAVEX || major == SF_FORMAT_RF64;
    case CT_AIFF: return major == SF_FORMAT_AIFF;
    case CT_AU: return major == SF_FORMAT_AU;
    case CT_FLAC: return major == SF_FORMAT_FLAC;
    case CT_OGG: return major == SF_FORMAT_OGG;
    case CT_MP3: return major == SF_FORMAT_MPEG;
    default: return 0;
    }
}

/* "WAV (Microsoft), Signed 16 bit PCM" from libsndfile's own names. */
static void describe(int format, char *out, size_t cap) {
    SF_FORMAT_INFO major = {.format = format & SF_FORMAT_TYPEMASK};
    SF_FORMAT_INFO sub = {.format = format & SF_FORMAT_SUBMASK};
    int have_major = sf_command(NULL, SFC_GET_FORMAT_INFO, &major, sizeof major) == 0 && major.name;
    int have_sub = sf_command(NULL, SFC_GET_FORMAT_INFO, &sub, sizeof sub) == 0 && sub.name;
    snprintf(out, cap, "%s%s%s", have_major ? major.name : "audio", have_sub ? ", " : "",
             have_sub ? sub.name : "");
}

/* -------------------------------------------------------------------------------- libsndfile memory I/O */

typedef struct {
    const uint8_t *data;
    sf_count_t size, pos;
} mem_io;

static sf_count_t vio_len(void *user) { return ((mem_io *)user)->size; }

static sf_count_t vio_seek(sf_count_t offset, int whence, void *user) {
    mem_io *m = user;
    sf_count_t base = whence == SEEK_SET   ? 0
                      : whence == SEEK_CUR ? m->pos
                      : whence == SEEK_END ? m->size
                                           : -1;
    if (base < 0) return -1;
    /* Hostile headers make libsndfile seek anywhere: refuse overflowing or negative positions. */
    if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0) return -1;
    m->pos = base + offset;
    return m->pos;
}

static sf_count_t vio_read(void *ptr, sf_count_t count, void *user) {
    mem_io *m = user;
    if (count <= 0 || m->pos >= m->size) return 0;
    sf_count_t n = m->size - m->pos < count ? m->size - m->pos : count;
    memcpy(ptr, m->data + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

static sf_count_t vio_write(const void *ptr, sf_count_t count, void *user) {
    (void)ptr, (void)count, (void)user;
    return 0;
}

static sf_count_t vio_tell(void *user) { return ((mem_io *)user)->pos; }

/* ------------------------------------------------------------------------------ growable sample buffer */

typedef struct {
    float *v;
    size_t n, cap, max;
} fbuf;

static int fbuf_reserve(fbuf *b, size_t extra) {
    if (extra > b->max || b->n > b->max - extra) return 0;
    if (b->n + extra <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->n + extra) cap *= 2;
    float *v = realloc(b->v, cap * sizeof(float));
    if (!v) return 0;
    b->v = v;
    b->cap = cap;
    return 1;
}

/* ------------------------------------------------------------------------------------------ resampling */

typedef struct {
    soxr_t soxr;
    double ratio;
} resampler;

static mrw_status rs_open(resampler *r, int in_rate, int out_rate, mrw_error *err) {
    soxr_error_t e = NULL;
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0); /* librosa's "soxr_hq" (python-soxr's "HQ") */
    soxr_runtime_spec_t rt = soxr_runtime_spec(1);
    r->ratio = (double)out_rate / in_rate;
    r->soxr = soxr_create(in_rate, out_rate, 1, &e, &io, &q, &rt);
    if (!r->soxr || e) {
        if (r->soxr) soxr_delete(r->soxr);
        r->soxr = NULL;
        return mrw_err(err, MRW_E_INTERNAL, "cannot create a %d -> %d Hz resampler: %s", in_rate, out_rate,
                       e ? e : "unknown error");
    }
    return MRW_OK;
}

/* Feeds n samples (in == NULL: end of input, flush everything) and appends the output to b. */
static mrw_status rs_process(resampler *r, const float *in, size_t n, fbuf *b, mrw_error *err) {
    size_t done = 0;
    for (int guard = 0; guard < 1000000; guard++) {
        size_t space = (size_t)((double)(n - done) * r->ratio) + 1024;
        if (!fbuf_reserve(b, space)) {
            if (b->n >= b->max) return mrw_err(err, MRW_E_LIMIT, "the resampled audio is too long");
            return mrw_err(err, MRW_E_NOMEM, "out of memory resampling audio");
        }
        size_t idone = 0, odone = 0;
        soxr_error_t e = soxr_process(r->soxr, in ? in + done : NULL, in ? n - done : 0, &idone, b->v + b->n,
                                      b->cap - b->n, &odone);
        if (e) return mrw_err(err, MRW_E_INTERNAL, "resampling failed: %s", e);
        done += idone;
        b->n += odone;
        if (in ? done >= n : odone == 0) return MRW_OK;
        if (in && idone == 0 && odone == 0) break;
    }
    return mrw_err(err, MRW_E_INTERNAL, "the resampler made no progress");
}

/* librosa's fix_length to ceil(n_in * ratio), with the ratio as a double like numpy's. */
static size_t fixed_length(size_t n_in, int in_rate, int out_rate) {
    return (size_t)ceil((double)n_in * ((double)out_rate / (double)in_rate));
}

mrw_status mrw_audio_resample(const float *in, size_t n, int in_rate, int out_rate, float **out,
                              size_t *n_out, mrw_error *err) {
    *out = NULL;
    *n_out = 0;
    if (!in || n == 0) return mrw_err(err, MRW_E_ARG, "the audio has no samples");
    if (in_rate < MIN_RATE || in_rate > MAX_RATE || out_rate < MIN_RATE || out_rate > MAX_RATE)
        return mrw_err(err, MRW_E_ARG, "cannot resample %d Hz to %d Hz (rates must be %d..%d Hz)", in_rate,
                       out_rate, MIN_RATE, MAX_RATE);
    size_t want = in_rate == out_rate ? n : fixed_length(n, in_rate, out_rate);
    if (want > MAX_OUT_SAMPLES) return mrw_err(err, MRW_E_LIMIT, "the resampled audio would be too long");
    fbuf b = {.max = MAX_OUT_SAMPLES};
    mrw_status st = MRW_OK;
    if (in_rate == out_rate) {
        if (!fbuf_reserve(&b, n)) return mrw_err(err, MRW_E_NOMEM, "out of memory copying audio");
        memcpy(b.v, in, n * sizeof(float));
        b.n = n;
    } else {
        resampler r;
        st = rs_open(&r, in_rate, out_rate, err);
        if (st != MRW_OK) return st;
        st = rs_process(&r, in, n, &b, err);
        if (st == MRW_OK) st = rs_process(&r, NULL, 0, &b, err);
        soxr_delete(r.soxr);
        if (st == MRW_OK && !fbuf_reserve(&b, want > b.n ? want - b.n : 0))
            st = mrw_err(err, MRW_E_NOMEM, "out of memory resampling audio");
        if (st != MRW_OK) {
            free(b.v);
            return st;
        }
        if (b.n < want) memset(b.v + b.n, 0, (want - b.n) * sizeof(float));
        b.n = want;
    }
    *out = b.v;
    *n_out = b.n;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------- decoding */

typedef struct {
    const char *name;
    SNDFILE *sf;
    SF_INFO info;
    int out_rate;
    int64_t max_frames;
    resampler rs; /* rs.soxr NULL when the rate is kept */
    fbuf out;
    int64_t frames;
} decoder;

static mrw_status check_info(decoder *d, container ct, const mrw_audio_limits *lim, mrw_error *err) {
    const SF_INFO *in = &d->info;
    if (!major_matches(ct, in->format))
        return mrw_err(err, MRW_E_FORMAT, "%s: libsndfile read it as another format than its header says",
                       d->name);
    if (in->channels <= 0)
        return mrw_err(err, MRW_E_FORMAT, "%s: the file declares %d channels", d->name, in->channels);
    if (in->samplerate < MIN_RATE || in->samplerate > MAX_RATE)
        return mrw_err(err, in->samplerate <= 0 ? MRW_E_FORMAT : MRW_E_UNSUPPORTED,
                       "%s: sample rate %d Hz is not supported (%d..%d Hz)", d->name, in->samplerate,
                       MIN_RATE, MAX_RATE);
    d->max_frames = (int64_t)(lim->max_seconds * in->samplerate);
    /* A declared length is only a hint (it may be absent or wrong); the reading loop enforces the limit. */
    if (in->frames > d->max_frames && in->frames < INT64_MAX / 2)
        return mrw_err(err, MRW_E_LIMIT, "%s: the audio is %.1f s long; the limit is %g s", d->name,
                       (double)in->frames / in->samplerate, lim->max_seconds);
    return MRW_OK;
}

/* Reads everything, checking each sample and averaging the channels, and feeds the resampler. */
static mrw_status read_all(decoder *d, const mrw_audio_limits *lim, mrw_error *err) {
    int ch = d->info.channels;
    float *buf = malloc(sizeof(float) * CHUNK_FRAMES * (size_t)ch),
          *mono = malloc(sizeof(float) * CHUNK_FRAMES);
    if (!buf || !mono) {
        free(buf);
        free(mono);
        return mrw_err(err, MRW_E_NOMEM, "%s: out of memory", d->name);
    }
    mrw_status st = MRW_OK;
    for (;;) {
        sf_count_t got = sf_readf_float(d->sf, buf, CHUNK_FRAMES);
        if (got <= 0) break;
        for (sf_count_t i = 0; i < got && st == MRW_OK; i++) {
            float acc = 0.0f;
            for (int c = 0; c < ch; c++) {
                float v = buf[(size_t)i * ch + c];
                if (!isfinite(v)) {
                    double t = (double)(d->frames + i) / d->info.samplerate;
                    st = mrw_err(err, MRW_E_FORMAT, "%s: sample at %.4f s (frame %lld, channel %d) is %s",
                                 d->name, t, (long long)(d->frames + i), c, isnan(v) ? "NaN" : "infinite");
                    break;
                }
                acc += v;
            }
            mono[i] = acc / (float)ch;
            if (st == MRW_OK && !isfinite(mono[i])) /* the sum of huge finite samples */
                st = mrw_err(err, MRW_E_FORMAT, "%s: samples at %.4f s are absurdly large (%g)", d->name,
                             (double)(d->frames + i) / d->info.samplerate, (double)buf[(size_t)i * ch]);
        }
        if (st != MRW_OK) break;
        d->frames += got;
        if (d->frames > d->max_frames) {
            st = mrw_err(err, MRW_E_LIMIT, "%s: the audio is longer than the limit of %g s", d->name,
                         lim->max_seconds);
            break;
        }
        if (d->rs.soxr) {
            st = rs_process(&d->rs, mono, (size_t)got, &d->out, err);
        } else if (!fbuf_reserve(&d->out, (size_t)got)) {
            st = mrw_err(err, d->out.n + (size_t)got > d->out.max ? MRW_E_LIMIT : MRW_E_NOMEM,
                         "%s: the audio is too long to hold in memory", d->name);
        } else {
            memcpy(d->out.v + d->out.n, mono, sizeof(float) * (size_t)got);
            d->out.n += (size_t)got;
        }
        if (st != MRW_OK) break;
    }
    free(buf);
    free(mono);
    if (st == MRW_OK && sf_error(d->sf) != SF_ERR_NO_ERROR)
        st = mrw_err(err, MRW_E_FORMAT, "%s: decoding failed after %lld frames: %s", d->name,
                     (long long)d->frames, sf_strerror(d->sf));
    return st;
}

mrw_status mrw_audio_load_mem(const void *data, size_t size, const char *name, int target_rate,
                              const mrw_audio_limits *limits, mrw_audio *out, mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (!name) name = "<memory>";
    if (!data && size) return mrw_err(err, MRW_E_ARG, "%s: no data", name);
    mrw_audio_limits lim = limits ? *limits : mrw_audio_limits_default();
    if (target_rate != 0 && (target_rate < MIN_RATE || target_rate > MAX_RATE))
        return mrw_err(err, MRW_E_ARG, "invalid target sample rate %d Hz", target_rate);
    if (!(lim.max_seconds > 0.0 && lim.max_seconds <= 1e7))
        return mrw_err(err, MRW_E_ARG, "invalid duration limit %g s", lim.max_seconds);
    if (size == 0) return mrw_err(err, MRW_E_FORMAT, "%s: the file is empty", name);
    if (size > lim.max_bytes)
        return mrw_err(err, MRW_E_LIMIT, "%s: the file is %zu bytes; the limit for audio is %zu bytes", name,
                       size, lim.max_bytes);
    const uint8_t *p = data;
    container ct = detect(p, size);
    if (ct == CT_UNKNOWN) {
        const char *other = other_format_name(p, size);
        if (other)
            return mrw_err(err, MRW_E_UNSUPPORTED,
                           "%s: %s audio is not supported (use WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF or AU)",
                           name, other);
        return mrw_err(err, MRW_E_UNSUPPORTED,
                       "%s: not a WAV, FLAC, Ogg, MP3, AIFF or AU file (unrecognised header)", name);
    }

    decoder d = {.name = name};
    mem_io io = {.data = p, .size = (sf_count_t)size, .pos = 0};
    SF_VIRTUAL_IO vio = {vio_len, vio_seek, vio_read, vio_write, vio_tell};
    d.sf = sf_open_virtual(&vio, SFM_READ, &d.info, &io);
    if (!d.sf) return mrw_err(err, MRW_E_FORMAT, "%s: cannot decode: %s", name, sf_strerror(NULL));
    mrw_status st = check_info(&d, ct, &lim, err);
    d.out_rate = target_rate ? target_rate : d.info.samplerate;
    d.out.max = MAX_OUT_SAMPLES;
    if (st == MRW_OK && d.out_rate != d.info.samplerate)
        st = rs_open(&d.rs, d.info.samplerate, d.out_rate, err);
    if (st == MRW_OK) st = read_all(&d, &lim, err);
    if (st == MRW_OK && d.frames == 0) st = mrw_err(err, MRW_E_FORMAT, "%s: the audio has no samples", name);
    if (st == MRW_OK && d.rs.soxr) {
        st = rs_process(&d.rs, NULL, 0, &d.out, err);
        size_t want = fixed_length((size_t)d.frames, d.info.samplerate, d.out_rate);
        if (st == MRW_OK && want > d.out.n && !fbuf_reserve(&d.out, want - d.out.n))
            st = mrw_err(err, MRW_E_NOMEM, "%s: out of memory", name);
        if (st == MRW_OK) {
            if (want > d.out.n) memset(d.out.v + d.out.n, 0, (want - d.out.n) * sizeof(float));
            d.out.n = want;
        }
    }
    for (size_t i = 0; st == MRW_OK && i < d.out.n; i++) { /* huge finite samples can overflow the filter */
        if (isfinite(d.out.v[i])) continue;
        st = mrw_err(err, MRW_E_FORMAT, "%s: resampling overflowed: the samples are absurdly large", name);
    }
    if (st == MRW_OK) {
        out->samples = d.out.v;
        out->n = d.out.n;
        out->sample_rate = d.out_rate;
        out->src_rate = d.info.samplerate;
        out->src_channels = d.info.channels;
        out->src_frames = d.frames;
        describe(d.info.format, out->src_format, sizeof out->src_format);
        d.out.v = NULL;
    }
    free(d.out.v);
    if (d.rs.soxr) soxr_delete(d.rs.soxr);
    sf_close(d.sf);
    return st;
}

mrw_status mrw_audio_load(const char *path, int target_rate, const mrw_audio_limits *limits, mrw_audio *out,
                          mrw_error *err) {
    memset(out, 0, sizeof *out);
    if (!path) return mrw_err(err, MRW_E_ARG, "no audio path given");
    mrw_mapping m;
    mrw_status st = mrw_map_file(path, &m, err);
    if (st != MRW_OK) return st;
    st = mrw_audio_load_mem(m.data, m.size, path, target_rate, limits, out, err);
    mrw_unmap(&m);
    return st;
}
