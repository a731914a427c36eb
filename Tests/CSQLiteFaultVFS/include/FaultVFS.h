// A test-only SQLite VFS that simulates power loss. Linked only into test targets.
//
// It wraps the default "unix" VFS. For every file opened through it, it counts xSync calls and
// keeps an undo record of each write or truncation made since that file's last xSync: data the
// OS has accepted but not yet promised to the disk. `fault_vfs_power_cut` rolls those back for
// every file under a directory and, from then on, drops every write, truncation, sync and delete
// to those files (the machine is off), so connections still open can be closed without their
// closing checkpoint reaching the "disk". `fault_vfs_power_on` ends that state.
#ifndef CARESYNC_FAULT_VFS_H
#define CARESYNC_FAULT_VFS_H

#ifdef __cplusplus
extern "C" {
#endif

/// The name to give SQLite (`file:/path?vfs=caresync-fault`). Registers the VFS on first call;
/// returns NULL if registration failed.
const char *fault_vfs_name(void);

/// How many times xSync was called on the file at `path` (full path) since it was first opened
/// through this VFS.
long fault_vfs_sync_count(const char *path);

/// Bytes written to `path` that no xSync has yet made durable.
long fault_vfs_unsynced_bytes(const char *path);

/// Simulates power loss for every file whose path starts with `directory`: undoes their unsynced
/// writes and truncations, then ignores every later change to them until `fault_vfs_power_on`.
/// Returns the number of undone writes, or -1 on an I/O error.
long fault_vfs_power_cut(const char *directory);

/// Ends a power cut and forgets the files under `directory`.
void fault_vfs_power_on(const char *directory);

#ifdef __cplusplus
}
#endif

#endif
