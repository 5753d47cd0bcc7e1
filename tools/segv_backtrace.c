/* LD_PRELOAD helper for the exit-time crash (tools/diag_exit.sh, part "crash"): on SIGSEGV print
 * the native stack (library + nearest exported symbol + offset), then die of the signal as before.
 * The device machine has no gdb. Build: gcc -shared -fPIC -O0 -o /tmp/segv_bt.so segv_backtrace.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_segv(int sig, siginfo_t *info, void *uctx) {
    (void)uctx;
    void *frames[64];
    int n = backtrace(frames, 64);
    fprintf(stderr, "segv_bt: signal %d at address %p, %d frames\n", sig, info->si_addr, n);
    for (int i = 0; i < n; i++) {
        Dl_info d;
        if (dladdr(frames[i], &d) && d.dli_fname) {
            fprintf(stderr, "segv_bt: #%d %p %s(+0x%lx) %s+0x%lx\n", i, frames[i], d.dli_fname,
                    (unsigned long)((char *)frames[i] - (char *)d.dli_fbase),
                    d.dli_sname ? d.dli_sname : "?",
                    d.dli_saddr ? (unsigned long)((char *)frames[i] - (char *)d.dli_saddr) : 0UL);
        } else {
            fprintf(stderr, "segv_bt: #%d %p ?\n", i, frames[i]);
        }
    }
    fflush(stderr);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}
