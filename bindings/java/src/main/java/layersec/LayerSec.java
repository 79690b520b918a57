package layersec;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Layer Security for Java: seal documents as S/MIME (CMS) for their recipients, and open what
 * partners sealed for you with proof of who sent them. A JNI binding of liblayersec
 * (include/layersec.h).
 *
 * <pre>{@code
 * try (Identity alice = Identity.generate("alice", KeyType.EC_P256);
 *      Identity bob = Identity.generate("bob", KeyType.EC_P256);
 *      Certificate aliceCert = alice.certificate();
 *      Certificate bobCert = bob.certificate()) {
 *     byte[] sealed = LayerSec.seal(doc, alice, List.of(bobCert),
 *             new SealOptions().filename("invoice.xml"));
 *     try (Opened o = LayerSec.open(sealed, bob, new OpenOptions().sender(aliceCert))) {
 *         o.document(); // == doc
 *     }
 * }
 * }</pre>
 *
 * <h2>Threads</h2>
 * {@link Identity} and {@link Certificate} are immutable: any number of threads may seal and
 * open with the same ones at once. Closing a handle while another thread is in a call with it
 * is safe too: the native object is freed when that call returns, and later uses throw
 * {@link ClosedException}. Option objects are plain mutable Java objects: set them up on one
 * thread.
 *
 * <h2>The native library</h2>
 * {@code liblayersec_jni.so} (the JNI glue) and {@code liblayersec.so.0} (which it links to)
 * are looked for, in this order:
 * <ol>
 * <li>in each folder of the system property {@code java.library.path}: the first holding
 *     {@code liblayersec_jni.so} is used, with the {@code liblayersec.so.0} beside it if there
 *     is one (else the dynamic loader's search: its RUNPATH {@code $ORIGIN},
 *     {@code LD_LIBRARY_PATH}, the ld.so cache);</li>
 * <li>in this jar's resources, {@code layersec/native/<os>-<arch>/}, copied to a temporary
 *     folder (removed once loaded).</li>
 * </ol>
 * When neither works, the {@link UnsatisfiedLinkError} lists every place looked at and why
 * it failed.
 */
public final class LayerSec {
    private LayerSec() {}

    static final String JNI_LIB = "layersec_jni";
    static final String CORE_SONAME = "liblayersec.so.0";

    private static boolean loaded;
    private static String loadedFrom;
    private static String failure;

    /** The version of the loaded liblayersec ({@code ls_version()}), e.g. {@code "0.1.0"}. */
    public static String version() {
        loadNative();
        return Utf8.text(Native.version());
    }

    /** Where the JNI library was loaded from (a path, or the jar resource it was copied from). */
    public static String nativeLibrary() {
        loadNative();
        return loadedFrom;
    }

    /**
     * Loads the native libraries once (every entry point calls it). Throws
     * {@link UnsatisfiedLinkError} naming every place looked at; later calls throw the same
     * message again (the JVM cannot unload a half-loaded library to retry).
     */
    static synchronized void loadNative() {
        if (loaded) {
            return;
        }
        if (failure != null) {
            throw new UnsatisfiedLinkError(failure);
        }
        List<String> tried = new ArrayList<>();
        String platform = platform();
        if (fromLibraryPath(tried) || fromResources(platform, tried)) {
            loaded = true;
            return;
        }
        failure = "layersec: cannot load the native library " + System.mapLibraryName(JNI_LIB)
                + " (with " + CORE_SONAME + ") for " + platform + ". Put both in a folder of "
                + "-Djava.library.path, or use a layersec jar built with them (make java). "
                + "Looked in:\n  " + String.join("\n  ", tried);
        throw new UnsatisfiedLinkError(failure);
    }

    private static boolean fromLibraryPath(List<String> tried) {
        String prop = System.getProperty("java.library.path", "");
        String file = System.mapLibraryName(JNI_LIB);
        boolean any = false;
        for (String dir : prop.split(File.pathSeparator)) {
            if (dir.isEmpty()) {
                continue;
            }
            any = true;
            Path jni = Paths.get(dir, file).toAbsolutePath();
            if (!Files.isRegularFile(jni)) {
                tried.add(jni + ": not found (java.library.path)");
                continue;
            }
            try {
                Path core = jni.resolveSibling(CORE_SONAME);
                if (Files.isRegularFile(core)) {
                    System.load(core.toString());
                }
                System.load(jni.toString());
                loadedFrom = jni.toString();
                return true;
            } catch (UnsatisfiedLinkError e) {
                tried.add(jni + ": " + e.getMessage());
                // The first folder that has the library decides: a broken copy is reported,
                // not silently replaced by another one.
                return false;
            }
        }
        if (!any) {
            tried.add("java.library.path: empty");
        }
        return false;
    }

