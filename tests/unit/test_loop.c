/* Unit tests for the timer wheel and the buffer pool (src/core). Time is stepped
 * through the loop's injectable clock, never by sleeping. */
#include <stdlib.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/loop.h"
#include "t.h"

#include <errno.h>

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void) { return fake_now; }

static int nfired;
static uint64_t fired_at[16];
static void count(gh_timer_t *t)
{
    (void)t;
    if (nfired < 16)
        fired_at[nfired] = fake_now;
    nfired++;
}

static gh_loop_t loop;

static void step_to(uint64_t t)
{
    fake_now = t;
    gh_loop_run_once(&loop, 0);
}

static void test_fire_order_and_stop(void)
{
    gh_timer_t a = {.cb = count}, b = {.cb = count}, c = {.cb = count};
    nfired = 0;
    uint64_t t0 = fake_now;
    gh_timer_set(&loop, &a, 10);
    gh_timer_set(&loop, &b, 20);
    gh_timer_set(&loop, &c, 30);
    CHECK(gh_timer_armed(&a));
    gh_timer_stop(&loop, &b);
    CHECK(!gh_timer_armed(&b));
    CHECK_INT(loop.ntimers, 2);
    step_to(t0 + 9);
    CHECK_INT(nfired, 0);
    step_to(t0 + 10);
    CHECK_INT(nfired, 1);
    step_to(t0 + 29);
    CHECK_INT(nfired, 1);
    step_to(t0 + 45); /* late wake-up: fires once */
    CHECK_INT(nfired, 2);
    CHECK_INT(fired_at[1], t0 + 45);
    CHECK_INT(loop.ntimers, 0);
}

static void test_rearm_keeps_one(void)
{
    gh_timer_t a = {.cb = count};
    nfired = 0;
    for (int i = 0; i < 100; i++)
        gh_timer_set(&loop, &a, 1000 + (uint64_t)i);
    CHECK_INT(loop.ntimers, 1);
    CHECK_INT(a.expire, fake_now + 1099);
    step_to(fake_now + 1098);
    CHECK_INT(nfired, 0);
    step_to(fake_now + 1);
    CHECK_INT(nfired, 1);
}

static void test_far_timer_waits_its_round(void)
{
    /* further out than the wheel: its slot comes round three times before it is due */
    gh_timer_t far = {.cb = count};
    nfired = 0;
    uint64_t t0 = fake_now;
    gh_timer_set(&loop, &far, GH_WHEEL_SLOTS * 3 + 5);
    for (uint64_t t = t0; t < t0 + GH_WHEEL_SLOTS * 3 + 5; t += 97)
        step_to(t);
    CHECK_INT(nfired, 0);
    CHECK(gh_timer_armed(&far));
    step_to(t0 + GH_WHEEL_SLOTS * 3 + 5);
    CHECK_INT(nfired, 1);
}

static void test_long_sleep_fires_all(void)
{
    gh_timer_t t[10];
    nfired = 0;
    for (int i = 0; i < 10; i++) {
        t[i] = (gh_timer_t){.cb = count};
        gh_timer_set(&loop, &t[i], (uint64_t)(i + 1) * 700);
    }
    step_to(fake_now + 100000); /* slept far longer than a round */
    CHECK_INT(nfired, 10);
    CHECK_INT(loop.ntimers, 0);
}

static void rearm_cb(gh_timer_t *t)
{
    nfired++;
    if (nfired < 3)
        gh_timer_set(&loop, t, 0); /* due again at once: fires on a later pass, not in a loop */
}

static void test_rearm_from_callback(void)
{
    gh_timer_t a = {.cb = rearm_cb};
    nfired = 0;
    gh_timer_set(&loop, &a, 5);
    step_to(fake_now + 5);
    CHECK(nfired >= 1 && nfired <= 3);
    step_to(fake_now + 1);
    step_to(fake_now + 1);
    CHECK_INT(nfired, 3);
    CHECK(!gh_timer_armed(&a));
}

