/*
 * keygen.c — make a new identity (private key + self-signed certificate) with liblayersec.
 *
 *   keygen party_id rsa|ec key_out cert_out
 *
 * Writes the private key (PKCS#8 PEM, unencrypted: keep it private!) to key_out and the
 * certificate (PEM) to cert_out. Give the certificate to your partners; they seal for you with
 * it and check your signatures against it. In production a CA signs the certificate instead:
 * ls_identity_csr_pem() gives the request to send it.
 */
#include "layersec.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints why an ls_ call failed: the code's name and the library's explanation. */
static void report(const char *what, ls_result rc)
{
    fprintf(stderr, "keygen: %s failed: %s (%d): %s\n", what, ls_result_name(rc), (int)rc,
            ls_last_error_message());
}

int main(int argc, char **argv)
{
    ls_identity *identity = NULL; /* handles start as NULL: freeing NULL is a no-op */
    ls_cert *cert = NULL;
    ls_bytes key_pem = {NULL, 0}; /* byte buffers too: ls_bytes_free on {NULL, 0} is a no-op */
    ls_bytes cert_pem = {NULL, 0};
    ls_key_type key_type;
    ls_result rc;
    int status = EXIT_FAILURE;

    if (argc != 5 || (strcmp(argv[2], "rsa") != 0 && strcmp(argv[2], "ec") != 0)) {
        fprintf(stderr, "usage: keygen party_id rsa|ec key_out cert_out\n");
        return 2;
    }
    key_type = strcmp(argv[2], "rsa") == 0 ? LS_KEY_RSA_2048 : LS_KEY_EC_P256;

    /* A key pair and a certificate valid for 30 days; NULL: do not encrypt the key PEM. */
    rc = ls_identity_generate(argv[1], key_type, 30, NULL, &identity);
    if (rc != LS_OK) {
        report("ls_identity_generate", rc);
        goto done;
    }

    rc = ls_identity_key_pem(identity, &key_pem);
    if (rc != LS_OK) {
        report("ls_identity_key_pem", rc);
        goto done;
    }

    /* The certificate is a handle of its own, which we free ourselves. */
    rc = ls_identity_cert(identity, &cert);
    if (rc != LS_OK) {
        report("ls_identity_cert", rc);
        goto done;
    }
    rc = ls_cert_to_pem(cert, &cert_pem);
    if (rc != LS_OK) {
        report("ls_cert_to_pem", rc);
        goto done;
    }

    if (write_file(argv[3], key_pem.data, key_pem.len) != 0 ||
        write_file(argv[4], cert_pem.data, cert_pem.len) != 0)
        goto done;

    printf("made %s: key %s, certificate %s (%s)\n", argv[1], argv[3], argv[4],
           ls_cert_subject(cert));
    status = EXIT_SUCCESS;

done:
    /* Give everything back to the library, in any order. */
    ls_bytes_free(&cert_pem);
    ls_bytes_free(&key_pem);
    ls_cert_free(cert);
    ls_identity_free(identity);
    return status;
}
