/* fuzz_npy.c - libFuzzer target for the .npy reader (sm_npy_read), as float32 and as int32;
 * arrays it accepts are written back with sm_npy_write and must read back identically. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_path(0, "a.npy"), *back = fz_path(1, "b.npy");
    fz_write(path, data, size);
    for (int t = 0; t < 2; t++) {
        sm_npy_dtype dt = t ? SM_NPY_I32 : SM_NPY_F32;
        void *arr = NULL;
        int64_t shape[4] = {0, 0, 0, 0};
        int ndim = 0;
        sm_status st = sm_npy_read(path, dt, &arr, shape, &ndim);
        FZ_ASSERT(fz_status_ok(st));
        if (st) { FZ_ASSERT(arr == NULL); continue; }
        FZ_ASSERT(ndim >= 1 && ndim <= 4);
        int64_t count = 1;
        for (int i = 0; i < ndim; i++) { FZ_ASSERT(shape[i] >= 0); count *= shape[i]; }
        /* round trip */
        FZ_ASSERT(sm_npy_write(back, dt, arr, shape, ndim) == SM_OK);
        void *arr2 = NULL;
        int64_t shape2[4];
        int ndim2 = 0;
        FZ_ASSERT(sm_npy_read(back, dt, &arr2, shape2, &ndim2) == SM_OK);
        FZ_ASSERT(ndim2 == ndim && !memcmp(shape, shape2, sizeof shape));
        FZ_ASSERT(count == 0 || !memcmp(arr, arr2, (size_t)count * 4));
        free(arr);
        free(arr2);
    }
    return 0;
}
