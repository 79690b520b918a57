package layersec;

import java.nio.charset.StandardCharsets;

/**
 * A failure reported by liblayersec: the stable {@code ls_result} {@link #code()} (e.g. 201),
 * its {@link #name()} ({@code "LS_ERR_NOT_A_RECIPIENT"}) and the library's explanation
 * ({@link #libraryMessage()}, for humans: branch on the class or the code, never on the text).
 *
 * <p>The subclass follows the code's family, the hundreds digit of the code, as in
 * {@code include/layersec.h}:
 * <pre>
 * LayerSecException
 *  ├─ ArgumentException        1xx  BadPasswordException, FileException
 *  ├─ VerificationException    2xx  DecryptionException, NotARecipientException,
 *  │                                BadSignatureException, SignerMismatchException,
 *  │                                UnsignedException, UnsupportedAlgorithmException
 *  │                                  └─ WeakAlgorithmException
 *  ├─ CertificateException     3xx  CertificateExpiredException,
 *  │                                CertificateNotYetValidException, UnknownSignerException
 *  ├─ FormatException          4xx  TruncatedException, TooLargeException
 *  ├─ ProtocolException        5xx
 *  ├─ ServiceException         6xx  (transport: reaching the Messaging Service)
 *  ├─ StoreException           7xx
 *  └─ InternalException        9xx
 * </pre>
 * A code this binding does not know (from a newer library) maps by its family, as the header
 * asks. Checked on purpose: a partner's message that does not verify is an expected outcome
 * a back-office program must handle, as {@code java.security.GeneralSecurityException} is.
 * Misuse of the Java API itself (a null argument, a closed handle) throws the usual unchecked
 * exceptions ({@link NullPointerException}, {@link IllegalArgumentException},
 * {@link ClosedException}).
 */
public class LayerSecException extends Exception {
    private static final long serialVersionUID = 1L;

    // The LS_ERR_* codes of include/layersec.h that map to a class of their own.
    static final int LS_ERR_IO = 102;
    static final int LS_ERR_BAD_PASSWORD = 103;
    static final int LS_ERR_DECRYPT_FAILED = 200;
    static final int LS_ERR_NOT_A_RECIPIENT = 201;
    static final int LS_ERR_KEY_UNWRAP_FAILED = 202;
    static final int LS_ERR_BAD_SIGNATURE = 203;
    static final int LS_ERR_SIGNER_MISMATCH = 204;
    static final int LS_ERR_UNSIGNED = 205;
    static final int LS_ERR_DIGEST_MISMATCH = 206;
    static final int LS_ERR_UNSUPPORTED_ALGORITHM = 207;
    static final int LS_ERR_WEAK_ALGORITHM = 208;
    static final int LS_ERR_CERT_EXPIRED = 300;
    static final int LS_ERR_CERT_NOT_YET_VALID = 301;
    static final int LS_ERR_UNKNOWN_SIGNER = 303;
    static final int LS_ERR_TRUNCATED = 401;
    static final int LS_ERR_TOO_LARGE = 404;
    static final int LS_ERR_EXPANSION_TOO_LARGE = 406;

    private static final String[] FAMILIES = {
        "internal", "argument", "crypto", "certificate", "format", "protocol", "transport", "store",
    };

    private final int code;
    private final String name;
    private final String libraryMessage;
    /** Set once, by {@link #of(int, String, String, boolean)}, before the exception is thrown. */
    private boolean transientFailure;

    LayerSecException(int code, String name, String libraryMessage) {
        super(libraryMessage.isEmpty() ? name + " (" + code + ")"
                : name + " (" + code + "): " + libraryMessage);
        this.code = code;
        this.name = name;
        this.libraryMessage = libraryMessage;
    }

    /** The {@code ls_result} code, e.g. 203 for {@code LS_ERR_BAD_SIGNATURE}. */
    public int code() {
        return code;
    }

    /** The code's macro name, e.g. {@code "LS_ERR_BAD_SIGNATURE"} ({@code ls_result_name}). */
    public String name() {
        return name;
    }

