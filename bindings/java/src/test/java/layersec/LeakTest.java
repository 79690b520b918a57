package layersec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The leak test of issue 16: 100,000 seal/open calls with EC keys in a child JVM with a fixed
 * heap ({@code -Xms64m -Xmx64m -XX:+AlwaysPreTouch}: the heap is resident from the start, so
 * heap growth cannot hide or fake a native leak); the child's RSS after 100,000 calls must be at
 * most its RSS after 10,000 calls + 8 MiB. The child ({@link LeakMain}) reads VmRSS from its own
 * /proc/self/status. About 100 s over the debug build of liblayersec (1 ms per seal+open).
 */
class LeakTest {
    private static final int TOTAL = 100_000;
    private static final int EVERY = 10_000;
    private static final long SLACK_KB = 8 * 1024;

    @Test
    @Timeout(value = 900, unit = TimeUnit.SECONDS)
    void hundredThousandSealOpenCallsDoNotGrowTheProcess() throws Exception {
        String java = System.getProperty("layersec.test.java");
        // The class path of the tests (the console launcher's own is only itself).
        String cp = System.getProperty("layersec.test.cp");
        assertTrue(cp != null, "-Dlayersec.test.cp is not set (run by make test-java)");
        List<String> cmd = List.of(java, "-Xms64m", "-Xmx64m", "-XX:+AlwaysPreTouch",
                "-Djava.library.path=" + System.getProperty("java.library.path"),
                "-cp", cp, "layersec.LeakMain", String.valueOf(TOTAL), String.valueOf(EVERY));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child did not end");
        assertEquals(0, p.exitValue(), out);
        Map<Integer, Long> rss = new TreeMap<>();
        for (String line : out.split("\n")) {
            String[] f = line.trim().split(" ");
            if (f.length >= 3 && f[0].equals("rss")) {
                rss.put(Integer.parseInt(f[1]), Long.parseLong(f[2]));
            }
        }
        // Shown in the test report (stdout), so the numbers of every run can be compared.
        System.out.println("LeakTest: VmRSS in kB after n seal+open calls: " + rss);
        assertTrue(rss.containsKey(EVERY) && rss.containsKey(TOTAL), out);
        long at10k = rss.get(EVERY);
        long at100k = rss.get(TOTAL);
        assertTrue(at100k <= at10k + SLACK_KB, "RSS after " + TOTAL + " calls is " + at100k
                + " kB, more than " + at10k + " kB after " + EVERY + " + " + SLACK_KB + " kB: "
                + rss);
    }
}
