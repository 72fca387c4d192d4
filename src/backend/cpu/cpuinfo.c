/* cpuinfo.c - what simile computes with: the CPU (CPUID brand, family, model), the vector
 * extensions that the CPU has and the operating system enables (XGETBV), and the matrix
 * products: simile's own kernels with the instruction-set path they run (gemm.c), or, when
 * built with -DSIMILE_BLAS=openblas, the BLAS library with the kernel it picked for this CPU.  Also the decision whether that kernel falls short of
 * the CPU (OpenBLAS 0.3.21 runs its generic SSE3 "Prescott" kernel on CPUs newer than it knows,
 * such as Intel Xeons of family 6 model 207), made from the core name and the flags alone so
 * that it can be tested on any machine. */
#include "simile.h"
#include "backend/cpu/gemm.h"
#ifdef SM_BLAS_OPENBLAS
#include <cblas.h>
#endif
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SM_X86 1
#endif

/* ---- the decision -------------------------------------------------------------------------- */

/* The widest vector extension each OpenBLAS x86 core type's sgemm kernel uses: 3 AVX-512,
 * 2 AVX2 + FMA, 1 AVX, 0 SSE only.  Core types not listed are unknown (no advice given). */
static const struct { const char *core; int level; } kernel_levels[] = {
    {"SapphireRapids", 3}, {"Cooperlake", 3}, {"SkylakeX", 3},
    {"Haswell", 2},        {"Zen", 2},        {"Excavator", 2},
    {"Sandybridge", 1},    {"Bulldozer", 1},  {"Piledriver", 1}, {"Steamroller", 1},
    {"Prescott", 0},       {"Core2", 0},      {"Penryn", 0},     {"Dunnington", 0},
    {"Nehalem", 0},        {"Atom", 0},       {"Opteron", 0},    {"Opteron_SSE3", 0},
    {"Barcelona", 0},      {"Bobcat", 0},     {"Nano", 0},       {"Katmai", 0},
    {"Coppermine", 0},     {"Northwood", 0},  {"Banias", 0},     {"Athlon", 0},
};
static const char *const level_names[] = {"SSE", "AVX", "AVX2", "AVX-512"};

static int same_word(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return !*a && !*b;
}

static int kernel_level(const char *core) {
    if (!core) return -1;
    for (size_t i = 0; i < sizeof kernel_levels / sizeof kernel_levels[0]; i++)
        if (same_word(core, kernel_levels[i].core)) return kernel_levels[i].level;
    return -1;
}

/* 1 if the space-separated list holds the word. */
static int has_flag(const char *flags, const char *word) {
    size_t n = strlen(word);
    for (const char *p = flags; p && *p;) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, " ");
        if (len == n && !strncmp(p, word, n)) return 1;
        p += len;
    }
    return 0;
}

/* Widest vector extension in a flag list (/proc/cpuinfo names): 3 AVX-512, 2 AVX2 with FMA,
 * 1 AVX, 0 otherwise. */
static int cpu_level(const char *flags) {
    if (has_flag(flags, "avx512f")) return 3;
    if (has_flag(flags, "avx2") && has_flag(flags, "fma")) return 2;
    if (has_flag(flags, "avx")) return 1;
    return 0;
}

int sm_blas_kernel_warning(const char *blas_core, const char *cpu_flags, char *msg, size_t cap) {
    if (msg && cap) msg[0] = 0;
    int k = kernel_level(blas_core), c = cpu_level(cpu_flags ? cpu_flags : "");
    if (k < 0 || k >= 2 || c < 2) return 0; /* unknown kernel, or a kernel of AVX2 or wider, or an older CPU */
    if (msg && cap)
        snprintf(msg, cap,
                 "OpenBLAS runs its generic %s kernel (%s) on this CPU, which has %s: matrix products, "
                 "most of training and embedding, run several times slower than they could "
                 "(docs/performance.md); set OPENBLAS_CORETYPE=%s in the environment to choose the kernel for this CPU",
                 blas_core, level_names[k], level_names[c], c == 3 ? "SkylakeX" : "Haswell");
    return 1;
}

/* ---- the facts ----------------------------------------------------------------------------- */

#ifdef SM_X86
static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void append(char *buf, size_t cap, const char *word) {
    size_t l = strlen(buf);
    if (l + strlen(word) + 2 > cap) return;
    snprintf(buf + l, cap - l, "%s%s", l ? " " : "", word);
}

