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

    static native byte[] seal(long signer, long[] recipients, byte[] document, int flags,
            byte[] filename, byte[] mimeType, int compressionLevel, long signingTime, int profile)
            throws LayerSecException;

    /** ls_open: returns an ls_opened pointer the caller frees with {@link #openedFree}. */
    static native long open(long recipient, byte[] data, int flags, long maxOutput, long sender,
            int profile) throws LayerSecException;

    static native byte[] openedDocument(long opened) throws LayerSecException;

    static native byte[] openedFilename(long opened);

    static native byte[] openedSafeFilename(long opened);

    static native byte[] openedMimeType(long opened);

    /** A new certificate handle copied from the verified signer, or 0 when unsigned. */
    static native long openedSignerCopy(long opened) throws LayerSecException;

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
