package layersec;

/**
 * 2xx (family {@code crypto}): the message does not decrypt or verify: tampered, not for
 * us, signed by someone else, unsigned, or made with an algorithm refused by policy.
 */
public class VerificationException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    VerificationException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
