package layersec;

/**
 * {@code LS_ERR_TOO_LARGE}, {@code LS_ERR_EXPANSION_TOO_LARGE}: the input or the opened document
 * would exceed its limit (a decompression bomb is refused without being expanded).
 */
public class TooLargeException extends FormatException {
    private static final long serialVersionUID = 1L;

    TooLargeException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
