package layersec;

/** The state of a partner's signed receipt of a sent document ({@code LS_RECEIPT_*}). */
public enum ReceiptState {
    /** No document sent with this MessageId is in the sent folder. */
    UNKNOWN,
    /** Sent without asking for a receipt. */
    NOT_REQUESTED,
    /** Asked for, not arrived yet (receipts arrive with {@link Client#poll()}). */
    WAITING,
    /** The partner's end system signed that it received, verified and stored the document. */
    PROCESSED,
    /** The partner refused the document. */
    FAILED;

    static ReceiptState of(int value) {
        ReceiptState[] all = values();
        return value >= 0 && value < all.length ? all[value] : UNKNOWN;
    }
}
