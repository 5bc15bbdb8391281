/* train/dist.h without a GPU: the rank environment (defaults, bad values), the TCP rendezvous that hands rank 0's
 * id to every other rank (4 processes; ranks that start before rank 0 listens; a rank that cannot reach rank 0
 * fails within its timeout naming the address; a wrong WORLD_SIZE is refused), and the launcher (every rank gets
 * its RANK / WORLD_SIZE; the first failure's exit code comes back and the other ranks are stopped at once). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "train/dist.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void clear_env(void) {
    unsetenv("WORLD_SIZE"), unsetenv("RANK"), unsetenv("LOCAL_RANK"), unsetenv("MASTER_ADDR");
    unsetenv("MASTER_PORT"), unsetenv("MRW_DIST_TIMEOUT"), unsetenv("LOCAL_WORLD_SIZE"), unsetenv("MRW_DIST_PORT");
}

static void test_env(void) {
    mrw_dist_env e;
    mrw_error err = {0};
    int d = -1;
    clear_env();
    CHECK_OK(mrw_dist_env_read(&e, &d, &err), &err);
    CHECK(d == 0 && e.world == 1 && e.rank == 0 && e.port == 29500 && !strcmp(e.addr, "127.0.0.1"));
    CHECK(e.timeout_s == 300);
    setenv("WORLD_SIZE", "4", 1);
    CHECK(mrw_dist_env_read(&e, &d, &err) == MRW_E_ARG && strstr(err.msg, "RANK is not set"));
    setenv("RANK", "4", 1);
    CHECK(mrw_dist_env_read(&e, &d, &err) == MRW_E_ARG && strstr(err.msg, "RANK='4'"));
    setenv("RANK", "2", 1);
    setenv("MASTER_PORT", "70000", 1);
    CHECK(mrw_dist_env_read(&e, &d, &err) == MRW_E_ARG && strstr(err.msg, "MASTER_PORT"));
    setenv("MASTER_PORT", "1234", 1);
    setenv("MASTER_ADDR", "node7", 1);
    setenv("MRW_DIST_TIMEOUT", "abc", 1);
    CHECK(mrw_dist_env_read(&e, &d, &err) == MRW_E_ARG && strstr(err.msg, "MRW_DIST_TIMEOUT"));
    setenv("MRW_DIST_TIMEOUT", "2.5", 1);
    CHECK_OK(mrw_dist_env_read(&e, &d, &err), &err);
    CHECK(d == 1 && e.world == 4 && e.rank == 2 && e.local_rank == 2 && e.port == 1234);
    CHECK(!strcmp(e.addr, "node7") && e.timeout_s == 2.5);
    setenv("LOCAL_RANK", "1", 1);
    CHECK_OK(mrw_dist_env_read(&e, &d, &err), &err);
    CHECK(e.local_rank == 1);
    setenv("MRW_DIST_PORT", "1235", 1); /* overrides MASTER_PORT (torchrun's store holds that one) */
    CHECK_OK(mrw_dist_env_read(&e, &d, &err), &err);
    CHECK(e.port == 1235);
    setenv("MRW_DIST_PORT", "0", 1);
    CHECK(mrw_dist_env_read(&e, &d, &err) == MRW_E_ARG && strstr(err.msg, "MRW_DIST_PORT"));
    unsetenv("MRW_DIST_PORT");
    setenv("WORLD_SIZE", "x", 1);
    CHECK(mrw_dist_env_read(&e, &d, &err) == MRW_E_ARG && strstr(err.msg, "WORLD_SIZE"));
    clear_env();
}

/* n ranks in n processes; rank r starts after delay[r] ms; each child exits 0 if it got rank 0's id. */
static int run_ranks(int n, int port, const int *delay, int world_of_last) {
    uint8_t id[128];
    for (int i = 0; i < 128; i++) id[i] = (uint8_t)(i * 37 + 11);
    pid_t pid[8];
    for (int r = 0; r < n; r++) {
        pid[r] = fork();
        if (pid[r] == 0) {
            usleep(delay[r] * 1000);
            mrw_dist_env e = {.rank = r, .world = r == n - 1 ? world_of_last : n, .local_rank = r, .port = port,
                              .timeout_s = 5};
            snprintf(e.addr, sizeof e.addr, "127.0.0.1");
            uint8_t got[128];
            memset(got, 0, sizeof got);
            if (r == 0) memcpy(got, id, sizeof got);
            mrw_error err = {0};
            mrw_status s = mrw_dist_exchange(&e, got, sizeof got, &err);
            if (s) fprintf(stderr, "  (expected in the refusal case) rank %d: %s\n", r, err.msg);
            _exit(s ? 3 : memcmp(got, id, sizeof id) ? 4 : 0);
        }
    }
    int bad = 0;
    for (int r = 0; r < n; r++) {
        int st = 0;
        waitpid(pid[r], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) bad |= 1 << r;
    }
    return bad;
}

