package layersec;

/**
 * {@code LS_ERR_UNKNOWN_SIGNER}: the signer is neither the expected sender nor a known partner.
 */
public class UnknownSignerException extends CertificateException {
    private static final long serialVersionUID = 1L;

    UnknownSignerException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
