package layersec;

import java.time.Instant;
import java.util.Optional;

/**
 * An opened document with the proof of who sent it. A value: the native {@code ls_opened} was
 * read and freed by {@link LayerSec#open}; only {@link #signer()} holds a native handle, which
 * {@link #close()} closes (else its Cleaner does).
 */
public final class Opened implements AutoCloseable {
    private final byte[] document;
    private final String filename;
    private final String safeFilename;
    private final String mimeType;
    private final Certificate signer;
    private final String signerSubject;
    private final Instant signingTime;
    private final boolean encrypted;
    private final long size;

    Opened(byte[] document, String filename, String safeFilename, String mimeType,
            Certificate signer, String signerSubject, Instant signingTime, boolean encrypted,
            long size) {
        this.document = document;
        this.filename = filename;
        this.safeFilename = safeFilename;
        this.mimeType = mimeType;
        this.signer = signer;
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

    /** The verified signer's certificate (a copy owned by this object), or null if unsigned. */
    public Certificate signer() {
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

    /** Closes the signer's certificate. */
    @Override
    public void close() {
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
