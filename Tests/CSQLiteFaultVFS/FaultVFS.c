// See include/FaultVFS.h. Everything here runs under one mutex: it is a test instrument, not a
// fast path, and the lock keeps the undo records consistent with the file contents.
#include "FaultVFS.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAULT_VFS_NAME "caresync-fault"

// One write or truncation not yet made durable: `length` bytes that were at `offset` before it,
// and the file's size before it. Undoing writes them back and truncates to `prior_size`.
typedef struct Undo {
    sqlite3_int64 offset;
    sqlite3_int64 prior_size;
    int length;
    unsigned char *bytes;
    struct Undo *older;
} Undo;

typedef struct Tracked {
    char *path;
    long syncs;
    long unsynced_bytes;
    Undo *newest;
    struct Tracked *next;
} Tracked;

typedef struct Frozen {
    char *prefix;
    struct Frozen *next;
} Frozen;

typedef struct FaultFile {
    sqlite3_file base;
    Tracked *tracked; // NULL for files we only pass through (temporary files)
    sqlite3_file *real;
} FaultFile;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int registered = 0;
static sqlite3_vfs *unix_vfs = NULL;
static sqlite3_vfs fault_vfs;
static Tracked *tracked_files = NULL;
static Frozen *frozen = NULL;

static Tracked *find_tracked(const char *path, int create) {
    for (Tracked *t = tracked_files; t; t = t->next) {
        if (strcmp(t->path, path) == 0) return t;
    }
    if (!create) return NULL;
    Tracked *t = calloc(1, sizeof(Tracked));
    if (!t) return NULL;
    t->path = strdup(path);
    if (!t->path) { free(t); return NULL; }
    t->next = tracked_files;
    tracked_files = t;
    return t;
}

static int is_frozen(const char *path) {
    for (Frozen *f = frozen; f; f = f->next) {
        if (strncmp(path, f->prefix, strlen(f->prefix)) == 0) return 1;
    }
    return 0;
}

static void forget_undo(Tracked *t) {
    while (t->newest) {
        Undo *u = t->newest;
        t->newest = u->older;
        free(u->bytes);
        free(u);
    }
    t->unsynced_bytes = 0;
}

// Records what [offset, offset + length) held before a change, and the file size.
static int remember(FaultFile *f, sqlite3_int64 offset, sqlite3_int64 length) {
    sqlite3_int64 size = 0;
    int rc = f->real->pMethods->xFileSize(f->real, &size);
    if (rc != SQLITE_OK) return rc;
    sqlite3_int64 overlap = size - offset;
    if (overlap < 0) overlap = 0;
    if (overlap > length) overlap = length;
    Undo *u = calloc(1, sizeof(Undo));
    if (!u) return SQLITE_NOMEM;
    u->offset = offset;
    u->prior_size = size;
    u->length = (int)overlap;
    if (overlap > 0) {
        u->bytes = malloc((size_t)overlap);
        if (!u->bytes) { free(u); return SQLITE_NOMEM; }
        rc = f->real->pMethods->xRead(f->real, u->bytes, (int)overlap, offset);
        if (rc != SQLITE_OK) { free(u->bytes); free(u); return rc; }
    }
    u->older = f->tracked->newest;
    f->tracked->newest = u;
    return SQLITE_OK;
}

// MARK: io methods

static int fault_close(sqlite3_file *file) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xClose(f->real);
}

static int fault_read(sqlite3_file *file, void *buffer, int amount, sqlite3_int64 offset) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xRead(f->real, buffer, amount, offset);
}

