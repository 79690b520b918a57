package layersec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Identities on a PKCS#11 token ({@link Identity#loadPkcs11}) with SoftHSM2. SoftHSM2 reads
 * {@code SOFTHSM2_CONF} once per process, when the module is loaded, and a JVM cannot set its
 * own environment: so this test makes a token with {@code scripts/softhsm-token.sh} and runs
 * the checks ({@link Pkcs11Checks}) in a child JVM whose environment names it, with the same
 * {@code -Xcheck:jni} and natives as this one, and a GC log the checks read. Missing SoftHSM2
 * or OpenSC's pkcs11-tool: skipped, or failed under {@code LS_REQUIRE_FIXTURES=1}.
 */
class Pkcs11Test {
    /** The number of tests of {@link Pkcs11Checks}: all must have run and passed. */
    private static final int CHECKS = 5;

    @Test
    @Timeout(value = 600, unit = TimeUnit.SECONDS)
    void identitiesOnATokenInAChildJvm(@TempDir Path tmp) throws Exception {
        String include = System.getProperty("layersec.test.include");
        String cp = System.getProperty("layersec.test.cp");
        assertTrue(include != null && cp != null,
                "-Dlayersec.test.include/cp are not set (run by make test-java)");
        Path script = Paths.get(include).getParent().resolve("scripts/softhsm-token.sh");
        Process mk = new ProcessBuilder("bash", script.toString(), tmp.resolve("hsm").toString())
                .redirectErrorStream(false).start();
        String made = new String(mk.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String err = new String(mk.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(mk.waitFor(120, TimeUnit.SECONDS), "softhsm-token.sh did not end");
        if (mk.exitValue() == 3) {
            skipOrFail(err.trim());
        }
        assertEquals(0, mk.exitValue(), "softhsm-token.sh failed: " + err);
        Map<String, String> env = new HashMap<>();
        for (String line : made.split("\n")) {
            int eq = line.indexOf('=');
            if (eq > 0) {
                env.put(line.substring(0, eq), line.substring(eq + 1));
            }
        }

        // The console launcher this JVM runs (-jar …): java.class.path is that jar.
        String junit = System.getProperty("java.class.path");
        Path gcLog = tmp.resolve("gc.log");
        List<String> cmd = new ArrayList<>(List.of(System.getProperty("layersec.test.java"),
                "-Xcheck:jni", "-Xmx256m", "-Xlog:gc:file=" + gcLog,
                "-Djava.library.path=" + System.getProperty("java.library.path"),
                "-Dlayersec.test.gclog=" + gcLog, "-jar", junit, "--disable-banner",
                "--disable-ansi-colors", "--details=tree", "--exclude-engine=junit-vintage",
                "--include-classname", ".*", "-cp", cp,
                "--select-class", "layersec.Pkcs11Checks"));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().putAll(env);
        Process child = pb.start();
        String out = new String(child.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(child.waitFor(60, TimeUnit.SECONDS), "the child JVM did not end");
        // Shown in the report: the child's tests, one per line.
        System.out.println(out);
        assertEquals(0, child.exitValue(), "the token checks failed in the child JVM:\n" + out);
        assertTrue(out.matches("(?s).*\\b" + CHECKS + " tests successful.*")
                && out.matches("(?s).*\\b0 tests failed.*"),
                "expected " + CHECKS + " successful checks:\n" + out);
    }

    /** Skips the test, or fails it under LS_REQUIRE_FIXTURES=1 (as CI runs). */
    static void skipOrFail(String why) {
        if ("1".equals(System.getenv("LS_REQUIRE_FIXTURES"))) {
            fail(why + " (LS_REQUIRE_FIXTURES=1: a missing fixture or tool fails the test)");
        }
        Assumptions.abort(why);
    }
}
