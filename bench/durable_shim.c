/* LD_PRELOAD shim for the ingest benchmark: makes DCMTK storescp honour brainaged's durability
 * rule, so the two can be compared doing the same work.
 *
 * storescp writes each received instance with stdio and never flushes it to the disk. Under
 * this shim, every file under $DURABLE_DIR that was open for writing is, when closed, first
 * fdatasync'ed, and after the close its directory is fsync'ed: the same two device flushes that
 * brainaged pays before each C-STORE response (brainaged also renames a temporary file in
 * between, which costs no flush). storescp answers only after it has closed the file, so the
 * flushes land before its response, as brainaged's do.
 *
 * A flush that fails makes fclose fail, which storescp reports as a failed store. Every file
 * made durable is counted in $DURABLE_REPORT (if set), so that the benchmark can check that every
 * instance really was flushed.
 *
 * build: gcc -O2 -shared -fPIC -o durable_shim.so durable_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int (*real_fclose)(FILE *);
static int report_fd = -2;

/* One byte appended to $DURABLE_REPORT (if set) per file made durable: its size tells the
 * benchmark how many were (a write of one byte to the page cache, against two device flushes). */
static void count_flushed(void)
{
    const char *path;

    if (report_fd == -2) {
        path = getenv("DURABLE_REPORT");
        report_fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    }
    if (report_fd >= 0 && write(report_fd, "+", 1) != 1)
        perror("durable_shim: report");
}

/* The path of an fd open for writing under $DURABLE_DIR, copied into `path`; 0 if not such. */
static int durable_path(int fd, char *path, size_t size)
{
    const char *prefix = getenv("DURABLE_DIR");
    char link[64];
    ssize_t n;
    int flags;

    if (prefix == NULL || fd < 0)
        return 0;
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, size - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    n = (ssize_t)strlen(prefix);
    return strncmp(path, prefix, n) == 0 && path[n] == '/';
}

static int sync_parent(char *path)
{
    char *slash = strrchr(path, '/');
    int dir, rc;

    if (slash == NULL)
        return 0;
    *slash = '\0';
    dir = open(slash == path ? "/" : path, O_RDONLY | O_DIRECTORY);
    if (dir < 0)
        return -1;
    rc = fsync(dir);
    close(dir);
    return rc;
}

int fclose(FILE *stream)
{
    char path[PATH_MAX];
    int durable, failed = 0, rc;

    if (real_fclose == NULL)
        real_fclose = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    durable = stream != NULL && durable_path(fileno(stream), path, sizeof path);
    if (durable)
        failed = fflush(stream) != 0 || fdatasync(fileno(stream)) != 0;
    rc = real_fclose(stream);
    if (durable && sync_parent(path) != 0)
        failed = 1;
    if (durable && !failed)
        count_flushed();
    if (failed && rc == 0) {
        errno = EIO;
        rc = EOF;
    }
    return rc;
}
