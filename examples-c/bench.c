/*
 * bench.c — the C anchor of the bindings' benchmark (scripts/bench-bindings.sh): the same loop
 * the Java and .NET bench programs run, so their cost is measured against C in the same run.
 *
 *   bench loop KEY CERT PEER_KEY PEER_CERT SIZE ITERATIONS
 *   bench seal KEY CERT PEER_CERT SIZE ITERATIONS
 *
 * The document is SIZE bytes of xorshift32 (seed 2463534242), made once. `loop`: ITERATIONS/10
 * untimed rounds, then ITERATIONS timed rounds of ls_seal (signed with KEY/CERT for PEER_CERT,
 * default options) and ls_open as the peer (PEER_KEY/PEER_CERT) requiring CERT as the signer,
 * the opened length checked (and the bytes in the first round). `seal`: one untimed seal, then
 * ITERATIONS timed ones. Prints one line:
 *
 *   <mode> size=<SIZE> iterations=<N> seconds=<float> vmhwm_kb=<peak RSS>
 */
#define _POSIX_C_SOURCE 200809L
#include "layersec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void report(const char *what, ls_result rc)
{
    fprintf(stderr, "bench: %s failed: %s (%d): %s\n", what, ls_result_name(rc), (int)rc,
            ls_last_error_message());
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* VmHWM of /proc/self/status in kB, -1 when unknown. */
static long vmhwm_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static uint8_t *document(size_t size)
{
    uint8_t *d = malloc(size ? size : 1);
    uint32_t x = 2463534242u;
    size_t i;
    if (d == NULL)
        return NULL;
    for (i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (uint8_t)(x & 0xff);
    }
    return d;
}

/* One seal for `to` and, when `peer` is not NULL, one open as `peer` checked against `doc`. */
static int round_trip(const ls_identity *me, const ls_cert *my_cert, const ls_identity *peer,
                      const ls_cert *to, const uint8_t *doc, size_t size, int check_bytes)
{
    ls_seal_options so;
    ls_open_options oo;
    ls_bytes sealed = {NULL, 0};
    ls_opened *opened = NULL;
    const ls_cert *recipients[1];
    const uint8_t *out;
    size_t out_len;
    ls_result rc;
    int ok = -1;

    ls_seal_options_init(&so);
    recipients[0] = to;
    rc = ls_seal(me, recipients, 1, doc, size, &so, &sealed);
    if (rc != LS_OK) {
        report("ls_seal", rc);
        goto done;
    }
    if (peer == NULL) {
        ok = 0;
        goto done;
    }
    ls_open_options_init(&oo);
    oo.sender = my_cert;
    rc = ls_open(peer, sealed.data, sealed.len, &oo, &opened);
    if (rc != LS_OK) {
        report("ls_open", rc);
        goto done;
    }
    rc = ls_opened_document(opened, &out, &out_len);
    if (rc != LS_OK || out_len != size || (check_bytes && memcmp(out, doc, size) != 0)) {
        fprintf(stderr, "bench: the opened document differs\n");
        goto done;
    }
    ok = 0;
done:
    ls_opened_free(opened);
    ls_bytes_free(&sealed);
    return ok;
}

int main(int argc, char **argv)
{
    int loop = argc == 8 && strcmp(argv[1], "loop") == 0;
    int seal = argc == 7 && strcmp(argv[1], "seal") == 0;
    ls_identity *me = NULL, *peer = NULL;
    ls_cert *my_cert = NULL, *peer_cert = NULL;
    uint8_t *doc = NULL;
    size_t size;
    long i, n, warm;
    double t0, secs;
    ls_result rc;
    int status = EXIT_FAILURE;

    if (!loop && !seal) {
        fprintf(stderr, "usage: bench loop KEY CERT PEER_KEY PEER_CERT SIZE ITERATIONS\n"
                        "       bench seal KEY CERT PEER_CERT SIZE ITERATIONS\n");
        return 2;
    }
    size = (size_t)strtoull(argv[argc - 2], NULL, 10);
    n = strtol(argv[argc - 1], NULL, 10);
    if ((rc = ls_identity_load(argv[2], argv[3], NULL, &me)) != LS_OK ||
        (rc = ls_cert_load(argv[3], &my_cert)) != LS_OK) {
        report("loading our identity", rc);
        goto done;
    }
    if (loop && (rc = ls_identity_load(argv[4], argv[5], NULL, &peer)) != LS_OK) {
        report("loading the peer's identity", rc);
        goto done;
    }
    if ((rc = ls_cert_load(loop ? argv[5] : argv[4], &peer_cert)) != LS_OK) {
        report("loading the peer's certificate", rc);
        goto done;
    }
    if ((doc = document(size)) == NULL) {
        fprintf(stderr, "bench: out of memory\n");
        goto done;
    }
    warm = loop ? n / 10 : 1;
    for (i = 0; i < warm; i++)
        if (round_trip(me, my_cert, peer, peer_cert, doc, size, i == 0) != 0)
            goto done;
    t0 = now();
    for (i = 0; i < n; i++)
        if (round_trip(me, my_cert, peer, peer_cert, doc, size, i == 0) != 0)
            goto done;
    secs = now() - t0;
    printf("%s size=%lu iterations=%ld seconds=%.6f vmhwm_kb=%ld\n", loop ? "loop" : "seal",
           (unsigned long)size, n, secs, vmhwm_kb());
    status = EXIT_SUCCESS;
done:
    free(doc);
    ls_cert_free(peer_cert);
    ls_cert_free(my_cert);
    ls_identity_free(peer);
    ls_identity_free(me);
    return status;
}
