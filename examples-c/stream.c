/*
 * stream.c — seal and open documents of any size in constant memory, with liblayersec.
 *
 *   stream seal      key cert recipient_cert infile outfile   (ls_seal_stream, stdio callbacks)
 *   stream open      key cert sender_cert    infile outfile   (ls_open_stream, stdio callbacks)
 *   stream seal-file key cert recipient_cert infile outfile   (ls_seal_file)
 *   stream open-file key cert sender_cert    infile outfile   (ls_open_file)
 *
 * `open` shows the rule of the streaming API: what the write callback receives is not authentic
 * until ls_open_stream returns LS_OK, so it goes to `outfile.part`, renamed to `outfile` only
 * then and removed otherwise. `open-file` does the same inside the library.
 */
#include "layersec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report(const char *what, ls_result rc)
{
    fprintf(stderr, "stream: %s failed: %s (%d): %s\n", what, ls_result_name(rc), (int)rc,
            ls_last_error_message());
}

/* ls_read_callback over a FILE *. */
static int read_cb(void *userdata, uint8_t *buf, size_t len, size_t *out_n)
{
    FILE *f = userdata;
    *out_n = fread(buf, 1, len, f);
    return ferror(f) ? EIO : 0;
}

/* ls_write_callback over a FILE *. */
static int write_cb(void *userdata, const uint8_t *buf, size_t len, size_t *out_n)
{
    FILE *f = userdata;
    *out_n = fwrite(buf, 1, len, f);
    return *out_n == len ? 0 : EIO;
}

int main(int argc, char **argv)
{
    ls_identity *me = NULL;
    ls_cert *partner = NULL;
    ls_opened *opened = NULL;
    FILE *in = NULL, *out = NULL;
    char part[4096];
    ls_result rc;
    int status = EXIT_FAILURE;
    const char *mode;

    if (argc != 7) {
        fprintf(stderr, "usage: stream seal|open|seal-file|open-file key cert partner_cert infile outfile\n");
        return 2;
    }
    mode = argv[1];
    rc = ls_identity_load(argv[2], argv[3], NULL, &me);
    if (rc != LS_OK) {
        report("ls_identity_load", rc);
        goto done;
    }
    rc = ls_cert_load(argv[4], &partner);
    if (rc != LS_OK) {
        report("ls_cert_load", rc);
        goto done;
    }

    if (strcmp(mode, "seal") == 0 || strcmp(mode, "seal-file") == 0) {
        const ls_cert *recipients[1];
        ls_seal_options opts;
        uint64_t sealed_size = 0;
        recipients[0] = partner;
        ls_seal_options_init(&opts);
        opts.filename = "export.csv";
        if (strcmp(mode, "seal-file") == 0) {
            rc = ls_seal_file(me, recipients, 1, argv[5], argv[6], &opts);
        } else {
            in = fopen(argv[5], "rb");
            out = fopen(argv[6], "wb");
            if (in == NULL || out == NULL) {
                perror("stream: fopen");
                goto done;
            }
            rc = ls_seal_stream(me, recipients, 1, read_cb, in, write_cb, out, &opts, &sealed_size);
            if (fclose(out) != 0 && rc == LS_OK) {
                perror("stream: fclose");
                out = NULL;
                goto done;
            }
            out = NULL;
        }
        if (rc != LS_OK) {
            report(mode, rc);
            goto done;
        }
        if (sealed_size != 0)
            printf("sealed: %llu bytes\n", (unsigned long long)sealed_size);
    } else if (strcmp(mode, "open") == 0 || strcmp(mode, "open-file") == 0) {
        ls_open_options opts;
        const char *filename;
        ls_open_options_init(&opts);
        opts.sender = partner;
        if (strcmp(mode, "open-file") == 0) {
            rc = ls_open_file(me, argv[5], argv[6], &opts, &opened);
        } else {
            if (snprintf(part, sizeof part, "%s.part", argv[6]) >= (int)sizeof part) {
                fprintf(stderr, "stream: the output path is too long\n");
                goto done;
            }
            in = fopen(argv[5], "rb");
            out = fopen(part, "wb");
            if (in == NULL || out == NULL) {
                perror("stream: fopen");
                goto done;
            }
            rc = ls_open_stream(me, read_cb, in, write_cb, out, &opts, &opened);
            if (fclose(out) != 0 && rc == LS_OK) {
                perror("stream: fclose");
                rc = LS_ERR_IO;
            }
            out = NULL;
            /* Not authentic unless LS_OK: then (and only then) the document takes its name. */
            if (rc == LS_OK && rename(part, argv[6]) != 0) {
                perror("stream: rename");
                remove(part);
                goto done;
            }
            if (rc != LS_OK)
                remove(part);
        }
        if (rc != LS_OK) {
            report(mode, rc);
            goto done;
        }
        filename = ls_opened_filename(opened);
        printf("filename: %s\n", filename != NULL ? filename : "(none)");
        printf("size: %llu\n", (unsigned long long)ls_opened_size(opened));
        printf("signer: %s\n", ls_cert_subject(ls_opened_signer(opened)));
    } else {
        fprintf(stderr, "stream: unknown mode %s\n", mode);
        status = 2;
        goto done;
    }
    status = EXIT_SUCCESS;

done:
    if (in != NULL)
        fclose(in);
    if (out != NULL)
        fclose(out);
    ls_opened_free(opened);
    ls_cert_free(partner);
    ls_identity_free(me);
    return status;
}
