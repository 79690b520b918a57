package layersec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What Java seals opens with {@code openssl cms}; the binding's constants match the header. */
class InteropTest extends WithParties {
    static int openssl(Path dir, String... args) throws IOException, InterruptedException {
        String[] cmd = new String[args.length + 1];
        cmd[0] = "openssl";
        System.arraycopy(args, 0, cmd, 1, args.length);
        Process p = new ProcessBuilder(cmd).directory(dir.toFile())
                .redirectErrorStream(true).redirectOutput(dir.resolve("openssl.log").toFile())
                .start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return p.exitValue();
    }

    static int indexOf(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }

    @Test
    void opensslCmsOpensWhatJavaSealed(@TempDir Path tmp) throws Exception {
        Assumptions.assumeTrue(new ProcessBuilder("openssl", "version").start().waitFor() == 0,
                "openssl is not installed");
        Files.write(tmp.resolve("bob.key"), f.bob.keyPem());
        Files.write(tmp.resolve("bob.crt"), f.bobCert.toPem());
        Files.write(tmp.resolve("alice.crt"), f.aliceCert.toPem());
        byte[] doc = Fixtures.doc("<Invoice>interop 42</Invoice>");
        Files.write(tmp.resolve("sealed.der"), LayerSec.seal(doc, f.alice, List.of(f.bobCert),
                new SealOptions().filename("inv.xml").compress(false)));
        assertEquals(0, openssl(tmp, "cms", "-decrypt", "-inform", "DER", "-in", "sealed.der",
                "-recip", "bob.crt", "-inkey", "bob.key", "-out", "inner.mime"),
                () -> log(tmp));
        byte[] inner = Files.readAllBytes(tmp.resolve("inner.mime"));
        int body = indexOf(inner, "\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
        assertTrue(body > 0);
        Files.write(tmp.resolve("signed.der"), Arrays.copyOfRange(inner, body + 4, inner.length));
        // Verified pinned to alice's certificate: her signature, over our document.
        assertEquals(0, openssl(tmp, "cms", "-verify", "-binary", "-inform", "DER",
                "-nointern", "-partial_chain", "-in", "signed.der", "-certfile", "alice.crt",
                "-CAfile", "alice.crt", "-out", "content"), () -> log(tmp));
        byte[] content = Files.readAllBytes(tmp.resolve("content"));
        assertTrue(indexOf(content, doc) > 0, new String(content, StandardCharsets.UTF_8));
        // Pinned to bob's certificate instead, it fails.
        assertNotEquals(0, openssl(tmp, "cms", "-verify", "-binary", "-inform", "DER",
                "-nointern", "-partial_chain", "-in", "signed.der", "-certfile", "bob.crt",
                "-CAfile", "bob.crt", "-out", "content2"));
    }

    @Test
    void aPkcs12IdentityFromOpenssl(@TempDir Path tmp) throws Exception {
        Assumptions.assumeTrue(new ProcessBuilder("openssl", "version").start().waitFor() == 0,
                "openssl is not installed");
        Files.write(tmp.resolve("bob.key"), f.bob.keyPem());
        Files.write(tmp.resolve("bob.crt"), f.bobCert.toPem());
        assertEquals(0, openssl(tmp, "pkcs12", "-export", "-inkey", "bob.key", "-in", "bob.crt",
                "-passout", "pass:s3cret €", "-out", "bob.p12"), () -> log(tmp));
        byte[] sealed = LayerSec.seal(Fixtures.doc("p12"), f.alice, List.of(f.bobCert));
        try (Identity bob = Identity.load(tmp.resolve("bob.p12"), null,
                "s3cret €".toCharArray());
                Opened o = LayerSec.open(sealed, bob, new OpenOptions().sender(f.aliceCert))) {
            assertEquals("p12", new String(o.document(), StandardCharsets.UTF_8));
        }
        try (Identity bob = Identity.fromPem(Files.readAllBytes(tmp.resolve("bob.p12")), null,
                "s3cret €".toCharArray())) {
            assertTrue(bob.certificate().subject().contains("CN=bob"));
        }
        assertEquals(LayerSecException.LS_ERR_BAD_PASSWORD, org.junit.jupiter.api.Assertions
                .assertThrows(BadPasswordException.class, () -> Identity.load(
                        tmp.resolve("bob.p12"), null, "wrong".toCharArray())).code());
    }

    static String log(Path dir) {
        try {
            return Files.readString(dir.resolve("openssl.log"));
        } catch (IOException e) {
            return e.toString();
        }
    }

    @Test
    void theConstantsMatchTheHeader() throws Exception {
        Path header = Paths.get(LoaderTest.prop("layersec.test.include"), "layersec.h");
        Map<String, Integer> defined = new HashMap<>();
        Matcher m = Pattern.compile("(?m)^#define (LS_\\w+) \\(?(\\d+)(?: << (\\d+)\\))?")
                .matcher(Files.readString(header));
        while (m.find()) {
            int v = Integer.parseInt(m.group(2));
            defined.put(m.group(1), m.group(3) == null ? v : v << Integer.parseInt(m.group(3)));
        }
        int checked = 0;
        checked += check(defined, LayerSecException.class, "");
        checked += check(defined, SealOptions.class, "LS_SEAL_");
        checked += check(defined, OpenOptions.class, "LS_OPEN_");
        assertTrue(checked >= 30, "checked " + checked);
        for (ReceiptState s : ReceiptState.values()) {
            assertEquals(defined.get("LS_RECEIPT_" + s.name()), s.ordinal(), s.name());
        }
        for (Profile p : Profile.values()) {
            assertEquals(defined.get("LS_PROFILE_" + p.name()), p.value, p.name());
        }
        for (KeyType k : KeyType.values()) {
            assertEquals(defined.get("LS_KEY_" + k.name()), k.value, k.name());
        }
    }

    /** Every static final int of {@code c} against the header's {@code prefix + name}. */
    static int check(Map<String, Integer> defined, Class<?> c, String prefix)
            throws IllegalAccessException {
        int n = 0;
        for (Field fl : c.getDeclaredFields()) {
            int mod = fl.getModifiers();
            if (Modifier.isStatic(mod) && Modifier.isFinal(mod) && fl.getType() == int.class
                    && !fl.getName().equals("serialVersionUID")) {
                fl.setAccessible(true);
                String name = prefix + fl.getName();
                assertTrue(defined.containsKey(name), name + " is not in layersec.h");
                assertEquals(defined.get(name), fl.getInt(null), name);
                n++;
            }
        }
        return n;
    }
}
