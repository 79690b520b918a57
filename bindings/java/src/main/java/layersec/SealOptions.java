package layersec;

import java.time.Instant;
import java.util.Objects;

/**
 * Options of {@link LayerSec#seal} ({@code ls_seal_options}). Fluent setters on a mutable
 * object; the defaults are the library's: DER output, AES-256-GCM, RSA-OAEP-SHA-256 or ECDH,
 * SignedData with the content inside, compression when it pays, signed now.
 *
 * <pre>{@code
 * new SealOptions().filename("invoice.xml").output(SealOptions.Output.SMIME)
 * }</pre>
 * Not thread-safe while being changed; once set up, it may be passed to any number of seals.
 */
public final class SealOptions {
    /** The form of the sealed message. */
    public enum Output {
        /** DER bytes (the default). */
        DER,
        /** A complete S/MIME entity ({@code application/pkcs7-mime}, base64). */
        SMIME,
        /** PEM text ({@code -----BEGIN CMS-----}). */
        PEM
    }

    // LS_SEAL_* of include/layersec.h.
    static final int NO_COMPRESS = 1;
    static final int FORCE_COMPRESS = 1 << 1;
    static final int CBC = 1 << 2;
    static final int PSS = 1 << 3;
    static final int SMIME = 1 << 4;
    static final int PEM = 1 << 5;
    static final int ENCRYPT_TO_SELF = 1 << 6;
    static final int MULTIPART_SIGNED = 1 << 7;
    static final int RSA_PKCS1V15 = 1 << 8;
    static final int RSA_OAEP_SHA1 = 1 << 9;

    String filename;
    String mimeType;
    int flags;
    int compressionLevel;
    long signingTime;
    Profile profile = Profile.NONE;

    /** The document's file name, carried in its Content-Disposition (null: none). */
    public SealOptions filename(String filename) {
        this.filename = filename;
        return this;
    }

    /** The document's MIME type (null: guessed from the file name, else octet-stream). */
    public SealOptions mimeType(String mimeType) {
        this.mimeType = mimeType;
        return this;
    }

    /** null: compress when it pays (the default); true: always; false: never. */
    public SealOptions compress(Boolean compress) {
        flag(NO_COMPRESS | FORCE_COMPRESS, false);
        return compress == null ? this : flag(compress ? FORCE_COMPRESS : NO_COMPRESS, true);
    }

    /** zlib level 1 (fastest) to 9; 0 is the library's default, 6. */
    public SealOptions compressionLevel(int level) {
        if (level < 0 || level > 9) {
            throw new IllegalArgumentException("compression level must be 1 to 9 (0: default)");
        }
        this.compressionLevel = level;
        return this;
    }

    /** AES-256-CBC EnvelopedData for partners that cannot read AES-256-GCM. */
    public SealOptions cbc(boolean cbc) {
        return flag(CBC, cbc);
    }

    /** RSASSA-PSS signatures instead of PKCS#1 v1.5 (RSA signing keys only). */
    public SealOptions pss(boolean pss) {
        return flag(PSS, pss);
    }

    /** DER (default), S/MIME or PEM. */
    public SealOptions output(Output output) {
        Objects.requireNonNull(output, "output");
        flag(SMIME | PEM, false);
        return flag(output == Output.SMIME ? SMIME : output == Output.PEM ? PEM : 0, true);
    }

    /** Also encrypt to the signer's own certificate (a readable archive copy). */
    public SealOptions encryptToSelf(boolean encryptToSelf) {
        return flag(ENCRYPT_TO_SELF, encryptToSelf);
    }

    /** A multipart/signed entity (detached signature beside the content, as AS2 reads it). */
    public SealOptions multipartSigned(boolean multipartSigned) {
        return flag(MULTIPART_SIGNED, multipartSigned);
    }

    /** The signing time to state (null: now). The Unix epoch itself cannot be stated. */
    public SealOptions signingTime(Instant time) {
        if (time == null) {
            this.signingTime = 0;
            return this;
        }
        long t = time.getEpochSecond();
        if (t == 0) {
            throw new IllegalArgumentException(
                    "signing time 1970-01-01T00:00:00Z cannot be stated (0 means now)");
        }
        this.signingTime = t;
        return this;
    }

    /**
     * RSA recipients: RSA PKCS#1 v1.5 key transport instead of RSA-OAEP-SHA-256 (for AS2-era
     * partners; an EC recipient is then an {@link ArgumentException}).
     */
    public SealOptions rsaPkcs1v15(boolean on) {
        return flag(RSA_PKCS1V15, on);
    }

    /** RSA recipients: RSA-OAEP with SHA-1 instead of SHA-256 (excludes rsaPkcs1v15). */
    public SealOptions rsaOaepSha1(boolean on) {
        return flag(RSA_OAEP_SHA1, on);
    }

    /** What the recipients' software reads; the other options add to it. */
    public SealOptions profile(Profile profile) {
        this.profile = Objects.requireNonNull(profile, "profile");
        return this;
    }

    private SealOptions flag(int bits, boolean on) {
        flags = on ? flags | bits : flags & ~bits;
        return this;
    }
}
