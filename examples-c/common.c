/*
 * common.c — file helpers shared by the examples (plain C, nothing layersec-specific).
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t used = 0, cap = 0, n;

    *data = NULL;
    *len = 0;
    if (f == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    /* Grow the buffer as we go: works for pipes too, where the size is unknown. */
    do {
        if (used == cap) {
            size_t new_cap = cap ? cap * 2 : 65536;
            uint8_t *bigger = (uint8_t *)realloc(buf, new_cap);
            if (bigger == NULL) {
                fprintf(stderr, "out of memory reading %s\n", path);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = bigger;
            cap = new_cap;
        }
        n = fread(buf + used, 1, cap - used, f);
        used += n;
    } while (n > 0);
    if (ferror(f)) {
        fprintf(stderr, "cannot read %s\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *data = buf;
    *len = used;
    return 0;
}

int write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (f == NULL) {
        fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    ok = fwrite(data, 1, len, f) == len;
    if (fclose(f) != 0) /* buffered data is written here: check it too */
        ok = 0;
    if (!ok) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}
