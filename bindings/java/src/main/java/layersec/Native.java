package layersec;

/**
 * The native methods of liblayersec_jni.so (src/main/c/layersec_jni.c), one per C function of
 * include/layersec.h it needs. Handles travel as {@code long}; strings as NUL-terminated UTF-8
 * {@code byte[]} (see {@link Utf8}); a failed {@code ls_result} comes back as the
 * {@link LayerSecException} of its code. Nothing here checks for closed handles: the public
 * classes borrow a live pointer ({@link NativeHandle#acquire()}) around every call.
 */
final class Native {
    private Native() {}

    static {
        LayerSec.loadNative();
    }

    static native byte[] version();

    static native long identityLoad(byte[] keyPath, byte[] certPath, byte[] password)
            throws LayerSecException;

    static native long identityLoadPkcs11(byte[] uri, byte[] modulePath, byte[] pin,
            byte[] certPath) throws LayerSecException;

    static native boolean identityIsOnToken(long identity);

    static native long identityFromMemory(byte[] key, byte[] cert, byte[] password)
            throws LayerSecException;

    static native long identityGenerate(byte[] partyId, int keyType, int days, byte[] password)
            throws LayerSecException;

    static native long identityCert(long identity) throws LayerSecException;

    static native byte[] identityKeyPem(long identity) throws LayerSecException;

    static native byte[] identityCsrPem(long identity) throws LayerSecException;

    static native void identityFree(long identity);

    static native long certLoad(byte[] path) throws LayerSecException;

    static native long certFromMemory(byte[] data) throws LayerSecException;

    static native byte[] certSubject(long cert);

    static native byte[] certToPem(long cert) throws LayerSecException;

    static native void certFree(long cert);

    static native long certstoreNew() throws LayerSecException;

    static native long certstoreLoadDir(byte[] path) throws LayerSecException;

    static native void certstoreAddPartner(long store, long cert, byte[] partyId)
            throws LayerSecException;

    static native void certstoreAddAnchor(long store, long cert) throws LayerSecException;

    static native void certstoreFree(long store);

    static native byte[] seal(long signer, long[] recipients, byte[] document, int flags,
            byte[] filename, byte[] mimeType, int compressionLevel, long signingTime, int profile)
            throws LayerSecException;

    /** ls_seal_file; the options as for {@link #seal}. */
    static native void sealFile(long signer, long[] recipients, byte[] inPath, byte[] outPath,
            int flags, byte[] filename, byte[] mimeType, int compressionLevel, long signingTime,
            int profile) throws LayerSecException;

    /** ls_seal_stream over the streams (read and written on this thread); the sealed size. */
    static native long sealStream(long signer, long[] recipients, java.io.InputStream in,
            java.io.OutputStream out, int flags, byte[] filename, byte[] mimeType,
            int compressionLevel, long signingTime, int profile)
            throws LayerSecException, java.io.IOException;

    /** ls_open: returns an ls_opened pointer the caller frees with {@link #openedFree}. */
    static native long open(long recipient, byte[] data, int flags, long maxOutput, long sender,
            long partners, int profile) throws LayerSecException;

    /** ls_open_file; an ls_opened (its document empty) as for {@link #open}. */
    static native long openFile(long recipient, byte[] inPath, byte[] outPath, int flags,
            long maxOutput, long sender, long partners, int profile) throws LayerSecException;

    /** ls_open_stream; an ls_opened (its document empty) as for {@link #open}. */
    static native long openStream(long recipient, java.io.InputStream in,
            java.io.OutputStream out, int flags, long maxOutput, long sender, long partners,
            int profile) throws LayerSecException, java.io.IOException;

    /** ls_inspect: the JSON text (UTF-8). */
    static native byte[] inspect(byte[] data, long recipient, long sender)
            throws LayerSecException;

    static native byte[] openedDocument(long opened) throws LayerSecException;

    static native byte[] openedFilename(long opened);

    static native byte[] openedSafeFilename(long opened);

    static native byte[] openedMimeType(long opened);

    /** The verified signer's certificate as PEM, or null when unsigned. */
    static native byte[] openedSignerPem(long opened) throws LayerSecException;

    /** The verified signer's subject, or null when unsigned. */
    static native byte[] openedSignerSubject(long opened);

    static native long openedSigningTime(long opened);

    static native boolean openedWasEncrypted(long opened);

    static native long openedSize(long opened);

    static native void openedFree(long opened);

    static native long clientNew(byte[] configPath) throws LayerSecException;

    static native void clientFree(long client);

    /**
     * ls_client_send (path null) or ls_client_send_file (path set): the MessageId as UTF-8.
     * A failure that queued the send throws {@link QueuedForRetryException}.
     */
    static native byte[] clientSend(long client, byte[] data, byte[] name, byte[] path, byte[] to,
            byte[] service, byte[] action, byte[] conversation, int flags)
            throws LayerSecException;

    /** ls_client_poll with {@code sink} called for each document (null: only counted). */
    static native long clientPoll(long client, Client.Sink sink) throws LayerSecException;

    static native long clientRunDueJobs(long client) throws LayerSecException;

    static native int clientReceiptState(long client, byte[] messageId) throws LayerSecException;

    static native byte[] clientReceipts(long client, boolean waitingOnly) throws LayerSecException;
}
