#include "kernels/cpu/matmul.h"

#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/matmul_impl.h"
#include "tensor/dtype.h"

int mrw_mat_init(mrw_mat *m, mrw_dtype dtype, int rows, int cols, const void *data) {
    m->dtype = dtype;
    m->rows = rows;
    m->cols = cols;
    m->data = data;
    m->f32_act = 0;
    m->slice_cols = 0;
    m->interleaved = 0;
    m->row_bytes = mrw_dtype_row_bytes(dtype, cols);
    return m->row_bytes ? 0 : -1;
}

int mrw_mat_n_slices(const mrw_mat *W) {
    return W->slice_cols > 0 ? (W->cols + W->slice_cols - 1) / W->slice_cols : 1;
}

int mrw_mat_slice(const mrw_mat *W, int s, mrw_mat *view) {
    *view = *W;
    if (W->slice_cols <= 0) return 0;
    const int c0 = s * W->slice_cols, w = W->cols - c0 < W->slice_cols ? W->cols - c0 : W->slice_cols;
    /* every slice before s is full width */
    const size_t off = (size_t)s * W->rows * mrw_dtype_row_bytes(W->dtype, W->slice_cols);
    mrw_mat_init(view, W->dtype, W->rows, w, (const uint8_t *)W->data + off);
    view->f32_act = W->f32_act;
    view->interleaved = W->interleaved;
    return c0;
}

int mrw_mat_slice_cols_for(mrw_dtype dt, int cols, int input_bytes) {
    /* bytes per input element as the fast decode kernels read it: f32 for f32/f16 weights, bf16 for bf16, 8-bit
     * values with the q4_0 kernel's per-pair scales and corrections (2 bytes per element) or q8_0's (~1) */
    const int per = dt == MRW_DT_F32 || dt == MRW_DT_F16 ? 4 : dt == MRW_DT_Q8_0 ? 1 : 2;
    const int max = input_bytes / per;
    if (cols <= max || max < MRW_QK) return 0;
    const int n = (cols + max - 1) / max;
    int w = (cols + n - 1) / n;
    w = (w + MRW_QK - 1) / MRW_QK * MRW_QK; /* whole quantization blocks, and 128-byte aligned f32 input slices */
    return w < cols ? w : 0;
}

void mrw_mat_copy_sliced(const mrw_mat *W, int slice_cols, void *dst, mrw_mat *out) {
    /* one of the two layouts is row-major: walk the slices of the other */
    mrw_mat m = *W;
    m.data = dst;
    m.slice_cols = slice_cols;
    const mrw_mat *sl = W->slice_cols > 0 ? W : &m, *rm = W->slice_cols > 0 ? &m : W;
    for (int s = 0, n = mrw_mat_n_slices(sl); s < n; s++) {
        mrw_mat v;
        const int c0 = mrw_mat_slice(sl, s, &v);
        const size_t skip = mrw_dtype_row_bytes(W->dtype, c0);
        for (int r = 0; r < W->rows; r++) {
            uint8_t *piece = (uint8_t *)v.data + (size_t)r * v.row_bytes;
            uint8_t *whole = (uint8_t *)rm->data + (size_t)r * rm->row_bytes + skip;
            if (sl == &m) memcpy(piece, whole, v.row_bytes);
            else memcpy(whole, piece, v.row_bytes);
        }
    }
    *out = m;
}

void mrw_mat_row_f32(const mrw_mat *W, int row, float *out) {
    for (int s = 0, n = mrw_mat_n_slices(W); s < n; s++) {
        mrw_mat v;
        const int c0 = mrw_mat_slice(W, s, &v);
        const uint8_t *src = (const uint8_t *)v.data + (size_t)row * v.row_bytes;
        if (!v.interleaved) {
            mrw_to_f32(v.dtype, src, out + c0, v.cols);
            continue;
        }
        enum { PIECE = 256 }; /* blocks, whole groups */
        mrw_block_q4_0 blk[PIECE];
        for (int b0 = 0, nb = v.cols / MRW_QK; b0 < nb; b0 += PIECE) {
            const int n = nb - b0 < PIECE ? nb - b0 : PIECE;
            mrw_q4_deinterleave_blocks(src, nb, b0, n, blk);
            mrw_dequantize_q4_0(blk, out + c0 + (size_t)b0 * MRW_QK, (int64_t)n * MRW_QK);
        }
    }
}

