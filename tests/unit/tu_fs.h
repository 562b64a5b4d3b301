/* File-system helpers shared by the unit tests. */
#ifndef TU_FS_H
#define TU_FS_H

/* Remove a directory tree (no symlinks followed); 0 if gone or never there. */
int tu_rm_rf(const char *path);

#endif