    private static boolean fromResources(String platform, List<String> tried) {
        String base = "native/" + platform + "/";
        String jniName = System.mapLibraryName(JNI_LIB);
        java.security.CodeSource src = LayerSec.class.getProtectionDomain().getCodeSource();
        String where = "resource layersec/" + base + jniName + " in "
                + (src == null || src.getLocation() == null ? "the class path" : src.getLocation());
        Path tmp = null;
        try (InputStream jniIn = LayerSec.class.getResourceAsStream(base + jniName);
                InputStream coreIn = LayerSec.class.getResourceAsStream(base + CORE_SONAME)) {
            if (jniIn == null || coreIn == null) {
                tried.add(where + ": not there" + (jniIn != null ? " (" + CORE_SONAME
                        + " missing beside it)" : ""));
                return false;
            }
            tmp = Files.createTempDirectory("layersec-native-");
            Path core = tmp.resolve(CORE_SONAME);
            Path jni = tmp.resolve(jniName);
            Files.copy(coreIn, core, StandardCopyOption.REPLACE_EXISTING);
            Files.copy(jniIn, jni, StandardCopyOption.REPLACE_EXISTING);
            System.load(core.toString());
            System.load(jni.toString());
            loadedFrom = where;
            return true;
        } catch (IOException | UnsatisfiedLinkError e) {
            tried.add(where + ": " + e.getMessage());
            return false;
        } finally {
            // Loaded (mapped) libraries stay usable after their files are removed.
            deleteQuietly(tmp);
        }
    }

    private static void deleteQuietly(Path dir) {
        if (dir == null) {
            return;
        }
        try {
            for (String n : new String[] {CORE_SONAME, System.mapLibraryName(JNI_LIB)}) {
                Files.deleteIfExists(dir.resolve(n));
            }
            Files.deleteIfExists(dir);
        } catch (IOException e) {
            // A leftover temporary folder is harmless.
        }
    }

