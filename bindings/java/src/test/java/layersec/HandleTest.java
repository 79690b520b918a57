package layersec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class HandleTest {
    @Test
    void useAfterCloseThrowsAndDoesNotCrash() throws LayerSecException {
        Identity alice = Identity.generate("alice", KeyType.EC_P256);
        Certificate cert = alice.certificate();
        assertFalse(alice.isClosed());
        alice.close();
        alice.close(); // twice: nothing
        assertTrue(alice.isClosed());
        ClosedException e = assertThrows(ClosedException.class,
                () -> LayerSec.seal(Fixtures.doc("x"), alice, List.of(cert)));
        assertEquals("this Identity is closed", e.getMessage());
        assertThrows(ClosedException.class, alice::certificate);
        assertThrows(ClosedException.class, alice::keyPem);
        assertEquals("Identity(closed)", alice.toString());

        // The certificate is independent of the identity it came from.
        assertTrue(cert.subject().contains("alice"));
        cert.close();
        assertThrows(ClosedException.class, cert::subject);
        assertThrows(ClosedException.class, cert::toPem);
        assertThrows(ClosedException.class, () -> LayerSec.open(new byte[] {1}, null,
                new OpenOptions().sender(cert)));
    }

    @Test
    void aClosedRecipientAmongOthersReleasesTheRest() throws LayerSecException {
        try (Fixtures f = new Fixtures()) {
            Certificate closed = f.alice.certificate();
            closed.close();
            assertThrows(ClosedException.class,
                    () -> LayerSec.seal(Fixtures.doc("x"), f.alice, List.of(f.bobCert, closed)));
            // bobCert was borrowed and given back: closing it frees it now, and it is unusable.
            f.bobCert.close();
            assertTrue(f.bobCert.isClosed());
        }
    }

    @Test
    void badArgumentsAreJavaExceptions() throws LayerSecException {
        try (Fixtures f = new Fixtures()) {
            assertThrows(NullPointerException.class,
                    () -> LayerSec.seal(null, f.alice, List.of(f.bobCert)));
            assertThrows(NullPointerException.class,
                    () -> LayerSec.seal(new byte[1], f.alice, Arrays.asList(f.bobCert, null)));
            assertThrows(IllegalArgumentException.class,
                    () -> LayerSec.seal(new byte[1], f.alice, List.of(f.bobCert),
                            new SealOptions().filename("a\0b")));
            assertThrows(IllegalArgumentException.class,
                    () -> Identity.generate("x", KeyType.EC_P256, 1, new char[] {'a', '\0'}));
            assertThrows(IllegalArgumentException.class,
                    () -> Identity.generate("x", KeyType.EC_P256, 1, new char[] {'\uD800'}));
            // The library's own argument checks come back as ArgumentException.
            ArgumentException e = assertThrows(ArgumentException.class,
                    () -> Identity.generate("", KeyType.EC_P256));
            assertEquals(1, e.code() / 100);
            CertificateException c = assertThrows(CertificateException.class,
                    () -> Certificate.fromBytes(new byte[0]));
            assertEquals("LS_ERR_CERT_INVALID", c.name());
        }
    }

    @Test
    void unclosedHandlesAreFreedByTheCleaner() throws Exception {
        // Not observable from Java beyond "no crash": the leak test of the issue measures RSS.
        for (int i = 0; i < 200; i++) {
            Identity.generate("tmp" + i, KeyType.EC_P256).certificate();
        }
        System.gc();
        Thread.sleep(50);
    }
}