void mrw_mat_copy_plain(const mrw_mat *W, void *dst) {
    for (int s = 0, n = mrw_mat_n_slices(W); s < n; s++) {
        mrw_mat v;
        const int c0 = mrw_mat_slice(W, s, &v);
        const size_t skip = mrw_dtype_row_bytes(W->dtype, c0);
        for (int r = 0; r < W->rows; r++) {
            const uint8_t *piece = (const uint8_t *)v.data + (size_t)r * v.row_bytes;
            uint8_t *whole = (uint8_t *)dst + (size_t)r * W->row_bytes + skip;
            if (v.interleaved) mrw_q4_deinterleave_row(piece, (mrw_block_q4_0 *)whole, v.cols / MRW_QK);
            else memcpy(whole, piece, v.row_bytes);
        }
    }
}

int mrw_mat_interleavable(const mrw_mat *W) {
    return W->dtype == MRW_DT_Q4_0 && !W->interleaved && mrw_qx_supported(MRW_DT_Q4_0);
}

int mrw_mat_interleave(mrw_mat *W, void *dst) {
    uint8_t *tmp = malloc(W->row_bytes);
    if (!tmp) return -1;
    for (int s = 0, n = mrw_mat_n_slices(W); s < n; s++) {
        mrw_mat v;
        mrw_mat_slice(W, s, &v);
        const size_t off = (size_t)((const uint8_t *)v.data - (const uint8_t *)W->data);
        for (int r = 0; r < W->rows; r++) {
            const size_t at = off + (size_t)r * v.row_bytes;
            memcpy(tmp, (const uint8_t *)W->data + at, v.row_bytes);
            mrw_q4_interleave_row((const mrw_block_q4_0 *)tmp, (uint8_t *)dst + at, v.cols / MRW_QK);
        }
    }
    free(tmp);
    W->data = dst;
    W->interleaved = 1;
    return 0;
}

void mrw_matmul_ref(const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int accumulate) {
    float *row = malloc((size_t)W->cols * sizeof *row);
    if (!row) abort(); /* reference path: tests only */
    for (int o = 0; o < W->rows; o++) {
        mrw_mat_row_f32(W, o, row);
        for (int t = 0; t < T; t++) {
            const float *x = X + (size_t)t * ldx;
            double s = 0;
            for (int k = 0; k < W->cols; k++) s += (double)row[k] * x[k];
            float *y = Y + (size_t)t * ldy + o;
            *y = accumulate ? *y + (float)s : (float)s;
        }
    }
    free(row);
}

/* A fork/join costs microseconds (and much more when another process holds a core), so small products run
 * on the calling thread: below ~64K multiply-adds one thread is faster. */
#define MRW_MIN_WORK_PER_FORK 65536.0
static int worth_threads(const mrw_kctx *k, double macs) {
    return macs < MRW_MIN_WORK_PER_FORK ? 1 : k->n_threads;
}

/* Rows [r0, r1) for all T inputs: with prepared 8-bit activations (qx, one per MRW_MV_MAXT inputs) or with
 * f32 activations. */
static void matvec_rows(const mrw_mat *W, const mrw_qx *qx, int r0, int r1, const float *X, int ldx, float *Y, int ldy,
                        int T, int acc) {
    if (r0 >= r1) return;
    for (int t0 = 0, c = 0; t0 < T; t0 += MRW_MV_MAXT, c++) {
        int tn = T - t0 < MRW_MV_MAXT ? T - t0 : MRW_MV_MAXT;
        if (qx) mrw_matvec_qx_rows(W, r0, r1, &qx[c], Y + (size_t)t0 * ldy, ldy, acc);
        else mrw_matvec_rows(W, r0, r1, X + (size_t)t0 * ldx, ldx, Y + (size_t)t0 * ldy, ldy, tn, acc);
    }
}

