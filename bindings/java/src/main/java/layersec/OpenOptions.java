package layersec;

/**
 * Options of {@link LayerSec#open} ({@code ls_open_options}): whom to expect and what to
 * accept. A signed message is opened only when it verifies against the {@link #sender} (or
 * the {@link #partners}).
 *
 * <p>The sender certificate and the partners' store are borrowed for each open call (they must
 * not be closed before); these options do not own them.
 */
public final class OpenOptions {
    // LS_OPEN_* of include/layersec.h.
    static final int ALLOW_UNSIGNED = 1;
    static final int ALLOW_EXPIRED = 1 << 1;
    static final int REJECT_LEGACY = 1 << 2;
    static final int ALLOW_SHA1 = 1 << 3;
    static final int REJECT_3DES = 1 << 4;

    Certificate sender;
    CertStore partners;
    int flags;
    long maxOutput;
    Profile profile = Profile.NONE;

    /**
     * The partner who must have signed. A valid signature by anyone else is a
     * {@link SignerMismatchException}; without a sender a signed message is refused.
     */
    public OpenOptions sender(Certificate sender) {
        this.sender = sender;
        return this;
    }

    /**
     * Partners and trust anchors to verify the signer against: any partner of the store, or a
     * certificate that chains to one of its anchors, may have signed. Borrowed for each open.
     */
    public OpenOptions partners(CertStore partners) {
        this.partners = partners;
        return this;
    }

    /** Accept a document that carries no signature (then {@link Opened#signer()} is null). */
    public OpenOptions allowUnsigned(boolean allow) {
        return flag(ALLOW_UNSIGNED, allow);
    }

    /** Accept a signer certificate outside its validity period. */
    public OpenOptions allowExpired(boolean allow) {
        return flag(ALLOW_EXPIRED, allow);
    }

    /** Refuse 3DES and RSA PKCS#1 v1.5 key transport. */
    public OpenOptions rejectLegacy(boolean reject) {
        return flag(REJECT_LEGACY, reject);
    }

    /** Accept SHA-1 signatures (refused by default). */
    public OpenOptions allowSha1(boolean allow) {
        return flag(ALLOW_SHA1, allow);
    }

    /** Refuse 3DES content encryption. */
    public OpenOptions rejectTripleDes(boolean reject) {
        return flag(REJECT_3DES, reject);
    }

    /** Limit on the opened document's size in bytes (at least 1; default 1 GiB). */
    public OpenOptions maxOutput(long bytes) {
        if (bytes < 1) {
            throw new IllegalArgumentException("maxOutput must be at least 1 byte");
        }
        this.maxOutput = bytes;
        return this;
    }

    /** The legacy algorithms and forms accepted: those of the profile (NONE: all). */
    public OpenOptions profile(Profile profile) {
        this.profile = java.util.Objects.requireNonNull(profile, "profile");
        return this;
    }

    private OpenOptions flag(int bit, boolean on) {
        flags = on ? flags | bit : flags & ~bit;
        return this;
    }
}
