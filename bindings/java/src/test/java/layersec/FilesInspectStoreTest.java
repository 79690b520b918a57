package layersec;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Files and streams, inspect, the certificate store, and the JSON reader behind them. */
class FilesInspectStoreTest extends WithParties {
    /** 300 KiB that do not compress: several chunks of the stream callbacks. */
    static byte[] bigDoc() {
        byte[] b = new byte[300 * 1024];
        new Random(7).nextBytes(b);
        return b;
    }

    @Test
    void sealFileAndOpenFile(@TempDir Path tmp) throws Exception {
        byte[] doc = bigDoc();
        Path in = tmp.resolve("invoice.bin");
        Path sealed = tmp.resolve("invoice.p7m");
        Path out = tmp.resolve("opened.bin");
        Files.write(in, doc);
        LayerSec.sealFile(in, sealed, f.alice, List.of(f.bobCert),
                new SealOptions().filename("invoice.bin"));
        assertTrue(Files.size(sealed) > doc.length);
        try (Opened o = LayerSec.openFile(sealed, out, f.bob,
                new OpenOptions().sender(f.aliceCert))) {
            assertEquals(doc.length, o.size());
            assertEquals(0, o.document().length); // it went to the file
            assertEquals("invoice.bin", o.filename().orElseThrow());
            assertTrue(o.signerSubject().contains("CN=alice"));
        }
        assertArrayEquals(doc, Files.readAllBytes(out));
        // The bytes version opens what the file version sealed.
        try (Opened o = LayerSec.open(Files.readAllBytes(sealed), f.bob,
                new OpenOptions().sender(f.aliceCert))) {
            assertArrayEquals(doc, o.document());
        }
        // A refused message leaves no file behind.
        Path refused = tmp.resolve("refused.bin");
        assertThrows(SignerMismatchException.class, () -> LayerSec.openFile(sealed, refused,
                f.bob, new OpenOptions().sender(f.bobCert)));
        assertFalse(Files.exists(refused));
        // A missing input is a FileException naming it; no output appears.
        FileException e = assertThrows(FileException.class, () -> LayerSec.sealFile(
                tmp.resolve("missing.bin"), tmp.resolve("x.p7m"), f.alice, List.of(f.bobCert),
                null));
        assertTrue(e.libraryMessage().contains("missing.bin"), e.libraryMessage());
        assertFalse(Files.exists(tmp.resolve("x.p7m")));
    }

    @Test
    void largeDocumentsAreUsedInPlace() throws Exception {
        // From 1 MiB on the glue pins the byte[] instead of copying it (under -Xcheck:jni).
        byte[] doc = new byte[3 * 1024 * 1024 + 5];
        new Random(11).nextBytes(doc);
        byte[] sealed = LayerSec.seal(doc, f.alice, List.of(f.bobCert));
        try (Opened o = LayerSec.open(sealed, f.bob, new OpenOptions().sender(f.aliceCert))) {
            assertArrayEquals(doc, o.document());
        }
        sealed[sealed.length - 1] ^= 1; // the exception is made after the array is released
        assertThrows(DecryptionException.class,
                () -> LayerSec.open(sealed, f.bob, new OpenOptions().sender(f.aliceCert)));
    }

    @Test
    void sealStreamAndOpenStream() throws Exception {
        byte[] doc = bigDoc();
        ByteArrayOutputStream sealed = new ByteArrayOutputStream();
        long n = LayerSec.sealStream(new ByteArrayInputStream(doc), sealed, f.alice,
                List.of(f.bobCert), new SealOptions().filename("s.bin"));
        assertEquals(sealed.size(), n);
        ByteArrayOutputStream opened = new ByteArrayOutputStream();
        try (Opened o = LayerSec.openStream(new ByteArrayInputStream(sealed.toByteArray()),
                opened, f.bob, new OpenOptions().sender(f.aliceCert))) {
            assertEquals(doc.length, o.size());
            assertEquals("s.bin", o.filename().orElseThrow());
        }
        assertArrayEquals(doc, opened.toByteArray());
    }

