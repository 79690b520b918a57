package layersec;

/**
 * A handle ({@link Identity}, {@link Certificate}) was used after {@code close()}. A mistake in
 * the calling program, hence unchecked; the native object was not touched.
 */
public class ClosedException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    ClosedException(String what) {
        super("this " + what + " is closed");
    }
}
