/* Measurement helpers for bench/scaling.sh; compiled by it into its temp dir.
 * A run dir D holds svc/NAME/run (NAME = s0001, s0002, ...: the number after
 * the letters is the service's index), stamps/ and logs/.
 *
 *   stamp SCRIPT     (as a #! interpreter: `#!/path/to/stamp`)
 *       writes CLOCK_REALTIME (seconds.micros) to D/stamps/NAME (a temp file
 *       renamed into place), then execs `sleep infinity`. SCRIPT may be
 *       relative (s6-supervise and runsv run ./run in the service dir).
 *   storm SCRIPT     (as a #! interpreter)
 *       a service that crashes: appends `s TIME` to D/logs/NAME, writes
 *       D/stamps/NAME the first time, sleeps until its slot, appends
 *       `e TIME` and exits 1. Service k's slot is every wall-clock second S
 *       with S % 10 == k % 10, at S + a fraction spread by k (golden ratio),
 *       at least 1 s after it started: each second 10 % of the services exit,
 *       spread over the second, and each lives about 10 s (more than the 1 s
 *       under which s6-supervise and runsv delay a restart).
 *   scaling_tool waitstamps D N TIMEOUT_MS
 *       waits (inotify on D/stamps, no polling) until services 1..N each
 *       wrote a stamp; prints `n=<seen> last=<latest stamp>` (exit 0), or
 *       `n=<seen> last=-` at the timeout (exit 1).
 *   scaling_tool floor D [restart]
 *       the floor, as PID 1: forks and execs every D/svc/NAME/run (sorted),
 *       reaps everything (signalfd, waitpid(-1, WNOHANG) until none); with
 *       `restart`, starts a service again as soon as it is reaped. SIGTERM or
 *       SIGINT: SIGTERM to every live service, exit 0 once all are reaped.
 *   scaling_tool termwait INIT TIMEOUT_MS [notrace]
 *       SIGTERM to INIT, waits for its exit (pidfd). Unless `notrace`, INIT is
 *       traced (PTRACE_SEIZE, PTRACE_O_TRACEEXIT): the kernel stops it at the
 *       start of its exit, before the namespace is torn down, and the
 *       namespace's processes other than PID 1 are counted then, through
 *       /proc/INIT/root/proc (its own proc mount): still alive, and zombies.
 *       Signal-delivery stops are passed on at once. Prints `init_ms=<ms|->
 *       alive=<n|-> zombies=<n|-> cpu_ms=<INIT's utime+stime at that stop,
 *       all threads, 1/CLK_TCK resolution|->`.
 *   scaling_tool cpu PID...
 *       CPU time in ms (3 decimals) of every thread of these processes, from
 *       /proc/PID/task/TID/schedstat (ns, the scheduler's own clock).
 *   scaling_tool anon PID...
 *       the sum of `Anonymous:` (kB) of /proc/PID/smaps_rollup.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
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

static long index_of(const char *name) { /* s0042 -> 42 */
  while (*name && (*name < '0' || *name > '9')) name++;
  return atol(name);
}

/* SCRIPT (D/svc/NAME/run, maybe relative) -> D and NAME */
static void split_script(const char *script, char *d, char *name) {
  char real[PATH_MAX], tmp[PATH_MAX];
  if (!realpath(script, real)) die(script);
  snprintf(tmp, sizeof tmp, "%s", real);
  char *svcdir = dirname(tmp); /* D/svc/NAME */
  snprintf(name, NAME_MAX + 1, "%s", basename(svcdir));
  char *svc = dirname(svcdir); /* D/svc */
  snprintf(d, PATH_MAX, "%s", dirname(svc));
}

