// The C ABI of include/layersec.h as P/Invoke declarations. Nothing here is public API.
//
// Conventions of this file
// - Every handle parameter is the SafeHandle subclass of its type: the marshaller takes a
//   reference on it for the duration of the call (so a concurrent Dispose frees the C object
//   only when the call returns) and throws ObjectDisposedException for a disposed handle.
//   Handles inside arrays or option structs are referenced by hand (HandleRefs in Interop.cs).
// - Strings go in as NUL-terminated UTF-8 byte[] made by Interop.Utf8 (which refuses embedded
//   NULs instead of truncating), and come out as IntPtr decoded by Interop.FromUtf8: the
//   default string marshalling differs between Mono and .NET.
// - size_t is UIntPtr, ls_result is int.
//
// The library is imported as "layersec": .NET probes liblayersec.so through the dynamic
// loader; Mono reads LayerSec.dll.config beside the assembly, whose dllmap names the SONAME
// liblayersec.so.0 (what an installed library provides without the development symlink).
// Either way the dynamic loader's search applies: LD_LIBRARY_PATH, the ld.so cache, /usr/lib.

using System;
using System.Runtime.InteropServices;

namespace LayerSecurity
{
    [StructLayout(LayoutKind.Sequential)]
    internal struct LsBytes
    {
        public IntPtr Data;
        public UIntPtr Len;
    }

    // ls_seal_options, field for field (natural alignment, as the C compiler lays it out).
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSealOptions
    {
        public uint StructSize;
        public uint Flags;
        public IntPtr FileName;
        public IntPtr MimeType;
        public uint CompressionLevel;
        public long SigningTime;
        public uint Profile;
    }

    // ls_open_options, field for field.
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeOpenOptions
    {
        public uint StructSize;
        public uint Flags;
        public ulong MaxOutput;
        public IntPtr Sender;
        public IntPtr Partners;
        public IntPtr KekId;
        public UIntPtr KekIdLen;
        public IntPtr Kek;
        public UIntPtr KekLen;
        public uint Profile;
    }

    // ls_send_options, field for field.
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSendOptions
    {
        public uint StructSize;
        public uint Flags;
        public IntPtr Service;
        public IntPtr Action;
        public IntPtr Conversation;
    }

    // ls_received, field for field (made by the library; read only the fields listed here,
    // later versions may append more).
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeReceived
    {
        public IntPtr Path;
        public IntPtr Name;
        public IntPtr Sender;
        public IntPtr MessageId;
        public IntPtr ConversationId;
        public ulong Size;
        public long SigningTime;
        public long ReceivedAt;
    }

    // ls_received_cb: called on the thread of ls_client_poll. It must never let an exception
    // out (it would unwind through the library's Rust frames): Client.Poll catches everything.
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int ReceivedCallback(IntPtr userdata, IntPtr doc);

    // ls_read_callback and ls_write_callback: called on the thread of the ls_*_stream call,
    // never after it returns. Like ReceivedCallback they must never let an exception out
    // (StreamBridge in LayerSecStreams.cs catches everything and returns EIO). out_n is a
    // size_t* written with Marshal.WriteIntPtr.
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int ReadCallback(IntPtr userdata, IntPtr buf, UIntPtr len, IntPtr outN);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int WriteCallback(IntPtr userdata, IntPtr buf, UIntPtr len, IntPtr outN);

    internal static class Native
    {
        internal const string Lib = "layersec";

        // Constants of layersec.h.
        internal const long LS_NO_TIME = long.MinValue;

        internal const uint LS_SEAL_NO_COMPRESS = 1u << 0;
        internal const uint LS_SEAL_FORCE_COMPRESS = 1u << 1;
        internal const uint LS_SEAL_CBC = 1u << 2;
        internal const uint LS_SEAL_PSS = 1u << 3;
        internal const uint LS_SEAL_SMIME = 1u << 4;
        internal const uint LS_SEAL_PEM = 1u << 5;
        internal const uint LS_SEAL_ENCRYPT_TO_SELF = 1u << 6;
        internal const uint LS_SEAL_MULTIPART_SIGNED = 1u << 7;
        internal const uint LS_SEAL_RSA_PKCS1V15 = 1u << 8;
        internal const uint LS_SEAL_RSA_OAEP_SHA1 = 1u << 9;

