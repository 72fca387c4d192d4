/* testfiles.h - file helpers shared by the unit tests that build inputs on disk: write a file
 * (optionally gzipped), read one whole, count left-over temporary files in a folder. */
#ifndef SM_TESTFILES_H
#define SM_TESTFILES_H
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Write len bytes to path, gzip-compressed if gz; a test set-up step, so a failure ends the
 * test with exit code 2. */
static inline void t_write_file(const char *path, const void *data, size_t len, int gz) {
    int ok;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        ok = g != NULL && (len == 0 || gzwrite(g, data, (unsigned)len) == (int)len);
        if (g && gzclose(g) != Z_OK) ok = 0;
    } else {
        FILE *f = fopen(path, "wb");
        ok = f != NULL && (len == 0 || fwrite(data, 1, len, f) == len);
        if (f && fclose(f) != 0) ok = 0;
    }
    if (!ok) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
}

/* The whole file (malloc'ed, *len bytes), or NULL if it cannot be opened. */
static inline unsigned char *t_read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* Entries of dir whose name contains ".tmp." (temporary files a write left behind), or -1 if
 * the folder cannot be read. */
static inline int t_count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}
#endif
