/* Y = X · Wᵀ for a weight matrix in any supported dtype (the big RWKV matrices and the LoRAs).
 * W is [rows = out, cols = in], row-major; quantized rows are 32-element blocks. X is [T, cols] f32 and
 * Y is [T, rows] f32, both with row strides. Accumulation is fp32 or better.
 *
 * mrw_matmul picks a kernel by dtype and T: a matrix-vector kernel that reads each weight once for small T
 * (decode), and packed GEMM kernels for prefill (bf16 dot products for 16-bit weights, fp32 for f32
 * weights). q8_0/q4_0 weights use int8 dot products with activations quantized per 32-block in both
 * (llama.cpp's scheme); a context with kctx.exact = 1 keeps every activation f32 instead. mrw_matmul_ref
 * is the plain reference every fast path is tested against. */
#ifndef MRW_KERNELS_CPU_MATMUL_H
#define MRW_KERNELS_CPU_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/kctx.h"
#include "modrwkv.h"

typedef struct {
    mrw_dtype dtype;
    int rows, cols;
    size_t row_bytes;
    const void *data;
    /* 1: always multiplied with f32 activations, also in contexts that round activations for speed. The LoRAs
     * are kept in their file's f16/bf16 (half the bytes decode reads for them) and stay exact this way. */
    int f32_act;
    /* 0: row-major. Otherwise the columns are stored in slices of slice_cols (the last one may be narrower): all rows
     * of slice 0, then all rows of slice 1, ... so that a matrix-vector product still streams the weights in one
     * sequential pass while its slice of the input stays in L1 (docs/PERFORMANCE.md, "Long rows"). The kernels only
     * ever see one slice (mrw_mat_slice); row_bytes stays that of a whole row. */
    int slice_cols;
    /* q4_0 only, 1: every row (of every slice) is interleaved for the decode kernel (mrw_q4_interleave_row). Set at
     * load when the CPU has that kernel (mrw_mat_interleave); the other kernels read such rows block by block. */
    int interleaved;
} mrw_mat;

/* Sets row_bytes from dtype and cols (row-major); returns 0, or -1 if cols is not a whole number of blocks. */
int mrw_mat_init(mrw_mat *m, mrw_dtype dtype, int rows, int cols, const void *data);
/* Column slices of W (1 when row-major), and slice s as a row-major matrix; returns its first column. */
int mrw_mat_n_slices(const mrw_mat *W);
int mrw_mat_slice(const mrw_mat *W, int s, mrw_mat *view);
/* The slice width the decode kernels want for rows of `cols` elements of dtype dt, or 0 to keep rows whole: each
 * slice's input, in the form the fast kernels read it, fits in `input_bytes` (MRW_SLICE_INPUT_BYTES measured best). */
#define MRW_SLICE_INPUT_BYTES 8192
int mrw_mat_slice_cols_for(mrw_dtype dt, int cols, int input_bytes);
/* Copies W into `dst` (rows x row_bytes bytes) in slices of slice_cols columns (a multiple of the dtype's block), or
 * row-major with slice_cols 0, and sets *out to that matrix. One of the two layouts must be row-major; W not interleaved. */
void mrw_mat_copy_sliced(const mrw_mat *W, int slice_cols, void *dst, mrw_mat *out);
/* Copies W, whatever its layout, into `dst` as plain row-major rows (rows x row_bytes bytes): what files hold. */
void mrw_mat_copy_plain(const mrw_mat *W, void *dst);
/* Whether mrw_mat_interleave applies to W: q4_0 and a CPU with the kernel that reads it. */
int mrw_mat_interleavable(const mrw_mat *W);
/* Interleaves the rows of a q4_0 matrix (plain rows, in slices or not) from W->data into `dst`, which may be
 * W->data itself, and sets W->data and W->interleaved. Returns 0, or -1 when out of memory (W unchanged). */
int mrw_mat_interleave(mrw_mat *W, void *dst);

typedef enum {
    MRW_MM_AUTO = 0,  /* choose by T and dtype */
    MRW_MM_MATVEC,    /* force the weight-streaming kernel */
    MRW_MM_GEMM,      /* force the packed GEMM kernel */
} mrw_mm_path;

/* accumulate != 0: Y += X·Wᵀ, else Y = X·Wᵀ. */
void mrw_matmul(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int accumulate);
void mrw_matmul_path(mrw_kctx *k, const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T,
                     int accumulate, mrw_mm_path path);
/* Reference: each weight row dequantized to f32, products accumulated in double. Single-threaded. */
void mrw_matmul_ref(const mrw_mat *W, const float *X, int ldx, float *Y, int ldy, int T, int accumulate);

/* Several independent products in one parallel region (decode: r, k, v and the LoRA down-projections
 * share one fork/join). */
typedef struct {
    const mrw_mat *W;
    const float *X;
    int ldx;
    float *Y;
    int ldy;
    int accumulate;
} mrw_mm_job;
#define MRW_MM_MAX_BATCH 16
void mrw_matmul_batch(mrw_kctx *k, const mrw_mm_job *jobs, int n_jobs, int T);

/* One row of W dequantized to f32 (embedding lookup). */
void mrw_mat_row_f32(const mrw_mat *W, int row, float *out);

#endif
