/* Tiny PID-1 for the Bochs harness.
 * Mounts /proc /sys /dev /tmp, reads NUL-separated argv from /args
 * (first entry = program path), runs it, reports how it ended on the
 * console with a marker line, then powers the (virtual) machine off. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static void finish(void)
{
    sync();
    say("BOCHS-HARNESS: poweroff\n");
    tcdrain(1);          /* let the UART drain before the machine goes away */
    usleep(200000);
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

int main(void)
{
    mkdir("/proc", 0755); mkdir("/sys", 0755); mkdir("/dev", 0755);
    mkdir("/tmp", 01777); mkdir("/run", 0755);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
    mount("tmpfs", "/run", "tmpfs", 0, "mode=0755");
    mkdir("/dev/shm", 01777);
    mount("tmpfs", "/dev/shm", "tmpfs", 0, "mode=1777");
    mkdir("/dev/pts", 0755);
    mount("devpts", "/dev/pts", "devpts", 0, NULL);
    symlink("/proc/self/fd", "/dev/fd");

    /* make sure fds 0,1,2 go to the console */
    int fd = open("/dev/console", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0); dup2(fd, 1); dup2(fd, 2);
        if (fd > 2) close(fd);
    }

    /* read argv */
    static char buf[1 << 16];
    int afd = open("/args", O_RDONLY);
    ssize_t n = afd >= 0 ? read(afd, buf, sizeof buf - 1) : -1;
    if (n <= 0) { say("BOCHS-HARNESS: cannot read /args\n"); finish(); }
    buf[n] = 0;
    char *argv[1024];
    int argc = 0;
    for (char *p = buf; p < buf + n && argc < 1023; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;

    /* environment: entries from /env (NUL separated) first, then defaults
       for anything not already set */
    static char ebuf[1 << 14];
    char *envv[256];
    int ec = 0;
    int efd = open("/env", O_RDONLY);
    if (efd >= 0) {
        ssize_t m = read(efd, ebuf, sizeof ebuf - 1);
        if (m > 0) {
            ebuf[m] = 0;
            for (char *p = ebuf; p < ebuf + m && ec < 240; p += strlen(p) + 1)
                if (*p) envv[ec++] = p;
        }
    }
    static char *defaults[] = { "PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp", "TERM=dumb",
                                "RUST_BACKTRACE=1", NULL };
    for (char **d = defaults; *d; d++) {
        size_t kl = strchr(*d, '=') - *d + 1;
        int found = 0;
        for (int i = 0; i < ec; i++) if (!strncmp(envv[i], *d, kl)) found = 1;
        if (!found) envv[ec++] = *d;
    }
    envv[ec] = NULL;

    say("BOCHS-HARNESS: start\n");
    pid_t pid = fork();
    if (pid == 0) {
        chdir("/tmp");
        execve(argv[0], argv, envv);
        dprintf(2, "BOCHS-HARNESS: execve %s failed: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st = 0;
    /* reap everything; stop when our child is gone */
    for (;;) {
        pid_t w = wait(&st);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) { st = 0x7f00; break; }
    }
    char msg[128];
    if (WIFEXITED(st))
        snprintf(msg, sizeof msg, "BOCHS-HARNESS: exit status %d\n", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(msg, sizeof msg, "BOCHS-HARNESS: killed by signal %d (%s)\n",
                 WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(msg, sizeof msg, "BOCHS-HARNESS: unknown status 0x%x\n", st);
    say(msg);
    finish();
    return 0;
}
