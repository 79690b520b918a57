package layersec;

import java.nio.file.Path;
import java.util.Objects;

/**
 * Partner certificates, each optionally named by a party id, and trust anchors (CA certificates
 * that vouch for partners not listed one by one): {@code ls_certstore}. Give it to
 * {@link OpenOptions#partners(CertStore)} to accept a document signed by any of them.
 *
 * <p><b>Threads.</b> Fill it first; once filled, any number of threads may open with it at
 * once. The add methods take a lock shared with nothing else, so two threads adding at once
 * wait for each other; adding while other threads open with the same store is not allowed by
 * the C library and must be avoided by the caller (fill, then share).
 */
public final class CertStore extends NativeHandle {
    private CertStore(long ptr) {
        super(ptr, Native::certstoreFree);
    }

    /** A new, empty store. */
    public CertStore() throws LayerSecException {
        this(newStore());
    }

    private static long newStore() throws LayerSecException {
        LayerSec.loadNative();
        return Native.certstoreNew();
    }

    /**
     * A store loaded from a folder: each {@code *.pem}, {@code *.crt}, {@code *.cer} or
     * {@code *.der} directly in it is a partner named by its file name without extension; the
     * files in its subfolder {@code anchors/} are trust anchors.
     */
    public static CertStore loadDir(Path path) throws LayerSecException {
        Objects.requireNonNull(path, "path");
        LayerSec.loadNative();
        return new CertStore(Native.certstoreLoadDir(Utf8.path(path, "path")));
    }

    /** Adds (a copy of) a partner certificate, optionally under a party id (nullable). */
    public synchronized void addPartner(Certificate cert, String partyId)
            throws LayerSecException {
        Objects.requireNonNull(cert, "cert");
        byte[] id = Utf8.cstr(partyId, "partyId");
        use(s -> cert.use(c -> {
            Native.certstoreAddPartner(s, c, id);
            return null;
        }));
    }

    /** Adds (a copy of) a trust anchor (a CA certificate). */
    public synchronized void addAnchor(Certificate cert) throws LayerSecException {
        Objects.requireNonNull(cert, "cert");
        use(s -> cert.use(c -> {
            Native.certstoreAddAnchor(s, c);
            return null;
        }));
    }

    @Override
    public String toString() {
        return isClosed() ? "CertStore(closed)" : "CertStore";
    }
}
