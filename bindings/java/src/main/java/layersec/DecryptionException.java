package layersec;

/**
 * {@code LS_ERR_DECRYPT_FAILED}, {@code LS_ERR_KEY_UNWRAP_FAILED}: the content or its key does
 * not decrypt (tampered, or not really for us).
 */
public class DecryptionException extends VerificationException {
    private static final long serialVersionUID = 1L;

    DecryptionException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
