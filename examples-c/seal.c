/*
 * seal.c — seal a document for a partner with liblayersec.
 *
 *   seal signer_key signer_cert recipient_cert infile outfile [filename]
 *
 * Signs the document in `infile` with our identity (signer_key + signer_cert, PEM), encrypts it
 * so that only the partner whose certificate is `recipient_cert` can read it, and writes the
 * sealed message (S/MIME, CMS in DER) to `outfile`. `filename` is the file name the recipient
 * will see (optional).
 */
#include "layersec.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

/* Prints why an ls_ call failed: the code's name and the library's explanation. */
static void report(const char *what, ls_result rc)
{
    fprintf(stderr, "seal: %s failed: %s (%d): %s\n", what, ls_result_name(rc), (int)rc,
            ls_last_error_message());
}

int main(int argc, char **argv)
{
    ls_identity *signer = NULL;   /* handles start as NULL: freeing NULL is a no-op */
    ls_cert *recipient = NULL;
    ls_bytes sealed = {NULL, 0};  /* filled by ls_seal, given back with ls_bytes_free */
    uint8_t *doc = NULL;
    size_t doc_len = 0;
    ls_seal_options opts;
    const ls_cert *recipients[1];
    ls_result rc;
    int status = EXIT_FAILURE;

    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: seal signer_key signer_cert recipient_cert infile outfile [filename]\n");
        return 2;
    }

    /* Our identity: the private key and its certificate (NULL: the key is not encrypted). */
    rc = ls_identity_load(argv[1], argv[2], NULL, &signer);
    if (rc != LS_OK) {
        report("loading our identity (ls_identity_load)", rc);
        goto done;
    }

    /* The partner we seal for. */
    rc = ls_cert_load(argv[3], &recipient);
    if (rc != LS_OK) {
        report("loading the recipient's certificate (ls_cert_load)", rc);
        goto done;
    }

    if (read_file(argv[4], &doc, &doc_len) != 0)
        goto done;

    /* Options: always start from ls_seal_options_init, then change what you need. The
     * defaults are DER output, AES-256-GCM, compression when it pays. */
    ls_seal_options_init(&opts);
    if (argc == 7)
        opts.filename = argv[6]; /* the MIME type is guessed from it */

    recipients[0] = recipient; /* any number of recipients may read the same message */
    rc = ls_seal(signer, recipients, 1, doc, doc_len, &opts, &sealed);
    if (rc != LS_OK) {
        report("ls_seal", rc);
        goto done;
    }

    if (write_file(argv[5], sealed.data, sealed.len) != 0)
        goto done;
    printf("sealed %lu bytes for %s into %s (%lu bytes)\n", (unsigned long)doc_len,
           ls_cert_subject(recipient), argv[5], (unsigned long)sealed.len);
    status = EXIT_SUCCESS;

done:
    ls_bytes_free(&sealed);
    ls_cert_free(recipient);
    ls_identity_free(signer);
    free(doc);
    return status;
}
