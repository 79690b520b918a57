package layersec;

/**
 * {@code LS_ERR_TRUNCATED}: the input ends early.
 */
public class TruncatedException extends FormatException {
    private static final long serialVersionUID = 1L;

    TruncatedException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
