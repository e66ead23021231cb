/* path.c: see path.h. */
#include "core/path.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void gh_mkdir_parents(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return;
    *slash = 0;
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0750);
            *p = '/';
        }
    mkdir(dir, 0750);
}
