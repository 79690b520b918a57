// The client of a Layer Security Messaging Service (ls_client of layersec.h).

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace LayerSecurity
{
    /// <summary>The ebMS header of one <see cref="Client.Send(byte[], string, string, SendOptions)"/>
    /// (ls_send_options). A null property means its default.</summary>
    public sealed class SendOptions
    {
        /// <summary>The ebMS Service (null: the configuration's <c>[defaults] service</c>).</summary>
        public string Service { get; set; }

        /// <summary>The ebMS Action (null: the configuration's <c>[defaults] action</c>).</summary>
        public string Action { get; set; }

        /// <summary>The ConversationId (null: a new conversation, whose id is the MessageId).</summary>
        public string Conversation { get; set; }

        /// <summary>Whether to ask the partner for a signed receipt (true, the default, follows
        /// the configuration's <c>[receipts] request</c>; false sets LS_SEND_NO_RECEIPT).</summary>
        public bool RequestReceipt { get; set; } = true;
    }

    /// <summary>The state of a partner's signed receipt (LS_RECEIPT_* of layersec.h).</summary>
    public enum ReceiptState
    {
        /// <summary>No document sent with this MessageId is in the <c>sent/</c> folder.</summary>
        Unknown = 0,
        /// <summary>No signed receipt was asked of the partner.</summary>
        NotRequested = 1,
        /// <summary>Asked for, not come yet.</summary>
        Waiting = 2,
        /// <summary>The partner's end system signed that it received, verified and stored it.</summary>
        Processed = 3,
        /// <summary>The partner refused the document with a signed notice.</summary>
        Failed = 4,
    }

    /// <summary>A document <see cref="Client.Poll"/> wrote to the inbox folder (a copy of
    /// ls_received: it stays valid after the poll).</summary>
    public sealed class Received
    {
        static readonly DateTimeOffset Epoch = new DateTimeOffset(1970, 1, 1, 0, 0, 0, TimeSpan.Zero);

        /// <summary>The document in the inbox folder (its metadata is <c>Path + ".meta.json"</c>).</summary>
        public string Path { get; }

        /// <summary>Its file name there: the sender's name made safe, with -1, -2… if it was taken.</summary>
        public string Name { get; }

        /// <summary>The sender's party id, verified: the message and the document are signed with
        /// the certificate of that partner.</summary>
        public string Sender { get; }

        public string MessageId { get; }
        public string ConversationId { get; }

        /// <summary>The document's size in bytes.</summary>
        public long Size { get; }

        /// <summary>The signing time the sender stated (UTC), or null if it stated none.</summary>
        public DateTimeOffset? SigningTime { get; }

        /// <summary>When the document was written to the inbox (UTC).</summary>
        public DateTimeOffset ReceivedAt { get; }

        internal Received(NativeReceived r)
        {
            Path = Interop.FromUtf8(r.Path) ?? "";
            Name = Interop.FromUtf8(r.Name) ?? "";
            Sender = Interop.FromUtf8(r.Sender) ?? "";
            MessageId = Interop.FromUtf8(r.MessageId) ?? "";
            ConversationId = Interop.FromUtf8(r.ConversationId) ?? "";
            Size = r.Size > long.MaxValue ? long.MaxValue : (long)r.Size;
            SigningTime = r.SigningTime == 0 ? (DateTimeOffset?)null : Epoch.AddSeconds(r.SigningTime);
            ReceivedAt = Epoch.AddSeconds(r.ReceivedAt);
        }

        public override string ToString() => $"Received({Name} from {Sender}, {MessageId})";
    }

    /// <summary>A send that is not delivered yet but not lost either (from
    /// <see cref="Client.Send(byte[], string, string, SendOptions)"/> and
    /// <see cref="Client.SendFile"/>). The attempt failed for a reason that may pass (the
    /// service could not be reached, timed out, answered HTTP 5xx…); the send waits in the
    /// journal of the client's state folder and is pushed again with the same
    /// <see cref="MessageId"/> by <see cref="Client.RunDueJobs"/> or the client daemon of the
    /// configuration (<c>layersec run</c>).
    ///
    /// Code, ResultName and Detail are those of the failed attempt; InnerException is the
    /// exception it would have raised (usually a <see cref="ServiceException"/>). This is on
    /// purpose not a ServiceException: a ServiceException (or any other LayerSecException)
    /// thrown by a send means nothing was queued.</summary>
    public class QueuedForRetryException : LayerSecException
    {
        /// <summary>The MessageId the send keeps when it is retried.</summary>
        public string MessageId { get; }

        /// <summary>The failure of the attempt (also InnerException).</summary>
        public LayerSecException Cause { get; }

        public QueuedForRetryException(string messageId, LayerSecException cause)
            : base(cause.Code, cause.ResultName, cause.Detail, cause.Function, cause)
        {
            MessageId = messageId;
            Cause = cause;
        }

        public override string Message => $"queued for retry as {MessageId}: {base.Message}";

        /// <summary>Whether the attempt's failure is transient (it is queued because the
        /// library judged it worth a retry).</summary>
        public override bool IsTransient => Cause.IsTransient;
    }

    /// <summary>The client of a Layer Security Messaging Service (ls_client), as the
    /// configuration file <c>layersec init</c> writes describes it: our party id and identity,
    /// our partners' certificates (<c>&lt;partners dir&gt;/&lt;party id&gt;.crt</c>), the
    /// service, and the folders (<c>sent/</c>, <c>failed/</c>, <c>inbox/</c>, and <c>state/</c>,
    /// the journal that makes sends and deliveries survive crashes).
    ///
    /// Thread safety: one call at a time. Calls from several threads on the same Client wait
    /// for each other (a lock: the C client is used by one thread at a time). Several Clients,
    /// also of the same configuration and in other processes, are independent: they
    /// coordinate through the state folder (a second concurrent poll of the same state folder
    /// fails with LS_ERR_STATE_LOCKED). Dispose frees the client; a call running on another
    /// thread keeps it alive until it returns, and later calls throw ObjectDisposedException.
    /// Sends queued for retry stay in the journal after Dispose.</summary>
    public sealed class Client : IDisposable
    {
        readonly ClientHandle handle;
        readonly object callLock = new object();

        Client(ClientHandle h)
        {
            if (h == null || h.IsInvalid)
                throw new InternalException(ResultCode.Internal, "LS_ERR_INTERNAL", "the library returned a NULL client");
            handle = h;
        }

        /// <summary>Reads the configuration file (relative paths in it are relative to its
        /// folder), loads our identity and the certificates, and creates the folders that are
        /// missing. Nothing is sent yet. A missing file or a bad setting throws
        /// <see cref="ClientStateException"/> (LS_ERR_CONFIG_INVALID; the message names the file
        /// and the key).</summary>
        public static Client FromConfig(string configPath)
        {
            var p = Interop.Utf8Required(configPath, nameof(configPath));
            Interop.EnsureLoaded();
            ClientHandle h;
            Interop.Check(Native.ls_client_new_from_config(p, out h), "ls_client_new_from_config");
            return new Client(h);
        }

        /// <summary>Whether <see cref="Dispose"/> was called.</summary>
        public bool IsDisposed => handle.IsClosed;

        /// <summary>Sends <paramref name="data"/> as the document <paramref name="name"/> (a
        /// base name: the partner's inbox uses it) to partner <paramref name="to"/> (a party id
        /// with a certificate in the partners folder): seals it, carries it in a signed AS4
        /// message to the service and checks the service's signed receipt. Returns the
        /// MessageId once delivered (the document's copy is then in <c>sent/</c>).
        ///
        /// Throws <see cref="QueuedForRetryException"/> (with the MessageId) when the attempt
        /// failed for a reason that may pass and the send waits in the journal. Any other
        /// <see cref="LayerSecException"/> means nothing was queued: e.g.
        /// <see cref="CertificateException"/> (LS_ERR_CERT_NOT_FOUND) for a partner without a
        /// certificate, <see cref="ProtocolException"/> (LS_ERR_EBMS_ERROR) when the service
        /// refused the message (the document is then in <c>failed/</c> with the reason).</summary>
        public string Send(byte[] data, string name, string to, SendOptions options = null)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            var n = Interop.Utf8Required(name, nameof(name));
            var t = Interop.Utf8Required(to, nameof(to));
            return DoSend(options, "ls_client_send",
                          (ref NativeSendOptions o, out LsBytes mid) =>
                              Native.ls_client_send(handle, data, Interop.Len(data), n, t, ref o, out mid));
        }

        /// <summary><see cref="Send(byte[], string, string, SendOptions)"/> with the content and
        /// the base name of the file at <paramref name="path"/> (which stays where it is). A
        /// file that cannot be read throws <see cref="InputException"/> (LS_ERR_IO).</summary>
        public string SendFile(string path, string to, SendOptions options = null)
        {
            var p = Interop.Utf8Required(path, nameof(path));
            var t = Interop.Utf8Required(to, nameof(to));
            return DoSend(options, "ls_client_send_file",
                          (ref NativeSendOptions o, out LsBytes mid) =>
                              Native.ls_client_send_file(handle, p, t, ref o, out mid));
        }

        delegate int SendCall(ref NativeSendOptions opts, out LsBytes messageId);

        string DoSend(SendOptions options, string function, SendCall call)
        {
            var service = Interop.Utf8(options?.Service, "options.Service");
            var action = Interop.Utf8(options?.Action, "options.Action");
            var conversation = Interop.Utf8(options?.Conversation, "options.Conversation");
            ThrowIfDisposed();
            lock (callLock)
            {
                using (var pins = new Pins())
                {
                    var o = new NativeSendOptions();
                    Native.ls_send_options_init(ref o);
                    if (options != null && !options.RequestReceipt) o.Flags |= Native.LS_SEND_NO_RECEIPT;
                    o.Service = pins.Pin(service);
                    o.Action = pins.Pin(action);
                    o.Conversation = pins.Pin(conversation);
                    LsBytes mid = default(LsBytes);
                    int rc;
                    try
                    {
                        rc = call(ref o, out mid);
                    }
                    catch (ObjectDisposedException)
                    {
                        throw new ObjectDisposedException(nameof(Client));
                    }
                    // The message of a failure is per thread: read it before anything else calls in.
                    LayerSecException failure = null;
                    try
                    {
                        Interop.Check(rc, function);
                    }
                    catch (LayerSecException e)
                    {
                        failure = e;
                    }
                    bool queued = mid.Data != IntPtr.Zero;
                    var id = Interop.Take(ref mid);
                    var text = System.Text.Encoding.UTF8.GetString(id);
                    if (failure == null) return text;
                    // Not delivered, but queued: the library still gave the MessageId.
                    if (queued) throw new QueuedForRetryException(text, failure);
                    throw failure;
                }
            }
        }

        /// <summary>Fetches every document waiting for us: pulls until none is left, verifies
        /// each message and its document against the certificate of the partner it comes from,
        /// writes the document and its metadata to the inbox folder and then receipts it.
        /// Returns the documents written, in order (an empty list when there were none).
        ///
        /// A message that cannot be accepted (unknown sender, bad signature) is neither written
        /// nor receipted (the service offers it again later) and does not fail the poll.
        /// Failing to reach the service throws <see cref="ServiceException"/>; another client
        /// polling the same state folder <see cref="ClientStateException"/>
        /// (LS_ERR_STATE_LOCKED). If the poll fails part way, the exception's
        /// <see cref="LayerSecException.Received"/> lists the documents written before.</summary>
        public IList<Received> Poll()
        {
            ThrowIfDisposed();
            var received = new List<Received>();
            Exception problem = null;
            // The delegate must never let an exception out into the library (it would unwind
            // through Rust frames): everything is caught, kept, and thrown after the call.
            ReceivedCallback cb = (userdata, doc) =>
            {
                try
                {
                    var r = (NativeReceived)Marshal.PtrToStructure(doc, typeof(NativeReceived));
                    received.Add(new Received(r));
                    return 0;
                }
                catch (Exception e)
                {
                    if (problem == null) problem = e;
                    return 1; // stop after this document (written and receipted all the same)
                }
            };
            lock (callLock)
            {
                int rc;
                UIntPtr count;
                try
                {
                    rc = Native.ls_client_poll(handle, cb, IntPtr.Zero, out count);
                }
                catch (ObjectDisposedException)
                {
                    throw new ObjectDisposedException(nameof(Client));
                }
                finally
                {
                    GC.KeepAlive(cb); // referenced until the call has returned
                }
                try
                {
                    Interop.Check(rc, "ls_client_poll");
                }
                catch (LayerSecException e)
                {
                    e.Received = received.AsReadOnly();
                    throw;
                }
                if (problem != null)
                    throw new InvalidOperationException(
                        "copying a received document failed (the poll stopped after it; it is in the inbox " +
                        "and receipted)", problem);
                return received.AsReadOnly();
            }
        }

        /// <summary>Sends what is due: documents queued for retry whose back-off has passed, and
        /// files in the outbox folder. Returns how many were delivered (receipt verified). A
        /// service that cannot be reached is not an error here: the documents stay queued.</summary>
        public long RunDueJobs()
        {
            ThrowIfDisposed();
            lock (callLock)
            {
                UIntPtr sent;
                int rc;
                try
                {
                    rc = Native.ls_client_run_due_jobs(handle, out sent);
                }
                catch (ObjectDisposedException)
                {
                    throw new ObjectDisposedException(nameof(Client));
                }
                Interop.Check(rc, "ls_client_run_due_jobs");
                return (long)sent.ToUInt64();
            }
        }

        /// <summary>The state of the partner's signed receipt of the document sent as
        /// <paramref name="messageId"/>. Receipts arrive with <see cref="Poll"/>.</summary>
        public ReceiptState GetReceiptState(string messageId)
        {
            var m = Interop.Utf8Required(messageId, nameof(messageId));
            ThrowIfDisposed();
            lock (callLock)
            {
                int state, rc;
                try
                {
                    rc = Native.ls_client_receipt_state(handle, m, out state);
                }
                catch (ObjectDisposedException)
                {
                    throw new ObjectDisposedException(nameof(Client));
                }
                Interop.Check(rc, "ls_client_receipt_state");
                return Enum.IsDefined(typeof(ReceiptState), state) ? (ReceiptState)state : ReceiptState.Unknown;
            }
        }

        /// <summary>The documents in the <c>sent/</c> folder with the state of their partner's
        /// receipt, as the library's JSON text (<c>{"receipts": [...]}</c>, as
        /// <c>layersec receipts --json</c> prints it). <paramref name="waitingOnly"/>: only the
        /// documents still waiting.</summary>
        public string ReceiptsJson(bool waitingOnly = false)
        {
            ThrowIfDisposed();
            lock (callLock)
            {
                LsBytes json;
                int rc;
                try
                {
                    rc = Native.ls_client_receipts(handle, waitingOnly ? 1 : 0, out json);
                }
                catch (ObjectDisposedException)
                {
                    throw new ObjectDisposedException(nameof(Client));
                }
                Interop.Check(rc, "ls_client_receipts");
                return System.Text.Encoding.UTF8.GetString(Interop.Take(ref json));
            }
        }

        void ThrowIfDisposed()
        {
            if (handle.IsClosed) throw new ObjectDisposedException(nameof(Client));
        }

        /// <summary>Frees the client (when the call running on another thread, if any,
        /// returns). Sends queued for retry stay in the journal of the state folder. A second
        /// Dispose does nothing.</summary>
        public void Dispose() => handle.Dispose();

        public override string ToString() => IsDisposed ? "Client (disposed)" : "Client";
    }
}
