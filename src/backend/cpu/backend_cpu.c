/* backend_cpu.c - the CPU backend's table: host memory, a synchronous "stream", and each
 * operation of ops.def forwarded to its kernel sm_k_<op> (cpu/kernels.h).  The kernels check
 * nothing the callers have not checked (the library validates shapes at its API), so the
 * forwarding returns SM_OK except for the operations whose kernels can fail (knn).  Everything
 * runs synchronously on the calling thread (and its OpenMP team), so each status is final and
 * the backend records no sticky error: one process-wide instance serves every thread. */
#include "backend/cpu/kernels.h"
#include "core/core.h"
#include <string.h>

static sm_status cpu_alloc(sm_backend *be, size_t bytes, void **ptr) {
    (void)be;
    *ptr = sm_alloc(bytes ? bytes : 1, 1);
    return *ptr ? SM_OK : SM_ERR_NOMEM;
}
static void cpu_free(sm_backend *be, void *ptr) {
    (void)be;
    sm_free(ptr);
}
static sm_status cpu_transfer(sm_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
    return SM_OK;
}
static sm_status cpu_sync(sm_backend *be) {
    (void)be;
    return SM_OK;
}

/* Operations whose kernels return nothing: run, then SM_OK. */
#define SM_BE_OP(name, P, A)                                          \
    static sm_status cpu_##name(sm_backend *be, SM_BE_UNPAREN P) {    \
        (void)be;                                                     \
        SM_K_CALL_##name(A);                                          \
    }
#define SM_BE_WS(name, P, A)                                          \
    static size_t cpu_##name##_ws(sm_backend *be, SM_BE_UNPAREN P) {  \
        (void)be;                                                     \
        return sm_k_##name##_ws A;                                    \
    }
/* how each kernel is called: void kernels return SM_OK, status kernels their status */
#define SM_K_VOID(name, A) do { sm_k_##name A; return SM_OK; } while (0)
#define SM_K_CALL_gemm(A) SM_K_VOID(gemm, A)
#define SM_K_CALL_gemv(A) SM_K_VOID(gemv, A)
#define SM_K_CALL_gemm_at_b(A) SM_K_VOID(gemm_at_b, A)
#define SM_K_CALL_im2col(A) SM_K_VOID(im2col, A)
#define SM_K_CALL_col2im(A) SM_K_VOID(col2im, A)
#define SM_K_CALL_conv1ch(A) SM_K_VOID(conv1ch, A)
#define SM_K_CALL_conv1ch1(A) SM_K_VOID(conv1ch1, A)
#define SM_K_CALL_conv1ch1_pool(A) SM_K_VOID(conv1ch1_pool, A)
#define SM_K_CALL_conv1ch_dw(A) SM_K_VOID(conv1ch_dw, A)
#define SM_K_CALL_wino3_weights(A) SM_K_VOID(wino3_weights, A)
#define SM_K_CALL_wino3_1(A) SM_K_VOID(wino3_1, A)
#define SM_K_CALL_wino3(A) SM_K_VOID(wino3, A)
#define SM_K_CALL_add_bias(A) SM_K_VOID(add_bias, A)
#define SM_K_CALL_sum_rows(A) SM_K_VOID(sum_rows, A)
#define SM_K_CALL_bn_forward_train(A) SM_K_VOID(bn_forward_train, A)
#define SM_K_CALL_bn_forward_train_pool2(A) SM_K_VOID(bn_forward_train_pool2, A)
#define SM_K_CALL_bn_forward_infer(A) SM_K_VOID(bn_forward_infer, A)
#define SM_K_CALL_bn_backward(A) SM_K_VOID(bn_backward, A)
#define SM_K_CALL_bn_sums(A) SM_K_VOID(bn_sums, A)
#define SM_K_CALL_bn_stats(A) SM_K_VOID(bn_stats, A)
#define SM_K_CALL_bn_normalize(A) SM_K_VOID(bn_normalize, A)
#define SM_K_CALL_bn_grad_sums(A) SM_K_VOID(bn_grad_sums, A)
#define SM_K_CALL_bn_backward_dx(A) SM_K_VOID(bn_backward_dx, A)
#define SM_K_CALL_relu_forward(A) SM_K_VOID(relu_forward, A)
#define SM_K_CALL_relu_backward(A) SM_K_VOID(relu_backward, A)
#define SM_K_CALL_maxpool_forward(A) SM_K_VOID(maxpool_forward, A)
#define SM_K_CALL_maxpool_backward(A) SM_K_VOID(maxpool_backward, A)
#define SM_K_CALL_copy(A) SM_K_VOID(copy, A)
#define SM_K_CALL_avgpool_forward(A) SM_K_VOID(avgpool_forward, A)
#define SM_K_CALL_avgpool_backward(A) SM_K_VOID(avgpool_backward, A)
#define SM_K_CALL_avgpool1(A) SM_K_VOID(avgpool1, A)
#define SM_K_CALL_gap_forward(A) SM_K_VOID(gap_forward, A)
#define SM_K_CALL_gap_backward(A) SM_K_VOID(gap_backward, A)
#define SM_K_CALL_l2norm_forward(A) SM_K_VOID(l2norm_forward, A)
#define SM_K_CALL_l2norm_backward(A) SM_K_VOID(l2norm_backward, A)
#define SM_K_CALL_add(A) SM_K_VOID(add, A)
#define SM_K_CALL_dropout_forward(A) SM_K_VOID(dropout_forward, A)
#define SM_K_CALL_dropout_backward(A) SM_K_VOID(dropout_backward, A)
#define SM_K_CALL_gem_forward(A) SM_K_VOID(gem_forward, A)
#define SM_K_CALL_gem_backward(A) SM_K_VOID(gem_backward, A)
#define SM_K_CALL_gem1(A) SM_K_VOID(gem1, A)
#define SM_K_CALL_im2col1(A) SM_K_VOID(im2col1, A)
#define SM_K_CALL_bias_act1(A) SM_K_VOID(bias_act1, A)
#define SM_K_CALL_bn_infer1(A) SM_K_VOID(bn_infer1, A)
#define SM_K_CALL_maxpool1(A) SM_K_VOID(maxpool1, A)
#define SM_K_CALL_maxpool_bias_act1(A) SM_K_VOID(maxpool_bias_act1, A)
#define SM_K_CALL_gap1(A) SM_K_VOID(gap1, A)
#define SM_K_CALL_row_norms(A) SM_K_VOID(row_norms, A)
#define SM_K_CALL_dist_tile(A) SM_K_VOID(dist_tile, A)
#define SM_K_CALL_knn(A) return sm_k_knn A
#define SM_K_CALL_knn_all(A) return sm_k_knn_all A
#define SM_K_CALL_optim_update(A) SM_K_VOID(optim_update, A)
#include "backend/ops.def"
#undef SM_BE_OP
#undef SM_BE_WS

static const sm_backend_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_transfer,
    .download = cpu_transfer,
    .sync = cpu_sync,
#define SM_BE_OP(name, P, A) .name = cpu_##name,
#define SM_BE_WS(name, P, A) .name##_ws = cpu_##name##_ws,
#include "backend/ops.def"
#undef SM_BE_OP
#undef SM_BE_WS
};

static sm_backend cpu_backend = {.ops = &cpu_ops, .caps = SM_BE_HOST_MEMORY | SM_BE_SYNC};

sm_backend *sm_backend_cpu(void) { return &cpu_backend; }
