/* test_model_meta.c - what the model file stores besides the layers (format version 2): the
 * input normalisation and the class names round-trip with the same bits; bad values are
 * refused with the value named; a version-1 file (the same bytes with version 1) still reads,
 * with no normalisation stored; a damaged entry is refused as a format error. */
#include "simile.h"
#include "core/core.h"
#include "testing.h"
#include "testfiles.h"
#include <string.h>
#include <unistd.h>

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 8);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

int main(void) {
    char dir[] = "/tmp/sm_test_meta_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[256], p1[256];
    snprintf(p, sizeof p, "%s/m.smm", dir);
    snprintf(p1, sizeof p1, "%s/v1.smm", dir);
    sm_model *m = NULL, *l = NULL;
    CHECK_OK(sm_model_create(&m, "conv 4 k=3; relu; gap; fc 8; l2norm", 8, 8, 3, 1));
    sm_normalization nz, got;
    sm_model_normalization(m, &got);
    CHECK(got.kind == SM_NORM_UNKNOWN);
    /* refused values, named */
    nz = (sm_normalization){SM_NORM_MEAN_STD, 3, {0.485f, 0.456f, 0.406f}, {0.229f, 0.f, 0.225f}};
    CHECK_STATUS(sm_model_set_normalization(m, &nz), SM_ERR_INVALID);
    CHECK(strstr(sm_model_errmsg(m), "channel 1") != NULL);
    nz.channels = 1;
    nz.std[1] = 0.224f;
    CHECK_STATUS(sm_model_set_normalization(m, &nz), SM_ERR_INVALID); /* 1 channel for a 3-channel model */
    nz.channels = 3;
    CHECK_OK(sm_model_set_normalization(m, &nz));
    const char *names[3] = {"cat", "dog", "a bird"};
    CHECK_OK(sm_model_set_class_names(m, names, 3));
    const char *bad[2] = {"ok", "two\nlines"};
    CHECK_STATUS(sm_model_set_class_names(m, bad, 2), SM_ERR_INVALID);
    CHECK(strstr(sm_model_errmsg(m), "class name 1") != NULL);
    CHECK(sm_model_num_class_names(m) == 3); /* a refused call leaves the names as they were */
    CHECK_OK(sm_model_save(m, p));
    CHECK_OK(sm_model_load(&l, p));
    sm_model_normalization(l, &got);
    CHECK(got.kind == SM_NORM_MEAN_STD && got.channels == 3);
    CHECK(!memcmp(got.mean, nz.mean, sizeof nz.mean) && !memcmp(got.std, nz.std, sizeof nz.std)); /* same bits */
    CHECK(sm_model_num_class_names(l) == 3);
    CHECK(sm_model_class_name(l, 2) && !strcmp(sm_model_class_name(l, 2), "a bird"));
    CHECK(sm_model_class_name(l, 3) == NULL && sm_model_class_name(l, -1) == NULL);
    CHECK(sm_model_fingerprint(l) == sm_model_fingerprint(m));
    sm_model_free(l);
    l = NULL;
    /* "none" is stored as such */
    nz.kind = SM_NORM_NONE;
    CHECK_OK(sm_model_set_normalization(m, &nz));
    CHECK_OK(sm_model_set_class_names(m, NULL, 0));
    CHECK_OK(sm_model_save(m, p));
    CHECK_OK(sm_model_load(&l, p));
    sm_model_normalization(l, &got);
    CHECK(got.kind == SM_NORM_NONE && sm_model_num_class_names(l) == 0);
    sm_model_free(l);
    l = NULL;
    /* a version-1 file: nothing of this stored; the same layout with version 1 reads */
    sm_model *plain = NULL;
    CHECK_OK(sm_model_create(&plain, "conv 4 k=3; relu; gap; fc 8; l2norm", 8, 8, 3, 1));
    CHECK_OK(sm_model_save(plain, p1));
    size_t len = 0;
    unsigned char *b = slurp(p1, &len);
    CHECK(b && len > 16);
    if (b && len > 16) {
        CHECK(b[8] == 2);
        put_u32(b + 8, 1);
        put_u32(b + len - 4, sm_crc32(0, b, len - 4));
        t_write_file(p1, b, len, 0);
        CHECK_OK(sm_model_load(&l, p1));
        sm_model_normalization(l, &got);
        CHECK(got.kind == SM_NORM_UNKNOWN);
        CHECK(sm_model_fingerprint(l) == sm_model_fingerprint(plain));
        sm_model_free(l);
        l = NULL;
    }
    free(b);
    /* a damaged normalisation entry, checksum recomputed: a format error naming it */
    nz = (sm_normalization){SM_NORM_MEAN_STD, 3, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
    CHECK_OK(sm_model_set_normalization(m, &nz));
    CHECK_OK(sm_model_save(m, p));
    b = slurp(p, &len);
    unsigned char *at = b ? memmem(b, len, "std 0.25,0.25,0.25", 18) : NULL;
    CHECK(at != NULL);
    if (at) {
        memcpy(at, "std 0.25,-1.00,0.2", 18);
        put_u32(b + len - 4, sm_crc32(0, b, len - 4));
        t_write_file(p, b, len, 0);
        CHECK_STATUS(sm_model_load(&l, p), SM_ERR_FORMAT);
        CHECK(strstr(sm_errmsg(), "normalisation") != NULL);
    }
    free(b);
    sm_model_free(plain);
    sm_model_free(m);
    unlink(p);
    unlink(p1);
    rmdir(dir);
    TEST_MAIN_END();
}
