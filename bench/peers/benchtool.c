/* Measurement helpers for bench/compare.sh; compiled by it into its temp dir.
 *
 *   benchtool orphans N DONEFILE
 *       creates N orphans: fork a child, the child forks a grandchild and exits
 *       at once, the grandchild exits at once (so it is reparented to the
 *       namespace's init and has to be reaped there); the child is waited for
 *       here. Then writes the CLOCK_REALTIME of the end of the last one to
 *       DONEFILE (seconds.micros, written to DONEFILE.tmp and renamed) and
 *       sleeps until killed.
 *   stamp SCRIPT            (used as a #! interpreter: `#!/path/to/stamp`)
 *   benchtool stamp FILE
 *       writes CLOCK_REALTIME to FILE (for SCRIPT: to `started` beside it),
 *       by rename, then execs `sleep infinity`.
 *   benchtool zombiewait INITPID DONEFILE TIMEOUT_MS
 *       waits for DONEFILE (up to 300 s), then scans the processes of
 *       INITPID's PID namespace (through /proc/INITPID/root/proc, the
 *       namespace's own proc mount) until none is a zombie, at most until
 *       TIMEOUT_MS after the time in DONEFILE; prints
 *       `ms=<zombie-free scan start - DONEFILE time> backlog=<zombies at the
 *       first scan> scans=<n>`, or `timeout zombies=<n>`.
 *   benchtool termwait INITPID WATCHPID TIMEOUT_MS
 *       sends SIGTERM to INITPID and waits (pidfd) for INITPID and WATCHPID
 *       (0: none) to exit; prints `init_ms=<ms|-> watch_ms=<ms|->`, "-" when
 *       still alive at the timeout, and when WATCHPID died, `watch_by=pid1`
 *       (it died before PID 1 began to exit) or `watch_by=teardown` (it was
 *       alive when PID 1 began to exit: the kernel killed it with the
 *       namespace). PID 1 is traced for that (see termwait below).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void write_time(const char *file) {
  char tmp[4096], buf[64];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int n = snprintf(buf, sizeof buf, "%ld.%06ld\n", (long)ts.tv_sec, ts.tv_nsec / 1000);
  snprintf(tmp, sizeof tmp, "%s.tmp", file);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die(tmp);
  if (write(fd, buf, n) != n) die("write");
  close(fd);
  if (rename(tmp, file) != 0) die("rename");
}

static double read_time(const char *file) {
  FILE *f = fopen(file, "r");
  double t = 0;
  if (!f) return 0;
  if (fscanf(f, "%lf", &t) != 1) t = 0;
  fclose(f);
  return t;
}

static int orphans(long n, const char *done) {
  for (long i = 0; i < n; i++) {
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c == 0) {
      pid_t g = fork();
      if (g < 0) _exit(1);
      _exit(0); /* the grandchild (g == 0) and the child alike */
    }
    while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {}
  }
  write_time(done);
  for (;;) pause();
}

static int stamp(const char *file) {
  write_time(file);
  execlp("sleep", "sleep", "infinity", (char *)NULL);
  die("exec sleep");
  return 1;
}

/* Zombies in the namespace whose proc is open at dfd; stop at the first one
 * unless all is set. */
static long count_zombies(int dfd, int all) {
  long z = 0;
  int d2 = dup(dfd);
  if (d2 < 0) die("dup");
  DIR *dir = fdopendir(d2);
  if (!dir) die("fdopendir");
  rewinddir(dir);
  struct dirent *e;
  char path[300], buf[512];
  while ((e = readdir(dir))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "%s/stat", e->d_name);
    int fd = openat(dfd, path, O_RDONLY);
    if (fd < 0) continue; /* gone meanwhile */
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) continue;
    buf[r] = 0;
    char *p = strrchr(buf, ')');
    if (p && p[1] == ' ' && p[2] == 'Z') {
      z++;
      if (!all) break;
    }
  }
  closedir(dir);
  return z;
}

static int zombiewait(const char *initpid, const char *done, long timeout_ms) {
  char path[256];
  snprintf(path, sizeof path, "/proc/%s/root/proc", initpid);
  int dfd = open(path, O_RDONLY | O_DIRECTORY);
  if (dfd < 0) die(path);
  /* Creating the orphans may take long on a busy machine: up to 5 minutes,
   * not counted in TIMEOUT_MS, which starts at the last fork. */
  double creation_deadline = now() + 300;
  struct timespec nap = {0, 500000};
  while (access(done, F_OK) != 0) {
    if (now() > creation_deadline) {
      printf("no %s after 300 s\n", done);
      return 1;
    }
    nanosleep(&nap, NULL);
  }
  double last = read_time(done), deadline = last + timeout_ms / 1e3;
  long backlog = -1, scans = 0;
  for (;;) {
    double t = now();
    long z = count_zombies(dfd, backlog < 0);
    scans++;
    if (backlog < 0) backlog = z;
    if (z == 0) {
      printf("ms=%.3f backlog=%ld scans=%ld\n", (t - last) * 1e3, backlog, scans);
      return 0;
    }
    if (t > deadline) {
      printf("timeout zombies=%ld\n", count_zombies(dfd, 1));
      return 1;
    }
    nanosleep(&nap, NULL);
  }
}

