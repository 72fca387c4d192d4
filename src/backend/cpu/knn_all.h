/* knn_all.h - the all-pairs pass (knn_all, knn_cpu.c) with the products, the keys and the
 * threshold tests fused, a panel of SM_ALL_NR columns at a time (also used by the search of many
 * queries, blocks_fused, with the row tests only): the AVX2 copy (knn_all_avx2.c,
 * compiled with -mavx2 -mfma -ffp-contract=off for that file only and chosen at run time).  The
 * portable route (a distance tile through sm_k_gemm, then a scan of it) gives the same keys:
 *
 *   p = alpha * (one fma chain over t = 0 .. d-1 of a[t] * b[t], from 0), as the GEMM paths;
 *   key = kind 0 (SQL2) max((an + bn) + p, 0), kind 1 (DOT) p, kind 2 (COS) p * (an * bn);
 *   a NaN key becomes +inf (sm_simd_keys of simd.h).
 *
 * A (6, 16) block of keys leaves the registers only where one of them may enter a query's
 * buffer: key <= the threshold of its row's query or of its column's query.  The top-1 panel
 * below keeps a running minimum per column in registers instead. */
#ifndef SM_BACKEND_KNN_ALL_H
#define SM_BACKEND_KNN_ALL_H
#include <stdint.h>

#define SM_ALL_MR 6  /* rows of a block */
#define SM_ALL_NR 16 /* columns of a panel */

#if defined(__x86_64__)
/* Bp (d, SM_ALL_NR) <- the rows x[0 .. SM_ALL_NR) (stride d) transposed: Bp[t][c] = x[c][t]. */
void sm_all_pack_avx2(const float *x, int d, float *Bp);

/* The keys of rows a[0 .. mi) (stride d; mi >= SM_ALL_MR) against the panel Bp, tested against
 * tr[i] (the threshold of row i's query) and tc[c] (column c's query; lanes c outside cvalid are
 * not tested).  an (mi) and bn (SM_ALL_NR): the norms of kind 0 / 2 (unread for kind 1).  Every
 * key (i, c) <= tr[i] is written as hk[h] = key, hw[h] = i << 5 | c << 1 | 0, every key <= tc[c]
 * as the same with | 1; returns the count h (at most 2 mi SM_ALL_NR, the room of hk and hw). */
int sm_all_panel_avx2(int d, const float *a, int mi, const float *Bp, float alpha, int kind, const float *an,
                      const float *bn, const float *tr, const float *tc, uint32_t cvalid, float *hk, uint32_t *hw);

/* Top-1 against a small database (knn_cpu.c's PATH_SMALL_DB), the same products and keys with
 * the roles turned: the database rows db[0 .. n) (stride d; n >= SM_ALL_MR, norms dn) against 16
 * queries (the panel Bp, norms qn).  For each query lane c, the rows in increasing order update
 * (bk[c], bi[c]) where bi[c] < 0 or key < bk[c] (ties to the lower row; a NaN key is +inf),
 * except row skip + c (the query's own row; pass a skip far out of range for none). */
void sm_top1_panel_avx2(int d, const float *db, int n, const float *Bp, float alpha, int kind, const float *dn,
                        const float *qn, int64_t skip, float *bk, int32_t *bi);

/* The many-queries search's panel in AVX-512F (knn_search_avx512.c), row tests only, 32 columns:
 * Bp holds two packs of sm_all_pack_avx2, columns 0 .. 16 at Bp and 16 .. 32 at Bp + 16 d; bn
 * (32) the columns' norms (kind 0 / 2).  The keys of rows a[0 .. mi) (stride d; mi >= 12) are
 * sm_all_panel_avx2's; every key (i, c) <= tr[i] with c in cvalid is written as hk[h] = key,
 * hw[h] = i << 5 | c, rows in increasing order and columns in increasing order within a row;
 * returns the count h (at most 32 mi, the room of hk and hw).  The next_rows rows at next (stride
 * d; the next panel's database rows, or none) are prefetched into L2 as the blocks go. */
#define SM_SEARCH_NR 32

/* The exact keys of candidate rows db[ids[j]] (j < m) for one query qrow, bit for bit the keys of
 * the panels (one fma chain over t from 0, then alpha and the kind's arithmetic with the query's
 * norm an and the rows' dn; dn unread for kind 1); knn_search_avx512.c. */
void sm_search_exact_keys(int d, const float *qrow, const float *db, const int64_t *ids, int m, float alpha, int kind,
                          float an, const float *dn, float *keys);

/* The bfloat16 pre-pass (knn_search_bf16.c, AVX512_BF16): rows rounded to bfloat16 in pairs
 * (d2 = (d + 1) / 2 words a row, word u = bf16(x[2u]) | bf16(x[2u + 1]) << 16, zero past d).
 * sm_search_bf16_rows: m rows (stride d) into out (m, d2).  sm_search_bf16_panel_pack: the 32
 * rows x[0 .. 32) into a panel P (d2, 32).  sm_search_bf16_panel: sm_search_panel_avx512's contract
 * with approximate keys (the products of the rounded values, accumulated in float by VDPBF16PS)
 * for the rounded queries Qb (mi, d2) against the panel P; next: the next panel, prefetched (or
 * NULL).  The caller bounds how far these keys are from the exact ones. */
void sm_search_bf16_rows(const float *x, int m, int d, uint32_t *out);
void sm_search_bf16_panel_pack(const float *x, int d, uint32_t *P);
int sm_search_bf16_panel(int d, const uint32_t *Qb, int mi, const uint32_t *P, float alpha, int kind, const float *an,
                         const float *bn, const float *tr, uint32_t cvalid, const uint32_t *next, float *hk,
                         uint32_t *hw);
int sm_search_panel_avx512(int d, const float *a, int mi, const float *Bp, float alpha, int kind, const float *an,
                           const float *bn, const float *tr, uint32_t cvalid, const float *next, int64_t next_rows,
                           float *hk, uint32_t *hw);
#endif

#endif
