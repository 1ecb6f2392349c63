// What a spool write costs the whole machine's CPU, with and without the durability rule's two
// flushes. Each of WRITERS processes writes N files of SIZE bytes, one after another: create a
// temporary file, write, [fdatasync], close, rename it into another directory, [fsync that
// directory] ("durable"; "plain" leaves out the bracketed steps, as storescp to disk does).
// Prints the machine's busy CPU time (all cores, /proc/stat: everything but idle and iowait,
// interrupts included) per file, and the share of the cores left idle.
//
// usage: durable_cpu DIR N SIZE plain|durable WRITERS
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void ticks(long long *busy, long long *idle) {
  long long v[8] = {0};
  FILE *f = fopen("/proc/stat", "r");
  if (!f || fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) != 8) {
    perror("/proc/stat");
    exit(1);
  }
  fclose(f);
  *idle = v[3] + v[4];
  *busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

static int writer(const char *dir, int id, int n, int size, int durable) {
  char tmp[1024], dst[1024], path[2048], name[2048];
  snprintf(tmp, sizeof tmp, "%s/writing-%d", dir, id);
  snprintf(dst, sizeof dst, "%s/series-%d", dir, id);
  if (mkdir(tmp, 0755) || mkdir(dst, 0755)) { perror("mkdir"); return 1; }
  int dfd = open(dst, O_RDONLY | O_DIRECTORY);
  char *buf = malloc(size);
  for (int i = 0; i < size; i++) buf[i] = (char)(i * 131 + id);
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%d.tmp", tmp, i);
    snprintf(name, sizeof name, "%s/%d.dcm", dst, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 || write(fd, buf, size) != size) { perror("write"); return 1; }
    if (durable && fdatasync(fd)) { perror("fdatasync"); return 1; }
    close(fd);
    if (rename(path, name)) { perror("rename"); return 1; }
    if (durable && fsync(dfd)) { perror("fsync"); return 1; }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: %s DIR N SIZE plain|durable WRITERS\n", argv[0]); return 2; }
  const char *dir = argv[1];
  int n = atoi(argv[2]), size = atoi(argv[3]), writers = atoi(argv[5]);
  int durable = !strcmp(argv[4], "durable");
  long long b0, i0, b1, i1;
  struct timespec a, z;
  ticks(&b0, &i0);
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int w = 0; w < writers; w++)
    if (fork() == 0) _exit(writer(dir, w, n, size, durable));
  int failed = 0, status;
  while (wait(&status) > 0) failed |= !WIFEXITED(status) || WEXITSTATUS(status);
  clock_gettime(CLOCK_MONOTONIC, &z);
  ticks(&b1, &i1);
  double files = (double)n * writers;
  double wall = (z.tv_sec - a.tv_sec) + (z.tv_nsec - a.tv_nsec) / 1e9;
  printf("%s writers=%d files=%.0f wall_ms_per_file=%.4f cpu_ms_per_file=%.4f idle=%.3f\n",
         argv[4], writers, files, wall * 1e3 / files,
         (b1 - b0) * 1e3 / sysconf(_SC_CLK_TCK) / files, (double)(i1 - i0) / ((i1 - i0) + (b1 - b0)));
  return failed;
}
