/* fuzz_spec.c - libFuzzer target for the layer spec language (sm_model_create).  Input: bytes
 * 0-2 choose the input shape (h, w in 1..32, c in 1..3), the rest is the spec text.  A spec
 * that builds must re-parse from its expanded text to the same network; when its activations
 * are small it embeds a batch and takes one training step (forward and backward through every
 * layer with these shapes).  Models are bounded to 2^22 parameters here (see below). */
#include "fuzz_common.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    fz_scratch();
    int h = 1 + data[0] % 32, w = 1 + data[1] % 32, c = 1 + data[2] % 3;
    char *spec = malloc(size - 3 + 1);
    memcpy(spec, data + 3, size - 3);
    spec[size - 3] = 0;
    sm_model *m = NULL;
    /* the public limit (SM_MAX_PARAMS, 2^27) takes seconds to initialise under ASan: fuzz with
     * a lower one through the same code path */
    sm_status st = sm_model_create_bounded(&m, spec, h, w, c, 7, (int64_t)1 << 22);
    free(spec);
    FZ_ASSERT(st == SM_OK || st == SM_ERR_SPEC || st == SM_ERR_NOMEM);
    FZ_ASSERT((st == SM_OK) == (m != NULL));
    if (!m) return 0;
    sm_model *m2 = NULL;
    FZ_ASSERT(sm_model_create(&m2, sm_model_spec(m), h, w, c, 7) == SM_OK);
    FZ_ASSERT(!strcmp(sm_model_spec(m), sm_model_spec(m2)));
    FZ_ASSERT(sm_model_fingerprint(m) == sm_model_fingerprint(m2));
    sm_model_free(m2);
    FZ_ASSERT(sm_model_summary(m) != NULL);
    int64_t acts = 0;
    for (int i = 0; i < m->nlayers; i++) acts += sm_layer_out_size(&m->layers[i]);
    if (acts <= (1 << 18) && sm_model_num_params(m) <= (1 << 20)) {
        int d = sm_model_embedding_dim(m), n = 4;
        size_t in = (size_t)h * w * c;
        float *x = malloc((size_t)n * in * sizeof(float)), *e = malloc((size_t)n * d * sizeof(float));
        int32_t y[4] = {0, 1, 0, 1};
        for (size_t i = 0; i < n * in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        st = sm_model_embed(m, x, n, e);
        FZ_ASSERT(st == SM_OK);
        for (int i = 0; i < n * d; i++) FZ_ASSERT(e[i] == e[i]);
        sm_dataset *ds = NULL;
        sm_loss *loss = NULL;
        FZ_ASSERT(sm_dataset_from_arrays(&ds, x, y, n, h, w, c) == SM_OK);
        FZ_ASSERT(sm_loss_create(&loss, "softmax", "classes=2", d, 3) == SM_OK);
        sm_train_config cfg;
        sm_train_config_default(&cfg);
        cfg.epochs = 1;
        cfg.batch_size = n;
        st = sm_train(m, loss, ds, &cfg);
        FZ_ASSERT(st == SM_OK || st == SM_ERR_NUMERIC);
        sm_loss_free(loss);
        sm_dataset_free(ds);
        free(x);
        free(e);
    }
    sm_model_free(m);
    return 0;
}
