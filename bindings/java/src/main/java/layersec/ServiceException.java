package layersec;

/**
 * 6xx (family {@code transport}): reaching the Messaging Service or a mail server —
 * {@code LS_ERR_CONNECT_FAILED}, {@code LS_ERR_TIMEOUT}, {@code LS_ERR_TLS_FAILED},
 * {@code LS_ERR_HTTP_STATUS}, {@code LS_ERR_BAD_RESPONSE}, {@code LS_ERR_REFUSED},
 * {@code LS_ERR_MAIL_STATUS}, {@code LS_ERR_LOGIN_FAILED}, {@code LS_ERR_RECEIPT_PENDING}.
 * {@link #isTransient()} says whether a retry is worth it (the library's verdict).
 */
public class ServiceException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    ServiceException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
