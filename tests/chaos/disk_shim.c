/* disk_shim: an LD_PRELOAD library that lets a chaos run slow down or fail one marmot's disk
 * syncs while it runs, without restarting it.
 *
 * If MARMOT_CHAOS_DISK names a file and that file exists, every fsync/fdatasync first reads it:
 *   "<n>"   sleep n milliseconds, then sync (a slow disk)
 *   "full"  fail with ENOSPC without syncing (a full disk, as seen at the sync)
 * No file (the normal case): the call goes straight to libc. Only syncs are affected: RocksDB
 * (the Raft log) and SQLite (marmot's apply) both make a write durable through them. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 0: no fault; -1: fail with ENOSPC. Sleeps for a slow disk. */
static int DiskFault(void) {
  const char* path = getenv("MARMOT_CHAOS_DISK");
  if (path == NULL) return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32] = {0};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  if (strncmp(buf, "full", 4) == 0) return -1;
  int ms = atoi(buf);
  if (ms > 0) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  return 0;
}

typedef int (*SyncFunction)(int);

/* The libc function `name`, looked up on first use and kept in `*cache`. Syncs come from
 * several threads at once (RocksDB's and SQLite's), so the cache is read and written
 * atomically; two threads that both look it up store the same pointer. */
static SyncFunction Next(SyncFunction* cache, const char* name) {
  SyncFunction f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
  if (f == NULL) {
    f = (SyncFunction)dlsym(RTLD_NEXT, name);
    __atomic_store_n(cache, f, __ATOMIC_RELEASE);
  }
  return f;
}

int fsync(int fd) {
  static SyncFunction real;
  if (DiskFault() < 0) {
    errno = ENOSPC;
    return -1;
  }
  return Next(&real, "fsync")(fd);
}

int fdatasync(int fd) {
  static SyncFunction real;
  if (DiskFault() < 0) {
    errno = ENOSPC;
    return -1;
  }
  return Next(&real, "fdatasync")(fd);
}
