package layersec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The loader, in child JVMs: the jar alone, and classes without any native library. */
class LoaderTest {
    static String prop(String name) {
        String v = System.getProperty(name);
        if (v == null) {
            throw new IllegalStateException(name + " is not set (run through make test-java)");
        }
        return v;
    }

    static String[] run(List<String> cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new String[] {String.valueOf(p.exitValue()), out};
    }

    @Test
    void theJarLoadsItsOwnNatives() throws Exception {
        String[] r = run(List.of(prop("layersec.test.java"), "-Xcheck:jni",
                "-Djava.library.path=/nonexistent-layersec", "-jar", prop("layersec.test.jar")));
        assertEquals("0", r[0], r[1]);
        assertTrue(r[1].startsWith("liblayersec 0.1.0 (JNI: resource layersec/native/"), r[1]);
    }

    @Test
    void aMissingLibrarySaysWhereItLooked() throws Exception {
        String[] r = run(List.of(prop("layersec.test.java"),
                "-Djava.library.path=/nonexistent-layersec", "-cp", prop("layersec.test.classes"),
                "layersec.LayerSec"));
        assertNotEquals("0", r[0]);
        assertTrue(r[1].contains("UnsatisfiedLinkError"), r[1]);
        assertTrue(r[1].contains("/nonexistent-layersec/liblayersec_jni.so: not found"), r[1]);
        assertTrue(r[1].contains("resource layersec/native/" + LayerSec.platform()
                + "/liblayersec_jni.so in "), r[1]);
    }
}