    /** The library's explanation ({@code ls_last_error_message}); never key material. */
    public String libraryMessage() {
        return libraryMessage;
    }

    /**
     * The code's family as the library's JSON error objects name it: {@code argument},
     * {@code crypto}, {@code certificate}, {@code format}, {@code protocol},
     * {@code transport}, {@code store} or {@code internal}.
     */
    public String family() {
        int f = code / 100;
        return code > 0 && f < FAMILIES.length ? FAMILIES[f] : "internal";
    }

    /**
     * Whether the same call, made again later unchanged, may succeed: the library's own verdict
     * ({@code ls_last_error_is_transient()}, read by the JNI glue right after the failed call),
     * never guessed from the message. True for a service or mail server that could not be
     * reached or timed out, an HTTP 5xx/408/429 answer, a mail server's temporary refusal, a
     * receipt still pending, and a send {@link QueuedForRetryException queued for retry}; false
     * for everything else (a refusal, a bad signature, a TLS failure, a bad argument…).
     */
    public boolean isTransient() {
        return transientFailure;
    }

    /** The exception for a code (by the code, else by its family) with the transient flag. */
    static LayerSecException of(int code, String name, String message, boolean transientFailure) {
        LayerSecException e = of(code, name, message);
        e.transientFailure = transientFailure;
        return e;
    }

    /** The exception for a code, by the code, else by its family; not transient. */
    static LayerSecException of(int code, String name, String message) {
        switch (code) {
            case LS_ERR_IO: return new FileException(code, name, message);
            case LS_ERR_BAD_PASSWORD: return new BadPasswordException(code, name, message);
            case LS_ERR_DECRYPT_FAILED:
            case LS_ERR_KEY_UNWRAP_FAILED: return new DecryptionException(code, name, message);
            case LS_ERR_NOT_A_RECIPIENT: return new NotARecipientException(code, name, message);
            case LS_ERR_BAD_SIGNATURE:
            case LS_ERR_DIGEST_MISMATCH: return new BadSignatureException(code, name, message);
            case LS_ERR_SIGNER_MISMATCH: return new SignerMismatchException(code, name, message);
            case LS_ERR_UNSIGNED: return new UnsignedException(code, name, message);
            case LS_ERR_UNSUPPORTED_ALGORITHM:
                return new UnsupportedAlgorithmException(code, name, message);
            case LS_ERR_WEAK_ALGORITHM: return new WeakAlgorithmException(code, name, message);
            case LS_ERR_CERT_EXPIRED: return new CertificateExpiredException(code, name, message);
            case LS_ERR_CERT_NOT_YET_VALID:
                return new CertificateNotYetValidException(code, name, message);
            case LS_ERR_UNKNOWN_SIGNER: return new UnknownSignerException(code, name, message);
            case LS_ERR_TRUNCATED: return new TruncatedException(code, name, message);
            case LS_ERR_TOO_LARGE:
            case LS_ERR_EXPANSION_TOO_LARGE: return new TooLargeException(code, name, message);
            default: break;
        }
        switch (code > 0 ? code / 100 : 0) {
            case 1: return new ArgumentException(code, name, message);
            case 2: return new VerificationException(code, name, message);
            case 3: return new CertificateException(code, name, message);
            case 4: return new FormatException(code, name, message);
            case 5: return new ProtocolException(code, name, message);
            case 6: return new ServiceException(code, name, message);
            case 7: return new StoreException(code, name, message);
            case 9: return new InternalException(code, name, message);
            default: return new LayerSecException(code, name, message);
        }
    }

    /** Called by the JNI glue: name and message as the library's UTF-8 bytes. */
    static LayerSecException fromNative(int code, byte[] name, byte[] message,
            boolean transientFailure) {
        return of(code, new String(name, StandardCharsets.UTF_8),
                new String(message, StandardCharsets.UTF_8), transientFailure);
    }

    /** Called by the JNI glue when a failed send still gave a MessageId: it is queued. */
    static LayerSecException queued(byte[] messageId, LayerSecException cause) {
        return new QueuedForRetryException(new String(messageId, StandardCharsets.UTF_8), cause);
    }
}
