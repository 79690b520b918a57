package layersec;

/**
 * {@link Client#send} or {@link Client#sendFile} did not deliver the document now, but kept it:
 * the attempt failed for a reason that may pass (the service could not be reached, or answered
 * in a way worth retrying), and the send waits in the journal of the configuration's state
 * folder under {@link #messageId()}. {@link Client#runDueJobs()} (or the client daemon,
 * {@code layersec run}) pushes it again with the same MessageId.
 *
 * <p>{@link #code()} and {@link #name()} are those of the failed attempt, which is the
 * {@link #getCause() cause} (usually a {@link ServiceException}). Every other
 * {@link LayerSecException} from a send means nothing was queued.
 */
public final class QueuedForRetryException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    private final String messageId;

    private final boolean transientFailure;

    QueuedForRetryException(String messageId, LayerSecException cause) {
        super(cause.code(), cause.name(),
                "queued for retry as " + messageId + " after: " + cause.libraryMessage());
        this.messageId = messageId;
        this.transientFailure = cause.isTransient();
        initCause(cause);
    }

    /** The MessageId the send keeps when it is retried: track it with it. */
    public String messageId() {
        return messageId;
    }

    /** The failed attempt. */
    @Override
    public synchronized LayerSecException getCause() {
        return (LayerSecException) super.getCause();
    }

    /**
     * The library's verdict on the failed attempt, as the cause carries it: true for a send
     * queued for retry (the C ABI sets it for every queued send).
     */
    @Override
    public boolean isTransient() {
        return transientFailure;
    }
}
