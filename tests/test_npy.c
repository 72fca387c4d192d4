/* test_npy.c - .npy arrays: write/read round trips (float32 2-D, int32 1-D), hand-made headers
 * (version 2.0, '<f8' and '<i8' converted, extra spaces), and bad files: magic, version,
 * dtype, Fortran order, unknown key, truncated and over-long payloads, NaN, int64 overflow. */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include "simile.h"
#include "testing.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

/* Write a .npy file with the given version, header dictionary text and payload. */
static void raw(int version, const char *dict, const void *payload, size_t n) {
    FILE *f = fopen(path, "wb");
    size_t dl = strlen(dict);
    fwrite("\x93NUMPY", 1, 6, f);
    fputc(version, f);
    fputc(0, f);
    if (version == 1) { fputc((int)((dl + 1) & 255), f); fputc((int)((dl + 1) >> 8), f); }
    else { unsigned char l[4] = {(unsigned char)(dl + 1), (unsigned char)((dl + 1) >> 8), 0, 0}; fwrite(l, 1, 4, f); }
    fwrite(dict, 1, dl, f);
    fputc('\n', f);
    if (n) fwrite(payload, 1, n, f);
    fclose(f);
}

int main(void) {
    snprintf(path, sizeof path, "/tmp/simile_npy_%d.npy", (int)getpid());
    float x[6] = {1, 2, 3, 4, 5, -6.5f};
    int64_t shape[4] = {2, 3, 0, 0}, got[4];
    int nd;
    void *data = NULL;
    CHECK_OK(sm_npy_write(path, SM_NPY_F32, x, shape, 2));
    CHECK_OK(sm_npy_read(path, SM_NPY_F32, &data, got, &nd));
    CHECK(nd == 2 && got[0] == 2 && got[1] == 3 && data && !memcmp(data, x, sizeof x));
    free(data);
    FILE *f = fopen(path, "rb");
    char hdr[256] = {0};
    size_t hn = fread(hdr, 1, 255, f) - sizeof x;
    fclose(f);
    int hl = (unsigned char)hdr[8] + 10;
    CHECK(hn == (size_t)hl && hl % 64 == 0 && hdr[hl - 1] == '\n'); /* header padded to 64 */
    CHECK(strstr(hdr + 10, "'shape': (2, 3)") != NULL);
    int32_t y[5] = {0, 7, -1, 100000, 3};
    shape[0] = 5;
    CHECK_OK(sm_npy_write(path, SM_NPY_I32, y, shape, 1));
    CHECK_OK(sm_npy_read(path, SM_NPY_I32, &data, got, &nd));
    CHECK(nd == 1 && got[0] == 5 && !memcmp(data, y, sizeof y));
    free(data);
    /* int32 file read as float: refused */
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    CHECK(strstr(sm_errmsg(), "dtype") != NULL && data == NULL);

    double dv[4] = {0.5, 1.5, 2.5, 3.5};
    raw(2, "{'descr':'<f8','fortran_order':False,'shape':(2,2)}   ", dv, sizeof dv);
    CHECK_OK(sm_npy_read(path, SM_NPY_F32, &data, got, &nd));
    CHECK(nd == 2 && got[0] == 2 && ((float *)data)[3] == 3.5f);
    free(data);
    int64_t lv[3] = {4, 5, 6};
    raw(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", lv, sizeof lv);
    CHECK_OK(sm_npy_read(path, SM_NPY_I32, &data, got, &nd));
    CHECK(nd == 1 && got[0] == 3 && ((int32_t *)data)[2] == 6);
    free(data);
    lv[1] = (int64_t)1 << 40;
    raw(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", lv, sizeof lv);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_I32, &data, got, &nd), SM_ERR_RANGE);

    float nanv[2] = {1, NAN};
    raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", nanv, sizeof nanv);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_NUMERIC);
    raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    CHECK(strstr(sm_errmsg(), "truncated") != NULL);
    raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    CHECK(strstr(sm_errmsg(), "trailing") != NULL);
    raw(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    raw(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    CHECK(strstr(sm_errmsg(), "Fortran") != NULL);
    raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    raw(1, "{'descr': '<f4', 'fortran_order': False}", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2), }", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", x, 4);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", x, 8);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_RANGE);
    raw(7, "{}", NULL, 0);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    f = fopen(path, "wb");
    fputs("hello world, not numpy", f);
    fclose(f);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_FORMAT);
    CHECK(strstr(sm_errmsg(), "magic") != NULL);
    unlink(path);
    CHECK_STATUS(sm_npy_read(path, SM_NPY_F32, &data, got, &nd), SM_ERR_IO);
    CHECK_STATUS(sm_npy_write(path, SM_NPY_F32, x, shape, 0), SM_ERR_INVALID);
    TEST_MAIN_END();
}
