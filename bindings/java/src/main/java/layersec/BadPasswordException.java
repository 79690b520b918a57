package layersec;

/**
 * {@code LS_ERR_BAD_PASSWORD}: the password does not decrypt the key or PKCS#12 file.
 */
public class BadPasswordException extends ArgumentException {
    private static final long serialVersionUID = 1L;

    BadPasswordException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
