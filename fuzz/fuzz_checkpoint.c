/* fuzz_checkpoint.c - libFuzzer target for the checkpoint reader (sm_trainer_load_checkpoint).
 * Input: the file without its trailing CRC-32, which the harness appends (fz_write_with_crc).
 * Each input is loaded into a fresh trainer of the small training of ckpt_setup.h; a
 * checkpoint that loads must train on to the end (each step OK, or SM_ERR_NUMERIC for values
 * that diverge), finish, and give a model that saves and loads again with its selection
 * record. */
#include "fuzz_common.h"
#include "ckpt_setup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_path(0, "c.ckpt"), *back = fz_path(1, "b.smm");
    fz_write_with_crc(path, data, size);
    fz_training f;
    FZ_ASSERT(fz_training_create(&f) == 0);
    sm_status st = sm_trainer_load_checkpoint(f.t, path);
    FZ_ASSERT(fz_status_ok(st));
    if (st == SM_OK) {
        sm_train_step_info s = {0};
        int k = 0;
        while (st == SM_OK && !s.done && k++ < 64) st = sm_trainer_step(f.t, &s);
        if (st == SM_ERR_INVALID && k == 1) st = SM_OK; /* a checkpoint of a finished training */
        FZ_ASSERT(st == SM_OK || st == SM_ERR_NUMERIC);
        if (st == SM_OK) {
            FZ_ASSERT(sm_trainer_finish(f.t) == SM_OK);
            double v = -1;
            int best = -1, e = sm_model_selection(f.m, &v, &best);
            FZ_ASSERT(e >= 0 && e <= 2 && ((v >= 0 && v <= 1) || e == 0));
            FZ_ASSERT(sm_model_save(f.m, back) == SM_OK);
            sm_model *m2 = NULL;
            FZ_ASSERT(sm_model_load(&m2, back) == SM_OK);
            FZ_ASSERT(sm_model_selection(m2, NULL, NULL) == e && sm_model_fingerprint(m2) == sm_model_fingerprint(f.m));
            sm_model_free(m2);
        }
    }
    fz_training_free(&f);
    return 0;
}
