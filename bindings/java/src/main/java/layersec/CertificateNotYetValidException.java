package layersec;

/**
 * {@code LS_ERR_CERT_NOT_YET_VALID}: a certificate is not valid yet.
 */
public class CertificateNotYetValidException extends CertificateException {
    private static final long serialVersionUID = 1L;

    CertificateNotYetValidException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
