package layersec;

/**
 * {@code LS_ERR_WEAK_ALGORITHM}: an algorithm refused by policy (SHA-1, or legacy ciphers
 * when refused). Either way the message cannot be accepted as it is.
 */
public class WeakAlgorithmException extends UnsupportedAlgorithmException {
    private static final long serialVersionUID = 1L;

    WeakAlgorithmException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
