package layersec;

/**
 * {@code LS_ERR_NOT_A_RECIPIENT}: the message is not encrypted for our key.
 */
public class NotARecipientException extends VerificationException {
    private static final long serialVersionUID = 1L;

    NotARecipientException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
