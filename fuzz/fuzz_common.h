/* fuzz_common.h - helpers shared by the libFuzzer targets: a private scratch folder on tmpfs
 * (/dev/shm when it exists, removed at exit), writing fuzz bytes to a file there, and one-time
 * set-up (one thread, so that runs are deterministic and cheap). */
#ifndef SM_FUZZ_COMMON_H
#define SM_FUZZ_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "simile.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <ftw.h>
#include <zlib.h>

static char fz_dir[256];

static inline int fz_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}
static inline void fz_cleanup(void) {
    if (fz_dir[0]) nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* The scratch folder, created on first use and removed at exit. */
static inline const char *fz_scratch(void) {
    if (!fz_dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dir, sizeof fz_dir, "%s/simile_fuzz_%ld", base, (long)getpid());
        mkdir(fz_dir, 0700);
        atexit(fz_cleanup);
        sm_set_num_threads(1);
    }
    return fz_dir;
}

/* Path of a scratch file name inside the scratch folder (static buffer per slot). */
static inline const char *fz_path(int slot, const char *name) {
    static char buf[4][512];
    snprintf(buf[slot & 3], sizeof buf[0], "%s/%s", fz_scratch(), name);
    return buf[slot & 3];
}

/* Write bytes to path (truncating); aborts on failure, which is a harness problem. */
static inline void fz_write(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if (len && fwrite(data, 1, len, f) != len) { perror(path); abort(); }
    fclose(f);
}

/* Write bytes followed by their CRC-32 (little-endian), as model and gallery files end: the
 * model and gallery targets take files without their checksum, so that mutations reach the
 * parsers behind it instead of failing the checksum (which the unit tests cover). */
static inline void fz_write_with_crc(const char *path, const uint8_t *data, size_t len) {
    uLong crc = crc32(0L, Z_NULL, 0);
    if (len) crc = crc32(crc, data, (uInt)len);
    unsigned char c[4] = {(unsigned char)crc, (unsigned char)(crc >> 8), (unsigned char)(crc >> 16),
                          (unsigned char)(crc >> 24)};
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if ((len && fwrite(data, 1, len, f) != len) || fwrite(c, 1, 4, f) != 4) { perror(path); abort(); }
    fclose(f);
}

/* A libFuzzer finding for a broken invariant of our own (not a sanitizer report). */
#define FZ_ASSERT(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: invariant failed: %s (%s)\n", __FILE__, __LINE__, #cond, sm_errmsg()); \
    abort(); } } while (0)

/* Every status a parser may return for bad input: anything but SM_OK must be one of these. */
static inline int fz_status_ok(sm_status st) {
    return st == SM_OK || st == SM_ERR_IO || st == SM_ERR_FORMAT || st == SM_ERR_RANGE ||
           st == SM_ERR_NOMEM || st == SM_ERR_NUMERIC || st == SM_ERR_SPEC || st == SM_ERR_INVALID ||
           st == SM_ERR_MISMATCH;
}
#endif
