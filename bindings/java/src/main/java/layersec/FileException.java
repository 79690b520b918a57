package layersec;

/**
 * {@code LS_ERR_IO}: a file cannot be read or written (the message names it and the system's error).
 */
public class FileException extends ArgumentException {
    private static final long serialVersionUID = 1L;

    FileException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
