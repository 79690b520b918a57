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

    String filename;
    String mimeType;
    Boolean compress;
    boolean cbc;
    boolean pss;
    Output output = Output.DER;
    boolean encryptToSelf;
    boolean multipartSigned;
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
        this.compress = compress;
        return this;
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
        this.cbc = cbc;
        return this;
    }

    /** RSASSA-PSS signatures instead of PKCS#1 v1.5 (RSA signing keys only). */
    public SealOptions pss(boolean pss) {
        this.pss = pss;
        return this;
    }

    /** DER (default), S/MIME or PEM. */
    public SealOptions output(Output output) {
        this.output = Objects.requireNonNull(output, "output");
        return this;
    }

    /** Also encrypt to the signer's own certificate (a readable archive copy). */
    public SealOptions encryptToSelf(boolean encryptToSelf) {
        this.encryptToSelf = encryptToSelf;
        return this;
    }

    /** A multipart/signed entity (detached signature beside the content, as AS2 reads it). */
    public SealOptions multipartSigned(boolean multipartSigned) {
        this.multipartSigned = multipartSigned;
        return this;
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

    /** What the recipients' software reads; the other options add to it. */
    public SealOptions profile(Profile profile) {
        this.profile = Objects.requireNonNull(profile, "profile");
        return this;
    }

    int flags() {
        int f = 0;
        if (compress != null) {
            f |= compress ? FORCE_COMPRESS : NO_COMPRESS;
        }
        if (cbc) {
            f |= CBC;
        }
        if (pss) {
            f |= PSS;
        }
        if (output == Output.SMIME) {
            f |= SMIME;
        } else if (output == Output.PEM) {
            f |= PEM;
        }
        if (encryptToSelf) {
            f |= ENCRYPT_TO_SELF;
        }
        if (multipartSigned) {
            f |= MULTIPART_SIGNED;
        }
        return f;
    }
}
