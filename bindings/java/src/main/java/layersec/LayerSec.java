package layersec;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
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

    /**
     * Seals {@code document}: MIME-wraps it, compresses it (when it pays), signs it with
     * {@code signer} and encrypts it to {@code recipients} (may be empty with
     * {@link SealOptions#encryptToSelf}). {@code options} is nullable (defaults). Returns the
     * sealed message.
     */
    public static byte[] seal(byte[] document, Identity signer, List<Certificate> recipients,
            SealOptions options) throws LayerSecException {
        Objects.requireNonNull(document, "document");
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
            return Native.seal(sp, rp, document, o.flags(), filename, mimeType,
                    o.compressionLevel, o.signingTime, o.profile.value);
        } finally {
            releaseAll(borrowed);
        }
    }

    /** {@link #seal(byte[], Identity, List, SealOptions)} with the default options. */
    public static byte[] seal(byte[] document, Identity signer, List<Certificate> recipients)
            throws LayerSecException {
        return seal(document, signer, recipients, null);
    }

    /**
     * Opens a sealed message (DER, BER, PEM or S/MIME, detected): decrypts it with
     * {@code recipient} (nullable for a signed-only message), verifies every signature against
     * {@link OpenOptions#sender} and undoes compression and MIME. A message that does not verify
     * throws the {@link VerificationException} (or {@link CertificateException},
     * {@link FormatException}) of its code.
     */
    public static Opened open(byte[] data, Identity recipient, OpenOptions options)
            throws LayerSecException {
        Objects.requireNonNull(data, "data");
        Objects.requireNonNull(options, "options (an open needs at least a sender)");
        loadNative();
        List<NativeHandle> borrowed = new ArrayList<>(2);
        long opened;
        try {
            long rp = recipient == null ? 0 : borrow(recipient, borrowed);
            long sp = options.sender == null ? 0 : borrow(options.sender, borrowed);
            opened = Native.open(rp, data, options.flags, options.maxOutput, sp,
                    options.profile.value);
        } finally {
            releaseAll(borrowed);
        }
        Certificate signer = null;
        try {
            long sc = Native.openedSignerCopy(opened);
            signer = sc == 0 ? null : new Certificate(sc);
            long t = Native.openedSigningTime(opened);
            return new Opened(
                    Native.openedDocument(opened),
                    Utf8.text(Native.openedFilename(opened)),
                    Utf8.text(Native.openedSafeFilename(opened)),
                    Utf8.text(Native.openedMimeType(opened)),
                    signer,
                    signer == null ? null : signer.subject(),
                    t == Long.MIN_VALUE ? null : Instant.ofEpochSecond(t),
                    Native.openedWasEncrypted(opened),
                    Native.openedSize(opened));
        } catch (LayerSecException | RuntimeException | Error e) {
            if (signer != null) {
                signer.close();
            }
            throw e;
        } finally {
            Native.openedFree(opened);
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
