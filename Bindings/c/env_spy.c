/* env_spy.c — an LD_PRELOAD library that reports every setenv, unsetenv and putenv call of the
 * process on stderr ("ENV-SPY <function> <name>") and then does the real call. test_c.sh runs
 * spy_host under it to check that libcoalesce and its plugins never edit the host's environment. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void report(const char *fn, const char *name) {
    char line[256];
    int n = snprintf(line, sizeof line, "ENV-SPY %s %.200s\n", fn, name ? name : "(null)");
    if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

int setenv(const char *name, const char *value, int overwrite) {
    int (*real)(const char *, const char *, int) = (int (*)(const char *, const char *, int))dlsym(RTLD_NEXT, "setenv");
    report("setenv", name);
    return real(name, value, overwrite);
}

int unsetenv(const char *name) {
    int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "unsetenv");
    report("unsetenv", name);
    return real(name);
}

int putenv(char *string) {
    int (*real)(char *) = (int (*)(char *))dlsym(RTLD_NEXT, "putenv");
    report("putenv", string);
    return real(string);
}
