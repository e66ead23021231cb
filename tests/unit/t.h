/* t.h: the unit-test harness. A test is a function; RUN(fn) runs it and counts it
 * passed when none of its CHECKs failed. t_done() prints "NAME: N passed, M failed"
 * (read by tests/run.sh) and returns the exit status. */
#ifndef GH_TESTS_T_H
#define GH_TESTS_T_H

#include <stdio.h>
#include <string.h>

static int t_pass, t_fail, t_cur_fail;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            t_cur_fail++;                                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);                            \
        if (t_a_ != t_b_) {                                                                \
            t_cur_fail++;                                                                  \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
                    #a, t_a_, #b, t_b_);                                                   \
        }                                                                                  \
    } while (0)

#define CHECK_STR(view, lit)                                                                  \
    do {                                                                                      \
        gh_str_t t_v_ = (view);                                                               \
        if (t_v_.n != strlen(lit) || (t_v_.n && memcmp(t_v_.p, (lit), t_v_.n) != 0)) {        \
            t_cur_fail++;                                                                     \
            fprintf(stderr, "%s:%d: %s is \"%.*s\", expected \"%s\"\n", __FILE__, __LINE__,   \
                    #view, (int)t_v_.n, t_v_.p ? t_v_.p : "", (lit));                         \
        }                                                                                     \
    } while (0)

#define RUN(fn)                                                      \
    do {                                                             \
        t_cur_fail = 0;                                              \
        fn();                                                        \
        if (t_cur_fail) {                                            \
            t_fail++;                                                \
            fprintf(stderr, "FAIL %s (%d checks)\n", #fn, t_cur_fail); \
        } else {                                                     \
            t_pass++;                                                \
        }                                                            \
    } while (0)

static inline int t_done(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
    return t_fail ? 1 : 0;
}

#endif