    /** {@code linux-x86_64}, {@code linux-aarch64}, … (the resource folder of the natives). */
    static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(java.util.Locale.ROOT);
        if (os.startsWith("linux")) {
            os = "linux";
        }
        if (arch.equals("amd64")) {
            arch = "x86_64";
        }
        return os + "-" + arch;
    }

    /** A seal* call of {@link Native} with the borrowed pointers and the options' strings. */
    @FunctionalInterface
    private interface SealCall<T, X extends Exception> {
        T call(long signer, long[] recipients, SealOptions o, byte[] filename, byte[] mimeType)
                throws LayerSecException, X;
    }

    /** An open* call of {@link Native} with the borrowed pointers; returns an ls_opened. */
    @FunctionalInterface
    private interface OpenCall<X extends Exception> {
        long call(long recipient, OpenOptions o, long sender, long partners)
                throws LayerSecException, X;
    }

    /** Borrows signer and recipients for one seal call (they cannot be freed meanwhile). */
    private static <T, X extends Exception> T sealing(Identity signer,
            List<Certificate> recipients, SealOptions options, SealCall<T, X> call)
            throws LayerSecException, X {
        Objects.requireNonNull(signer, "signer");
        Objects.requireNonNull(recipients, "recipients");
        SealOptions o = options != null ? options : new SealOptions();
        loadNative();
        byte[] filename = Utf8.cstr(o.filename, "filename");
        byte[] mimeType = Utf8.cstr(o.mimeType, "mimeType");
        List<NativeHandle> borrowed = new ArrayList<>(recipients.size() + 1);
        try {
            long sp = borrow(signer, borrowed);
            long[] rp = new long[recipients.size()];
            for (int i = 0; i < rp.length; i++) {
                Certificate r = Objects.requireNonNull(recipients.get(i), "recipients[" + i + "]");
                rp[i] = borrow(r, borrowed);
            }
            return call.call(sp, rp, o, filename, mimeType);
        } finally {
            releaseAll(borrowed);
        }
    }

    /**
     * Borrows recipient, sender and partners for one open call, then copies everything out of
     * the ls_opened (with its document when {@code withDocument}) and frees it.
     */
    private static <X extends Exception> Opened opening(Identity recipient,
            OpenOptions options, boolean withDocument, OpenCall<X> call)
            throws LayerSecException, X {
        Objects.requireNonNull(options, "options (an open needs at least a sender)");
        loadNative();
        List<NativeHandle> borrowed = new ArrayList<>(3);
        long opened;
        try {
            long rp = recipient == null ? 0 : borrow(recipient, borrowed);
            long sp = options.sender == null ? 0 : borrow(options.sender, borrowed);
            long pp = options.partners == null ? 0 : borrow(options.partners, borrowed);
            opened = call.call(rp, options, sp, pp);
        } finally {
            releaseAll(borrowed);
        }
        try {
            long t = Native.openedSigningTime(opened);
            return new Opened(
                    withDocument ? Native.openedDocument(opened) : new byte[0],
                    Utf8.text(Native.openedFilename(opened)),
                    Utf8.text(Native.openedSafeFilename(opened)),
                    Utf8.text(Native.openedMimeType(opened)),
                    Native.openedSignerPem(opened),
                    Utf8.text(Native.openedSignerSubject(opened)),
                    t == Long.MIN_VALUE ? null : Instant.ofEpochSecond(t),
                    Native.openedWasEncrypted(opened),
                    Native.openedSize(opened));
        } finally {
            Native.openedFree(opened);
        }
    }

    /**
     * Seals {@code document}: MIME-wraps it, compresses it (when it pays), signs it with
     * {@code signer} and encrypts it to {@code recipients} (may be empty with
     * {@link SealOptions#encryptToSelf}). {@code options} is nullable (defaults). Returns the
     * sealed message.
     *
     * <p>Memory: a document under 1 MiB is copied once into native memory for the library; a
     * larger one is used in place (no copy; the GC waits until the seal returns, so seal very
     * large documents from many threads with {@link #sealFile} or {@link #sealStream}). The
     * sealed result is copied once into the new array returned: no other copy is made on the
     * Java heap. The same holds for the message given to {@link #open}.
     */
    public static byte[] seal(byte[] document, Identity signer, List<Certificate> recipients,
            SealOptions options) throws LayerSecException {
        Objects.requireNonNull(document, "document");
        return sealing(signer, recipients, options, (sp, rp, o, fn, mt) -> Native.seal(sp, rp,
                document, o.flags, fn, mt, o.compressionLevel, o.signingTime, o.profile.value));
    }

    /** {@link #seal(byte[], Identity, List, SealOptions)} with the default options. */
    public static byte[] seal(byte[] document, Identity signer, List<Certificate> recipients)
            throws LayerSecException {
        return seal(document, signer, recipients, null);
    }

    /**
     * {@link #seal(byte[], Identity, List, SealOptions) seal} from the file {@code in} to the
     * file {@code out} in constant memory (the document is never read whole; indefinite-length
     * BER as {@code openssl cms -stream} writes it). {@code out} appears only once complete; a
     * failed seal leaves no file. The document gets no file name unless the options give one.
     */
    public static void sealFile(Path in, Path out, Identity signer, List<Certificate> recipients,
            SealOptions options) throws LayerSecException {
        byte[] inp = Utf8.path(Objects.requireNonNull(in, "in"), "in");
        byte[] outp = Utf8.path(Objects.requireNonNull(out, "out"), "out");
        sealing(signer, recipients, options, (sp, rp, o, fn, mt) -> {
            Native.sealFile(sp, rp, inp, outp, o.flags, fn, mt, o.compressionLevel,
                    o.signingTime, o.profile.value);
            return null;
        });
    }

    /**
     * {@link #seal(byte[], Identity, List, SealOptions) seal} from {@code in} to {@code out} in
     * constant memory; both are used on this thread only, inside the call, and neither is
     * closed. Returns the number of bytes written. On an exception what was written is
     * incomplete: discard it. What a stream throws ({@link IOException} or unchecked) comes out
     * of this method unchanged, once the library has returned; it never crosses the library.
     */
    public static long sealStream(InputStream in, OutputStream out, Identity signer,
            List<Certificate> recipients, SealOptions options)
            throws LayerSecException, IOException {
        Objects.requireNonNull(in, "in");
        Objects.requireNonNull(out, "out");
        return sealing(signer, recipients, options, (sp, rp, o, fn, mt) -> Native.sealStream(sp,
                rp, in, out, o.flags, fn, mt, o.compressionLevel, o.signingTime,
                o.profile.value));
    }

    /**
     * Opens a sealed message (DER, BER, PEM or S/MIME, detected): decrypts it with
     * {@code recipient} (nullable for a signed-only message), verifies every signature against
     * {@link OpenOptions#sender} (or {@link OpenOptions#partners}) and undoes compression and
     * MIME. A message that does not verify throws the {@link VerificationException} (or
     * {@link CertificateException}, {@link FormatException}) of its code.
     */
    public static Opened open(byte[] data, Identity recipient, OpenOptions options)
            throws LayerSecException {
        Objects.requireNonNull(data, "data");
        return opening(recipient, options, true, (rp, o, sp, pp) -> Native.open(rp, data,
                o.flags, o.maxOutput, sp, pp, o.profile.value));
    }

    /**
     * {@link #open(byte[], Identity, OpenOptions) open} from the file {@code in} to the file
     * {@code out} in constant memory. {@code out} (mode 0600) appears only once the signature
     * and the authentication tag verified: a refused message leaves no file. The
     * {@link Opened} returned describes the document; its {@link Opened#document()} is empty
     * and {@link Opened#size()} is the size written.
     */
    public static Opened openFile(Path in, Path out, Identity recipient, OpenOptions options)
            throws LayerSecException {
        byte[] inp = Utf8.path(Objects.requireNonNull(in, "in"), "in");
        byte[] outp = Utf8.path(Objects.requireNonNull(out, "out"), "out");
        return opening(recipient, options, false, (rp, o, sp, pp) -> Native.openFile(rp, inp,
                outp, o.flags, o.maxOutput, sp, pp, o.profile.value));
    }

    /**
     * {@link #open(byte[], Identity, OpenOptions) open} from {@code in} to {@code out} in
     * constant memory (both used on this thread only, inside the call, and not closed).
     *
     * <p><b>What {@code out} receives is not authentic until this returns</b>: the signature and
     * the authentication tag come after the content they cover. Write to a place nobody uses
     * yet and discard it if this throws; {@link #openFile} does that for files. The
     * {@link Opened} returned has an empty {@link Opened#document()}. What a stream throws comes
     * out unchanged, as for {@link #sealStream}.
     */
    public static Opened openStream(InputStream in, OutputStream out, Identity recipient,
            OpenOptions options) throws LayerSecException, IOException {
        Objects.requireNonNull(in, "in");
        Objects.requireNonNull(out, "out");
        return opening(recipient, options, false, (rp, o, sp, pp) -> Native.openStream(rp, in,
                out, o.flags, o.maxOutput, sp, pp, o.profile.value));
    }

    /**
     * Describes any CMS/S-MIME object: its layers, algorithms, recipients and signers, as the
     * library's JSON ({@link Inspection#json()}). With {@code recipient} (nullable) it also
     * looks inside layers encrypted for us; with {@code sender} (nullable) it verifies
     * signatures. Problems with the input do not throw: they end the description and are
     * reported in its {@code "error"} member ({@link Inspection#error()}).
     */
    public static Inspection inspect(byte[] data, Identity recipient, Certificate sender)
            throws LayerSecException {
        Objects.requireNonNull(data, "data");
        loadNative();
        List<NativeHandle> borrowed = new ArrayList<>(2);
        try {
            long rp = recipient == null ? 0 : borrow(recipient, borrowed);
            long sp = sender == null ? 0 : borrow(sender, borrowed);
            return new Inspection(Utf8.text(Native.inspect(data, rp, sp)));
        } finally {
            releaseAll(borrowed);
        }
    }

    private static long borrow(NativeHandle h, List<NativeHandle> borrowed) {
        long p = h.acquire();
        borrowed.add(h);
        return p;
    }

    private static void releaseAll(List<NativeHandle> borrowed) {
        for (NativeHandle h : borrowed) {
            h.release();
        }
    }

    /** {@code java -jar layersec.jar}: prints the library's version and where it came from. */
    public static void main(String[] args) {
        System.out.println("liblayersec " + version() + " (JNI: " + nativeLibrary() + ")");
    }
}