static void stamp_file(const char *d, const char *name) {
  char file[PATH_MAX + 300], tmp[PATH_MAX + 300], buf[64];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int n = snprintf(buf, sizeof buf, "%ld.%06ld\n", (long)ts.tv_sec, ts.tv_nsec / 1000);
  snprintf(file, sizeof file, "%s/stamps/%s", d, name);
  snprintf(tmp, sizeof tmp, "%s/stamps/.%s.%ld", d, name, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die(tmp);
  if (write(fd, buf, n) != n) die("write");
  close(fd);
  if (rename(tmp, file) != 0) die("rename");
}

static int stamp(const char *script) {
  char d[PATH_MAX], name[NAME_MAX + 1];
  split_script(script, d, name);
  stamp_file(d, name);
  execlp("sleep", "sleep", "infinity", (char *)NULL);
  die("exec sleep");
  return 1;
}

static void log_line(int fd, char what) {
  char buf[64];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int n = snprintf(buf, sizeof buf, "%c %ld.%06ld\n", what, (long)ts.tv_sec, ts.tv_nsec / 1000);
  if (write(fd, buf, n) != n) die("write log");
}

static int storm(const char *script) {
  char d[PATH_MAX], name[NAME_MAX + 1], log[PATH_MAX + 300], st[PATH_MAX + 300];
  split_script(script, d, name);
  snprintf(log, sizeof log, "%s/logs/%s", d, name);
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) die(log);
  log_line(fd, 's');
  snprintf(st, sizeof st, "%s/stamps/%s", d, name);
  if (access(st, F_OK) != 0) stamp_file(d, name);
  long k = index_of(name);
  double frac = fmod((double)(k / 10) * 0.6180339887498949, 1.0);
  double t = now(), base = floor(t), at = 0;
  for (int i = 0; i < 30; i++) {
    double s = base + i;
    if (((long)s) % 10 == k % 10 && s + frac > t + 1.0) {
      at = s + frac;
      break;
    }
  }
  struct timespec ts = {(time_t)at, (long)((at - floor(at)) * 1e9)};
  while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
  log_line(fd, 'e');
  return 1;
}

static int waitstamps(const char *d, long n, long timeout_ms) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/stamps", d);
  int in = inotify_init1(IN_CLOEXEC);
  if (in < 0) die("inotify_init1");
  if (inotify_add_watch(in, dir, IN_MOVED_TO | IN_CREATE) < 0) die(dir);
  char *seen = calloc(n + 1, 1);
  long count = 0;
  if (!seen) die("calloc");
#define SEE(nm)                                          \
  do {                                                   \
    if ((nm)[0] != '.') {                                \
      long i_ = index_of(nm);                            \
      if (i_ >= 1 && i_ <= n && !seen[i_]) seen[i_] = 1, count++; \
    }                                                    \
  } while (0)
  DIR *dd = opendir(dir);
  if (!dd) die(dir);
  struct dirent *e;
  while ((e = readdir(dd))) SEE(e->d_name);
  closedir(dd);
  double deadline = now() + timeout_ms / 1e3;
  char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
  while (count < n) {
    double left = deadline - now();
    if (left <= 0) {
      printf("n=%ld last=-\n", count);
      return 1;
    }
    struct pollfd p = {in, POLLIN, 0};
    if (poll(&p, 1, (int)(left * 1e3) + 1) <= 0) continue;
    ssize_t r = read(in, buf, sizeof buf);
    if (r <= 0) continue;
    for (char *q = buf; q < buf + r;) {
      struct inotify_event *ev = (struct inotify_event *)q;
      if (ev->mask & IN_Q_OVERFLOW) { /* events lost: read the directory again */
        dd = opendir(dir);
        if (!dd) die(dir);
        while ((e = readdir(dd))) SEE(e->d_name);
        closedir(dd);
      } else if (ev->len > 0 && (ev->mask & IN_MOVED_TO)) {
        SEE(ev->name);
      }
      q += sizeof *ev + ev->len;
    }
  }
  double last = 0;
  dd = opendir(dir);
  if (!dd) die(dir);
  while ((e = readdir(dd))) {
    if (e->d_name[0] == '.') continue;
    char f[PATH_MAX + 300];
    snprintf(f, sizeof f, "%s/%s", dir, e->d_name);
    FILE *fp = fopen(f, "r");
    double t = 0;
    if (fp) {
      if (fscanf(fp, "%lf", &t) != 1) t = 0;
      fclose(fp);
    }
    if (t > last) last = t;
  }
  closedir(dd);
  printf("n=%ld last=%.6f\n", count, last);
  return 0;
}

