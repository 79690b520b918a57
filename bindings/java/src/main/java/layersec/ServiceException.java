package layersec;

/**
 * 6xx (family {@code transport}): reaching the Messaging Service or a mail server —
 * {@code LS_ERR_CONNECT_FAILED}, {@code LS_ERR_TIMEOUT}, {@code LS_ERR_TLS_FAILED},
 * {@code LS_ERR_HTTP_STATUS}, {@code LS_ERR_BAD_RESPONSE}, {@code LS_ERR_REFUSED},
 * {@code LS_ERR_MAIL_STATUS}, {@code LS_ERR_LOGIN_FAILED}, {@code LS_ERR_RECEIPT_PENDING}.
 * {@link #isTransient()} says whether a retry is worth it.
 */
public class ServiceException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    ServiceException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }

    /**
     * True for connect failures, timeouts, HTTP 5xx/408/429, a mail server's temporary refusal
     * and a pending receipt (as {@code ls_core::Error::is_transient}); false for TLS failures,
     * bad responses, refused logins and refusals. The C ABI does not carry the HTTP status
     * apart from the message yet, so for {@code LS_ERR_HTTP_STATUS} it is read from there.
     */
    @Override
    public boolean isTransient() {
        switch (code()) {
            case LS_ERR_CONNECT_FAILED:
            case LS_ERR_TIMEOUT:
            case LS_ERR_MAIL_STATUS:
            case LS_ERR_RECEIPT_PENDING:
                return true;
            case LS_ERR_HTTP_STATUS: {
                int status = httpStatusOf(libraryMessage());
                return (status >= 500 && status <= 599) || status == 408 || status == 429;
            }
            default:
                return false;
        }
    }
}