static void probe_x86(sm_compute_info *info) {
    unsigned a, b, c, d, maxleaf = __get_cpuid_max(0, NULL);
    if (maxleaf < 1) return;
    __cpuid(1, a, b, c, d);
    unsigned fam = (a >> 8) & 0xF, mod = (a >> 4) & 0xF;
    info->cpu_family = (int)(fam == 0xF ? fam + ((a >> 20) & 0xFF) : fam);
    info->cpu_model = (int)(fam == 0x6 || fam == 0xF ? mod + (((a >> 16) & 0xF) << 4) : mod);
    unsigned c1 = c, d1 = d, b7 = 0, c7 = 0, a71 = 0;
    if (maxleaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        b7 = b, c7 = c;
        if (a >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            a71 = a;
        }
    }
    /* AVX needs the OS to save the YMM state (XCR0 bits 1-2), AVX-512 also opmask and ZMM (5-7) */
    unsigned long long xcr0 = (c1 >> 27) & 1 ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
    char *f = info->cpu_flags;
    size_t cap = sizeof info->cpu_flags;
    f[0] = 0;
    if ((d1 >> 26) & 1) append(f, cap, "sse2");
    if (c1 & 1) append(f, cap, "sse3");
    if ((c1 >> 9) & 1) append(f, cap, "ssse3");
    if ((c1 >> 19) & 1) append(f, cap, "sse4_1");
    if ((c1 >> 20) & 1) append(f, cap, "sse4_2");
    if (os_avx && (c1 >> 28) & 1) append(f, cap, "avx");
    if (os_avx && (c1 >> 12) & 1) append(f, cap, "fma");
    if (os_avx && (c1 >> 29) & 1) append(f, cap, "f16c");
    if (os_avx && (b7 >> 5) & 1) append(f, cap, "avx2");
    if (os_avx512) {
        static const struct { int bit; const char *name; } b7f[] = {
            {16, "avx512f"}, {17, "avx512dq"}, {28, "avx512cd"}, {30, "avx512bw"}, {31, "avx512vl"}};
        for (size_t i = 0; i < sizeof b7f / sizeof b7f[0]; i++)
            if ((b7 >> b7f[i].bit) & 1) append(f, cap, b7f[i].name);
        if ((c7 >> 11) & 1) append(f, cap, "avx512_vnni");
        if ((a71 >> 5) & 1) append(f, cap, "avx512_bf16");
    }
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        unsigned r[12];
        for (unsigned i = 0; i < 3; i++) __cpuid(0x80000002u + i, r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
        char brand[49];
        memcpy(brand, r, 48);
        brand[48] = 0;
        const char *p = brand;
        while (*p == ' ') p++;
        snprintf(info->cpu, sizeof info->cpu, "%s", p);
        for (size_t l = strlen(info->cpu); l && info->cpu[l - 1] == ' '; l--) info->cpu[l - 1] = 0;
    }
}
#endif

/* the feature flags this CPU and OS offer (info->cpu_flags; "" off x86) */
static void probe_flags(sm_compute_info *info) {
    memset(info, 0, sizeof *info);
#ifdef SM_X86
    probe_x86(info);
#endif
}

int sm_cpu_simd_level(void) {
    static int level = -1; /* the same answer every time: computed once (a race computes it twice) */
    if (level < 0) {
        sm_compute_info info;
        probe_flags(&info);
        level = cpu_level(info.cpu_flags);
    }
    return level;
}

int sm_cpu_has_avx512bf16(void) {
    static int has = -1; /* computed once, as the level above */
    if (has < 0) {
        sm_compute_info info;
        probe_flags(&info);
        has = has_flag(info.cpu_flags, "avx512_bf16");
    }
    return has;
}

void sm_compute_info_get(sm_compute_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    snprintf(info->cpu, sizeof info->cpu, "unknown CPU");
#ifdef SM_X86
    probe_x86(info);
#endif
    int lv = cpu_level(info->cpu_flags);
    snprintf(info->vector_isa, sizeof info->vector_isa, "%s",
             lv > 0 ? level_names[lv] : has_flag(info->cpu_flags, "sse2") ? "SSE2" : "none");
    snprintf(info->isa, sizeof info->isa, "%s", sm_get_isa());
    info->threads = sm_get_num_threads();
#ifdef SM_BLAS_OPENBLAS
    const char *cfg = openblas_get_config(), *core = openblas_get_corename();
    snprintf(info->blas, sizeof info->blas, "%s", cfg ? cfg : "OpenBLAS");
    snprintf(info->blas_core, sizeof info->blas_core, "%s", core ? core : "unknown");
    sm_blas_kernel_warning(info->blas_core, info->cpu_flags, info->warning, sizeof info->warning);
#else
    /* no BLAS: the kernel is simile's own path, chosen from the feature bits above */
    snprintf(info->blas, sizeof info->blas, "simile-kernels %s (own GEMM, %s path)", sm_version(), info->isa);
    snprintf(info->blas_core, sizeof info->blas_core, "%s", info->isa);
    snprintf(info->warning, sizeof info->warning, "%s", sm_gemm_env_note());
#endif
}