static int ntask;
static gh_task_t task_a, task_b;
static void task_cb(gh_task_t *t)
{
    ntask++;
    if (t == &task_a && ntask == 1)
        gh_task_post(&loop, &task_a); /* re-queued from its own run: waits for the next turn */
}

static void test_tasks(void)
{
    task_a.cb = task_b.cb = task_cb;
    ntask = 0;
    gh_task_post(&loop, &task_a);
    gh_task_post(&loop, &task_a); /* already queued: no-op */
    gh_task_post(&loop, &task_b);
    gh_task_cancel(&task_b);
    gh_loop_run_once(&loop, 1000); /* returns at once: tasks pending */
    CHECK_INT(ntask, 1);
    gh_loop_run_once(&loop, 1000);
    CHECK_INT(ntask, 2);
    CHECK(task_a.prev == NULL && task_b.prev == NULL);
}

static void test_bufpool(void)
{
    gh_bufpool_t p = {.max_free = 2};
    gh_buf_t a = {0}, b = {0}, c = {0};
    CHECK_INT(gh_buf_get(&p, &a), 0);
    CHECK_INT(a.cap, GH_BUF_SIZE);
    memcpy(a.base, "hello", 5);
    a.wr = 5;
    a.rd = 2;
    gh_buf_compact(&a);
    CHECK_INT(a.rd, 0);
    CHECK_INT(a.wr, 3);
    CHECK(!memcmp(a.base, "llo", 3));
    CHECK_INT(gh_buf_grow(&p, &a, 100000), 0);
    CHECK_INT(a.cap, 100000);
    CHECK(!memcmp(a.base, "llo", 3));
    gh_buf_get(&p, &b);
    gh_buf_get(&p, &c);
    gh_buf_put(&p, &a); /* big: freed, not pooled */
    CHECK_INT(p.nfree, 0);
    gh_buf_put(&p, &b);
    gh_buf_put(&p, &c);
    CHECK_INT(p.nfree, 2);
    CHECK(b.base == NULL && c.base == NULL);
    gh_buf_t d = {0};
    gh_buf_get(&p, &d); /* reuses a pooled one */
    CHECK_INT(p.nfree, 1);
    gh_buf_put(&p, &d);
    gh_bufpool_clear(&p);
    CHECK_INT(p.nfree, 0);
}

static void test_errors(void)
{
    CHECK(!strcmp(gh_err_name(GH_EH1_CL_AND_TE), "H1_CL_AND_TE"));
    CHECK(!strcmp(gh_err_msg(GH_EAGAIN), "need more input"));
    CHECK(!strcmp(gh_err_name(12345), "UNKNOWN"));
    /* GH_E* codes lie apart from negative errno values, which share the return channel */
    CHECK(GH_ENOMEM != -ENOENT && GH_EAGAIN < -4095 && GH_E__LAST < GH_EH1_STATUS);
    CHECK(!strcmp(gh_err_msg(GH_ENOMEM), "out of memory"));
    CHECK(!strcmp(gh_err_msg(-ENOENT), "No such file or directory"));
    CHECK(!strcmp(gh_err_name(-ENOENT), "UNKNOWN"));
    CHECK(!strcmp(gh_err_name(0), "OK"));
    CHECK_INT(gh_err_code(gh_err_index(GH_EH1_BARE_CR)), GH_EH1_BARE_CR);
    CHECK_INT(gh_err_index(GH_EAGAIN), 1);
}

int main(void)
{
    if (gh_loop_init(&loop) < 0)
        return 1;
    loop.clock = fake_clock;
    loop.now = loop.wheel_at = fake_now;
    RUN(test_fire_order_and_stop);
    RUN(test_rearm_keeps_one);
    RUN(test_far_timer_waits_its_round);
    RUN(test_long_sleep_fires_all);
    RUN(test_rearm_from_callback);
    RUN(test_tasks);
    RUN(test_bufpool);
    RUN(test_errors);
    gh_loop_close(&loop);
    return t_done("test_loop");
}
