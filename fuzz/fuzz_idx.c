/* fuzz_idx.c - libFuzzer target for the IDX image/label reader (sm_dataset_load_idx), plain
 * and gzip-compressed.  Input: byte 0 = mode (bit 0: gzip the image file, bit 1: gzip the label
 * file, in the harness), bytes 1-2 = where the image bytes end (little-endian, modulo the
 * length), then the image file's bytes followed by the label file's bytes.  Files that are
 * already gzip streams (in the seeds) are read as such whatever the mode. */
#include "fuzz_common.h"
#include <zlib.h>

static void write_maybe_gz(const char *path, const uint8_t *data, size_t len, int gz) {
    if (!gz) { fz_write(path, data, len); return; }
    gzFile f = gzopen(path, "wb1");
    if (!f) abort();
    if (len) gzwrite(f, data, (unsigned)len);
    gzclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    int mode = data[0];
    size_t rest = size - 3;
    size_t cut = rest ? (size_t)(data[1] | data[2] << 8) % (rest + 1) : 0;
    const char *img = fz_path(0, "images"), *lab = fz_path(1, "labels");
    write_maybe_gz(img, data + 3, cut, mode & 1);
    write_maybe_gz(lab, data + 3 + cut, rest - cut, mode & 2);
    sm_dataset *ds = NULL;
    sm_status st = sm_dataset_load_idx(&ds, img, lab);
    FZ_ASSERT(fz_status_ok(st));
    FZ_ASSERT((st == SM_OK) == (ds != NULL));
    if (ds) {
        int h, w, c;
        sm_dataset_shape(ds, &h, &w, &c);
        int64_t n = sm_dataset_size(ds);
        FZ_ASSERT(n >= 1 && h >= 1 && w >= 1 && c == 1);
        const float *x = sm_dataset_images(ds);
        const int32_t *y = sm_dataset_labels(ds);
        float lo = 1, hi = 0;
        for (int64_t i = 0; i < n * h * w; i++) { if (x[i] < lo) lo = x[i]; if (x[i] > hi) hi = x[i]; }
        FZ_ASSERT(lo >= 0 && hi <= 1);
        for (int64_t i = 0; i < n; i++) FZ_ASSERT(y[i] >= 0 && y[i] <= 255);
        FZ_ASSERT(sm_dataset_num_classes(ds) >= 1);
        sm_dataset_free(ds);
    }
    return 0;
}
