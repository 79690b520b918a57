package layersec;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The SealOpen example's tool mode (examples/SealOpen.java, built by {@code make examples}), in
 * child JVMs: the C examples' arguments and output, and failures as exit status 1 with the
 * LS_ERR_* name on stderr.
 */
class ExamplesTest extends WithParties {
    /** Exit status, stdout, stderr of {@code SealOpen args...}. */
    static String[] sealOpen(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(LoaderTest.prop("layersec.test.java"),
                "-Xcheck:jni", "-cp", LoaderTest.prop("layersec.test.examples") + ":"
                        + LoaderTest.prop("layersec.test.jar"), "layersec.examples.SealOpen"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).start();
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> {
            try {
                return new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                return e.toString();
            }
        });
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new String[] {String.valueOf(p.exitValue()), out, err.join()};
    }

    @Test
    void toolModeAsTheCExamples(@TempDir Path tmp) throws Exception {
        Path aliceKey = tmp.resolve("alice.key");
        Path aliceCrt = tmp.resolve("alice.crt");
        Path bobKey = tmp.resolve("bob.key");
        Path bobCrt = tmp.resolve("bob.crt");
        Files.write(aliceKey, f.alice.keyPem());
        Files.write(aliceCrt, f.aliceCert.toPem());
        Files.write(bobKey, f.bob.keyPem());
        Files.write(bobCrt, f.bobCert.toPem());
        Path doc = tmp.resolve("inv.xml");
        Files.write(doc, Fixtures.doc("<Invoice>7</Invoice>\n"));
        Path sealed = tmp.resolve("inv.p7m");

        String[] r = sealOpen("seal", aliceKey.toString(), aliceCrt.toString(), bobCrt.toString(),
                doc.toString(), sealed.toString(), "invoice.xml");
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].startsWith("sealed 21 bytes for CN=bob into "), r[1]);

        Path opened = tmp.resolve("opened.xml");
        r = sealOpen("open", bobKey.toString(), bobCrt.toString(), aliceCrt.toString(),
                sealed.toString(), opened.toString());
        assertEquals("0", r[0], r[2]);
        List<String> lines = r[1].lines().toList();
        assertEquals("filename: invoice.xml", lines.get(0));
        assertEquals("MIME type: application/xml", lines.get(1));
        assertEquals("signer: CN=alice", lines.get(2));
        assertTrue(lines.get(3).matches("signing time: 2\\d{3}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ"),
                lines.get(3));
        assertEquals("encrypted: yes", lines.get(4));
        assertArrayEquals(Files.readAllBytes(doc), Files.readAllBytes(opened));

        // The wrong sender: status 1, the error's name and message on stderr, nothing written.
        Path forged = tmp.resolve("forged.xml");
        r = sealOpen("open", bobKey.toString(), bobCrt.toString(), bobCrt.toString(),
                sealed.toString(), forged.toString());
        assertEquals("1", r[0]);
        assertEquals("", r[1]);
        assertTrue(r[2].startsWith("open: ls_open failed: LS_ERR_SIGNER_MISMATCH (204): "), r[2]);
        assertEquals(1, r[2].lines().count(), r[2]);
        assertFalse(Files.exists(forged));

        // A missing key file: status 1 with LS_ERR_IO naming it.
        r = sealOpen("seal", tmp.resolve("none.key").toString(), aliceCrt.toString(),
                bobCrt.toString(), doc.toString(), tmp.resolve("x.p7m").toString());
        assertEquals("1", r[0]);
        assertTrue(r[2].contains("LS_ERR_IO (102)") && r[2].contains("none.key"), r[2]);
        assertFalse(Files.exists(tmp.resolve("x.p7m")));

        // Usage errors: status 2.
        assertEquals("2", sealOpen("open", "only-one")[0]);
        assertEquals("2", sealOpen("frobnicate", "a", "b", "c", "d", "e")[0]);
    }

    @Test
    void demoMode() throws Exception {
        String[] r = sealOpen();
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].contains("bob opened it: invoice.xml, application/xml"), r[1]);
        assertTrue(r[1].contains("LS_ERR_SIGNER_MISMATCH"), r[1]);
        assertEquals("", r[2]);
    }
}
