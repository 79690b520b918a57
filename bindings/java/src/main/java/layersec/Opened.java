package layersec;

import java.time.Instant;
import java.util.Optional;

/**
 * An opened document with the proof of who sent it. A value: the native {@code ls_opened} was
 * read and freed by {@link LayerSec#open}. The signer's certificate is kept as PEM and made into
 * a {@link Certificate} (a native handle) only when {@link #signer()} is first called; that one
 * is closed by {@link #close()} (else by its Cleaner). Thread-safe.
 */
public final class Opened implements AutoCloseable {
    private final byte[] document;
    private final String filename;
    private final String safeFilename;
    private final String mimeType;
    private final byte[] signerPem;
    private final String signerSubject;
    private Certificate signer;
    private boolean closed;
    private final Instant signingTime;
    private final boolean encrypted;
    private final long size;

    Opened(byte[] document, String filename, String safeFilename, String mimeType,
            byte[] signerPem, String signerSubject, Instant signingTime, boolean encrypted,
            long size) {
        this.document = document;
        this.filename = filename;
        this.safeFilename = safeFilename;
        this.mimeType = mimeType;
        this.signerPem = signerPem;
        this.signerSubject = signerSubject;
        this.signingTime = signingTime;
        this.encrypted = encrypted;
        this.size = size;
    }

    /** The document (the array itself, not a copy: it belongs to the caller). */
    public byte[] document() {
        return document;
    }

    /**
     * The file name exactly as the sender stated it (may contain directories or {@code ..}:
     * to write into a folder use {@link #safeFilename()}), if any.
     */
    public Optional<String> filename() {
        return Optional.ofNullable(filename);
    }

    /** The file name reduced to a safe base name, if any is left. */
    public Optional<String> safeFilename() {
        return Optional.ofNullable(safeFilename);
    }

    /** The document's MIME type, e.g. {@code "application/xml"}. */
    public String mimeType() {
        return mimeType;
    }

    /**
     * The verified signer's certificate (a copy owned by this object, made on the first call),
     * or null if unsigned. Throws {@link ClosedException} once this object is closed.
     */
    public synchronized Certificate signer() {
        if (closed) {
            throw new ClosedException("Opened");
        }
        if (signer == null && signerPem != null) {
            try {
                signer = Certificate.fromBytes(signerPem);
            } catch (LayerSecException e) {
                // The library's own PEM of a certificate it verified: only memory can fail.
                throw new IllegalStateException("layersec: cannot copy the signer certificate", e);
            }
        }
        return signer;
    }

    /** The verified signer's subject name, or null if unsigned. */
    public String signerSubject() {
        return signerSubject;
    }

    /** The signing time the signer stated, if any. */
    public Optional<Instant> signingTime() {
        return Optional.ofNullable(signingTime);
    }

    /** Whether an encryption layer was removed (false: the message was only signed). */
    public boolean wasEncrypted() {
        return encrypted;
    }

    /** The document's size in bytes. */
    public long size() {
        return size;
    }

    /** Closes the signer's certificate, if {@link #signer()} made it. */
    @Override
    public synchronized void close() {
        closed = true;
        if (signer != null) {
            signer.close();
        }
    }

    @Override
    public String toString() {
        // Not the document itself: it may be large, and confidential in logs.
        return "Opened(document=<" + document.length + " bytes>, filename=" + filename
                + ", mimeType=" + mimeType + ", signer=" + signerSubject + ", signingTime="
                + signingTime + ", encrypted=" + encrypted + ")";
    }
}
