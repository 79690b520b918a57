package layersec;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/** A test class with the two parties of {@link Fixtures}, made once for the class. */
abstract class WithParties {
    static Fixtures f;

    @BeforeAll
    static void parties() throws LayerSecException {
        f = new Fixtures();
    }

    @AfterAll
    static void close() {
        f.close();
    }
}
