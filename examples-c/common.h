/*
 * common.h — file helpers shared by the examples (plain C, nothing layersec-specific).
 */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Reads the whole file at `path` into a new buffer (*data, *len; free it with free()).
 * Returns 0 on success; prints the reason and returns -1 on failure. */
int read_file(const char *path, uint8_t **data, size_t *len);

/* Writes `len` bytes to the file at `path` (created or replaced).
 * Returns 0 on success; prints the reason and returns -1 on failure. */
int write_file(const char *path, const uint8_t *data, size_t len);

#endif
