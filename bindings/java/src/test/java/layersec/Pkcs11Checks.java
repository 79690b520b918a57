package layersec;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The checks of {@link Pkcs11Test}, run only by it in a child JVM whose environment names a
 * SoftHSM2 token made by {@code scripts/softhsm-token.sh} ({@code SOFTHSM2_CONF},
 * {@code LS_TOKEN_MODULE}, {@code LS_TOKEN_PIN}, {@code LS_TOKEN_URI}, {@code LS_TOKEN_CERT})
 * and with a GC log ({@code -Dlayersec.test.gclog}). Its name does not end in "Test": the
 * class-path scan of {@code make test-java} leaves it out.
 */
class Pkcs11Checks {
    private static String uri;
    private static String module;
    private static String pin;
    private static Path certPath;
    private static Identity token;
    private static Certificate tokenCert;
    private static Fixtures f;

    private static String env(String name) {
        String v = System.getenv(name);
        assertNotNull(v, name + " is not set: Pkcs11Test runs these checks");
        return v;
    }

    @BeforeAll
    static void load() throws LayerSecException {
        env("SOFTHSM2_CONF");
        uri = env("LS_TOKEN_URI");
        module = env("LS_TOKEN_MODULE");
        pin = env("LS_TOKEN_PIN");
        certPath = Paths.get(env("LS_TOKEN_CERT"));
        token = Identity.loadPkcs11(uri, module, pin.toCharArray(), certPath);
        tokenCert = token.certificate();
        f = new Fixtures();
    }

    @AfterAll
    static void close() {
        if (tokenCert != null) {
            tokenCert.close();
        }
        if (token != null) {
            token.close();
        }
        if (f != null) {
            f.close();
        }
    }

    @Test
    void aTokenIdentitySealsAndOpensWithFileIdentities() throws LayerSecException {
        assertTrue(token.isOnToken());
        assertFalse(f.alice.isOnToken());
        assertEquals("CN=token-party", tokenCert.subject());
        byte[] doc = Fixtures.doc("<Invoice>for the key on the token</Invoice>");
        // Alice (in memory) seals to the token's certificate; the token opens (ECDH on it).
        byte[] sealed = LayerSec.seal(doc, f.alice, List.of(tokenCert));
        try (Opened o = LayerSec.open(sealed, token, new OpenOptions().sender(f.aliceCert))) {
            assertArrayEquals(doc, o.document());
            assertEquals(f.aliceCert.subject(), o.signerSubject());
        }
        assertThrows(NotARecipientException.class,
                () -> LayerSec.open(sealed, f.bob, new OpenOptions().sender(f.aliceCert)));
        // The token signs (ECDSA on it); Bob (in memory) opens and sees the token's key.
        byte[] signed = LayerSec.seal(doc, token, List.of(f.bobCert));
        try (Opened o = LayerSec.open(signed, f.bob, new OpenOptions().sender(tokenCert))) {
            assertArrayEquals(doc, o.document());
            assertArrayEquals(tokenCert.toPem(), o.signer().toPem());
        }
        assertThrows(SignerMismatchException.class,
                () -> LayerSec.open(signed, f.bob, new OpenOptions().sender(f.aliceCert)));
    }

    @Test
    void theCertificateObjectOnTheTokenAndThePinLeftToTheCaller() throws Exception {
        char[] p = pin.toCharArray();
        try (Identity t = Identity.loadPkcs11(uri, module, p, null);
                Certificate c = t.certificate()) {
            assertTrue(t.isOnToken());
            assertArrayEquals(Files.readAllBytes(certPath), c.toPem());
        }
        // As with passwords: the caller's array is the caller's to wipe.
        assertArrayEquals(pin.toCharArray(), p);
    }

    @Test
    void eachFailureHasItsCode() {
        LayerSecException e = assertThrows(ArgumentException.class,
                () -> Identity.loadPkcs11(uri, module, "0000-wrong".toCharArray(), certPath));
        assertEquals(105, e.code());
        assertEquals("LS_ERR_PIN_INCORRECT", e.name());
        assertFalse(e.isTransient());
        assertFalse(e.getMessage().contains("0000-wrong"), e.getMessage());

        e = assertThrows(ArgumentException.class, () -> Identity.loadPkcs11(uri,
                "/nonexistent/layersec-tests/pkcs11-module.so", pin.toCharArray(), null));
        assertEquals(106, e.code());
        assertEquals("LS_ERR_TOKEN_UNAVAILABLE", e.name());
        assertTrue(e.isTransient());

        String nobody = uri.replace("object=token-party", "object=nobody-here");
        e = assertThrows(ArgumentException.class,
                () -> Identity.loadPkcs11(nobody, module, pin.toCharArray(), null));
        assertEquals(107, e.code());
        assertEquals("LS_ERR_KEY_NOT_FOUND", e.name());

        assertThrows(NullPointerException.class, () -> Identity.loadPkcs11(null, module, null,
                null));
        assertThrows(IllegalArgumentException.class,
                () -> Identity.loadPkcs11(uri, module, "12\u000034".toCharArray(), null));
    }