static int fault_write(sqlite3_file *file, const void *buffer, int amount, sqlite3_int64 offset) {
    FaultFile *f = (FaultFile *)file;
    if (!f->tracked) return f->real->pMethods->xWrite(f->real, buffer, amount, offset);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (!is_frozen(f->tracked->path)) {
        rc = remember(f, offset, amount);
        if (rc == SQLITE_OK) rc = f->real->pMethods->xWrite(f->real, buffer, amount, offset);
        if (rc == SQLITE_OK) f->tracked->unsynced_bytes += amount;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int fault_truncate(sqlite3_file *file, sqlite3_int64 size) {
    FaultFile *f = (FaultFile *)file;
    if (!f->tracked) return f->real->pMethods->xTruncate(f->real, size);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (!is_frozen(f->tracked->path)) {
        sqlite3_int64 current = 0;
        rc = f->real->pMethods->xFileSize(f->real, &current);
        if (rc == SQLITE_OK && current > size) rc = remember(f, size, current - size);
        if (rc == SQLITE_OK) rc = f->real->pMethods->xTruncate(f->real, size);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int fault_sync(sqlite3_file *file, int flags) {
    FaultFile *f = (FaultFile *)file;
    if (!f->tracked) return f->real->pMethods->xSync(f->real, flags);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (!is_frozen(f->tracked->path)) {
        rc = f->real->pMethods->xSync(f->real, flags);
        if (rc == SQLITE_OK) {
            f->tracked->syncs += 1;
            forget_undo(f->tracked);
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int fault_file_size(sqlite3_file *file, sqlite3_int64 *size) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xFileSize(f->real, size);
}

static int fault_lock(sqlite3_file *file, int level) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xLock(f->real, level);
}

static int fault_unlock(sqlite3_file *file, int level) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xUnlock(f->real, level);
}

static int fault_check_reserved_lock(sqlite3_file *file, int *out) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int fault_file_control(sqlite3_file *file, int op, void *arg) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int fault_sector_size(sqlite3_file *file) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xSectorSize(f->real);
}

static int fault_device_characteristics(sqlite3_file *file) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

// The wal-index (-shm) is shared memory, lost at power-off anyway; SQLite rebuilds it from the
// WAL when the first connection after the "reboot" opens the file.
static int fault_shm_map(sqlite3_file *file, int page, int page_size, int extend, void volatile **out) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xShmMap(f->real, page, page_size, extend, out);
}

static int fault_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void fault_shm_barrier(sqlite3_file *file) {
    FaultFile *f = (FaultFile *)file;
    f->real->pMethods->xShmBarrier(f->real);
}

static int fault_shm_unmap(sqlite3_file *file, int delete_flag) {
    FaultFile *f = (FaultFile *)file;
    return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int fault_fetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **out) {
    // Memory-mapped pages would bypass xWrite's undo records; SQLite falls back to xRead.
    (void)file; (void)offset; (void)amount;
    *out = NULL;
    return SQLITE_OK;
}

static int fault_unfetch(sqlite3_file *file, sqlite3_int64 offset, void *page) {
    (void)file; (void)offset; (void)page;
    return SQLITE_OK;
}

static const sqlite3_io_methods fault_methods = {
    3, fault_close, fault_read, fault_write, fault_truncate, fault_sync, fault_file_size, fault_lock,
    fault_unlock, fault_check_reserved_lock, fault_file_control, fault_sector_size,
    fault_device_characteristics, fault_shm_map, fault_shm_lock, fault_shm_barrier, fault_shm_unmap,
    fault_fetch, fault_unfetch,
};

// MARK: vfs methods

static int fault_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    (void)vfs;
    FaultFile *f = (FaultFile *)file;
    f->base.pMethods = NULL;
    f->tracked = NULL;
    f->real = (sqlite3_file *)&f[1];
    int rc = unix_vfs->xOpen(unix_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) return rc;
    if (name && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL))) {
        pthread_mutex_lock(&lock);
        f->tracked = find_tracked(name, 1);
        pthread_mutex_unlock(&lock);
        if (!f->tracked) {
            f->real->pMethods->xClose(f->real);
            return SQLITE_NOMEM;
        }
    }
    f->base.pMethods = &fault_methods;
    return SQLITE_OK;
}

static int fault_delete(sqlite3_vfs *vfs, const char *name, int sync_directory) {
    (void)vfs;
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (!is_frozen(name)) {
        rc = unix_vfs->xDelete(unix_vfs, name, sync_directory);
        Tracked *t = find_tracked(name, 0);
        if (rc == SQLITE_OK && t) forget_undo(t);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int fault_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
    (void)vfs;
    return unix_vfs->xAccess(unix_vfs, name, flags, out);
}

static int fault_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
    (void)vfs;
    return unix_vfs->xFullPathname(unix_vfs, name, size, out);
}

static void *fault_dl_open(sqlite3_vfs *vfs, const char *name) { (void)vfs; return unix_vfs->xDlOpen(unix_vfs, name); }
static void fault_dl_error(sqlite3_vfs *vfs, int size, char *out) { (void)vfs; unix_vfs->xDlError(unix_vfs, size, out); }
static void (*fault_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
    (void)vfs;
    return unix_vfs->xDlSym(unix_vfs, handle, symbol);
}
static void fault_dl_close(sqlite3_vfs *vfs, void *handle) { (void)vfs; unix_vfs->xDlClose(unix_vfs, handle); }
static int fault_randomness(sqlite3_vfs *vfs, int size, char *out) { (void)vfs; return unix_vfs->xRandomness(unix_vfs, size, out); }
static int fault_sleep(sqlite3_vfs *vfs, int micros) { (void)vfs; return unix_vfs->xSleep(unix_vfs, micros); }
static int fault_current_time(sqlite3_vfs *vfs, double *out) { (void)vfs; return unix_vfs->xCurrentTime(unix_vfs, out); }
static int fault_last_error(sqlite3_vfs *vfs, int size, char *out) { (void)vfs; return unix_vfs->xGetLastError(unix_vfs, size, out); }
static int fault_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
    (void)vfs;
    return unix_vfs->xCurrentTimeInt64(unix_vfs, out);
}

