/* loss_tool.c - test-only helper for python/tests/test_losses.py: the C side of the loss
 * comparison.  Reads embeddings (n, d) float32 and labels (n) int32 from .npy files, computes
 * loss NAME with OPTIONS (sm_loss_create seed 1, then sm_loss_compute) and prints the value as
 * a C99 hex float; writes dL/demb (n, d) to GRAD.npy and, for a loss with parameters, their
 * gradient to PGRAD.npy.
 * usage: loss_tool NAME OPTIONS EMB.npy LABELS.npy GRAD.npy PGRAD.npy */
#include <stdio.h>
#include <stdlib.h>
#include "simile.h"

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: loss_tool NAME OPTIONS EMB.npy LABELS.npy GRAD.npy PGRAD.npy\n");
        return 2;
    }
    float *emb = NULL, *grad = NULL; /* (n, d) */
    int32_t *labels = NULL;          /* (n) */
    int64_t es[4], ls[4];
    int en = 0, ln = 0;
    sm_loss *loss = NULL;
    float value = 0;
    sm_status st = sm_npy_read(argv[3], SM_NPY_F32, (void **)&emb, es, &en);
    if (!st) st = sm_npy_read(argv[4], SM_NPY_I32, (void **)&labels, ls, &ln);
    if (!st && (en != 2 || ln != 1 || ls[0] != es[0])) st = sm_errmsg_set(SM_ERR_MISMATCH, "shapes");
    if (!st) st = sm_loss_create(&loss, argv[1], argv[2], (int)es[1], 1);
    if (!st && !(grad = malloc((size_t)(es[0] * es[1]) * sizeof *grad))) st = sm_errmsg_set(SM_ERR_NOMEM, "grad");
    if (!st) st = sm_loss_compute(loss, emb, labels, (int)es[0], (int)es[1], &value, grad);
    if (!st) st = sm_npy_write(argv[5], SM_NPY_F32, grad, es, 2);
    float *params = NULL, *pgrads = NULL;
    int64_t count = 0;
    if (!st) sm_loss_params(loss, &params, &pgrads, &count);
    if (!st && count) st = sm_npy_write(argv[6], SM_NPY_F32, pgrads, &count, 1);
    if (!st) printf("%a\n", (double)value);
    else fprintf(stderr, "loss_tool: %s: %s\n", sm_strerror(st), sm_errmsg());
    sm_loss_free(loss); free(emb); free(labels); free(grad);
    return st ? 1 : 0;
}