static int floor_init(const char *d, int restart) {
  sigset_t set, empty;
  sigemptyset(&set);
  sigemptyset(&empty);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");
  char svc[PATH_MAX];
  snprintf(svc, sizeof svc, "%s/svc", d);
  struct dirent **list;
  int n = scandir(svc, &list, NULL, alphasort), m = 0;
  if (n < 0) die(svc);
  char **paths = calloc(n, sizeof *paths);
  pid_t *pids = calloc(n, sizeof *pids);
  if (!paths || !pids) die("calloc");
  for (int i = 0; i < n; i++) {
    if (list[i]->d_name[0] != '.' && asprintf(&paths[m], "%s/%s/run", svc, list[i]->d_name) > 0) m++;
  }
  long live = 0;
  int stopping = 0;
#define SPAWN(i)                                                        \
  do {                                                                  \
    pid_t c_ = fork();                                                  \
    if (c_ == 0) {                                                      \
      sigprocmask(SIG_SETMASK, &empty, NULL);                           \
      execl(paths[i], paths[i], (char *)NULL);                          \
      _exit(127);                                                       \
    }                                                                   \
    pids[i] = c_ > 0 ? c_ : 0;                                          \
    if (c_ > 0) live++;                                                 \
  } while (0)
  for (int i = 0; i < m; i++) SPAWN(i);
  for (;;) {
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != sizeof si) continue;
    if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
      stopping = 1;
      for (int i = 0; i < m; i++)
        if (pids[i] > 0) kill(pids[i], SIGTERM);
    }
    pid_t p;
    int st;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
      for (int i = 0; i < m; i++) {
        if (pids[i] != p) continue;
        pids[i] = 0;
        live--;
        if (restart && !stopping) SPAWN(i);
        break;
      }
    }
    if (stopping && live == 0) return 0;
  }
}

static int pidfd(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static void count_ns(int dfd, long *alive, long *zombies) {
  int d2 = dup(dfd);
  if (d2 < 0) die("dup");
  DIR *dir = fdopendir(d2);
  if (!dir) die("fdopendir");
  rewinddir(dir);
  struct dirent *e;
  char path[300], buf[512];
  *alive = *zombies = 0;
  while ((e = readdir(dir))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || strcmp(e->d_name, "1") == 0) continue;
    snprintf(path, sizeof path, "%s/stat", e->d_name);
    int fd = openat(dfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) continue;
    buf[r] = 0;
    char *p = strrchr(buf, ')');
    if (p && p[1] == ' ' && p[2] == 'Z') (*zombies)++;
    else (*alive)++;
  }
  closedir(dir);
}

static double cpu_ticks_ms(pid_t pid) { /* utime + stime of the whole process */
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t r = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (r <= 0) return -1;
  buf[r] = 0;
  char *p = strrchr(buf, ')');
  unsigned long ut = 0, stt = 0;
  /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2) return -1;
  return (ut + stt) * 1000.0 / sysconf(_SC_CLK_TCK);
}

