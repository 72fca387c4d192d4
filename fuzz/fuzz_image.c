/* fuzz_image.c - libFuzzer target for image decoding (sm_image_load: stb_image + resize).
 * Input: byte 0 chooses the target shape (h, w in 1..16, c 1 or 3), the rest is the file.
 * stb_image's implementation is compiled into this target (fuzz/stb_impl.c) from the same
 * header as Debian's libstb, so that the decoder is instrumented too. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int h = 1 + (data[0] & 15), w = 1 + ((data[0] >> 4) & 7) * 2, c = (data[0] & 128) ? 3 : 1;
    const char *path = fz_path(0, "img");
    fz_write(path, data + 1, size - 1);
    float *x = malloc((size_t)h * w * c * sizeof(float));
    sm_status st = sm_image_load(path, h, w, c, x);
    FZ_ASSERT(st == SM_OK || st == SM_ERR_FORMAT || st == SM_ERR_NOMEM);
    if (st == SM_OK)
        for (int i = 0; i < h * w * c; i++) FZ_ASSERT(x[i] >= 0 && x[i] <= 1);
    free(x);
    return 0;
}
