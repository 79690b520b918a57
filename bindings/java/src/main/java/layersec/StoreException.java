package layersec;

/**
 * 7xx (family {@code store}): the client's configuration and local state.
 */
public class StoreException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    StoreException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
