package layersec;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The child process of {@link LeakTest}: seals and opens a small document with EC P-256 keys
 * {@code args[0]} times and prints {@code rss <calls> <VmRSS in kB>} (from /proc/self/status)
 * after every {@code args[1]} calls, each time also copying the signer's certificate
 * ({@link Opened#signer()}). Every handle is closed explicitly, as a careful caller does.
 * With {@code args[2] = "keep"} (the negative control, run by hand) every {@link Opened} is kept
 * open in a list instead: native memory that grows, which the RSS check must see.
 */
public final class LeakMain {
    private LeakMain() {}

    static long vmRssKb() throws Exception {
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        throw new IllegalStateException("no VmRSS in /proc/self/status");
    }

    public static void main(String[] args) throws Exception {
        int total = Integer.parseInt(args[0]);
        int every = Integer.parseInt(args[1]);
        boolean keep = args.length > 2 && args[2].equals("keep");
        List<Opened> kept = new ArrayList<>();
        byte[] doc = "<Invoice>leak test</Invoice>".repeat(30).getBytes(StandardCharsets.UTF_8);
        try (Identity alice = Identity.generate("alice", KeyType.EC_P256);
                Identity bob = Identity.generate("bob", KeyType.EC_P256);
                Certificate aliceCert = alice.certificate();
                Certificate bobCert = bob.certificate()) {
            OpenOptions opts = new OpenOptions().sender(aliceCert);
            List<Certificate> to = List.of(bobCert);
            long start = System.nanoTime();
            for (int i = 1; i <= total; i++) {
                byte[] sealed = LayerSec.seal(doc, alice, to);
                Opened o = LayerSec.open(sealed, bob, opts);
                try {
                    if (!Arrays.equals(doc, o.document())) {
                        throw new AssertionError("round trip " + i + " changed the document");
                    }
                    // The signer's certificate, a native handle of the Opened's own (made
                    // on demand): freed by o.close(), kept alive in the keep mode.
                    if (!o.signer().subject().equals(o.signerSubject())) {
                        throw new AssertionError("round trip " + i + ": another signer");
                    }
                } finally {
                    if (keep) {
                        kept.add(o);
                    } else {
                        o.close();
                    }
                }
                if (i % every == 0) {
                    System.out.println("rss " + i + " " + vmRssKb() + " "
                            + (System.nanoTime() - start) / 1_000_000 + "ms" + (keep ? " kept "
                            + kept.size() : ""));
                    System.out.flush();
                }
            }
        }
    }
}
