/* fuzz_onnx.c - libFuzzer target for the ONNX reader (sm_onnx_import_buffer, what
 * sm_model_import_onnx calls on the file's bytes).  Input: the ONNX file.  A model that imports
 * is summarised, embeds a small batch when its activations are small (outputs finite), and is
 * exported with batch norm kept and imported again: the copy must have the same fingerprint
 * (spec, parameters and statistics); the folded export must import too, with the same
 * embedding size. */
#include "fuzz_common.h"
#include "model/model.h"
#include "interop/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sm_onnx_import_options opt = {0};
    sm_model *m = NULL;
    sm_status st = sm_onnx_import_buffer(&m, data, size, "fuzz.onnx", &opt);
    FZ_ASSERT(fz_status_ok(st) || st == SM_ERR_UNSUPPORTED || st == SM_ERR_NOTFOUND);
    FZ_ASSERT((st == SM_OK) == (m != NULL));
    if (!m) return 0;
    FZ_ASSERT(sm_model_summary(m) != NULL);
    int64_t acts = 0;
    for (int i = 0; i < m->nlayers; i++) acts += sm_layer_out_size(&m->layers[i]);
    int h, w, c;
    sm_model_input_shape(m, &h, &w, &c);
    const int d = sm_model_embedding_dim(m);
    if (acts <= (1 << 20) && (int64_t)h * w * c <= (1 << 16)) {
        size_t in = (size_t)h * w * c;
        float *x = calloc(2 * in, sizeof(float)), *e = calloc(2 * (size_t)d, sizeof(float));
        for (size_t i = 0; i < 2 * in; i++) x[i] = (float)(i % 7) * 0.25f - 0.5f;
        st = sm_model_embed(m, x, 2, e);
        FZ_ASSERT(st == SM_OK || st == SM_ERR_NOMEM || st == SM_ERR_NUMERIC);
        free(x);
        free(e);
    }
    const char *kept = fz_path(0, "k.onnx"), *folded = fz_path(1, "f.onnx");
    sm_onnx_export_options eo = {.keep_bn = 1};
    st = sm_model_export_onnx(m, kept, &eo);
    FZ_ASSERT(st == SM_OK);
    sm_model *m2 = NULL;
    st = sm_model_import_onnx(&m2, kept, NULL);
    FZ_ASSERT(st == SM_OK);
    FZ_ASSERT(sm_model_fingerprint(m2) == sm_model_fingerprint(m));
    sm_model_free(m2);
    m2 = NULL;
    eo.keep_bn = 0;
    st = sm_model_export_onnx(m, folded, &eo);
    FZ_ASSERT(st == SM_OK || st == SM_ERR_NUMERIC); /* folding can overflow to Inf: refused */
    if (st == SM_OK) {
        st = sm_model_import_onnx(&m2, folded, NULL);
        FZ_ASSERT(st == SM_OK);
        FZ_ASSERT(sm_model_embedding_dim(m2) == d);
    }
    sm_model_free(m2);
    sm_model_free(m);
    return 0;
}
