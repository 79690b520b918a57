package layersec.examples;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import layersec.Client;
import layersec.LayerSecException;
import layersec.QueuedForRetryException;
import layersec.ReceiptState;

/**
 * Send a document to a partner through a Layer Security Messaging Service, then fetch it as
 * that partner, with the Java binding's Client (as examples-c/send_poll.c).
 *
 * <pre>
 *   send-poll SENDER_CONFIG RECIPIENT_CONFIG FILE TO
 * </pre>
 *
 * With the sender's configuration (the file {@code layersec init} writes) sends FILE to the
 * partner TO and prints the MessageId; polls the service with the recipient's configuration and
 * prints each document that arrived; polls as the sender, which fetches the recipient's signed
 * receipt, and prints its state. Exits 0 only if exactly the document sent arrived (its
 * MessageId and size) and its receipt is "processed"; 1 otherwise (a failure prints its LS_ERR_*
 * name and message on stderr); 2 on a usage error. {@code make example} runs it against a
 * throwaway service.
 */
public final class SendPoll {
    private SendPoll() {}

    public static void main(String[] args) {
        if (args.length != 4) {
            System.err.println("usage: send-poll SENDER_CONFIG RECIPIENT_CONFIG FILE TO");
            System.exit(2);
        }
        System.exit(run(Paths.get(args[0]), Paths.get(args[1]), Paths.get(args[2]), args[3]));
    }

    private static int run(Path senderConfig, Path recipientConfig, Path file, String to) {
        String what = "loading the sender's configuration";
        try (Client sender = Client.fromConfig(senderConfig)) {
            long size = Files.size(file); // only to know what to expect at the other end
            what = "sending";
            String mid;
            try {
                mid = sender.sendFile(file, to);
            } catch (QueuedForRetryException q) {
                // Not lost: kept in the sender's journal, retried with the same MessageId.
                System.err.println("send-poll: not delivered yet, queued for retry as MessageId "
                        + q.messageId());
                throw q;
            }
            System.out.println("sent: MessageId " + mid);

            what = "polling";
            int documents = 0;
            int matching = 0;
            try (Client recipient = Client.fromConfig(recipientConfig)) {
                for (var r : recipient.poll()) {
                    documents++;
                    System.out.println("received: " + r.path());
                    System.out.println("  sender: " + r.sender());
                    System.out.println("  message id: " + r.messageId());
                    System.out.println("  size: " + r.size() + " bytes");
                    if (r.messageId().equals(mid) && r.size() == size) {
                        matching++;
                    }
                }
            }
            System.out.println("polled: " + documents + " document(s)");

            // The sender's poll fetches the partner's signed receipt (no document comes).
            what = "polling for the receipt";
            int more = sender.poll().size();
            ReceiptState receipt = sender.receiptState(mid);
            System.out.println("receipt: " + receipt.text());
            if (documents == 1 && matching == 1 && more == 0
                    && receipt == ReceiptState.PROCESSED) {
                System.out.println("send-poll: OK, the document arrived (" + size + " bytes)");
                return 0;
            }
            System.err.println("send-poll: expected exactly the one document sent (" + size
                    + " bytes) and its receipt, got " + documents + " document(s), " + matching
                    + " matching, receipt state " + receipt.text());
            return 1;
        } catch (LayerSecException e) {
            System.err.printf("send-poll: %s failed: %s (%d): %s%n", what, e.name(), e.code(),
                    e.libraryMessage());
            return 1;
        } catch (IOException e) {
            System.err.println("send-poll: cannot read " + file + ": " + e);
            return 1;
        }
    }
}
