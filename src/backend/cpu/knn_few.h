/* knn_few.h - the scores of the few-queries fused search pass (knn_cpu.c) for a block of
 * database rows: the portable C loop and its AVX2 copy (knn_few_avx2.c, compiled with -mavx2
 * -mfma for that file only and chosen at run time), which give the same bits.
 *
 * The arithmetic both keep (no contraction): for query i and row j, s = sum over t in order of
 * q[i][t] * row[t] as s = s + (q * r) rounded at each step, bb the same for row[t] * row[t]; then
 * the key (smaller is better) kind 0 (SQL2) (qn[i] + bb) - 2 s clamped at 0, kind 1 (DOT) -s,
 * kind 2 (COS) bb > 0 ? -((s * qn[i]) / sqrt(bb)) : (bb == bb ? -0 * s : bb); a key that is NaN or
 * infinite becomes +inf and counts as bad. */
#ifndef SM_BACKEND_KNN_FEW_H
#define SM_BACKEND_KNN_FEW_H
#include <stdint.h>

#define SM_FEW_BLOCK 64 /* rows per call (the keys buffer is (nq, SM_FEW_BLOCK)) */

/* keys (nq, SM_FEW_BLOCK) <- the keys of queries q (nq, d) against rows[0 .. m) (m <=
 * SM_FEW_BLOCK, row stride d); qn (nq) the queries' squared norms (SQL2) or inverse norms (COS),
 * unread for DOT.  Returns 1 if any key was NaN or infinite (written as +inf), else 0. */
int sm_few_keys_c(const float *rows, int m, int d, const float *q, int nq, int kind, const float *qn, float *keys);
#if defined(__x86_64__)
int sm_few_keys_avx2(const float *rows, int m, int d, const float *q, int nq, int kind, const float *qn,
                     float *keys);
/* The same keys for 8 streams of rows: lane l's rows start at rows + l * lane_rows * d; step r
 * (r < steps <= SM_FEW_BLOCK / 8) of lane l is row r of that stream, its key at keys[i *
 * SM_FEW_BLOCK + 8 r + l].  Eight sequential streams instead of one block of consecutive rows
 * read in columns: the hardware prefetchers follow them (one query, 200,000 x 128, Zen 3: about
 * 19 GB/s a core instead of 7-11).  nq <= 16. */
int sm_few_keys8_avx2(const float *rows, int64_t lane_rows, int steps, int d, const float *q, int nq, int kind,
                      const float *qn, float *keys);
#endif

#endif
