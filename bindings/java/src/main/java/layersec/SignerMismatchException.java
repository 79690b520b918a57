package layersec;

/**
 * {@code LS_ERR_SIGNER_MISMATCH}: validly signed, but by someone other than the expected sender.
 */
public class SignerMismatchException extends VerificationException {
    private static final long serialVersionUID = 1L;

    SignerMismatchException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
