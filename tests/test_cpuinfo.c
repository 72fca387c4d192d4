/* test_cpuinfo.c - what simile reports it computes with (sm_compute_info_get: with its own
 * kernels, the instruction-set path they run, the widest the CPU's flags allow) and the decision
 * to warn about a BLAS kernel that falls short of the CPU (sm_blas_kernel_warning), checked on
 * given core names and flag lists so that every case runs on any machine: the Intel Xeon of
 * family 6 model 207 that OpenBLAS 0.3.21 serves with its Prescott kernel warns, the same CPU
 * with the SkylakeX kernel and a Zen 4 with Cooperlake do not, and so on.  The facts of this
 * machine are checked against /proc/cpuinfo. */
#include "simile.h"
#include "testing.h"
#include <string.h>

/* Flags as sm_compute_info reports them on the two CPU kinds the project runs on. */
static const char *const XEON_207 =
    "sse2 sse3 ssse3 sse4_1 sse4_2 avx fma f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl "
    "avx512_vnni avx512_bf16";
static const char *const ZEN4 = "sse2 sse3 ssse3 sse4_1 sse4_2 avx fma f16c avx2 avx512f avx512dq avx512cd "
                                "avx512bw avx512vl avx512_vnni avx512_bf16";
static const char *const HASWELL_CPU = "sse2 sse3 ssse3 sse4_1 sse4_2 avx fma f16c avx2";
static const char *const SANDY_CPU = "sse2 sse3 ssse3 sse4_1 sse4_2 avx";
static const char *const OLD_CPU = "sse2 sse3 ssse3";

static void check_decision(void) {
    char msg[512];
    /* the case of the issue: generic kernel on an AVX-512 CPU */
    CHECK(sm_blas_kernel_warning("Prescott", XEON_207, msg, sizeof msg) == 1);
    CHECK_MSG(strstr(msg, "Prescott") && strstr(msg, "AVX-512") && strstr(msg, "OPENBLAS_CORETYPE=SkylakeX"),
              "message: %s", msg);
    CHECK(!strchr(msg, '\n'));
    /* the right kernels: no warning */
    CHECK(sm_blas_kernel_warning("SkylakeX", XEON_207, msg, sizeof msg) == 0 && msg[0] == 0);
    CHECK(sm_blas_kernel_warning("Cooperlake", ZEN4, msg, sizeof msg) == 0 && msg[0] == 0);
    CHECK(sm_blas_kernel_warning("SapphireRapids", XEON_207, msg, sizeof msg) == 0);
    CHECK(sm_blas_kernel_warning("Zen", ZEN4, msg, sizeof msg) == 0);
    /* an AVX2 kernel on an AVX-512 CPU is not a generic fallback */
    CHECK(sm_blas_kernel_warning("Haswell", XEON_207, msg, sizeof msg) == 0);
    /* generic kernels on an AVX2 CPU: warn, and name an AVX2 kernel */
    CHECK(sm_blas_kernel_warning("Nehalem", HASWELL_CPU, msg, sizeof msg) == 1);
    CHECK_MSG(strstr(msg, "AVX2") && strstr(msg, "OPENBLAS_CORETYPE=Haswell"), "message: %s", msg);
    CHECK(sm_blas_kernel_warning("Sandybridge", HASWELL_CPU, msg, sizeof msg) == 1); /* AVX-only kernel */
    CHECK(sm_blas_kernel_warning("Sandybridge", XEON_207, msg, sizeof msg) == 1);
    /* CPUs without AVX2 + FMA: nothing better to pick */
    CHECK(sm_blas_kernel_warning("Prescott", OLD_CPU, msg, sizeof msg) == 0);
    CHECK(sm_blas_kernel_warning("Sandybridge", SANDY_CPU, msg, sizeof msg) == 0);
    CHECK(sm_blas_kernel_warning("Prescott", "avx avx2", msg, sizeof msg) == 0); /* AVX2 without FMA */
    /* names: case does not matter, a flag must match whole, unknown cores give no advice */
    CHECK(sm_blas_kernel_warning("prescott", XEON_207, msg, sizeof msg) == 1);
    CHECK(sm_blas_kernel_warning("Prescott", "avx2x fmax avx512fx", msg, sizeof msg) == 0);
    CHECK(sm_blas_kernel_warning("FutureLake", XEON_207, msg, sizeof msg) == 0);
    CHECK(sm_blas_kernel_warning(NULL, XEON_207, msg, sizeof msg) == 0);
    CHECK(sm_blas_kernel_warning("Prescott", NULL, msg, sizeof msg) == 0);
    /* buffers: none, or too small (truncated, still terminated) */
    CHECK(sm_blas_kernel_warning("Prescott", XEON_207, NULL, 0) == 1);
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(sm_blas_kernel_warning("Prescott", XEON_207, small, sizeof small) == 1);
    CHECK(memchr(small, 0, sizeof small) != NULL);
}

