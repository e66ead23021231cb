/* path.h: file system paths. */
#ifndef GH_CORE_PATH_H
#define GH_CORE_PATH_H

/* mkdir -p of the directory part of path (0750; errors are left to the open that follows), so
 * that a relative default such as var/gatehouse.db works from a fresh checkout. */
void gh_mkdir_parents(const char *path);

#endif