/* Runs the jobs' rows on nt threads. The rows of all jobs form one stream (job after job) handed out from a
 * shared cursor rather than split evenly up front: when every thread streams from memory, one often gets more
 * bandwidth than the other. Each grab takes 1/nt of the bytes still to do (at least GRAB_MIN_BYTES, never past
 * the end of a job, whole multiples of 16 rows), so a thread streams long contiguous runs first and the threads
 * finish close together. Measured on the 2-core machine (docs/PERFORMANCE.md):
 * - against 32 KiB chunks (sixth and tenth sessions): long runs are what keep each thread's hardware prefetch
 *   going; 2-thread decode +5-30 % at every size;
 * - against two equal pieces per thread (tenth session): +2-5 % (0.1B, 0.4B and 1.5B q4_0, interleaved rounds). */
#define GRAB_MIN_BYTES 8192.0
static void run_jobs(const mrw_mm_job *jobs, const mrw_qx *const *q, int n_jobs, int T, int nt) {
    int start[MRW_MM_MAX_BATCH + 1];
    double after[MRW_MM_MAX_BATCH + 1]; /* bytes of the jobs after job j */
    start[0] = 0;
    for (int j = 0; j < n_jobs; j++) start[j + 1] = start[j] + jobs[j].W->rows;
    after[n_jobs] = 0;
    for (int j = n_jobs - 1; j >= 0; j--) after[j] = after[j + 1] + (double)jobs[j].W->rows * jobs[j].W->row_bytes;
    const int total = start[n_jobs];
    atomic_int cursor = 0;
#pragma omp parallel num_threads(nt)
    for (int j = 0;;) {
        int g = atomic_load_explicit(&cursor, memory_order_relaxed), n = 0;
        while (g < total) { /* the cursor only moves forward, and so does j */
            while (g >= start[j + 1]) j++;
            const int left = start[j + 1] - g;
            const double rb = (double)jobs[j].W->row_bytes;
            const double want = ((double)left * rb + after[j + 1]) / nt;
            n = (int)(fmax(want, GRAB_MIN_BYTES) / rb);
            n = n >= left ? left : (n + 16) & ~15;
            if (n > left) n = left;
            if (atomic_compare_exchange_weak_explicit(&cursor, &g, g + n, memory_order_relaxed, memory_order_relaxed))
                break;
        }
        if (g >= total) break;
        const mrw_mm_job *jb = &jobs[j];
        matvec_rows(jb->W, q[j], g - start[j], g - start[j] + n, jb->X, jb->ldx, jb->Y, jb->ldy, T, jb->accumulate);
    }
}

/* Quantizes the inputs for the 8-bit-activation kernels into `mem` (mrw_qx_bytes per chunk of MRW_MV_MAXT
 * inputs); returns the number of chunks prepared into qx[], or 0 when the f32 kernels are to be used. */
#define QX_MAX_CHUNKS 4
static int prepare_qx(const mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, int T, uint8_t *mem, mrw_qx *qx) {
    if (W->f32_act || !mrw_qx_supported(W->dtype) || W->cols % MRW_QK || !mem) return 0;
    if (k->exact && !mrw_qx_exact_supported(W)) return 0;
    int c = 0;
    for (int t0 = 0; t0 < T && c < QX_MAX_CHUNKS; t0 += MRW_MV_MAXT, c++) {
        int tn = T - t0 < MRW_MV_MAXT ? T - t0 : MRW_MV_MAXT;
        mrw_qx_prepare(&qx[c], mem, W, X + (size_t)t0 * ldx, ldx, tn, k->exact);
        mem += mrw_qx_bytes(MRW_MV_MAXT, W->cols);
    }
    return c;
}

static size_t qx_job_bytes(const mrw_mat *W, int T) {
    return mrw_qx_supported(W->dtype) ? QX_MAX_CHUNKS * mrw_qx_bytes(MRW_MV_MAXT, W->cols) : 0;
}

/* Small T reads every weight once per call, so the matrix-vector kernel wins; beyond that, packing the
 * weights for a register-blocked GEMM pays off. Measured crossover: see docs/PERFORMANCE.md. */
static mrw_mm_path choose_path(const mrw_mat *W, int T) {
    return T <= mrw_gemm_min_T(W->dtype) ? MRW_MM_MATVEC : MRW_MM_GEMM;
}

