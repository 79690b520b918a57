package layersec;

/**
 * {@code LS_ERR_CERT_EXPIRED}: a certificate is past its validity period.
 */
public class CertificateExpiredException extends CertificateException {
    private static final long serialVersionUID = 1L;

    CertificateExpiredException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
