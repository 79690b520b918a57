package layersec;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Objects;

/**
 * An X.509 certificate ({@code ls_cert}): a partner's, a trust anchor or our own.
 * Immutable and thread-safe: any number of threads may use one at once.
 */
public final class Certificate extends NativeHandle {
    Certificate(long ptr) {
        super(ptr, Native::certFree);
    }

    /** Loads a PEM (the first certificate) or DER file. */
    public static Certificate load(Path path) throws LayerSecException {
        Objects.requireNonNull(path, "path");
        LayerSec.loadNative();
        return new Certificate(Native.certLoad(Utf8.path(path, "path")));
    }

    /** A certificate from PEM or DER bytes. */
    public static Certificate fromBytes(byte[] data) throws LayerSecException {
        Objects.requireNonNull(data, "data");
        LayerSec.loadNative();
        return new Certificate(Native.certFromMemory(data));
    }

    /** The subject name, e.g. {@code "CN=acme, O=ACME Corp"}. */
    public String subject() {
        long p = acquire();
        try {
            String s = Utf8.text(Native.certSubject(p));
            return s == null ? "" : s;
        } finally {
            release();
        }
    }

    /** The certificate as PEM text (ASCII bytes). */
    public byte[] toPem() throws LayerSecException {
        return use(Native::certToPem);
    }

    /** The PEM text as a String. */
    public String toPemString() throws LayerSecException {
        return new String(toPem(), StandardCharsets.US_ASCII);
    }

    @Override
    public String toString() {
        return isClosed() ? "Certificate(closed)" : "Certificate(" + subject() + ")";
    }
}