    @Test
    void largeDocumentsRoundTripWithTheKeyOnTheToken() throws LayerSecException {
        // From 1 MiB on the glue pins documents, except for an identity on a token: copied.
        byte[] doc = new byte[3 * 1024 * 1024 + 17];
        for (int i = 0; i < doc.length; i++) {
            doc[i] = (byte) (i * 31 + (i >> 12));
        }
        SealOptions noZip = new SealOptions().compress(false);
        byte[] sealed = LayerSec.seal(doc, token, List.of(tokenCert, f.aliceCert), noZip);
        assertTrue(sealed.length > doc.length);
        try (Opened o = LayerSec.open(sealed, token, new OpenOptions().sender(tokenCert))) {
            assertArrayEquals(doc, o.document());
        }
        try (Opened o = LayerSec.open(sealed, f.alice, new OpenOptions().sender(tokenCert))) {
            assertArrayEquals(doc, o.document());
        }
    }

    /**
     * The review's point: a pinned document (GetPrimitiveArrayCritical) holds back the GC until
     * the call returns, which for a token may wait on the device. Seen in the GC log: while
     * another thread allocates, a collection that had to wait for a critical region is logged
     * as "GCLocker Initiated GC". With identities in memory (pinned: the control, which shows
     * the log does see it) there are such collections; with the identity on the token (signer
     * of seal, recipient of open) there are none.
     */
    @Test
    void theGcNeverWaitsForACallWithATokenIdentity() throws Exception {
        Path log = Paths.get(System.getProperty("layersec.test.gclog"));
        byte[] doc = new byte[16 * 1024 * 1024];
        Arrays.fill(doc, (byte) 'x');
        SealOptions noZip = new SealOptions().compress(false);
        byte[] forBob = LayerSec.seal(doc, f.alice, List.of(f.bobCert), noZip);
        byte[] forToken = LayerSec.seal(doc, f.alice, List.of(tokenCert), noZip);
        OpenOptions fromAlice = new OpenOptions().sender(f.aliceCert);

        int pinned = 0;
        for (int round = 0; round < 3 && pinned == 0; round++) {
            pinned = gcLockerCollections(log, () -> {
                LayerSec.seal(doc, f.alice, List.of(f.bobCert), noZip);
                LayerSec.open(forBob, f.bob, fromAlice).close();
            });
        }
        assertTrue(pinned > 0, "the control (identities in memory, documents pinned) shows no "
                + "GCLocker-initiated collection: the check cannot see what it looks for");
        int copied = gcLockerCollections(log, () -> {
            LayerSec.seal(doc, token, List.of(f.aliceCert), noZip);
            LayerSec.open(forToken, token, fromAlice).close();
        });
        System.out.println("GCLocker-initiated collections: " + pinned + " with documents "
                + "pinned (identities in memory), " + copied + " with the identity on the token");
        assertEquals(0, copied, "a call with the identity on the token held back the GC");
    }

    interface Work {
        void run() throws LayerSecException;
    }

    private static final Pattern GC_LOCKER = Pattern.compile("GCLocker Initiated GC");

    /** Runs `work` 4 times while another thread allocates; the GCLocker collections logged. */
    private static int gcLockerCollections(Path log, Work work) throws Exception {
        long before = Files.size(log);
        AtomicBoolean stop = new AtomicBoolean();
        Thread churn = new Thread(() -> {
            byte[][] ring = new byte[64][];
            for (long i = 0; !stop.get(); i++) {
                ring[(int) (i & 63)] = new byte[32 * 1024];
            }
        });
        churn.start();
        try {
            for (int i = 0; i < 4; i++) {
                work.run();
            }
        } finally {
            stop.set(true);
            churn.join();
        }
        Thread.sleep(300); // a collection the last call held back runs as it returns
        return count(log, before);
    }

    private static int count(Path log, long from) throws IOException {
        byte[] all = Files.readAllBytes(log);
        String tail = new String(all, (int) Math.min(from, all.length),
                (int) (all.length - Math.min(from, all.length)), StandardCharsets.UTF_8);
        Matcher m = GC_LOCKER.matcher(tail);
        int n = 0;
        while (m.find()) {
            n++;
        }
        return n;
    }
}
