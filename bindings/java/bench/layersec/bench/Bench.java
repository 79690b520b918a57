package layersec.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import layersec.Certificate;
import layersec.Identity;
import layersec.LayerSec;
import layersec.LayerSecException;
import layersec.OpenOptions;
import layersec.Opened;

/**
 * The bindings' benchmark, Java side (a C and a C# program implement the same contract;
 * scripts/bench-bindings.sh runs them side by side):
 *
 * <pre>
 *   Bench loop KEY CERT PEER_KEY PEER_CERT SIZE ITERATIONS
 *   Bench seal KEY CERT PEER_CERT SIZE ITERATIONS
 * </pre>
 *
 * The document is SIZE bytes of xorshift32 with seed 2463534242: for each byte
 * {@code x ^= x << 13; x ^= x >>> 17; x ^= x << 5; byte = x & 0xff} (32-bit unsigned).
 *
 * <ul>
 * <li>{@code loop}: our identity (KEY, CERT) and the peer's (PEER_KEY, PEER_CERT) and both
 *     certificates are loaded once; ITERATIONS/10 untimed warm-up rounds, then ITERATIONS timed
 *     rounds of: seal the document signed by us for the peer (default options), open it as
 *     the peer requiring our certificate as signer, check the opened length (and the bytes on
 *     the first round), close what was opened.</li>
 * <li>{@code seal}: the document made once into one byte[]; one untimed warm-up seal, then
 *     ITERATIONS timed seals, each result dropped.</li>
 * </ul>
 * Prints one line: {@code <mode> size=<SIZE> iterations=<N> seconds=<float>
 * vmhwm_kb=<VmHWM of /proc/self/status>}; exit status 1 with a message on stderr on failure.
 *
 * <p>Memory (why {@code seal} runs with {@code -Xmx} = 2 × SIZE + 64 MiB): the Java heap holds
 * the document (SIZE) and one sealed result at a time (about SIZE), nothing more. The JNI glue
 * uses a byte[] of 1 MiB or more in place (GetPrimitiveArrayCritical: no copy at all; the GC
 * waits while the seal runs) and copies smaller ones into native memory (GetByteArrayRegion);
 * GetByteArrayElements is not used. The sealed bytes are copied once, from the library's
 * buffer into the new byte[] that seal returns. Measured: 100 MiB × 3 seals run with -Xmx216m
 * and fail with -Xmx190m (less than document + result).
 */
public final class Bench {
    private Bench() {}

    /** SIZE bytes of xorshift32 from seed 2463534242. */
    static byte[] document(int size) {
        byte[] d = new byte[size];
        int x = (int) 2463534242L;
        for (int i = 0; i < size; i++) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            d[i] = (byte) x;
        }
        return d;
    }

    static long vmHwmKb() throws IOException {
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }

    static void report(String mode, int size, int n, long nanos) throws IOException {
        System.out.println(String.format(Locale.ROOT,
                "%s size=%d iterations=%d seconds=%.6f vmhwm_kb=%d", mode, size, n,
                nanos / 1e9, vmHwmKb()));
    }

    static void loop(String[] a) throws LayerSecException, IOException {
        int size = Integer.parseInt(a[5]);
        int n = Integer.parseInt(a[6]);
        byte[] doc = document(size);
        try (Identity me = Identity.load(Paths.get(a[1]), Paths.get(a[2]));
                Identity peer = Identity.load(Paths.get(a[3]), Paths.get(a[4]));
                Certificate myCert = Certificate.load(Paths.get(a[2]));
                Certificate peerCert = Certificate.load(Paths.get(a[4]))) {
            List<Certificate> recipients = List.of(peerCert);
            OpenOptions fromMe = new OpenOptions().sender(myCert);
            for (int i = 0; i < n / 10; i++) {
                round(doc, me, recipients, peer, fromMe, i == 0);
            }
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) {
                round(doc, me, recipients, peer, fromMe, i == 0);
            }
            report("loop", size, n, System.nanoTime() - t0);
        }
    }

    private static void round(byte[] doc, Identity me, List<Certificate> recipients,
            Identity peer, OpenOptions fromMe, boolean checkBytes) throws LayerSecException {
        byte[] sealed = LayerSec.seal(doc, me, recipients);
        try (Opened o = LayerSec.open(sealed, peer, fromMe)) {
            if (o.document().length != doc.length
                    || (checkBytes && !Arrays.equals(doc, o.document()))) {
                throw new IllegalStateException("the opened document differs");
            }
        }
    }

    static void seal(String[] a) throws LayerSecException, IOException {
        int size = Integer.parseInt(a[4]);
        int n = Integer.parseInt(a[5]);
        byte[] doc = document(size);
        try (Identity me = Identity.load(Paths.get(a[1]), Paths.get(a[2]));
                Certificate peerCert = Certificate.load(Paths.get(a[3]))) {
            List<Certificate> recipients = List.of(peerCert);
            long sink = LayerSec.seal(doc, me, recipients).length; // warm-up
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) {
                sink += LayerSec.seal(doc, me, recipients).length; // the result is dropped
            }
            long t = System.nanoTime() - t0;
            if (sink <= 0) {
                throw new IllegalStateException("nothing sealed");
            }
            report("seal", size, n, t);
        }
    }

    public static void main(String[] args) {
        try {
            if (args.length == 7 && args[0].equals("loop")) {
                loop(args);
            } else if (args.length == 6 && args[0].equals("seal")) {
                seal(args);
            } else {
                System.err.println("usage: Bench loop KEY CERT PEER_KEY PEER_CERT SIZE ITERATIONS\n"
                        + "       Bench seal KEY CERT PEER_CERT SIZE ITERATIONS");
                System.exit(2);
            }
        } catch (LayerSecException | IOException | RuntimeException e) {
            System.err.println("bench: " + e);
            System.exit(1);
        }
    }
}
