package layersec;

/**
 * {@code LS_ERR_UNSIGNED}: the message carries no signature (and unsigned ones were not allowed).
 */
public class UnsignedException extends VerificationException {
    private static final long serialVersionUID = 1L;

    UnsignedException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
