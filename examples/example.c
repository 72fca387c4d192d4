/* example.c - the README's library example: train cnn-s with the multi-similarity loss on an
 * IDX dataset and save the model, checking every status.
 * usage: example [DATA_DIR [OUT.smm]]  (default /usr/share/datasets/fashion-mnist, ms.smm)
 * Build: cc example.c $(pkg-config --cflags --libs simile) */
#include <stdio.h>
#include "simile.h"

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    const char *out = argc > 2 ? argv[2] : "ms.smm";
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);

    sm_dataset *ds = NULL; sm_model *m = NULL; sm_loss *loss = NULL; sm_train_config cfg;
    int h = 0, w = 0, c = 0;
    sm_status st = sm_dataset_load_idx(&ds, images, labels);
    if (!st) st = sm_dataset_normalize(ds, 0.2860f, 0.3530f);
    if (!st) {
        sm_dataset_shape(ds, &h, &w, &c);
        st = sm_model_create(&m, "cnn-s", h, w, c, /*seed*/ 1);
    }
    if (!st) st = sm_loss_create(&loss, "multisimilarity", "", sm_model_embedding_dim(m), 1);
    if (!st) {
        sm_train_config_default(&cfg);
        cfg.per_class = 32;
        st = sm_train(m, loss, ds, &cfg);
    }
    if (!st) st = sm_model_save(m, out);
    if (st) fprintf(stderr, "example: %s: %s\n", sm_strerror(st), sm_errmsg());
    else printf("trained on %lld images, saved %s\n", (long long)sm_dataset_size(ds), out);
    sm_loss_free(loss); sm_model_free(m); sm_dataset_free(ds);
    return st ? 1 : 0;
}
