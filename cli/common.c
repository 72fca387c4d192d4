/* common.c - option parsing helpers, exit codes and messages, loss checks, spec arguments and
 * the training progress display shared by the subcommands (the data options: data.c). */
#include "cli.h"
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int json_mode;
static FILE *silent; /* /dev/null while a rank other than 0 runs (cli_set_silent) */
FILE *cli_text(void) { return silent ? silent : json_mode ? stderr : stdout; }
void cli_set_silent(int on) {
    if (on && !silent) silent = fopen("/dev/null", "w");
    if (!on && silent) { fclose(silent); silent = NULL; }
}
void cli_set_json(int on) { json_mode = on; }
int cli_json_on(void) { return json_mode; }

/* A message set by the CLI itself (the library keeps its own in sm_errmsg()). */
static char cli_err[1024];

sm_status cli_fail(sm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cli_err, sizeof cli_err, fmt, ap);
    va_end(ap);
    return st;
}

int cli_exit_code(sm_status st) {
    switch (st) {
    case SM_OK: return EXIT_OK;
    case SM_ERR_IO: case SM_ERR_FORMAT: case SM_ERR_MISMATCH: case SM_ERR_RANGE: return EXIT_INPUT;
    case SM_ERR_NUMERIC: return EXIT_NUMERIC;
    case SM_ERR_INVALID: case SM_ERR_SPEC: return EXIT_USAGE;
    default: return EXIT_FAIL;
    }
}