static int termwait(pid_t init, long timeout_ms, int trace) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/root/proc", (int)init);
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) die(path);
  int fi = pidfd(init), sfd = -1, traced = 0;
  if (fi < 0) die("pidfd_open");
  if (trace) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");
    if (ptrace(PTRACE_SEIZE, init, 0, PTRACE_O_TRACEEXIT) != 0) die("ptrace seize");
    traced = 1;
  }
  long alive = -1, zombies = -1;
  double cpu = -1, t0 = now(), ti = -1;
  if (kill(init, SIGTERM) != 0) die("kill");
  while (ti < 0) {
    double left = t0 + timeout_ms / 1e3 - now();
    if (left <= 0) break;
    struct pollfd p[2] = {{fi, POLLIN, 0}, {traced ? sfd : -1, POLLIN, 0}};
    if (poll(p, 2, (int)(left * 1e3) + 1) < 0 && errno != EINTR) die("poll");
    double t = now();
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {}
      int st;
      while (traced && waitpid(init, &st, WNOHANG | __WALL) > 0) {
        if (!WIFSTOPPED(st)) { traced = 0; break; }
        if ((st >> 8) == (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
          count_ns(dfd, &alive, &zombies);
          cpu = cpu_ticks_ms(init);
          ptrace(PTRACE_DETACH, init, 0, 0);
          traced = 0;
        } else if ((st >> 16) == PTRACE_EVENT_STOP) {
          ptrace(PTRACE_LISTEN, init, 0, 0);
        } else {
          ptrace(PTRACE_CONT, init, 0, WSTOPSIG(st));
        }
      }
    }
    if (p[0].revents & POLLIN) ti = t;
  }
  printf("init_ms=");
  if (ti >= 0) printf("%.1f", (ti - t0) * 1e3); else printf("-");
  if (alive >= 0) printf(" alive=%ld zombies=%ld cpu_ms=%.0f\n", alive, zombies, cpu);
  else printf(" alive=- zombies=- cpu_ms=-\n");
  return 0;
}

static int cpu(int argc, char **argv) {
  unsigned long long total = 0;
  for (int i = 0; i < argc; i++) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%s/task", argv[i]);
    DIR *d = opendir(dir);
    if (!d) continue;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char f[384];
      snprintf(f, sizeof f, "%s/%s/schedstat", dir, e->d_name);
      FILE *fp = fopen(f, "r");
      unsigned long long ns = 0;
      if (fp) {
        if (fscanf(fp, "%llu", &ns) != 1) ns = 0;
        fclose(fp);
      }
      total += ns;
    }
    closedir(d);
  }
  printf("%.3f\n", total / 1e6);
  return 0;
}

static int anon(int argc, char **argv) {
  long total = 0;
  for (int i = 0; i < argc; i++) {
    char f[64], line[256];
    snprintf(f, sizeof f, "/proc/%s/smaps_rollup", argv[i]);
    FILE *fp = fopen(f, "r");
    if (!fp) continue;
    long kb;
    while (fgets(line, sizeof line, fp))
      if (sscanf(line, "Anonymous: %ld", &kb) == 1) total += kb;
    fclose(fp);
  }
  printf("%ld\n", total);
  return 0;
}

int main(int argc, char **argv) {
  char *me = basename(strdup(argv[0]));
  if (strcmp(me, "stamp") == 0 && argc >= 2) return stamp(argv[1]);
  if (strcmp(me, "storm") == 0 && argc >= 2) return storm(argv[1]);
  if (argc >= 5 && strcmp(argv[1], "waitstamps") == 0) return waitstamps(argv[2], atol(argv[3]), atol(argv[4]));
  if (argc >= 3 && strcmp(argv[1], "floor") == 0)
    return floor_init(argv[2], argc >= 4 && strcmp(argv[3], "restart") == 0);
  if (argc >= 4 && strcmp(argv[1], "termwait") == 0)
    return termwait((pid_t)atol(argv[2]), atol(argv[3]), !(argc >= 5 && strcmp(argv[4], "notrace") == 0));
  if (argc >= 2 && strcmp(argv[1], "cpu") == 0) return cpu(argc - 2, argv + 2);
  if (argc >= 2 && strcmp(argv[1], "anon") == 0) return anon(argc - 2, argv + 2);
  fprintf(stderr, "usage: scaling_tool waitstamps D N TIMEOUT_MS | floor D [restart] | termwait INIT TIMEOUT_MS [notrace]"
                  " | cpu PID... | anon PID...; as stamp SCRIPT or storm SCRIPT (#! interpreters)\n");
  return 2;
}
