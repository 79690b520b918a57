package layersec.examples;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.List;
import layersec.Certificate;
import layersec.Identity;
import layersec.KeyType;
import layersec.LayerSec;
import layersec.LayerSecException;
import layersec.OpenOptions;
import layersec.Opened;
import layersec.SealOptions;

/**
 * Seal a document for a partner and open it again, with the Java binding of liblayersec.
 *
 * <pre>
 *   seal-open                                                 a demo: alice seals for bob
 *   seal-open seal KEY CERT RECIPIENT_CERT IN OUT [FILENAME]  as examples-c/seal.c
 *   seal-open open KEY CERT SENDER_CERT IN OUT                as examples-c/open.c
 * </pre>
 *
 * With no arguments it makes two identities (alice and bob, EC P-256 keys), seals a small
 * invoice from alice for bob, opens it as bob requiring alice's signature, and prints what
 * happened. With arguments it is the same tool as the C examples (same arguments, same output):
 * keys are unencrypted PEM files, the sealed message is DER. A failure prints one line on
 * stderr with the error's LS_ERR_* name, code and message and exits 1; a usage error exits 2.
 */
public final class SealOpen {
    private SealOpen() {}

    /** A failure already reported on stderr. */
    private static final class Failed extends Exception {
        private static final long serialVersionUID = 1L;
    }

    public static void main(String[] args) {
        int status;
        try {
            if (args.length == 0) {
                demo();
                status = 0;
            } else if (args[0].equals("seal") && (args.length == 6 || args.length == 7)) {
                status = seal(args);
            } else if (args[0].equals("open") && args.length == 6) {
                status = open(args);
            } else {
                System.err.println("usage: seal-open\n"
                        + "       seal-open seal KEY CERT RECIPIENT_CERT IN OUT [FILENAME]\n"
                        + "       seal-open open KEY CERT SENDER_CERT IN OUT");
                status = 2;
            }
        } catch (Failed e) {
            status = 1;
        }
        System.exit(status);
    }

    /** A library call that may fail. */
    @FunctionalInterface
    private interface Step<T> {
        T run() throws LayerSecException;
    }

    /** Runs a step; on failure prints why, as the C examples do, and gives up. */
    private static <T> T step(String tool, String what, Step<T> step) throws Failed {
        try {
            return step.run();
        } catch (LayerSecException e) {
            System.err.printf("%s: %s failed: %s (%d): %s%n", tool, what, e.name(), e.code(),
                    e.libraryMessage());
            throw new Failed();
        }
    }

    private static byte[] read(String tool, String path) throws Failed {
        try {
            return Files.readAllBytes(Paths.get(path));
        } catch (IOException e) {
            System.err.printf("%s: cannot open %s: %s%n", tool, path, e);
            throw new Failed();
        }
    }

    private static void write(String tool, String path, byte[] data) throws Failed {
        try {
            Files.write(Paths.get(path), data);
        } catch (IOException e) {
            System.err.printf("%s: cannot create %s: %s%n", tool, path, e);
            throw new Failed();
        }
    }

    /** seal KEY CERT RECIPIENT_CERT IN OUT [FILENAME] */
    private static int seal(String[] a) throws Failed {
        try (Identity signer = step("seal", "loading our identity (ls_identity_load)",
                        () -> Identity.load(Paths.get(a[1]), Paths.get(a[2])));
                Certificate recipient = step("seal",
                        "loading the recipient's certificate (ls_cert_load)",
                        () -> Certificate.load(Paths.get(a[3])))) {
            byte[] doc = read("seal", a[4]);
            // Default options: DER, AES-256-GCM, compression when it pays. The MIME type is
            // guessed from the file name.
            SealOptions options = new SealOptions().filename(a.length == 7 ? a[6] : null);
            byte[] sealed = step("seal", "ls_seal",
                    () -> LayerSec.seal(doc, signer, List.of(recipient), options));
            write("seal", a[5], sealed);
            System.out.printf("sealed %d bytes for %s into %s (%d bytes)%n", doc.length,
                    recipient.subject(), a[5], sealed.length);
            return 0;
        }
    }

    /** open KEY CERT SENDER_CERT IN OUT */
    private static int open(String[] a) throws Failed {
        try (Identity me = step("open", "loading our identity (ls_identity_load)",
                        () -> Identity.load(Paths.get(a[1]), Paths.get(a[2])));
                Certificate sender = step("open",
                        "loading the sender's certificate (ls_cert_load)",
                        () -> Certificate.load(Paths.get(a[3])))) {
            byte[] in = read("open", a[4]);
            // The partner we expect: a valid signature by anyone else is refused. Nothing is
            // written unless every check passed.
            try (Opened o = step("open", "ls_open",
                    () -> LayerSec.open(in, me, new OpenOptions().sender(sender)))) {
                write("open", a[5], o.document());
                System.out.println("filename: " + o.safeFilename().orElse("(none)"));
                System.out.println("MIME type: " + o.mimeType());
                System.out.println("signer: " + o.signerSubject());
                System.out.println("signing time: "
                        + o.signingTime().map(Object::toString).orElse("(not stated)"));
                System.out.println("encrypted: " + (o.wasEncrypted() ? "yes" : "no"));
                System.out.printf("wrote %d bytes to %s%n", o.document().length, a[5]);
            }
            return 0;
        }
    }

    /** No arguments: alice seals an invoice for bob, bob opens it. */
    private static void demo() throws Failed {
        System.out.println("liblayersec " + LayerSec.version());
        byte[] invoice = ("<Invoice><Number>2026-0042</Number><Total currency=\"EUR\">1250.00"
                + "</Total></Invoice>\n").getBytes(StandardCharsets.UTF_8);
        try (Identity alice = step("demo", "generating alice's identity",
                        () -> Identity.generate("alice", KeyType.EC_P256));
                Identity bob = step("demo", "generating bob's identity",
                        () -> Identity.generate("bob", KeyType.EC_P256));
                Certificate aliceCert = step("demo", "alice's certificate", alice::certificate);
                Certificate bobCert = step("demo", "bob's certificate", bob::certificate)) {
            System.out.println("made identities: " + aliceCert.subject() + " and "
                    + bobCert.subject() + " (EC P-256, self-signed)");
            byte[] sealed = step("demo", "sealing", () -> LayerSec.seal(invoice, alice,
                    List.of(bobCert), new SealOptions().filename("invoice.xml")));
            System.out.printf("alice sealed invoice.xml (%d bytes) for bob: %d bytes of CMS%n",
                    invoice.length, sealed.length);
            try (Opened o = step("demo", "opening", () -> LayerSec.open(sealed, bob,
                    new OpenOptions().sender(aliceCert)))) {
                System.out.printf("bob opened it: %s, %s, %d bytes, signed by %s at %s%n",
                        o.safeFilename().orElse("(no name)"), o.mimeType(), o.size(),
                        o.signerSubject(), o.signingTime().map(Object::toString).orElse("?"));
                if (!java.util.Arrays.equals(invoice, o.document())) {
                    System.err.println("demo: the opened document differs from the invoice");
                    throw new Failed();
                }
            }
            // Someone else's certificate as the expected sender: refused.
            try {
                LayerSec.open(sealed, bob, new OpenOptions().sender(bobCert)).close();
                System.err.println("demo: a document from alice was accepted as bob's");
                throw new Failed();
            } catch (LayerSecException e) {
                System.out.println("expecting bob as the signer instead is refused: " + e.name());
            }
            System.out.println("OK: the invoice arrived unchanged, and only alice could have sent it");
        }
    }
}
