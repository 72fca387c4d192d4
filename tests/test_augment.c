/* test_augment.c - the training augmentations of src/data/augment.c: random resized crop (box
 * bounds, the draws of a given generator, exact bilinear results on small images, the identity
 * box), colour jitter (identity at factor 1, brightness, contrast and saturation on known
 * pixels, clamping), random erasing (box bounds, exact fill), the per-image batch pass (same
 * bits for 1 and 4 threads, another step gives other bits, all-off leaves the batch alone), and
 * the option checks. */
#include "data/data.h"
#include "simile.h"
#include "testing.h"
#include <math.h>
#include <string.h>

static void test_resize(void) {
    /* the whole image at its own size: an exact copy */
    float src[4 * 3 * 2], dst[4 * 3 * 2];
    for (int i = 0; i < 24; i++) src[i] = (float)i * 0.37f - 2;
    sm_aug_resize(src, 4, 3, 2, 0, 0, 4, 3, dst, 4, 3);
    CHECK(!memcmp(src, dst, sizeof src));
    /* 2x2 -> 4x4, half-pixel centres: columns at source 0, 0.25, 0.75, 1 */
    const float s2[4] = {0, 1, 2, 3};
    float d4[16];
    sm_aug_resize(s2, 2, 2, 1, 0, 0, 2, 2, d4, 4, 4);
    const float row0[4] = {0, 0.25f, 0.75f, 1}, col0[4] = {0, 0.5f, 1.5f, 2};
    for (int x = 0; x < 4; x++) CHECK_NEAR(d4[x], row0[x], 0);
    for (int y = 0; y < 4; y++) CHECK_NEAR(d4[y * 4], col0[y], 0);
    CHECK_NEAR(d4[15], 3, 0);
    /* the inner 2x2 box of a 4x4 image at 2x2: exactly those pixels */
    float s4[16], d2[4];
    for (int i = 0; i < 16; i++) s4[i] = (float)i;
    sm_aug_resize(s4, 4, 4, 1, 1, 1, 2, 2, d2, 2, 2);
    CHECK(d2[0] == 5 && d2[1] == 6 && d2[2] == 9 && d2[3] == 10);
    /* a 1x1 box fills the output with that pixel */
    sm_aug_resize(s4, 4, 4, 1, 2, 3, 1, 1, d4, 4, 4);
    int same = 1;
    for (int i = 0; i < 16; i++) same &= d4[i] == 11;
    CHECK(same);
}

static void test_crop_box(void) {
    /* scale 1, ratio 1 on a square: the whole image */
    sm_rng r;
    sm_rng_seed(&r, 7);
    int t, l, ch, cw;
    sm_aug_crop_box(&r, 16, 16, 1, 1, 1, 1, &t, &l, &ch, &cw);
    CHECK(t == 0 && l == 0 && ch == 16 && cw == 16);
    /* the first try's draws, replayed on a copy of the generator: area, log-ratio, top, left */
    sm_rng_seed(&r, 11);
    sm_rng copy = r;
    sm_aug_crop_box(&r, 20, 30, 0.25f, 0.5f, 0.75f, 4.0f / 3, &t, &l, &ch, &cw);
    double a = 600 * (0.25 + (double)(0.5f - 0.25f) * sm_rng_uniform(&copy));
    double ar = exp(log(0.75f) + (log(4.0f / 3) - log(0.75f)) * sm_rng_uniform(&copy));
    int ew = (int)nearbyint(sqrt(a * ar)), eh = (int)nearbyint(sqrt(a / ar));
    CHECK(ew <= 30 && eh <= 20); /* an area of at most half the image fits at these ratios */
    CHECK(cw == ew && ch == eh);
    int et = (int)sm_rng_below(&copy, (uint64_t)(20 - eh + 1)), el = (int)sm_rng_below(&copy, (uint64_t)(30 - ew + 1));
    CHECK(t == et && l == el);
    /* bounds over many draws, including ratios a narrow image cannot take (the fallback) */
    int bad = 0, fallback_ok = 1;
    for (int i = 0; i < 2000; i++) {
        int h = 1 + (int)sm_rng_below(&r, 40), w = 1 + (int)sm_rng_below(&r, 40);
        sm_aug_crop_box(&r, h, w, 0.08f, 1, 0.75f, 4.0f / 3, &t, &l, &ch, &cw);
        bad += t < 0 || l < 0 || ch < 1 || cw < 1 || t + ch > h || l + cw > w;
    }
    CHECK_MSG(bad == 0, "%d boxes out of bounds", bad);
    sm_aug_crop_box(&r, 4, 40, 0.99f, 1, 1, 1, &t, &l, &ch, &cw); /* no square box of 99% fits */
    fallback_ok = ch == 4 && cw == 4 && t == 0 && l == 18;
    CHECK_MSG(fallback_ok, "fallback box %d,%d %dx%d", t, l, ch, cw);
}