        internal const uint LS_SEND_NO_RECEIPT = 1u << 0;

        internal const int LS_RECEIPT_UNKNOWN = 0;
        internal const int LS_RECEIPT_NOT_REQUESTED = 1;
        internal const int LS_RECEIPT_WAITING = 2;
        internal const int LS_RECEIPT_PROCESSED = 3;
        internal const int LS_RECEIPT_FAILED = 4;

        internal const uint LS_OPEN_ALLOW_UNSIGNED = 1u << 0;
        internal const uint LS_OPEN_ALLOW_EXPIRED = 1u << 1;
        internal const uint LS_OPEN_REJECT_LEGACY = 1u << 2;
        internal const uint LS_OPEN_ALLOW_SHA1 = 1u << 3;
        internal const uint LS_OPEN_REJECT_3DES = 1u << 4;

        // --- library, results, bytes --------------------------------------------------------

        [DllImport(Lib)] internal static extern IntPtr ls_version();
        [DllImport(Lib)] internal static extern IntPtr ls_result_name(int result);
        [DllImport(Lib)] internal static extern IntPtr ls_last_error_message();
        [DllImport(Lib)] internal static extern int ls_last_error_is_transient();
        [DllImport(Lib)] internal static extern void ls_bytes_free(ref LsBytes b);

        // --- identities ------------------------------------------------------------------------

        [DllImport(Lib)]
        internal static extern int ls_identity_load(byte[] keyPath, byte[] certPath, IntPtr password,
                                                    out IdentityHandle result);

        [DllImport(Lib)]
        internal static extern int ls_identity_load_pkcs11(byte[] uri, byte[] modulePath, IntPtr pin,
                                                           byte[] certPath, out IdentityHandle result);

        [DllImport(Lib)]
        internal static extern int ls_identity_from_memory(byte[] key, UIntPtr keyLen, byte[] cert,
                                                           UIntPtr certLen, IntPtr password,
                                                           out IdentityHandle result);

        [DllImport(Lib)]
        internal static extern int ls_identity_generate(byte[] partyId, uint keyType, uint days,
                                                        IntPtr keyPassword, out IdentityHandle result);

        [DllImport(Lib)] internal static extern int ls_identity_key_pem(IdentityHandle identity, out LsBytes result);
        [DllImport(Lib)] internal static extern int ls_identity_csr_pem(IdentityHandle identity, out LsBytes result);
        [DllImport(Lib)] internal static extern int ls_identity_cert(IdentityHandle identity, out CertHandle result);
        [DllImport(Lib)] internal static extern int ls_identity_is_on_token(IdentityHandle identity);
        [DllImport(Lib)] internal static extern void ls_identity_free(IntPtr identity);

        // --- certificates --------------------------------------------------------------------

        [DllImport(Lib)] internal static extern int ls_cert_load(byte[] path, out CertHandle result);

        [DllImport(Lib)]
        internal static extern int ls_cert_from_memory(byte[] data, UIntPtr len, out CertHandle result);

        [DllImport(Lib)] internal static extern IntPtr ls_cert_subject(CertHandle cert);
        [DllImport(Lib)] internal static extern IntPtr ls_cert_subject(IntPtr cert);
        [DllImport(Lib)] internal static extern int ls_cert_to_pem(CertHandle cert, out LsBytes result);
        [DllImport(Lib)] internal static extern int ls_cert_to_pem(IntPtr cert, out LsBytes result);
        [DllImport(Lib)] internal static extern void ls_cert_free(IntPtr cert);

        // --- certificate stores --------------------------------------------------------------

        [DllImport(Lib)] internal static extern int ls_certstore_new(out CertStoreHandle result);
        [DllImport(Lib)] internal static extern int ls_certstore_load_dir(byte[] path, out CertStoreHandle result);

        [DllImport(Lib)]
        internal static extern int ls_certstore_add_partner(CertStoreHandle store, CertHandle cert, byte[] partyId);

        [DllImport(Lib)] internal static extern int ls_certstore_add_anchor(CertStoreHandle store, CertHandle cert);
        [DllImport(Lib)] internal static extern void ls_certstore_free(IntPtr store);

        // --- seal / open ---------------------------------------------------------------------