static int pidfd(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static int exited(int pfd) { /* whether the process of this pidfd has exited */
  struct pollfd p = {pfd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* With WATCHPID, PID 1 is traced (PTRACE_SEIZE, PTRACE_O_TRACEEXIT): the
 * kernel stops it in do_exit before it can tear the namespace down (that
 * happens when its last thread has exited), so whether WATCHPID is still
 * alive at that stop tells who killed it: already dead, PID 1 (or one of its
 * supervise processes) did; alive, the namespace's teardown will. Every other
 * stop is a signal-delivery stop: the signal is passed on at once. */
static int termwait(pid_t init, pid_t watch, long timeout_ms) {
  int fi = pidfd(init), fw = watch > 0 ? pidfd(watch) : -1, sfd = -1, traced = 0;
  if (fi < 0) die("pidfd_open init");
  if (watch > 0) {
    if (fw < 0) die("pidfd_open watch");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");
    if (ptrace(PTRACE_SEIZE, init, 0, PTRACE_O_TRACEEXIT) != 0) die("ptrace seize");
    traced = 1;
  }
  double t0 = now(), ti = -1, tw = watch > 0 ? -1 : -2;
  int watch_alive_at_exit = -1; /* -1: PID 1 not seen exiting */
  if (kill(init, SIGTERM) != 0) die("kill");
  for (;;) {
    if (ti >= 0 && tw != -1) break;
    double left = t0 + timeout_ms / 1e3 - now();
    if (left <= 0) break;
    struct pollfd p[3] = {{ti < 0 ? fi : -1, POLLIN, 0}, {tw == -1 ? fw : -1, POLLIN, 0}, {traced ? sfd : -1, POLLIN, 0}};
    if (poll(p, 3, (int)(left * 1e3) + 1) < 0 && errno != EINTR) die("poll");
    double t = now();
    if (p[2].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {}
      int st;
      while (traced && waitpid(init, &st, WNOHANG | __WALL) > 0) {
        if (!WIFSTOPPED(st)) { traced = 0; break; }
        if ((st >> 8) == (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
          watch_alive_at_exit = !exited(fw);
          ptrace(PTRACE_DETACH, init, 0, 0);
          traced = 0;
        } else if ((st >> 16) == PTRACE_EVENT_STOP) {
          ptrace(PTRACE_LISTEN, init, 0, 0);
        } else {
          ptrace(PTRACE_CONT, init, 0, WSTOPSIG(st));
        }
      }
    }
    if (ti < 0 && (p[0].revents & POLLIN)) ti = t;
    if (tw == -1 && (p[1].revents & POLLIN)) tw = t;
  }
  printf("init_ms=");
  if (ti >= 0) printf("%.1f", (ti - t0) * 1e3); else printf("-");
  printf(" watch_ms=");
  if (tw >= 0) printf("%.1f", (tw - t0) * 1e3); else printf("-");
  if (tw >= 0) printf(" watch_by=%s", watch_alive_at_exit == 1 ? "teardown" : "pid1");
  printf("\n");
  return 0; /* a tracee still attached is detached by the kernel as we exit */
}

int main(int argc, char **argv) {
  char *me = basename(strdup(argv[0]));
  if (strcmp(me, "stamp") == 0) {
    if (argc < 2) { fprintf(stderr, "usage: stamp SCRIPT\n"); return 2; }
    char file[4096];
    char *dir = dirname(strdup(argv[1]));
    snprintf(file, sizeof file, "%s/started", dir);
    return stamp(file);
  }
  if (argc >= 4 && strcmp(argv[1], "orphans") == 0) return orphans(atol(argv[2]), argv[3]);
  if (argc >= 3 && strcmp(argv[1], "stamp") == 0) return stamp(argv[2]);
  if (argc >= 5 && strcmp(argv[1], "zombiewait") == 0) return zombiewait(argv[2], argv[3], atol(argv[4]));
  if (argc >= 5 && strcmp(argv[1], "termwait") == 0)
    return termwait((pid_t)atol(argv[2]), (pid_t)atol(argv[3]), atol(argv[4]));
  fprintf(stderr,
          "usage: benchtool orphans N DONEFILE | stamp FILE | zombiewait INITPID DONEFILE TIMEOUT_MS"
          " | termwait INITPID WATCHPID TIMEOUT_MS\n");
  return 2;
}