static void test_jitter(void) {
    const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    float px[6] = {0.2f, 0.4f, 0.8f, 0.6f, 0.1f, 0.5f}, orig[6]; /* 2 RGB pixels */
    memcpy(orig, px, sizeof px);
    sm_aug_jitter(px, 2, 3, 1, 1, 1, zero, one);
    CHECK(!memcmp(px, orig, sizeof px)); /* factor 1: unchanged */
    sm_aug_jitter(px, 2, 3, 0.5f, 1, 1, zero, one);
    for (int i = 0; i < 6; i++) CHECK_NEAR(px[i], orig[i] * 0.5f, 0);
    memcpy(px, orig, sizeof px);
    sm_aug_jitter(px, 2, 3, 2, 1, 1, zero, one); /* clamped at 1 */
    CHECK_NEAR(px[2], 1, 0); CHECK_NEAR(px[0], 0.4f, 0); CHECK_NEAR(px[3], 1, 0);
    /* contrast 0: every value the image's mean grey */
    memcpy(px, orig, sizeof px);
    float g0 = 0.299f * 0.2f + 0.587f * 0.4f + 0.114f * 0.8f, g1 = 0.299f * 0.6f + 0.587f * 0.1f + 0.114f * 0.5f;
    sm_aug_jitter(px, 2, 3, 1, 0, 1, zero, one);
    for (int i = 0; i < 6; i++) CHECK_NEAR(px[i], (g0 + g1) / 2, 1e-6);
    /* saturation 0: each pixel its grey */
    memcpy(px, orig, sizeof px);
    sm_aug_jitter(px, 2, 3, 1, 1, 0, zero, one);
    for (int k = 0; k < 3; k++) { CHECK_NEAR(px[k], g0, 1e-6); CHECK_NEAR(px[3 + k], g1, 1e-6); }
    /* saturation on one channel: unchanged */
    float grey[2] = {0.3f, 0.7f};
    sm_aug_jitter(grey, 2, 1, 1, 1, 0, zero, one);
    CHECK(grey[0] == 0.3f && grey[1] == 0.7f);
    /* on normalised values: the factor applies to x * std + mean */
    const float m[3] = {0.5f, 0.25f, 0.1f}, s[3] = {0.25f, 0.5f, 2};
    float nx[3] = {0, 0.5f, -0.05f}; /* [0,1] values 0.5, 0.5, 0 */
    sm_aug_jitter(nx, 1, 3, 0.5f, 1, 1, m, s);
    CHECK_NEAR(nx[0], (0.25f - 0.5f) / 0.25f, 1e-6);
    CHECK_NEAR(nx[1], (0.25f - 0.25f) / 0.5f, 1e-6);
    CHECK_NEAR(nx[2], (0.0f - 0.1f) / 2, 1e-6);
}

static void test_erase(void) {
    float img[5 * 6 * 2];
    for (int i = 0; i < 60; i++) img[i] = 1 + (float)i;
    sm_aug_erase(img, 5, 6, 2, 1, 2, 3, 2, -7);
    int ok = 1;
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 6; x++)
            for (int k = 0; k < 2; k++) {
                float v = img[(y * 6 + x) * 2 + k];
                int in = y >= 1 && y < 4 && x >= 2 && x < 4;
                ok &= in ? v == -7 : v == 1 + (float)((y * 6 + x) * 2 + k);
            }
    CHECK(ok);
    sm_rng r;
    sm_rng_seed(&r, 3);
    int bad = 0, found = 0, t, l, eh, ew;
    for (int i = 0; i < 1000; i++) {
        int h = 2 + (int)sm_rng_below(&r, 30), w = 2 + (int)sm_rng_below(&r, 30);
        if (!sm_aug_erase_box(&r, h, w, 0.02f, 0.33f, 0.3f, 3.3f, &t, &l, &eh, &ew)) continue;
        found++;
        bad += t < 0 || l < 0 || eh < 1 || ew < 1 || eh >= h || ew >= w || t + eh > h || l + ew > w;
    }
    CHECK_MSG(bad == 0, "%d erase boxes out of bounds", bad);
    CHECK(found > 500);
    CHECK(!sm_aug_erase_box(&r, 1, 1, 0.02f, 0.33f, 0.3f, 3.3f, &t, &l, &eh, &ew)); /* nothing fits in 1x1 */
}

