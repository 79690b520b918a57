package layersec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class ErrorsTest extends WithParties {
    @Test
    void tamperedMessageIsAVerificationFailureWithItsCode() throws LayerSecException {
        byte[] sealed = LayerSec.seal(Fixtures.doc("pay 100 EUR"), f.alice, List.of(f.bobCert));
        // The last bytes of AuthEnvelopedData are the AES-GCM tag.
        sealed[sealed.length - 1] ^= 0x01;
        DecryptionException e = assertThrows(DecryptionException.class,
                () -> LayerSec.open(sealed, f.bob, new OpenOptions().sender(f.aliceCert)));
        assertInstanceOf(VerificationException.class, e);
        assertEquals(200, e.code());
        assertEquals("LS_ERR_DECRYPT_FAILED", e.name());
        assertEquals("crypto", e.family());
        assertFalse(e.isTransient());
        assertTrue(e.getMessage().startsWith("LS_ERR_DECRYPT_FAILED (200)"), e.getMessage());
    }

    @Test
    void wrongSenderIsASignerMismatch() throws LayerSecException {
        byte[] sealed = LayerSec.seal(Fixtures.doc("x"), f.alice, List.of(f.bobCert));
        SignerMismatchException e = assertThrows(SignerMismatchException.class,
                () -> LayerSec.open(sealed, f.bob, new OpenOptions().sender(f.bobCert)));
        assertEquals(204, e.code());
    }

    @Test
    void notForUs() throws LayerSecException {
        byte[] sealed = LayerSec.seal(Fixtures.doc("x"), f.alice, List.of(f.bobCert));
        NotARecipientException e = assertThrows(NotARecipientException.class,
                () -> LayerSec.open(sealed, f.alice, new OpenOptions().sender(f.aliceCert)));
        assertEquals(201, e.code());
    }

    @Test
    void garbageIsAFormatError() {
        FormatException e = assertThrows(FormatException.class, () -> LayerSec.open(
                new byte[] {0x30, 0x03, 1, 2}, f.bob, new OpenOptions().sender(f.aliceCert)));
        assertEquals(4, e.code() / 100);
        assertEquals("format", e.family());
    }

    @Test
    void codesMapByCodeThenFamily() {
        assertInstanceOf(WeakAlgorithmException.class, LayerSecException.of(208, "N", ""));
        assertInstanceOf(UnsupportedAlgorithmException.class, LayerSecException.of(208, "N", ""));
        assertInstanceOf(CertificateExpiredException.class, LayerSecException.of(300, "N", ""));
        assertInstanceOf(TooLargeException.class, LayerSecException.of(406, "N", ""));
        // Unknown codes of a newer library: by their family.
        assertInstanceOf(VerificationException.class, LayerSecException.of(299, "LS_UNKNOWN", ""));
        assertInstanceOf(ProtocolException.class, LayerSecException.of(555, "LS_UNKNOWN", ""));
        assertInstanceOf(StoreException.class, LayerSecException.of(702, "N", ""));
        assertInstanceOf(InternalException.class, LayerSecException.of(901, "N", ""));
        assertEquals(LayerSecException.class, LayerSecException.of(42, "N", "").getClass());
    }

    @Test
    void transienceIsTheLibrarysVerdictNotTheMessageText() {
        // The glue passes ls_last_error_is_transient(); nothing is read from the text.
        ServiceException connect = (ServiceException) LayerSecException.of(600,
                "LS_ERR_CONNECT_FAILED", "cannot connect", true);
        assertTrue(connect.isTransient());
        assertEquals("transport", connect.family());
        assertFalse(LayerSecException.of(603, "LS_ERR_HTTP_STATUS",
                "HTTP status 503: unavailable", false).isTransient());
        assertTrue(LayerSecException.of(603, "LS_ERR_HTTP_STATUS", "", true).isTransient());
        assertFalse(LayerSecException.of(602, "LS_ERR_TLS_FAILED", "pin", false).isTransient());
        // A queued send carries its cause's verdict.
        assertTrue(new QueuedForRetryException("m@x", connect).isTransient());
        assertFalse(new QueuedForRetryException("m@x",
                LayerSecException.of(604, "LS_ERR_BAD_RESPONSE", "", false)).isTransient());
    }

    @Test
    void aFailureFromTheLibraryIsNotTransient() throws LayerSecException {
        // Read from the C ABI right after the failed call (an argument error: never transient).
        FileException e = assertThrows(FileException.class,
                () -> Certificate.load(java.nio.file.Paths.get("/nonexistent/cert.pem")));
        assertFalse(e.isTransient());
    }
}
