package layersec;

/**
 * 5xx (family {@code protocol}): the message protocol (ebMS3/AS4, SOAP, WS-Security).
 */
public class ProtocolException extends LayerSecException {
    private static final long serialVersionUID = 1L;

    ProtocolException(int code, String name, String libraryMessage) {
        super(code, name, libraryMessage);
    }
}