static void test_rendezvous(void) {
    int port = mrw_dist_free_port();
    CHECK(port > 0);
    const int d1[4] = {0, 10, 20, 30};
    CHECKF(run_ranks(4, port, d1, 4) == 0, "4 ranks, rank 0 first");
    port = mrw_dist_free_port();
    const int d2[4] = {600, 0, 0, 0}; /* the others start first and retry */
    CHECKF(run_ranks(4, port, d2, 4) == 0, "4 ranks, rank 0 last");
    /* a rank that says another world size: rank 0 and that rank fail, with messages */
    port = mrw_dist_free_port();
    const int d3[2] = {0, 0};
    const int bad = run_ranks(2, port, d3, 3);
    CHECKF(bad == 3, "world size mismatch: failure mask %d", bad);
    /* nobody listens: a clear error naming the address, within the timeout */
    mrw_dist_env e = {.rank = 1, .world = 2, .port = mrw_dist_free_port(), .timeout_s = 1};
    snprintf(e.addr, sizeof e.addr, "127.0.0.1");
    uint8_t id[128];
    mrw_error err = {0};
    const double t0 = now_s();
    mrw_status s = mrw_dist_exchange(&e, id, sizeof id, &err);
    const double dt = now_s() - t0;
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", e.port);
    CHECKF(s == MRW_E_IO && strstr(err.msg, want) && strstr(err.msg, "cannot reach rank 0"), "%s", err.msg);
    CHECKF(dt >= 0.8 && dt < 3, "gave up after %.2f s (timeout 1 s)", dt);
    /* rank 0 alone: times out waiting for the others, saying how many came */
    e.rank = 0;
    e.timeout_s = 0.5;
    s = mrw_dist_exchange(&e, id, sizeof id, &err);
    CHECKF(s == MRW_E_IO && strstr(err.msg, "only 0 of the 1"), "%s", err.msg);
    /* an unresolvable host */
    e.rank = 1;
    snprintf(e.addr, sizeof e.addr, "no-such-host.invalid");
    s = mrw_dist_exchange(&e, id, sizeof id, &err);
    CHECKF(s == MRW_E_IO && strstr(err.msg, "no-such-host.invalid"), "%s", err.msg);
}

static void test_launch(void) {
    mrw_error err = {0};
    clear_env();
    /* every rank sees its environment; all succeed */
    char *ok_argv[] = {"sh", "-c",
                       "[ \"$WORLD_SIZE\" = 3 ] && [ \"$LOCAL_RANK\" = \"$RANK\" ] && [ \"$MASTER_ADDR\" = 127.0.0.1 ] "
                       "&& [ \"$MASTER_PORT\" -gt 0 ] && [ \"$RANK\" -ge 0 ] && [ \"$RANK\" -lt 3 ]",
                       NULL};
    int rc = mrw_dist_launch(3, "/bin/sh", ok_argv, 5, "test", &err);
    CHECKF(rc == 0, "launch: %d", rc);
    clear_env();
    /* rank 1 fails at once; rank 0 and 2 would sleep 30 s: they are stopped, and the code is rank 1's */
    char *fail_argv[] = {"sh", "-c", "if [ \"$RANK\" = 1 ]; then exit 7; fi; exec sleep 30", NULL};
    const double t0 = now_s();
    rc = mrw_dist_launch(3, "/bin/sh", fail_argv, 5, "test", &err);
    const double dt = now_s() - t0;
    CHECKF(rc == 7 && dt < 10, "launch with a failing rank: code %d after %.2f s", rc, dt);
    clear_env();
    /* a rank that ignores SIGTERM is killed after the grace period */
    char *stubborn_argv[] = {"sh", "-c", "if [ \"$RANK\" = 0 ]; then exit 5; fi; trap '' TERM; sleep 4; sleep 4", NULL};
    const double t1 = now_s();
    rc = mrw_dist_launch(2, "/bin/sh", stubborn_argv, 1, "test", &err);
    const double dt1 = now_s() - t1;
    CHECKF(rc == 5 && dt1 < 8, "stubborn rank: code %d after %.2f s", rc, dt1);
    clear_env();
    /* a missing executable: the ranks exit 127 */
    char *none_argv[] = {"none", NULL};
    rc = mrw_dist_launch(2, "/nonexistent/modrwkv", none_argv, 1, "test", &err);
    CHECK(rc == 127);
    clear_env();
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    test_env();
    test_rendezvous();
    test_launch();
    TEST_MAIN_END();
}
