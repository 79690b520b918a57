/*
 * send_poll.c — send a document to a partner through a Layer Security Messaging Service, then
 * fetch it as that partner, with liblayersec's client.
 *
 *   send_poll SENDER_CONFIG RECIPIENT_CONFIG FILE TO
 *
 * With the sender's client configuration (the file `layersec init` writes), sends FILE to the
 * partner TO: the document is sealed for TO, carried in a signed AS4 message to the service,
 * and the service's signed receipt is checked. Prints the MessageId. Then, with the recipient's
 * configuration, polls the service: each document is verified, written to the recipient's
 * inbox folder and receipted; prints its path, sender, MessageId and size.
 *
 * Then the sender polls too: the recipient's client answered the document with a signed
 * receipt (RFC 2634), which the sender verifies and records; prints its state
 * (ls_client_receipt_state).
 *
 * Exits 0 only if exactly one document arrived, the one sent, with the size of FILE, and its
 * signed receipt came back (state "processed"). Needs a
 * running service where both parties are registered, and each party's certificate in the
 * other's partners folder (see ls-ffi/tests/client.rs, which sets all that up).
 */
#include "layersec.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints why an ls_ call failed: the code's name and the library's explanation. */
static void report(const char *what, ls_result rc)
{
    fprintf(stderr, "send_poll: %s failed: %s (%d): %s\n", what, ls_result_name(rc), (int)rc,
            ls_last_error_message());
}

/* What the poll callback sees, through its userdata pointer. */
struct poll_state {
    const char *expected_id; /* the MessageId we sent */
    uint64_t expected_size;
    size_t documents;
    size_t matching;         /* documents with that MessageId and size */
};

/* Called once per document written to the inbox. Everything `doc` points to is borrowed and
 * valid only during this call: copy what you keep. Return 0 to go on, non-zero to stop the poll
 * after this document (it is written and receipted all the same). */
static int32_t on_document(void *userdata, const ls_received *doc)
{
    struct poll_state *st = (struct poll_state *)userdata;

    st->documents++;
    printf("received: %s\n", doc->path);
    printf("  sender: %s\n", doc->sender);
    printf("  message id: %s\n", doc->message_id);
    printf("  size: %llu bytes\n", (unsigned long long)doc->size);
    if (strcmp(doc->message_id, st->expected_id) == 0 && doc->size == st->expected_size)
        st->matching++;
    return 0;
}

int main(int argc, char **argv)
{
    ls_client *sender = NULL;     /* handles start as NULL: freeing NULL is a no-op */
    ls_client *recipient = NULL;
    ls_bytes message_id = {NULL, 0};
    ls_send_options opts;
    struct poll_state st;
    uint8_t *doc = NULL;
    size_t doc_len = 0;
    size_t count = 0, polled = 0;
    int32_t receipt = LS_RECEIPT_UNKNOWN;
    ls_result rc;
    int status = EXIT_FAILURE;

    if (argc != 5) {
        fprintf(stderr, "usage: send_poll SENDER_CONFIG RECIPIENT_CONFIG FILE TO\n");
        return 2;
    }

    /* Only to know what to expect at the other end: ls_client_send_file reads it itself. */
    if (read_file(argv[3], &doc, &doc_len) != 0)
        goto done;

    rc = ls_client_new_from_config(argv[1], &sender);
    if (rc != LS_OK) {
        report("loading the sender's configuration (ls_client_new_from_config)", rc);
        goto done;
    }

    /* Options: always start from ls_send_options_init. NULL fields take the configuration's
     * [defaults]; e.g. set opts.conversation to continue a conversation. */
    ls_send_options_init(&opts);
    rc = ls_client_send_file(sender, argv[3], argv[4], &opts, &message_id);
    if (rc != LS_OK) {
        if (message_id.data != NULL) {
            /* Not lost: queued in the sender's journal, retried with the same MessageId. */
            fprintf(stderr, "send_poll: not delivered yet, queued for retry as MessageId %s\n",
                    (const char *)message_id.data);
        }
        report("sending (ls_client_send_file)", rc);
        goto done;
    }
    /* ls_bytes are NUL-terminated: the MessageId is also a C string. */
    printf("sent: MessageId %s\n", (const char *)message_id.data);

    rc = ls_client_new_from_config(argv[2], &recipient);
    if (rc != LS_OK) {
        report("loading the recipient's configuration (ls_client_new_from_config)", rc);
        goto done;
    }
    st.expected_id = (const char *)message_id.data;
    st.expected_size = (uint64_t)doc_len;
    st.documents = 0;
    st.matching = 0;
    rc = ls_client_poll(recipient, on_document, &st, &count);
    if (rc != LS_OK) {
        report("polling (ls_client_poll)", rc);
        goto done;
    }
    printf("polled: %lu document(s)\n", (unsigned long)count);

    /* The sender's poll takes the partner's signed receipt (no document comes to the sender
     * here, so no callback is needed: NULL; count says so). */
    polled = count;
    rc = ls_client_poll(sender, NULL, NULL, &count);
    if (rc != LS_OK) {
        report("polling for the receipt (ls_client_poll)", rc);
        goto done;
    }
    rc = ls_client_receipt_state(sender, (const char *)message_id.data, &receipt);
    if (rc != LS_OK) {
        report("asking for the receipt (ls_client_receipt_state)", rc);
        goto done;
    }
    printf("receipt: %s\n", receipt == LS_RECEIPT_PROCESSED ? "processed"
                            : receipt == LS_RECEIPT_WAITING  ? "waiting"
                            : receipt == LS_RECEIPT_FAILED   ? "failed"
                                                             : "none");

    if (polled == 1 && count == 0 && st.documents == 1 && st.matching == 1 &&
        receipt == LS_RECEIPT_PROCESSED) {
        printf("send_poll: OK, the document arrived (%lu bytes)\n", (unsigned long)doc_len);
        status = EXIT_SUCCESS;
    } else {
        fprintf(stderr, "send_poll: expected exactly the one document sent (%lu bytes) and its "
                "receipt, got %lu document(s), %lu matching, receipt state %d\n",
                (unsigned long)doc_len, (unsigned long)polled, (unsigned long)st.matching,
                (int)receipt);
    }

done:
    ls_client_free(recipient);
    ls_client_free(sender);
    ls_bytes_free(&message_id);
    free(doc);
    return status;
}
