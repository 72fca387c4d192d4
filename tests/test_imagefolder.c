/* test_imagefolder.c - image folders and single images: PGM (written by hand) and PNG (written
 * with stb_image_write) decoded, converted and resized; sorted class names and labels; an
 * RGB image read as grey; errors: an empty class folder, an undecodable image, no class
 * folder, a missing folder. */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include "simile.h"
#include "testing.h"

#include <stb/stb_image_write.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[128];

static void pgm(const char *rel, int w, int h, const unsigned char *px) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "wb");
    fprintf(f, "P5\n%d %d\n255\n", w, h);
    fwrite(px, 1, (size_t)w * h, f);
    fclose(f);
}
static void sub(const char *rel) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    mkdir(p, 0755);
}
static void rm_tree(const char *d) {
    DIR *dd = opendir(d);
    if (!dd) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(dd))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p); else unlink(p);
    }
    closedir(dd);
    rmdir(d);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/simile_imgf_XXXXXX");
    if (!mkdtemp(root)) return 1;
    sub("b_dog");
    sub("a_cat");
    sub(".hidden");
    unsigned char flat[4] = {51, 51, 51, 51}, grad[4] = {0, 255, 0, 255};
    pgm("a_cat/2.pgm", 2, 2, grad);
    pgm("a_cat/1.pgm", 2, 2, flat);
    char p[256];
    snprintf(p, sizeof p, "%s/a_cat/notes.txt", root);
    FILE *f = fopen(p, "w");
    fputs("not an image, ignored", f);
    fclose(f);
    /* a red 3x3 RGB PNG */
    unsigned char rgb[27];
    for (int i = 0; i < 9; i++) { rgb[3 * i] = 255; rgb[3 * i + 1] = 0; rgb[3 * i + 2] = 0; }
    snprintf(p, sizeof p, "%s/b_dog/red.PNG", root);
    CHECK(stbi_write_png(p, 3, 3, 3, rgb, 9) != 0);

    sm_dataset *ds = NULL;
    char **names = NULL;
    int nc = 0;
    CHECK_OK(sm_dataset_load_folder(&ds, root, 4, 4, 1, &names, &nc));
    CHECK(ds && sm_dataset_size(ds) == 3 && nc == 2);
    if (ds && nc == 2) {
        CHECK(!strcmp(names[0], "a_cat") && !strcmp(names[1], "b_dog"));
        const int32_t *y = sm_dataset_labels(ds);
        CHECK(y[0] == 0 && y[1] == 0 && y[2] == 1);
        const float *x = sm_dataset_images(ds);
        int h, w, c;
        sm_dataset_shape(ds, &h, &w, &c);
        CHECK(h == 4 && w == 4 && c == 1);
        CHECK_NEAR(x[0], 0.2, 1e-6);  /* 1.pgm first (sorted): flat 51 */
        CHECK_NEAR(x[15], 0.2, 1e-6);
        /* 2.pgm, a 2x2 grid 0 255 / 0 255 resized to 4x4 bilinearly: columns 0, 1/4, 3/4, 1 */
        CHECK_NEAR(x[16 + 0], 0.0, 1e-6);
        CHECK_NEAR(x[16 + 1], 0.25, 1e-6);
        CHECK_NEAR(x[16 + 2], 0.75, 1e-6);
        CHECK_NEAR(x[16 + 3], 1.0, 1e-6);
        CHECK_NEAR(x[16 + 13], 0.25, 1e-6);
        /* red -> grey by stb's luma (77 r + 150 g + 29 b) >> 8 = 76 */
        CHECK_NEAR(x[32], 76.0 / 255, 1e-6);
    }
    free(names);
    sm_dataset_free(ds);
    /* the same PNG as RGB */
    float img[2 * 2 * 3];
    CHECK_OK(sm_image_load(p, 2, 2, 3, img));
    CHECK_NEAR(img[0], 1.0, 1e-6);
    CHECK_NEAR(img[1], 0.0, 1e-6);
    CHECK_STATUS(sm_image_load(p, 2, 2, 2, img), SM_ERR_INVALID);

    /* an undecodable image */
    snprintf(p, sizeof p, "%s/b_dog/broken.png", root);
    f = fopen(p, "wb");
    fputs("\x89PNG\r\n\x1a\n garbage", f);
    fclose(f);
    ds = NULL;
    CHECK_STATUS(sm_dataset_load_folder(&ds, root, 4, 4, 1, NULL, NULL), SM_ERR_FORMAT);
    CHECK(ds == NULL && strstr(sm_errmsg(), "broken.png") != NULL);
    unlink(p);
    /* an empty class */
    sub("c_empty");
    CHECK_STATUS(sm_dataset_load_folder(&ds, root, 4, 4, 1, NULL, NULL), SM_ERR_RANGE);
    CHECK(strstr(sm_errmsg(), "c_empty") != NULL);
    /* no class folders; missing folder */
    CHECK_STATUS(sm_dataset_load_folder(&ds, "/tmp/simile_no_such_folder", 4, 4, 1, NULL, NULL), SM_ERR_IO);
    snprintf(p, sizeof p, "%s/a_cat", root);
    CHECK_STATUS(sm_dataset_load_folder(&ds, p, 4, 4, 1, NULL, NULL), SM_ERR_RANGE);
    CHECK_STATUS(sm_image_load("/tmp/simile_no_such.png", 4, 4, 1, img), SM_ERR_IO);
    rm_tree(root);
    TEST_MAIN_END();
}
