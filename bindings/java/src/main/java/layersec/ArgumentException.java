package layersec;

/**
 * 1xx (family {@code argument}): the caller's arguments, files and passwords.
 */
public class ArgumentException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    ArgumentException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
