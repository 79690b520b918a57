package layersec;

import java.nio.file.Path;
import java.util.Objects;

/**
 * Our own identity ({@code ls_identity}): a private key, its certificate and the chain to its
 * CA. Immutable and thread-safe: any number of threads may seal and open with one at once.
 *
 * <p>Passwords are {@code char[]}: each method encodes the password into a byte array of its
 * own, passes it to the library, and wipes that array (and the native copy) before returning,
 * also on failure. The caller's array is left as it was: wipe it when you no longer need it
 * ({@code Arrays.fill(password, '\0')}).
 */
public final class Identity extends NativeHandle {
    Identity(long ptr) {
        super(ptr, Native::identityFree);
    }

    /**
     * Loads a PKCS#12 file ({@code .p12}/{@code .pfx}; then {@code certPath} is ignored) or a
     * PEM private key (PKCS#8, encrypted PKCS#8 or PKCS#1) with its certificate and chain in
     * {@code certPath} (null: in the key file). {@code password} (nullable) decrypts an
     * encrypted key or the PKCS#12 file.
     */
    public static Identity load(Path keyPath, Path certPath, char[] password)
            throws LayerSecException {
        Objects.requireNonNull(keyPath, "keyPath");
        LayerSec.loadNative();
        byte[] key = Utf8.path(keyPath, "keyPath");
        byte[] cert = Utf8.path(certPath, "certPath");
        byte[] pw = Utf8.password(password);
        try {
            return new Identity(Native.identityLoad(key, cert, pw));
        } finally {
            Utf8.wipe(pw);
        }
    }

    /** {@link #load(Path, Path, char[])} without a password. */
    public static Identity load(Path keyPath, Path certPath) throws LayerSecException {
        return load(keyPath, certPath, null);
    }

    /**
     * Like {@link #load(Path, Path, char[])}, from memory: {@code key} is PKCS#12 DER or a PEM
     * key; {@code cert} (nullable) the PEM certificate(s) for a PEM key.
     */
    public static Identity fromPem(byte[] key, byte[] cert, char[] password)
            throws LayerSecException {
        Objects.requireNonNull(key, "key");
        LayerSec.loadNative();
        byte[] pw = Utf8.password(password);
        try {
            return new Identity(Native.identityFromMemory(key, cert, pw));
        } finally {
            Utf8.wipe(pw);
        }
    }

    /**
     * A new key pair with a self-signed certificate (CN = {@code partyId}, 1 to 64 printable
     * characters) valid for {@code days} days (0: expires at once, for tests) and a CSR.
     * {@code password} (nullable) encrypts the key PEM that {@link #keyPem()} exports.
     */
    public static Identity generate(String partyId, KeyType keyType, int days, char[] password)
            throws LayerSecException {
        Objects.requireNonNull(partyId, "partyId");
        Objects.requireNonNull(keyType, "keyType");
        if (days < 0) {
            throw new IllegalArgumentException("days must not be negative");
        }
        LayerSec.loadNative();
        byte[] pw = Utf8.password(password);
        try {
            return new Identity(Native.identityGenerate(
                    Utf8.cstr(partyId, "partyId"), keyType.value, days, pw));
        } finally {
            Utf8.wipe(pw);
        }
    }

    /** {@link #generate(String, KeyType, int, char[])} valid for 730 days, key unencrypted. */
    public static Identity generate(String partyId, KeyType keyType) throws LayerSecException {
        return generate(partyId, keyType, 730, null);
    }

    /**
     * Our certificate, as a new handle of its own (independent of this identity: close it when
     * done with it).
     */
    public Certificate certificate() throws LayerSecException {
        return use(p -> new Certificate(Native.identityCert(p)));
    }

    /**
     * The private key of a generated identity as PKCS#8 PEM (encrypted when a password was given
     * to {@link #generate}); an {@link ArgumentException} for a loaded identity.
     */
    public byte[] keyPem() throws LayerSecException {
        return use(p -> Native.identityKeyPem(p));
    }

    /** The certificate signing request (PEM) of a generated identity, to send to a CA. */
    public byte[] csrPem() throws LayerSecException {
        return use(p -> Native.identityCsrPem(p));
    }

    @Override
    public String toString() {
        return isClosed() ? "Identity(closed)" : "Identity";
    }
}
