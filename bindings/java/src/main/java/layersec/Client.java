package layersec;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The client of a Layer Security Messaging Service ({@code ls_client}), as the configuration
 * file {@code layersec init} writes describes it: our party id and identity, our partners'
 * certificates ({@code <partners dir>/<party id>.crt}), the service, and the folders
 * ({@code sent/}, {@code failed/}, {@code inbox/} and {@code state/}, the journal that makes
 * sends and deliveries survive crashes).
 *
 * <p><b>Threads.</b> A client may be shared between threads, but it does one call at a time:
 * the C client is used by one thread at a time, so calls from several threads wait for each
 * other (a lock inside). The consumer given to {@link #poll(Consumer)} runs on the polling
 * thread and may send with the same client; a nested poll of it fails with
 * {@code LS_ERR_STATE_LOCKED}. {@link #close()} while another thread is in a call frees the
 * native client when that call returns; later calls throw {@link ClosedException}. Several
 * clients (or {@code layersec} processes) of the same configuration coordinate through the
 * state folder.
 */
public final class Client extends NativeHandle {
    private final ReentrantLock lock = new ReentrantLock();

    private Client(long ptr) {
        super(ptr, Native::clientFree);
    }

    /**
     * Reads the configuration file, loads our identity and the certificates, and creates the
     * folders that are missing. Nothing is sent yet. A missing file or a bad setting throws
     * {@link StoreException} ({@code LS_ERR_CONFIG_INVALID}, the message names file and key).
     */
    public static Client fromConfig(Path configPath) throws LayerSecException {
        Objects.requireNonNull(configPath, "configPath");
        return new Client(Native.clientNew(Utf8.path(configPath, "configPath")));
    }

    /** The ebMS header of a send; every field optional. */
    public static final class SendOptions {
        private String service;
        private String action;
        private String conversation;
        private boolean receipt = true;

        /** The ebMS Service (default: the configuration's {@code [defaults] service}). */
        public SendOptions service(String service) {
            this.service = service;
            return this;
        }

        /** The ebMS Action (default: the configuration's {@code [defaults] action}). */
        public SendOptions action(String action) {
            this.action = action;
            return this;
        }

        /** The ConversationId (default: a new conversation named by the MessageId). */
        public SendOptions conversation(String conversation) {
            this.conversation = conversation;
            return this;
        }

        /** Whether the partner is asked for a signed receipt (default: as configured). */
        public SendOptions receipt(boolean receipt) {
            this.receipt = receipt;
            return this;
        }
    }

    private static final int LS_SEND_NO_RECEIPT = 1;

    /**
     * Sends {@code data} as the document {@code name} (a base name: the partner's inbox uses it)
     * to partner {@code to} (a party id with a certificate in the partners folder): seals it,
     * carries it in a signed AS4 message to the service and checks the service's signed receipt.
     *
     * @return the MessageId, once delivered (the document's copy is then in {@code sent/})
     * @throws QueuedForRetryException the attempt failed for a reason that may pass; the send
     *     waits in the journal under {@link QueuedForRetryException#messageId()}
     * @throws LayerSecException anything else: nothing is queued — e.g.
     *     {@link CertificateException} ({@code LS_ERR_CERT_NOT_FOUND}) for a partner without
     *     certificate, {@link ProtocolException} ({@code LS_ERR_EBMS_ERROR}) when the service
     *     refused the message (the document is then in {@code failed/} with the reason)
     */
    public String send(byte[] data, String name, String to, SendOptions options)
            throws LayerSecException {
        Objects.requireNonNull(data, "data");
        Objects.requireNonNull(name, "name");
        return doSend(data, Utf8.cstr(name, "name"), null, to, options);
    }

    public String send(byte[] data, String name, String to) throws LayerSecException {
        return send(data, name, to, null);
    }

    /**
     * {@link #send} with the content and the base name of the file at {@code path} (which stays
     * where it is). A file that cannot be read throws {@link FileException} ({@code LS_ERR_IO}).
     */
    public String sendFile(Path path, String to, SendOptions options) throws LayerSecException {
        Objects.requireNonNull(path, "path");
        return doSend(null, null, Utf8.path(path, "path"), to, options);
    }

    public String sendFile(Path path, String to) throws LayerSecException {
        return sendFile(path, to, null);
    }

    private String doSend(byte[] data, byte[] name, byte[] path, String to, SendOptions o)
            throws LayerSecException {
        Objects.requireNonNull(to, "to");
        SendOptions opts = o != null ? o : new SendOptions();
        byte[] cto = Utf8.cstr(to, "to");
        byte[] service = Utf8.cstr(opts.service, "service");
        byte[] action = Utf8.cstr(opts.action, "action");
        byte[] conv = Utf8.cstr(opts.conversation, "conversation");
        int flags = opts.receipt ? 0 : LS_SEND_NO_RECEIPT;
        return exclusive(p -> Utf8.text(
                Native.clientSend(p, data, name, path, cto, service, action, conv, flags)));
    }

    /**
     * Called by the JNI glue once per document, on the polling thread, while the strings of
     * the C library are alive: copies them into a {@link Received} and hands it on.
     */
    static final class Sink {
        private final Consumer<Received> consumer;

        Sink(Consumer<Received> consumer) {
            this.consumer = consumer;
        }

        void received(byte[] path, byte[] name, byte[] sender, byte[] messageId,
                byte[] conversationId, long size, long signingTime, long receivedAt) {
            consumer.accept(new Received(Paths.get(new String(path, StandardCharsets.UTF_8)),
                    new String(name, StandardCharsets.UTF_8),
                    new String(sender, StandardCharsets.UTF_8),
                    new String(messageId, StandardCharsets.UTF_8),
                    new String(conversationId, StandardCharsets.UTF_8), size,
                    signingTime == 0 ? null : Instant.ofEpochSecond(signingTime),
                    Instant.ofEpochSecond(receivedAt)));
        }
    }

    /**
     * Fetches every document waiting for us: pulls until none is left, verifies each message
     * and its document against the certificate of the partner it comes from, writes the
     * document and its metadata to the inbox folder, then receipts it.
     *
     * <p>A message that cannot be accepted (unknown sender, bad signature) is neither written
     * nor receipted (the service offers it again later) and does not fail the poll. Failing to
     * reach the service throws {@link ServiceException}; another client polling the same state
     * folder {@link StoreException} ({@code LS_ERR_STATE_LOCKED}). Documents written before a
     * failure are in the inbox; use {@link #poll(Consumer)} to see each as it arrives.
     *
     * @return the documents written, in order
     */
    public List<Received> poll() throws LayerSecException {
        List<Received> got = new ArrayList<>();
        poll(got::add);
        return got;
    }

    /**
     * {@link #poll()} handing each document to {@code consumer} as soon as it is in the inbox
     * (on this thread, inside the native call). If the consumer throws, the poll stops after
     * that document — it is written and its receipt is still posted, so it is not offered again
     * — and the exception (a {@link RuntimeException} or {@link Error}) comes out of this method
     * once the native call has returned; it never crosses the C library.
     *
     * @return how many documents were written to the inbox
     */
    public int poll(Consumer<Received> consumer) throws LayerSecException {
        Objects.requireNonNull(consumer, "consumer");
        Sink sink = new Sink(consumer);
        return exclusive(p -> (int) Native.clientPoll(p, sink));
    }

    /**
     * Sends what is due: documents queued for retry whose back-off has passed, and files in the
     * outbox folder. A service that cannot be reached is not an error here: they stay queued.
     *
     * @return how many were delivered
     */
    public int runDueJobs() throws LayerSecException {
        return exclusive(p -> (int) Native.clientRunDueJobs(p));
    }

    /** The state of the partner's signed receipt of the document sent as {@code messageId}. */
    public ReceiptState receiptState(String messageId) throws LayerSecException {
        Objects.requireNonNull(messageId, "messageId");
        byte[] mid = Utf8.cstr(messageId, "messageId");
        return exclusive(p -> ReceiptState.of(Native.clientReceiptState(p, mid)));
    }

    /**
     * The documents in the sent folder with the state of their receipt, as the JSON text
     * {@code layersec receipts --json} prints ({@code {"receipts": [...]}}); with
     * {@code waitingOnly}, only those still waiting.
     */
    public String receiptsJson(boolean waitingOnly) throws LayerSecException {
        return exclusive(p -> Utf8.text(Native.clientReceipts(p, waitingOnly)));
    }

    /**
     * The documents in the sent folder with the state of their partner's signed receipt, newest
     * first; with {@code waitingOnly}, only those still waiting.
     */
    public List<Receipt> receipts(boolean waitingOnly) throws LayerSecException {
        return Receipt.listFromJson(receiptsJson(waitingOnly));
    }

    /** {@link #receipts(boolean)} of every document in the sent folder. */
    public List<Receipt> receipts() throws LayerSecException {
        return receipts(false);
    }

    /** One call at a time (the lock), with the pointer borrowed. */
    private <T> T exclusive(NativeCall<T> call) throws LayerSecException {
        lock.lock();
        try {
            return use(call);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public String toString() {
        return isClosed() ? "layersec.Client (closed)" : "layersec.Client";
    }
}
