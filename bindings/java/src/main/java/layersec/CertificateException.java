package layersec;

/**
 * 3xx (family {@code certificate}): certificates and trust. (Not {@code
 * java.security.cert.CertificateException}: import one of them by its full name where both are used.)
 */
public class CertificateException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    CertificateException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