int cli_report(const char *cmd, sm_status st, const char *detail) {
    const char *msg = detail && *detail ? detail : cli_err[0] ? cli_err : sm_errmsg();
    fprintf(stderr, "simile %s: %s%s%s\n", cmd, sm_strerror(st), *msg ? ": " : "", msg);
    cli_err[0] = 0;
    return cli_exit_code(st);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "simile %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see simile %s --help)\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_int(const char *cmd, const char *opt, const char *val, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (end == val || *end || errno || v < lo || v > hi) {
        cli_usage_error(cmd, "%s: '%s' is not an integer in %d..%d", opt, val, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *val, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (end == val || *end || errno || !(v >= lo && v <= hi)) {
        cli_usage_error(cmd, "%s: '%s' is not a number in %g..%g", opt, val, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_optimizer(const char *cmd, const char *val, sm_optimizer *out) {
    if (!strcmp(val, "adam")) *out = SM_OPT_ADAM;
    else if (!strcmp(val, "adamw")) *out = SM_OPT_ADAMW;
    else if (!strcmp(val, "sgd")) *out = SM_OPT_SGD;
    else {
        cli_usage_error(cmd, "--optimizer: '%s' is not adam, adamw or sgd", val);
        return -1;
    }
    return 0;
}

int cli_schedule(const char *cmd, const char *val, int allow_step, sm_schedule *out) {
    if (!strcmp(val, "constant")) *out = SM_SCHED_CONSTANT;
    else if (!strcmp(val, "cosine")) *out = SM_SCHED_COSINE;
    else if (allow_step && !strcmp(val, "step")) *out = SM_SCHED_STEP;
    else {
        cli_usage_error(cmd, "--schedule: '%s' is not constant%s or cosine", val, allow_step ? ", step" : "");
        return -1;
    }
    return 0;
}

const char *cli_pl(long long n, const char *one, const char *many) { return n == 1 ? one : many; }

int cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int cli_check_loss(const char *cmd, const char *name, const char *options, int caller_adds_classes) {
    const char *n, *text;
    int known = 0;
    for (int i = 0; sm_loss_describe(i, &n, &text) == SM_OK; i++)
        if (!strcmp(n, name)) { known = 1; break; }
    if (!known) {
        char list[1024] = "";
        for (int i = 0; sm_loss_describe(i, &n, NULL) == SM_OK; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", n);
        }
        return cli_usage_error(cmd, "unknown loss '%s' (valid: %s)", name, list);
    }
    sm_loss *l = NULL;
    sm_status st = sm_loss_create(&l, name, options, 64, 1);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sm_errmsg());
    if (st && st != SM_ERR_NOMEM && caller_adds_classes && !strstr(options, "classes=")) {
        char with[1024];
        snprintf(with, sizeof with, "classes=2%s%s", *options ? "," : "", options);
        st = sm_loss_create(&l, name, with, 64, 1); /* on failure, the first message is the one to show */
    }
    sm_loss_free(l);
    if (st == SM_ERR_NOMEM) return cli_report(cmd, st, NULL);
    if (st) return cli_usage_error(cmd, "--loss-opts '%s': %s\n(options of %s: %s)", options, msg, name, text);
    return 0;
}

const char *cli_spec_arg(const char *arg, char **owned, sm_status *st) {
    *owned = NULL;
    *st = SM_OK;
    if (arg[0] != '@') return arg;
    FILE *f = fopen(arg + 1, "rb");
    if (!f) { *st = cli_fail(SM_ERR_IO, "%s: cannot open: %s", arg + 1, strerror(errno)); return NULL; }
    char *buf = malloc(65537);
    size_t n = buf ? fread(buf, 1, 65536, f) : 0;
    int more = buf && fgetc(f) != EOF;
    fclose(f);
    if (!buf) { *st = SM_ERR_NOMEM; return NULL; }
    if (more) { free(buf); *st = cli_fail(SM_ERR_SPEC, "%s: spec file larger than 64 KiB", arg + 1); return NULL; }
    buf[n] = 0;
    *owned = buf;
    return buf;
}

/* m:ss, or h:mm:ss from an hour */
static const char *hms(double s, char *buf, size_t cap) {
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

int cli_train_progress(const sm_train_progress *p, void *user) {
    static int tty = -1;
    char el[32], eta[32];
    hms(p->elapsed_seconds, el, sizeof el);
    hms(p->eta_seconds, eta, sizeof eta);
    if (tty < 0) tty = isatty(2);
    if (tty) {
        int width = 30, fill = (int)(width * p->step / (p->steps_per_epoch ? p->steps_per_epoch : 1));
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f %.0f img/s elapsed %s ETA %s ", p->epoch, p->epochs, bar,
                (long long)p->step, (long long)p->steps_per_epoch, p->loss, p->images_per_sec, el, eta);
        if (p->epoch_done) fputc('\n', stderr);
        fflush(stderr);
    }
    if (p->epoch_done) {
        fprintf(cli_text(), "epoch %d/%d  loss %.4f  %.0f images/s  %.1f s  lr %.3g  elapsed %s  ETA %s\n", p->epoch,
                p->epochs, p->loss, p->images_per_sec, p->seconds, (double)p->lr, el, eta);
        fflush(cli_text());
    }
    return 0;
}

void cli_compute_line(char *buf, size_t cap) {
    sm_compute_info ci;
    sm_compute_info_get(&ci);
    char blas[sizeof ci.blas];
    snprintf(blas, sizeof blas, "%s", ci.blas);
    /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21" */
    char *sp = strchr(blas, ' ');
    if (sp && (sp = strchr(sp + 1, ' '))) *sp = 0;
    snprintf(buf, cap, "cpu %s (family %d model %d, %s), %s core %s, %d thread%s", ci.cpu, ci.cpu_family,
             ci.cpu_model, ci.vector_isa, blas, ci.blas_core, ci.threads, ci.threads == 1 ? "" : "s");
}

void cli_compute_warning(const char *cmd) {
    sm_compute_info ci;
    sm_compute_info_get(&ci);
    if (ci.warning[0]) fprintf(stderr, "simile %s: warning: %s\n", cmd, ci.warning);
}

int cli_layer_arg(const char *cmd, const sm_model *m, const char *opt, const char *text, int allow_zero,
                  const char *what, int *layer) {
    char *end;
    const long v = strtol(text, &end, 10);
    *layer = sm_model_find_layer(m, text);
    if (*layer || (allow_zero && end != text && !*end && v == 0)) return EXIT_OK;
    return cli_usage_error(cmd, "%s: '%s' is not a layer of %s (a layer number, or N.kind with the layer's kind, as "
                           "`simile info` lists them)", opt, text, what);
}
