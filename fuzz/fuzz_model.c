/* fuzz_model.c - libFuzzer target for the model file reader (sm_model_load).  Input: the file
 * without its trailing CRC-32, which the harness appends (fz_write_with_crc).  A model that
 * loads is summarised, embeds a small batch when its activations are small (all outputs must be
 * finite), and is saved and loaded again: the copy must have the same fingerprint. */
#include "fuzz_common.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_path(0, "m.smm"), *back = fz_path(1, "b.smm");
    fz_write_with_crc(path, data, size); /* the input is the file without its CRC-32 */
    sm_model *m = NULL;
    sm_status st = sm_model_load(&m, path);
    FZ_ASSERT(fz_status_ok(st));
    FZ_ASSERT((st == SM_OK) == (m != NULL));
    if (!m) return 0;
    FZ_ASSERT(sm_model_summary(m) != NULL);
    int64_t acts = 0;
    for (int i = 0; i < m->nlayers; i++) acts += sm_layer_out_size(&m->layers[i]);
    int h, w, c;
    sm_model_input_shape(m, &h, &w, &c);
    if (acts <= (1 << 20) && (int64_t)h * w * c <= (1 << 16)) {
        int d = sm_model_embedding_dim(m);
        size_t in = (size_t)h * w * c;
        float *x = calloc(2 * in, sizeof(float)), *e = calloc(2 * (size_t)d, sizeof(float));
        for (size_t i = 0; i < 2 * in; i++) x[i] = (float)(i % 7) * 0.25f - 0.5f;
        st = sm_model_embed(m, x, 2, e);
        FZ_ASSERT(st == SM_OK || st == SM_ERR_NOMEM || st == SM_ERR_NUMERIC);
        int k = sm_model_num_classes(m);
        if (st == SM_OK && k > 0 && k <= 4096) {
            float *z = calloc(2 * (size_t)k, sizeof(float));
            st = sm_model_logits(m, x, 2, z);
            FZ_ASSERT(fz_status_ok(st) || st == SM_ERR_UNSUPPORTED || st == SM_ERR_NOTFOUND);
            free(z);
        }
        free(x);
        free(e);
    }
    uint32_t fp = sm_model_fingerprint(m);
    st = sm_model_save(m, back);
    FZ_ASSERT(st == SM_OK);
    sm_model *m2 = NULL;
    st = sm_model_load(&m2, back);
    FZ_ASSERT(st == SM_OK);
    FZ_ASSERT(sm_model_fingerprint(m2) == fp);
    sm_model_free(m2);
    sm_model_free(m);
    return 0;
}
