package layersec;

/**
 * 9xx (family {@code internal}): a bug in the library (please report it).
 */
public class InternalException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    InternalException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
