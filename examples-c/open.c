/*
 * open.c — open a document a partner sealed for us, with liblayersec.
 *
 *   open key cert sender_cert infile outfile
 *
 * Decrypts the sealed message in `infile` with our identity (key + cert, PEM), checks that it
 * was signed by the partner whose certificate is `sender_cert` (and by no one else), and writes
 * the document to `outfile`. Prints the document's file name, MIME type, signer and signing
 * time. Nothing is written unless every check passed.
 */
#include "layersec.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Prints why an ls_ call failed: the code's name and the library's explanation. */
static void report(const char *what, ls_result rc)
{
    fprintf(stderr, "open: %s failed: %s (%d): %s\n", what, ls_result_name(rc), (int)rc,
            ls_last_error_message());
}

int main(int argc, char **argv)
{
    ls_identity *me = NULL;  /* handles start as NULL: freeing NULL is a no-op */
    ls_cert *sender = NULL;
    ls_opened *opened = NULL;
    uint8_t *in = NULL;
    size_t in_len = 0;
    const uint8_t *doc;
    size_t doc_len;
    const char *filename;
    int64_t signing_time;
    ls_open_options opts;
    ls_result rc;
    int status = EXIT_FAILURE;

    if (argc != 6) {
        fprintf(stderr, "usage: open key cert sender_cert infile outfile\n");
        return 2;
    }

    /* Our identity, to decrypt (NULL: the key is not encrypted). */
    rc = ls_identity_load(argv[1], argv[2], NULL, &me);
    if (rc != LS_OK) {
        report("loading our identity (ls_identity_load)", rc);
        goto done;
    }

    /* The partner we expect: a valid signature by anyone else is refused. */
    rc = ls_cert_load(argv[3], &sender);
    if (rc != LS_OK) {
        report("loading the sender's certificate (ls_cert_load)", rc);
        goto done;
    }

    if (read_file(argv[4], &in, &in_len) != 0)
        goto done;

    /* Options: always start from ls_open_options_init. The defaults require a signature and a
     * signer certificate valid at signing time. */
    ls_open_options_init(&opts);
    opts.sender = sender;

    rc = ls_open(me, in, in_len, &opts, &opened);
    if (rc != LS_OK) {
        report("ls_open", rc);
        goto done;
    }

    /* From here on, everything is owned by `opened` and valid until ls_opened_free. */
    rc = ls_opened_document(opened, &doc, &doc_len);
    if (rc != LS_OK) {
        report("ls_opened_document", rc);
        goto done;
    }
    if (write_file(argv[5], doc, doc_len) != 0)
        goto done;

    /* The sender chose the file name: the safe variant has no directories or control
     * characters (ls_opened_filename gives it unfiltered). */
    filename = ls_opened_safe_filename(opened);
    printf("filename: %s\n", filename != NULL ? filename : "(none)");
    printf("MIME type: %s\n", ls_opened_mime_type(opened));
    printf("signer: %s\n", ls_cert_subject(ls_opened_signer(opened)));

    signing_time = ls_opened_signing_time(opened);
    if (signing_time == LS_NO_TIME) {
        printf("signing time: (not stated)\n");
    } else {
        time_t t = (time_t)signing_time;
        const struct tm *utc = gmtime(&t);
        char text[32];
        if (utc != NULL && strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", utc) > 0)
            printf("signing time: %s\n", text);
        else
            printf("signing time: %lld (Unix seconds)\n", (long long)signing_time);
    }
    printf("encrypted: %s\n", ls_opened_was_encrypted(opened) ? "yes" : "no");
    printf("wrote %lu bytes to %s\n", (unsigned long)doc_len, argv[5]);
    status = EXIT_SUCCESS;

done:
    ls_opened_free(opened);
    ls_cert_free(sender);
    ls_identity_free(me);
    free(in);
    return status;
}