    @Test
    void aStreamsExceptionComesOutUnchanged() {
        IOException boom = new IOException("disk on fire");
        InputStream failing = new InputStream() {
            private int left = 100_000;

            @Override
            public int read() throws IOException {
                throw boom;
            }

            @Override
            public int read(byte[] b, int off, int len) throws IOException {
                if (left <= 0) {
                    throw boom;
                }
                int k = Math.min(len, left);
                left -= k;
                return k;
            }
        };
        IOException e = assertThrows(IOException.class, () -> LayerSec.sealStream(failing,
                OutputStream.nullOutputStream(), f.alice, List.of(f.bobCert), null));
        assertSame(boom, e);
        IllegalStateException full = new IllegalStateException("full");
        OutputStream refusing = new OutputStream() {
            @Override
            public void write(int b) {
                throw full;
            }

            @Override
            public void write(byte[] b, int off, int len) {
                throw full;
            }
        };
        assertSame(full, assertThrows(IllegalStateException.class, () -> LayerSec.sealStream(
                new ByteArrayInputStream(bigDoc()), refusing, f.alice, List.of(f.bobCert),
                null)));
    }

    @Test
    void inspectDescribesTheLayers() throws Exception {
        byte[] sealed = LayerSec.seal(Fixtures.doc("<a/>"), f.alice, List.of(f.bobCert),
                new SealOptions().filename("a.xml"));
        Inspection outside = LayerSec.inspect(sealed, null, null);
        assertTrue(outside.json().startsWith("{"), outside.json());
        assertTrue(outside.tree().containsKey("layers"), outside.json());
        Inspection inside = LayerSec.inspect(sealed, f.bob, f.aliceCert);
        assertTrue(inside.error().isEmpty(), inside.json());
        assertTrue(inside.json().length() > outside.json().length(), inside.json());
        // Bad input does not throw: the description ends with an error.
        Inspection bad = LayerSec.inspect(new byte[] {0x30, 0x03, 1, 2}, null, null);
        assertTrue(bad.error().orElseThrow().startsWith("LS_ERR_"), bad.json());
        assertThrows(NullPointerException.class, () -> LayerSec.inspect(null, null, null));
    }

    @Test
    void certStoreAcceptsItsPartnersAndAnchors(@TempDir Path tmp) throws Exception {
        byte[] sealed = LayerSec.seal(Fixtures.doc("x"), f.alice, List.of(f.bobCert));
        try (CertStore partners = new CertStore()) {
            partners.addPartner(f.aliceCert, "alice");
            try (Opened o = LayerSec.open(sealed, f.bob, new OpenOptions().partners(partners))) {
                assertTrue(o.signerSubject().contains("CN=alice"));
            }
        }
        try (CertStore others = new CertStore()) {
            others.addPartner(f.bobCert, null);
            LayerSecException e = assertThrows(LayerSecException.class,
                    () -> LayerSec.open(sealed, f.bob, new OpenOptions().partners(others)));
            assertInstanceOf(CertificateException.class, e, e.toString());
        }
        // From a folder: alice.crt is the partner alice.
        Files.write(tmp.resolve("alice.crt"), f.aliceCert.toPem());
        try (CertStore dir = CertStore.loadDir(tmp)) {
            try (Opened o = LayerSec.open(sealed, f.bob, new OpenOptions().partners(dir))) {
                assertEquals(1, o.document().length);
            }
        }
        assertThrows(FileException.class, () -> CertStore.loadDir(tmp.resolve("none")));
        CertStore closed = new CertStore();
        closed.close();
        assertThrows(ClosedException.class, () -> closed.addAnchor(f.aliceCert));
        assertThrows(ClosedException.class,
                () -> LayerSec.open(sealed, f.bob, new OpenOptions().partners(closed)));
    }

    @Test
    void jsonReader() {
        Map<String, Object> m = Json.object(Json.parse(
                " {\"a\": [1, -2.5e1, true, false, null], \"b\\u00e9\\n\": {\"c\": \"d\\\"\"}} "),
                "test");
        assertEquals(List.of(1L, -25.0, true, false), ((List<?>) m.get("a")).subList(0, 4));
        assertEquals(null, ((List<?>) m.get("a")).get(4));
        assertEquals(Map.of("c", "d\""), m.get("b\u00e9\n"));
        for (String bad : new String[] {"", "{", "[1,]", "{\"a\" 1}", "\"x", "tru", "1 2",
                "{\"a\":1,}", "[\"\u0001\"]", "[".repeat(300)}) {
            assertThrows(IllegalArgumentException.class, () -> Json.parse(bad), bad);
        }
    }
}
