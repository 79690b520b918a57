package layersec;

/**
 * 4xx (family {@code format}): malformed or hostile input.
 */
public class FormatException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    FormatException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
