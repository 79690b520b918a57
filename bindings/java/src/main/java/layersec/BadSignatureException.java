package layersec;

/**
 * {@code LS_ERR_BAD_SIGNATURE}, {@code LS_ERR_DIGEST_MISMATCH}: a signature does not verify.
 */
public class BadSignatureException extends VerificationException {
    private static final long serialVersionUID = 1L;

    BadSignatureException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
