package layersec;

import java.nio.file.Path;
import java.time.Instant;
import java.util.Objects;
import java.util.Optional;

/**
 * A document {@link Client#poll()} wrote to the inbox folder, with its metadata (the same is in
 * {@code <path>.meta.json}). An immutable value.
 */
public final class Received {
    private final Path path;
    private final String name;
    private final String sender;
    private final String messageId;
    private final String conversationId;
    private final long size;
    private final Instant signingTime;
    private final Instant receivedAt;

    Received(Path path, String name, String sender, String messageId, String conversationId,
            long size, Instant signingTime, Instant receivedAt) {
        this.path = path;
        this.name = name;
        this.sender = sender;
        this.messageId = messageId;
        this.conversationId = conversationId;
        this.size = size;
        this.signingTime = signingTime;
        this.receivedAt = receivedAt;
    }

    /** The document in the inbox folder. */
    public Path path() {
        return path;
    }

    /** Its file name there: the sender's, made safe, with -1, -2… if it was taken. */
    public String name() {
        return name;
    }

    /** The sender's party id, verified: message and document are signed with its certificate. */
    public String sender() {
        return sender;
    }

    public String messageId() {
        return messageId;
    }

    public String conversationId() {
        return conversationId;
    }

    /** The document's size in bytes. */
    public long size() {
        return size;
    }

    /** The signing time the sender stated, if it stated one. */
    public Optional<Instant> signingTime() {
        return Optional.ofNullable(signingTime);
    }

    /** When the document was written to the inbox. */
    public Instant receivedAt() {
        return receivedAt;
    }

    /** The metadata file beside the document ({@code <path>.meta.json}). */
    public Path metadataPath() {
        return path.resolveSibling(path.getFileName() + ".meta.json");
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Received)) {
            return false;
        }
        Received r = (Received) o;
        return size == r.size && path.equals(r.path) && name.equals(r.name)
                && sender.equals(r.sender) && messageId.equals(r.messageId)
                && conversationId.equals(r.conversationId)
                && Objects.equals(signingTime, r.signingTime) && receivedAt.equals(r.receivedAt);
    }

    @Override
    public int hashCode() {
        return Objects.hash(path, messageId);
    }

    @Override
    public String toString() {
        return "Received[" + name + " from " + sender + ", " + size + " bytes, " + messageId + "]";
    }
}
