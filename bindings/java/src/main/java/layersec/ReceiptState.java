package layersec;

/** The state of a partner's signed receipt of a sent document ({@code LS_RECEIPT_*}). */
public enum ReceiptState {
    /** No document sent with this MessageId is in the sent folder. */
    UNKNOWN("unknown"),
    /** Sent without asking for a receipt. */
    NOT_REQUESTED("not_requested"),
    /** Asked for, not arrived yet (receipts arrive with {@link Client#poll()}). */
    WAITING("waiting"),
    /** The partner's end system signed that it received, verified and stored the document. */
    PROCESSED("processed"),
    /** The partner refused the document. */
    FAILED("failed");

    private final String text;

    ReceiptState(String text) {
        this.text = text;
    }

    /** The name the library's JSON and the C examples use, e.g. {@code "processed"}. */
    public String text() {
        return text;
    }

    /** By {@code LS_RECEIPT_*} value (the enum's order); unknown values are UNKNOWN. */
    static ReceiptState of(int value) {
        ReceiptState[] all = values();
        return value >= 0 && value < all.length ? all[value] : UNKNOWN;
    }

    /** By the JSON's text; unknown texts are UNKNOWN. */
    static ReceiptState of(String text) {
        for (ReceiptState s : values()) {
            if (s.text.equals(text)) {
                return s;
            }
        }
        return UNKNOWN;
    }
}