void mrw_matmul_path(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T,
                     int accumulate, mrw_mm_path path) {
    if (T <= 0 || W->rows <= 0) return;
    if (W->slice_cols > 0) { /* one product per column slice, summed into Y */
        for (int s = 0, n = mrw_mat_n_slices(W); s < n; s++) {
            mrw_mat v;
            const int c0 = mrw_mat_slice(W, s, &v);
            mrw_matmul_path(k, &v, X + c0, ldx, Y, ldy, T, accumulate || s > 0, path);
        }
        return;
    }
    if (path == MRW_MM_AUTO) path = choose_path(W, T);
    if (path == MRW_MM_GEMM && mrw_gemm(k, W, X, ldx, Y, ldy, T, accumulate) == 0) return;
    mrw_qx qx[QX_MAX_CHUNKS];
    const mrw_qx *q = NULL;
    if (T <= QX_MAX_CHUNKS * MRW_MV_MAXT && prepare_qx(k, W, X, ldx, T, mrw_kctx_buf(k, MRW_KS_SHARED, qx_job_bytes(W, T)), qx))
        q = qx;
    const int nt = worth_threads(k, (double)W->rows * W->cols * T);
    if (nt == 1) {
        matvec_rows(W, q, 0, W->rows, X, ldx, Y, ldy, T, accumulate);
        return;
    }
    const mrw_mm_job job = {W, X, ldx, Y, ldy, accumulate};
    run_jobs(&job, &q, 1, T, nt);
}

void mrw_matmul(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int accumulate) {
    mrw_matmul_path(k, W, X, ldx, Y, ldy, T, accumulate, MRW_MM_AUTO);
}

void mrw_matmul_batch(mrw_kctx *k, const mrw_mm_job *jobs, int n_jobs, int T) {
    int all_small = 1, sliced = 0;
    double work = 0;
    for (int j = 0; j < n_jobs; j++) sliced += jobs[j].W->slice_cols > 0;
    if (sliced) { /* the slices of one job add into the same outputs: run those jobs on their own */
        mrw_mm_job rest[MRW_MM_MAX_BATCH];
        int n_rest = 0;
        for (int j = 0; j < n_jobs; j++) {
            if (jobs[j].W->slice_cols > 0 || n_rest == MRW_MM_MAX_BATCH)
                mrw_matmul(k, jobs[j].W, jobs[j].X, jobs[j].ldx, jobs[j].Y, jobs[j].ldy, T, jobs[j].accumulate);
            else
                rest[n_rest++] = jobs[j];
        }
        if (n_rest) mrw_matmul_batch(k, rest, n_rest, T);
        return;
    }
    for (int j = 0; j < n_jobs; j++) {
        if (choose_path(jobs[j].W, T) != MRW_MM_MATVEC) all_small = 0;
        work += (double)jobs[j].W->rows * jobs[j].W->cols * T;
    }
    if (!all_small || worth_threads(k, work) == 1 || n_jobs > MRW_MM_MAX_BATCH || T > QX_MAX_CHUNKS * MRW_MV_MAXT) {
        for (int j = 0; j < n_jobs; j++)
            mrw_matmul(k, jobs[j].W, jobs[j].X, jobs[j].ldx, jobs[j].Y, jobs[j].ldy, T, jobs[j].accumulate);
        return;
    }
    /* 8-bit activations of every quantized job, prepared before the fork */
    size_t total = 0;
    for (int j = 0; j < n_jobs; j++) total += qx_job_bytes(jobs[j].W, T);
    uint8_t *mem = total ? mrw_kctx_buf(k, MRW_KS_SHARED, total) : NULL;
    mrw_qx qx[MRW_MM_MAX_BATCH][QX_MAX_CHUNKS];
    const mrw_qx *q[MRW_MM_MAX_BATCH];
    for (int j = 0; j < n_jobs; j++) {
        q[j] = mem && prepare_qx(k, jobs[j].W, jobs[j].X, jobs[j].ldx, T, mem, qx[j]) ? qx[j] : NULL;
        if (mem) mem += qx_job_bytes(jobs[j].W, T);
    }
    run_jobs(jobs, q, n_jobs, T, k->n_threads);
}