static void register_vfs(void) {
    unix_vfs = sqlite3_vfs_find("unix");
    if (!unix_vfs) return;
    memset(&fault_vfs, 0, sizeof(fault_vfs));
    fault_vfs.iVersion = 2;
    fault_vfs.szOsFile = (int)sizeof(FaultFile) + unix_vfs->szOsFile;
    fault_vfs.mxPathname = unix_vfs->mxPathname;
    fault_vfs.zName = FAULT_VFS_NAME;
    fault_vfs.xOpen = fault_open;
    fault_vfs.xDelete = fault_delete;
    fault_vfs.xAccess = fault_access;
    fault_vfs.xFullPathname = fault_full_pathname;
    fault_vfs.xDlOpen = fault_dl_open;
    fault_vfs.xDlError = fault_dl_error;
    fault_vfs.xDlSym = fault_dl_sym;
    fault_vfs.xDlClose = fault_dl_close;
    fault_vfs.xRandomness = fault_randomness;
    fault_vfs.xSleep = fault_sleep;
    fault_vfs.xCurrentTime = fault_current_time;
    fault_vfs.xGetLastError = fault_last_error;
    fault_vfs.xCurrentTimeInt64 = fault_current_time_int64;
    registered = sqlite3_vfs_register(&fault_vfs, 0) == SQLITE_OK;
}

// MARK: test controls

const char *fault_vfs_name(void) {
    pthread_once(&once, register_vfs);
    return registered ? FAULT_VFS_NAME : NULL;
}

long fault_vfs_sync_count(const char *path) {
    pthread_mutex_lock(&lock);
    Tracked *t = find_tracked(path, 0);
    long count = t ? t->syncs : 0;
    pthread_mutex_unlock(&lock);
    return count;
}

long fault_vfs_unsynced_bytes(const char *path) {
    pthread_mutex_lock(&lock);
    Tracked *t = find_tracked(path, 0);
    long count = t ? t->unsynced_bytes : 0;
    pthread_mutex_unlock(&lock);
    return count;
}

// Writes an undo record back with plain POSIX calls (the SQLite file may be closed already).
static int undo_one(const char *path, const Undo *u) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return -1;
    int ok = 1;
    if (u->length > 0 && pwrite(fd, u->bytes, (size_t)u->length, (off_t)u->offset) != u->length) ok = 0;
    off_t end = lseek(fd, 0, SEEK_END);
    if (ok && end > (off_t)u->prior_size && ftruncate(fd, (off_t)u->prior_size) != 0) ok = 0;
    close(fd);
    return ok ? 0 : -1;
}

long fault_vfs_power_cut(const char *directory) {
    pthread_mutex_lock(&lock);
    long undone = 0;
    Frozen *f = calloc(1, sizeof(Frozen));
    if (!f || !(f->prefix = strdup(directory))) {
        free(f);
        pthread_mutex_unlock(&lock);
        return -1;
    }
    f->next = frozen;
    frozen = f;
    for (Tracked *t = tracked_files; t; t = t->next) {
        if (strncmp(t->path, directory, strlen(directory)) != 0) continue;
        for (Undo *u = t->newest; u; u = u->older) {
            if (undo_one(t->path, u) != 0) undone = -1;
            else if (undone >= 0) undone += 1;
        }
        forget_undo(t);
    }
    pthread_mutex_unlock(&lock);
    return undone;
}

void fault_vfs_power_on(const char *directory) {
    pthread_mutex_lock(&lock);
    Frozen **link = &frozen;
    while (*link) {
        if (strcmp((*link)->prefix, directory) == 0) {
            Frozen *gone = *link;
            *link = gone->next;
            free(gone->prefix);
            free(gone);
        } else {
            link = &(*link)->next;
        }
    }
    for (Tracked *t = tracked_files; t; t = t->next) {
        if (strncmp(t->path, directory, strlen(directory)) == 0) forget_undo(t);
    }
    pthread_mutex_unlock(&lock);
}
