// LD_PRELOAD shim for the bench: every fsync/fdatasync of the process waits SLOWSYNC_US microseconds
// longer, to see how the bridge behaves on a slower disk than this machine's (docs/performance.md):
//
//   gcc -O2 -shared -fPIC -o /tmp/slowsync.so tools/slowsync.c -ldl
//   LD_PRELOAD=/tmp/slowsync.so SLOWSYNC_US=1000 BENCH_BRIDGE_PASS=LD_PRELOAD,SLOWSYNC_US \
//     ./target/release/bench latency --rate 500
//
// Only the bridge gets the shim (BENCH_BRIDGE_PASS hands the two variables on); the bench process itself
// does not sync. Not part of the build or the tests.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
static long extra_us(void) { const char *v = getenv("SLOWSYNC_US"); return v ? atol(v) : 0; }
static void wait_extra(void) {
    long us = extra_us();
    if (us > 0) { struct timespec t = { us / 1000000, (us % 1000000) * 1000 }; nanosleep(&t, 0); }
}
int fsync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); wait_extra(); return real(fd); }
int fdatasync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); wait_extra(); return real(fd); }
