package layersec;

/**
 * {@code LS_ERR_UNSUPPORTED_ALGORITHM}: an algorithm this library does not implement.
 */
public class UnsupportedAlgorithmException extends VerificationException {
    private static final long serialVersionUID = 1L;

    UnsupportedAlgorithmException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
