/* keys.c - API keys for `simile serve --keys FILE`: each line "read HASH" or "write HASH" with
 * HASH the SHA-256 of the key in hex (printf %s KEY | sha256sum); blank lines and '#' comments
 * are skipped.  Keys are never stored in clear: a request's key is hashed (nettle's SHA-256)
 * and compared with every stored hash in constant time. */
#include "serve.h"

#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_sha256(const void *data, size_t n, unsigned char out[32]) {
    struct sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, n, data);
    sha256_digest(&c, 32, out);
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int srv_keys_load(srv_keys *k, const char *path, char *err, size_t errlen) {
    memset(k, 0, sizeof *k);
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "%s: cannot open the keys file", path); return -1; }
    char line[512];
    int lineno = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) continue;
        char role[16], hex[80];
        if (sscanf(p, "%15s %79s", role, hex) != 2 || strlen(hex) != 64 || (strcmp(role, "read") && strcmp(role, "write"))) {
            snprintf(err, errlen, "%s:%d: expected 'read HASH' or 'write HASH' (HASH: 64 hex digits of SHA-256)", path, lineno);
            fclose(f);
            srv_keys_free(k);
            return -1;
        }
        if (k->n == cap) {
            cap = cap ? 2 * cap : 8;
            void *h = realloc(k->hash, (size_t)cap * 32), *r = h ? realloc(k->role, (size_t)cap * sizeof(int)) : NULL;
            if (h) k->hash = h;
            if (!h || !r) { snprintf(err, errlen, "out of memory"); fclose(f); srv_keys_free(k); return -1; }
            k->role = r;
        }
        for (int i = 0; i < 32; i++) {
            int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
            if (a < 0 || b < 0) {
                snprintf(err, errlen, "%s:%d: the hash is not hexadecimal", path, lineno);
                fclose(f);
                srv_keys_free(k);
                return -1;
            }
            k->hash[k->n][i] = (unsigned char)(a << 4 | b);
        }
        k->role[k->n++] = strcmp(role, "write") ? SRV_ROLE_READ : SRV_ROLE_WRITE;
    }
    fclose(f);
    if (k->n == 0) { snprintf(err, errlen, "%s: no key in the keys file", path); return -1; }
    return 0;
}

int srv_keys_role(const srv_keys *k, const char *key) {
    if (!key) return SRV_ROLE_NONE;
    unsigned char h[32];
    srv_sha256(key, strlen(key), h);
    int role = SRV_ROLE_NONE;
    for (int i = 0; i < k->n; i++) { /* every entry, every byte: the time does not depend on the key */
        unsigned diff = 0;
        for (int j = 0; j < 32; j++) diff |= (unsigned)(h[j] ^ k->hash[i][j]);
        int match = (int)(1 & ((diff - 1) >> 8)); /* 1 iff diff == 0 */
        int r = k->role[i];
        role = role > r * match ? role : r * match;
    }
    return role;
}

void srv_keys_free(srv_keys *k) {
    free(k->hash);
    free(k->role);
    memset(k, 0, sizeof *k);
}