/* The line of /proc/cpuinfo that lists the flags, with a space on each side, or "" if none. */
static void proc_flags(char *out, size_t cap) {
    out[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    static char line[8192];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) {
            char *p = strchr(line, ':');
            if (p) {
                p[strcspn(p, "\n")] = 0;
                snprintf(out, cap, " %s ", p + 1);
            }
            break;
        }
    fclose(f);
}

static void check_this_machine(void) {
    sm_compute_info ci;
    sm_compute_info_get(&ci);
    sm_compute_info_get(NULL); /* a no-op */
    printf("this machine: %s (family %d model %d), %s [%s], %s, kernel %s, %d threads\n", ci.cpu,
           ci.cpu_family, ci.cpu_model, ci.vector_isa, ci.cpu_flags, ci.blas, ci.blas_core, ci.threads);
    if (ci.warning[0]) printf("warning: %s\n", ci.warning);
    CHECK(ci.cpu[0] && ci.vector_isa[0] && ci.blas[0] && ci.blas_core[0]);
    CHECK(ci.threads == sm_get_num_threads());
    CHECK(strstr(ci.blas, ci.blas_core) != NULL); /* the library's string names its kernel */
#ifndef SM_BLAS_OPENBLAS
    /* simile's own kernels: the kernel is the path, by default the widest the flags allow, and
     * there is no BLAS kernel to warn about */
    CHECK(!strcmp(ci.blas_core, ci.isa));
    CHECK(!strcmp(ci.isa, sm_get_isa()));
    char fl[sizeof ci.cpu_flags + 2];
    snprintf(fl, sizeof fl, " %s ", ci.cpu_flags);
    const char *widest = strstr(fl, " avx512f ") ? "avx512" : strstr(fl, " avx2 ") && strstr(fl, " fma ") ? "avx2" : "scalar";
    if (!getenv("SIMILE_ISA")) {
        CHECK_MSG(!strcmp(ci.isa, widest), "path %s, the flags allow %s", ci.isa, widest);
        CHECK(!ci.warning[0]);
    }
    CHECK(strstr(ci.blas, "simile-kernels") != NULL);
    CHECK(sm_set_isa("scalar") == SM_OK);
    sm_compute_info_get(&ci);
    CHECK(!strcmp(ci.isa, "scalar") && !strcmp(ci.blas_core, "scalar") && strstr(ci.blas, "scalar path"));
    CHECK(sm_set_isa("auto") == SM_OK);
    sm_compute_info_get(&ci);
    CHECK(!strcmp(ci.isa, widest));
#endif
    /* the warning is exactly the decision on the reported facts */
    char msg[512];
    int want = sm_blas_kernel_warning(ci.blas_core, ci.cpu_flags, msg, sizeof msg);
    CHECK(want == (ci.warning[0] != 0));
    CHECK(!strcmp(msg, ci.warning));
    /* the widest extension agrees with the list */
    if (!strcmp(ci.vector_isa, "AVX-512")) CHECK(strstr(ci.cpu_flags, "avx512f") != NULL);
    if (!strcmp(ci.vector_isa, "AVX2")) CHECK(strstr(ci.cpu_flags, "avx2") && !strstr(ci.cpu_flags, "avx512f"));
#if defined(__x86_64__)
    CHECK(ci.cpu_family > 0);
    CHECK(strstr(ci.cpu_flags, "sse2") != NULL); /* every x86-64 CPU has it */
    /* every extension reported is one the kernel lists for this CPU (it, too, leaves out what the
     * OS does not enable); /proc/cpuinfo calls SSE3 "pni" */
    static char pf[8192];
    proc_flags(pf, sizeof pf);
    if (pf[0]) {
        char flags[sizeof ci.cpu_flags];
        snprintf(flags, sizeof flags, "%s", ci.cpu_flags);
        for (char *tok = strtok(flags, " "); tok; tok = strtok(NULL, " ")) {
            char want_word[64];
            snprintf(want_word, sizeof want_word, " %s ", strcmp(tok, "sse3") ? tok : "pni");
            CHECK_MSG(strstr(pf, want_word) != NULL, "%s is not in /proc/cpuinfo's flags", tok);
        }
        /* and the main ones /proc/cpuinfo lists are reported */
        const char *main_flags[] = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl"};
        for (size_t i = 0; i < sizeof main_flags / sizeof main_flags[0]; i++) {
            char w[32];
            snprintf(w, sizeof w, " %s ", main_flags[i]);
            if (strstr(pf, w)) {
                snprintf(w + 1, sizeof w - 1, "%s ", main_flags[i]);
                char have[sizeof ci.cpu_flags + 2];
                snprintf(have, sizeof have, " %s ", ci.cpu_flags);
                CHECK_MSG(strstr(have, w) != NULL, "/proc/cpuinfo has %s, not reported", main_flags[i]);
            }
        }
    }
#endif
}

int main(void) {
    check_decision();
    check_this_machine();
    TEST_MAIN_END();
}