        [DllImport(Lib)] internal static extern void ls_seal_options_init(ref NativeSealOptions opts);

        [DllImport(Lib)]
        internal static extern int ls_seal(IdentityHandle signer, IntPtr[] recipients, UIntPtr nRecipients,
                                           byte[] doc, UIntPtr docLen, ref NativeSealOptions opts,
                                           out LsBytes result);

        [DllImport(Lib)] internal static extern void ls_open_options_init(ref NativeOpenOptions opts);

        // The recipient is nullable: an IntPtr taken from a referenced IdentityHandle (or zero).
        [DllImport(Lib)]
        internal static extern int ls_open(IntPtr recipient, byte[] input, UIntPtr inLen,
                                           ref NativeOpenOptions opts, out OpenedHandle result);

        [DllImport(Lib)] internal static extern ulong ls_opened_size(OpenedHandle opened);

        [DllImport(Lib)]
        internal static extern int ls_opened_document(OpenedHandle opened, out IntPtr data, out UIntPtr len);

        [DllImport(Lib)] internal static extern IntPtr ls_opened_filename(OpenedHandle opened);
        [DllImport(Lib)] internal static extern IntPtr ls_opened_safe_filename(OpenedHandle opened);
        [DllImport(Lib)] internal static extern IntPtr ls_opened_mime_type(OpenedHandle opened);
        [DllImport(Lib)] internal static extern IntPtr ls_opened_signer(OpenedHandle opened);
        [DllImport(Lib)] internal static extern long ls_opened_signing_time(OpenedHandle opened);
        [DllImport(Lib)] internal static extern int ls_opened_was_encrypted(OpenedHandle opened);
        [DllImport(Lib)] internal static extern void ls_opened_free(IntPtr opened);

        // --- streams and files (constant memory) ----------------------------------------------

        [DllImport(Lib)]
        internal static extern int ls_seal_stream(IdentityHandle signer, IntPtr[] recipients, UIntPtr nRecipients,
                                                  ReadCallback readCb, IntPtr readUserdata,
                                                  WriteCallback writeCb, IntPtr writeUserdata,
                                                  ref NativeSealOptions opts, out ulong sealedSize);

        [DllImport(Lib)]
        internal static extern int ls_seal_file(IdentityHandle signer, IntPtr[] recipients, UIntPtr nRecipients,
                                                byte[] inPath, byte[] outPath, ref NativeSealOptions opts);

        // The recipient is nullable, as for ls_open.
        [DllImport(Lib)]
        internal static extern int ls_open_stream(IntPtr recipient, ReadCallback readCb, IntPtr readUserdata,
                                                  WriteCallback writeCb, IntPtr writeUserdata,
                                                  ref NativeOpenOptions opts, out OpenedHandle result);

        [DllImport(Lib)]
        internal static extern int ls_open_file(IntPtr recipient, byte[] inPath, byte[] outPath,
                                                ref NativeOpenOptions opts, out OpenedHandle result);

        // --- the client ----------------------------------------------------------------------

        [DllImport(Lib)]
        internal static extern int ls_client_new_from_config(byte[] configPath, out ClientHandle result);

        [DllImport(Lib)] internal static extern void ls_send_options_init(ref NativeSendOptions opts);

        [DllImport(Lib)]
        internal static extern int ls_client_send(ClientHandle client, byte[] data, UIntPtr len, byte[] name,
                                                  byte[] to, ref NativeSendOptions opts, out LsBytes messageId);

        [DllImport(Lib)]
        internal static extern int ls_client_send_file(ClientHandle client, byte[] path, byte[] to,
                                                       ref NativeSendOptions opts, out LsBytes messageId);

        [DllImport(Lib)]
        internal static extern int ls_client_poll(ClientHandle client, ReceivedCallback cb, IntPtr userdata,
                                                  out UIntPtr count);

        [DllImport(Lib)] internal static extern int ls_client_run_due_jobs(ClientHandle client, out UIntPtr sent);

        [DllImport(Lib)]
        internal static extern int ls_client_receipt_state(ClientHandle client, byte[] messageId, out int state);

        [DllImport(Lib)]
        internal static extern int ls_client_receipts(ClientHandle client, int waitingOnly, out LsBytes json);

        [DllImport(Lib)] internal static extern void ls_client_free(IntPtr client);
    }
}
