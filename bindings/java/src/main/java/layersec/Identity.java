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
     * Loads an identity whose private key stays on a PKCS#11 token (an HSM, a smart card,
     * SoftHSM2): signing and decryption happen on the token, the key never enters this process.
     *
     * <p>{@code uri} is an RFC 7512 URI naming the token and the key, e.g.
     * {@code pkcs11:token=acme;object=signing;type=private} (a {@code pin-value} in it is
     * refused). {@code module} (nullable) is the token's PKCS#11 module ({@code .so}); it wins
     * over a {@code module-path} in the URI, one of the two is needed. {@code pin} (nullable: no
     * login) is the user PIN, read from an environment variable, a file or a dialog, never from
     * a configuration; it is handled like the passwords of this class (encoded into an array of
     * this call's own, wiped before returning; the caller's array is left as it was).
     * {@code certificate} (nullable) is the PEM certificate (and chain) of the key; null takes
     * the certificate object stored on the token beside the key.
     *
     * <p>The token is logged in once, here; the library never tries a refused PIN again (each
     * try counts towards the token's lock-out). The identity cannot serve TLS. Some tokens
     * (SoftHSM2) read their configuration once per process, when the module is first loaded.
     * Sealing and opening with such an identity wait on the token; large documents are then
     * copied to native memory rather than pinned, so the garbage collector never waits on it.
     *
     * @throws ArgumentException {@code LS_ERR_PIN_INCORRECT} (105) for a wrong, locked or
     *     expired PIN; {@code LS_ERR_TOKEN_UNAVAILABLE} (106, {@link LayerSecException#isTransient()
     *     transient}) when the module cannot be loaded or the token is absent;
     *     {@code LS_ERR_KEY_NOT_FOUND} (107) when the token has no such key;
     *     {@code LS_ERR_INVALID_ARGUMENT} for a bad URI or no module
     * @throws LayerSecException other codes: a certificate that cannot be read or does not
     *     match the key; later, {@code LS_ERR_MECHANISM_UNSUPPORTED} (210) from sealing or
     *     opening when the token cannot do what a document needs
     */
    public static Identity loadPkcs11(String uri, String module, char[] pin, Path certificate)
            throws LayerSecException {
        Objects.requireNonNull(uri, "uri");
        LayerSec.loadNative();
        byte[] u = Utf8.cstr(uri, "uri");
        byte[] m = Utf8.cstr(module, "module");
        byte[] c = Utf8.path(certificate, "certificate");
        byte[] p = Utf8.password(pin, "pin");
        try {
            return new Identity(Native.identityLoadPkcs11(u, m, p, c));
        } finally {
            Utf8.wipe(p);
        }
    }

    /**
     * Whether the private key is on a PKCS#11 token ({@link #loadPkcs11}) rather than in this
     * process's memory ({@code ls_identity_is_on_token}).
     */
    public boolean isOnToken() throws LayerSecException {
        return use(p -> Native.identityIsOnToken(p));
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
