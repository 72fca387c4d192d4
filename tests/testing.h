/* testing.h - the tiny assertion kit shared by the unit tests: each CHECK failure is printed
 * with file and line and counted; TEST_MAIN_END returns non-zero if any check failed. */
#ifndef SM_TESTING_H
#define SM_TESTING_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int t_failures = 0, t_checks = 0;

#define CHECK(cond) do { t_checks++; if (!(cond)) { t_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { t_checks++; if (!(cond)) { t_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); t_checks++; \
    if (!(fabs(_a - _b) <= (tol))) { t_failures++; \
    fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g, tol %.3g\n", \
            __FILE__, __LINE__, #a, _a, #b, _b, (double)(tol)); } } while (0)
#define CHECK_OK(expr) do { sm_status _s = (expr); t_checks++; if (_s != SM_OK) { t_failures++; \
    fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr, \
            sm_strerror(_s), sm_errmsg()); } } while (0)
#define CHECK_STATUS(expr, want) do { sm_status _s = (expr); t_checks++; if (_s != (want)) { \
    t_failures++; fprintf(stderr, "%s:%d: %s returned %s, want %s (%s)\n", __FILE__, __LINE__, \
    #expr, sm_strerror(_s), sm_strerror(want), sm_errmsg()); } } while (0)

#define TEST_MAIN_END() do { \
    printf("%s: %d checks, %d failed\n", __FILE__, t_checks, t_failures); \
    return (t_failures || !t_checks) ? 1 : 0; } while (0)

/* Relative error helper for gradient checks. */
static inline double t_relerr(double a, double b) {
    double d = fabs(a - b), s = fabs(a) + fabs(b);
    return s < 1e-12 ? d : d / s;
}
#endif