static void test_batch(void) {
    enum { N = 64, H = 32, W = 32, C = 3 };
    const size_t per = (size_t)H * W * C;
    float *x0 = malloc(N * per * sizeof(float)), *a = malloc(N * per * sizeof(float)), *b = malloc(N * per * sizeof(float));
    float *scratch = malloc(N * per * sizeof(float));
    sm_rng r;
    sm_rng_seed(&r, 5);
    for (size_t i = 0; i < N * per; i++) x0[i] = (float)sm_rng_uniform(&r) * 4 - 2;
    const float m[3] = {0.485f, 0.456f, 0.406f}, s[3] = {0.229f, 0.224f, 0.225f};
    sm_augment aug = {0};
    memcpy(a, x0, N * per * sizeof(float));
    sm_augment_batch_ex(a, N, H, W, C, &aug, m, s, 1, 0, scratch);
    CHECK(!memcmp(a, x0, N * per * sizeof(float))); /* all off: unchanged */
    aug.crop_scale_min = 0.08f; aug.crop_scale_max = 1; aug.crop_ratio_min = 0.75f; aug.crop_ratio_max = 4.0f / 3;
    aug.brightness = aug.contrast = aug.saturation = 0.4f;
    aug.erase_p = 0.5f;
    CHECK_OK(sm_augment_check(&aug));
    sm_set_num_threads(1);
    memcpy(a, x0, N * per * sizeof(float));
    sm_augment_batch_ex(a, N, H, W, C, &aug, m, s, 42, 17, scratch);
    sm_set_num_threads(4);
    memcpy(b, x0, N * per * sizeof(float));
    sm_augment_batch_ex(b, N, H, W, C, &aug, m, s, 42, 17, scratch);
    CHECK(!memcmp(a, b, N * per * sizeof(float))); /* the same bits for any thread count */
    CHECK(memcmp(a, x0, N * per * sizeof(float)) != 0);
    memcpy(b, x0, N * per * sizeof(float));
    sm_augment_batch_ex(b, N, H, W, C, &aug, m, s, 42, 18, scratch);
    CHECK(memcmp(a, b, N * per * sizeof(float)) != 0); /* another step: other draws */
    /* image k depends only on (seed, step, k): a batch of the first 3 images gives their bits */
    memcpy(b, x0, 3 * per * sizeof(float));
    sm_augment_batch_ex(b, 3, H, W, C, &aug, m, s, 42, 17, scratch);
    CHECK(!memcmp(a, b, 3 * per * sizeof(float)));
    /* erasing alone, p = 1: every image has a box of zeros and is unchanged elsewhere */
    sm_augment e = {0};
    e.erase_p = 1;
    memcpy(b, x0, N * per * sizeof(float));
    sm_augment_batch_ex(b, N, H, W, C, &e, m, s, 9, 0, NULL);
    int boxed = 0, other = 0;
    for (int k = 0; k < N; k++) {
        int zeros = 0;
        for (size_t i = 0; i < per; i++) {
            float v = b[k * per + i];
            if (v == 0 && x0[k * per + i] != 0) zeros++;
            else if (v != x0[k * per + i]) other++;
        }
        boxed += zeros > 0;
    }
    CHECK(boxed == N && other == 0);
    sm_set_num_threads(0);
    free(x0); free(a); free(b); free(scratch);
}

static void test_check(void) {
    sm_augment a = {0};
    CHECK_OK(sm_augment_check(&a));
    a.crop_scale_min = 0.5f; a.crop_scale_max = 0.2f; a.crop_ratio_min = 1; a.crop_ratio_max = 1;
    CHECK_STATUS(sm_augment_check(&a), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "0.5") != NULL);
    memset(&a, 0, sizeof a);
    a.erase_p = 1.5f;
    CHECK_STATUS(sm_augment_check(&a), SM_ERR_INVALID);
    memset(&a, 0, sizeof a);
    a.brightness = -1;
    CHECK_STATUS(sm_augment_check(&a), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "brightness") != NULL);
}

int main(void) {
    test_resize();
    test_crop_box();
    test_jitter();
    test_erase();
    test_batch();
    test_check();
    TEST_MAIN_END();
}
