package layersec;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A document in the sent folder and the state of its partner's signed receipt, as
 * {@link Client#receipts(boolean)} lists it (the same as {@code layersec receipts --json}).
 *
 * @param document the document's name in the sent folder
 * @param to the partner's party id
 * @param messageId the MessageId it was sent under
 * @param sentAt when the service's receipt was checked (the document sent), if known
 * @param state waiting, processed, failed or not requested
 * @param refusalClass the class of the partner's refusal when {@link ReceiptState#FAILED}
 * @param receipt what the partner's signed receipt says, when one came
 */
public record Receipt(String document, String to, String messageId, Optional<Instant> sentAt,
        ReceiptState state, Optional<String> refusalClass, Optional<Signed> receipt) {

    /**
     * What a partner's signed receipt (RFC 2634, over our SignedData) says, as checked.
     *
     * @param partner the partner's party id
     * @param disposition {@code processed}
     * @param verified whether every check passed; {@link #error()} says why not
     * @param error the library's message when a check failed
     * @param receivedAt when the partner stored the document, as its signed header says
     * @param signingTime the receipt's signing time
     * @param signerSubject the subject of the certificate that signed the receipt
     * @param payloadMatches whether the payload digest the partner signed is the one we sent
     * @param receiptMessageId the receipt's own MessageId
     * @param receiptFile the receipt as received ({@code sent/<name>.receipt.p7m})
     * @param checkedAt when we checked it
     */
    public record Signed(String partner, String disposition, boolean verified,
            Optional<String> error, String receivedAt, Optional<Instant> signingTime,
            Optional<String> signerSubject, Optional<Boolean> payloadMatches,
            String receiptMessageId, Optional<Path> receiptFile, Instant checkedAt) {}

    /** The list of {@code ls_client_receipts}'s JSON text. */
    static List<Receipt> listFromJson(String json) {
        Map<String, Object> top = Json.object(Json.parse(json), "the receipts");
        List<Receipt> out = new ArrayList<>();
        for (Object o : Json.array(top.get("receipts"), "receipts")) {
            Map<String, Object> r = Json.object(o, "a receipt");
            Map<String, Object> signed = r.get("receipt") == null ? null
                    : Json.object(r.get("receipt"), "receipt");
            out.add(new Receipt(text(r, "document"), text(r, "to"), text(r, "message_id"),
                    time(r, "sent_at"), ReceiptState.of(text(r, "state")),
                    optText(r, "class"), Optional.ofNullable(signed).map(Receipt::signed)));
        }
        return out;
    }

    private static Signed signed(Map<String, Object> s) {
        Optional<String> error = Optional.ofNullable(s.get("error"))
                .map(e -> Json.object(e, "error"))
                .map(e -> e.get("name") + ": " + e.get("message"));
        return new Signed(text(s, "partner"), text(s, "disposition"),
                Boolean.TRUE.equals(s.get("verified")), error, text(s, "received_at"),
                time(s, "signing_time"), optText(s, "signer_subject"),
                Optional.ofNullable((Boolean) s.get("payload_matches")),
                text(s, "receipt_message_id"),
                optText(s, "receipt_file").map(Paths::get),
                time(s, "checked_at").orElse(Instant.EPOCH));
    }

    private static String text(Map<String, Object> m, String k) {
        return optText(m, k).orElse("");
    }

    private static Optional<String> optText(Map<String, Object> m, String k) {
        Object v = m.get(k);
        return v instanceof String ? Optional.of((String) v) : Optional.empty();
    }

    private static Optional<Instant> time(Map<String, Object> m, String k) {
        Object v = m.get(k);
        return v instanceof Long ? Optional.of(Instant.ofEpochSecond((Long) v)) : Optional.empty();
    }
}
