// LayerSec: seal and open byte[] documents, and the preparation of the C options that the
// Stream and file overloads (LayerSecStreams.cs) share.

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace LayerSecurity
{
    /// <summary>Seal documents as S/MIME (CMS) for their recipients, and open what partners
    /// sealed for you with proof of who sent them. Every method may be called from any number
    /// of threads at once with the same identities, certificates and (filled) stores.
    ///
    /// Three forms of each operation: <c>byte[]</c> in and out (<see cref="Seal(byte[], Identity, IEnumerable{Certificate}, SealOptions)"/>,
    /// <see cref="Open(byte[], Identity, OpenOptions)"/>); <see cref="System.IO.Stream"/> in and
    /// out, in constant memory; and files (<see cref="SealFile(string, string, Identity, IEnumerable{Certificate}, SealOptions)"/>,
    /// <see cref="OpenFile"/>), in constant memory, whose output appears only once complete.
    /// </summary>
    public static partial class LayerSec
    {
        /// <summary>The version of the loaded liblayersec, e.g. "0.1.0".</summary>
        public static string Version
        {
            get
            {
                Interop.EnsureLoaded();
                return Interop.FromUtf8(Native.ls_version());
            }
        }

        /// <summary>Seals <paramref name="document"/>: MIME-wraps it, compresses it (when it
        /// pays), signs it with <paramref name="signer"/> and encrypts it to
        /// <paramref name="recipients"/> (plus the signer with EncryptToSelf). Returns the sealed
        /// message (DER unless options.Output says otherwise).
        ///
        /// Memory: the document is passed to the library pinned, not copied; the sealed message
        /// is copied once from the library's buffer into the returned array.</summary>
        public static byte[] Seal(byte[] document, Identity signer, IEnumerable<Certificate> recipients,
                                  SealOptions options = null)
        {
            if (document == null) throw new ArgumentNullException(nameof(document));
            LsBytes b = default(LsBytes);
            DoSeal(signer, recipients, options, "ls_seal", null,
                   (IntPtr[] ptrs, UIntPtr n, ref NativeSealOptions opts) =>
                       Native.ls_seal(signer.Handle, ptrs, n, document, Interop.Len(document), ref opts, out b));
            return Interop.Take(ref b);
        }

        /// <summary><see cref="Seal(byte[], Identity, IEnumerable{Certificate}, SealOptions)"/>
        /// without copying the sealed message into managed memory: it stays in the library's
        /// buffer, a <see cref="NativeBuffer"/> to write out (<see cref="NativeBuffer.CopyTo"/>),
        /// read as a Stream or copy. For large documents whose sealed message goes to a file or a
        /// socket: the copy into a new array is what makes <c>Seal</c> of 100 MiB about a quarter
        /// slower than C here (a fresh 100 MiB array touched page by page).</summary>
        public static NativeBuffer SealToBuffer(byte[] document, Identity signer, IEnumerable<Certificate> recipients,
                                                SealOptions options = null)
        {
            if (document == null) throw new ArgumentNullException(nameof(document));
            LsBytes b = default(LsBytes);
            try
            {
                DoSeal(signer, recipients, options, "ls_seal", null,
                       (IntPtr[] ptrs, UIntPtr n, ref NativeSealOptions opts) =>
                           Native.ls_seal(signer.Handle, ptrs, n, document, Interop.Len(document), ref opts, out b));
                return new NativeBuffer(LsBytesBuffer.Take(ref b));
            }
            finally
            {
                // Only when Take did not own it (a failure leaves it empty; freeing empty is a no-op).
                if (b.Data != IntPtr.Zero) Native.ls_bytes_free(ref b);
            }
        }

        /// <summary><see cref="SealToBuffer(byte[], Identity, IEnumerable{Certificate}, SealOptions)"/>
        /// for one recipient.</summary>
        public static NativeBuffer SealToBuffer(byte[] document, Identity signer, Certificate recipient,
                                                SealOptions options = null)
        {
            return SealToBuffer(document, signer, One(recipient), options);
        }

        /// <summary><see cref="Seal(byte[], Identity, IEnumerable{Certificate}, SealOptions)"/>
        /// for one recipient.</summary>
        public static byte[] Seal(byte[] document, Identity signer, Certificate recipient, SealOptions options = null)
        {
            return Seal(document, signer, One(recipient), options);
        }

        internal static Certificate[] One(Certificate recipient)
        {
            if (recipient == null) throw new ArgumentNullException(nameof(recipient));
            return new[] { recipient };
        }

        /// <summary>One seal call: gets the recipients' pointers and the C options ready.</summary>
        internal delegate int SealCall(IntPtr[] recipients, UIntPtr count, ref NativeSealOptions opts);

        /// <summary>Checks the arguments, fills ls_seal_options from <paramref name="options"/>,
        /// references the signer and the recipients for the call, makes it and throws its
        /// failure: the exception a <paramref name="bridge"/>'s Stream threw if there is one,
        /// else the library's.</summary>
        internal static void DoSeal(Identity signer, IEnumerable<Certificate> recipients, SealOptions options,
                                    string function, StreamBridge bridge, SealCall call)
        {
            if (signer == null) throw new ArgumentNullException(nameof(signer));
            if (recipients == null) throw new ArgumentNullException(nameof(recipients));
            var list = new List<Certificate>(recipients);
            for (int i = 0; i < list.Count; i++)
                if (list[i] == null) throw new ArgumentNullException(nameof(recipients), $"recipients[{i}] is null");
            options = options ?? new SealOptions();
            signer.ThrowIfDisposed();

            var fileName = Interop.Utf8(options.FileName, "options.FileName");
            var mimeType = Interop.Utf8(options.MimeType, "options.MimeType");
            using (var refs = new HandleRefs())
            using (var pins = new Pins())
            {
                var opts = new NativeSealOptions();
                Native.ls_seal_options_init(ref opts);
                opts.Flags = SealFlags(options);
                opts.Profile = (uint)options.Profile;
                opts.FileName = pins.Pin(fileName);
                opts.MimeType = pins.Pin(mimeType);
                if (options.CompressionLevel.HasValue)
                {
                    int level = options.CompressionLevel.Value;
                    if (level < 1 || level > 9)
                        throw new ArgumentOutOfRangeException("options.CompressionLevel", "must be between 1 and 9");
                    opts.CompressionLevel = (uint)level;
                }
                if (options.SigningTime.HasValue)
                {
                    long t = options.SigningTime.Value.ToUnixTimeSeconds();
                    if (t == 0)
                        throw new ArgumentOutOfRangeException("options.SigningTime",
                                                              "1970-01-01T00:00:00Z cannot be stated (0 means now)");
                    opts.SigningTime = t;
                }
                var ptrs = new IntPtr[list.Count];
                for (int i = 0; i < list.Count; i++) ptrs[i] = refs.Add(list[i].Handle, nameof(Certificate));
                int rc = call(ptrs.Length == 0 ? null : ptrs, new UIntPtr((uint)ptrs.Length), ref opts);
                // The library's message first (it is per thread, and nothing has called in since).
                LayerSecException failure = null;
                try
                {
                    Interop.Check(rc, function);
                }
                catch (LayerSecException e)
                {
                    failure = e;
                }
                bridge?.ThrowKept();
                if (failure != null) throw failure;
            }
        }

        static uint SealFlags(SealOptions o)
        {
            uint f = 0;
            switch (o.Output)
            {
                case SealOutput.Der: break;
                case SealOutput.Smime: f |= Native.LS_SEAL_SMIME; break;
                case SealOutput.Pem: f |= Native.LS_SEAL_PEM; break;
                default: throw new ArgumentOutOfRangeException("options.Output");
            }
            if (o.Compress == true) f |= Native.LS_SEAL_FORCE_COMPRESS;
            if (o.Compress == false) f |= Native.LS_SEAL_NO_COMPRESS;
            if (o.Cbc) f |= Native.LS_SEAL_CBC;
            if (o.Pss) f |= Native.LS_SEAL_PSS;
            if (o.EncryptToSelf) f |= Native.LS_SEAL_ENCRYPT_TO_SELF;
            if (o.MultipartSigned) f |= Native.LS_SEAL_MULTIPART_SIGNED;
            switch (o.KeyTransport)
            {
                case KeyTransport.Default: break;
                case KeyTransport.RsaPkcs1v15: f |= Native.LS_SEAL_RSA_PKCS1V15; break;
                case KeyTransport.RsaOaepSha1: f |= Native.LS_SEAL_RSA_OAEP_SHA1; break;
                default: throw new ArgumentOutOfRangeException("options.KeyTransport");
            }
            return f;
        }

        /// <summary>Opens a sealed message (DER, BER, PEM or S/MIME): decrypts it with
        /// <paramref name="recipient"/> (null for a signed-only message), verifies every
        /// signature against options.Sender or options.Partners, and undoes compression and
        /// MIME. Failures: VerificationException (tampered, not for us, wrong signer…),
        /// CertificateException, MalformedMessageException, InputException.</summary>
        public static Opened Open(byte[] sealedMessage, Identity recipient, OpenOptions options = null)
        {
            if (sealedMessage == null) throw new ArgumentNullException(nameof(sealedMessage));
            return DoOpen(recipient, options, "ls_open", null,
                          (IntPtr rp, ref NativeOpenOptions opts, out OpenedHandle opened) =>
                              Native.ls_open(rp, sealedMessage, Interop.Len(sealedMessage), ref opts, out opened));
        }

        /// <summary>One open call with the recipient's pointer (or zero) and the C options ready.</summary>
        internal delegate int OpenCall(IntPtr recipient, ref NativeOpenOptions opts, out OpenedHandle opened);

        /// <summary>Fills ls_open_options from <paramref name="options"/>, references the
        /// recipient, the sender and the partners' store for the call (holding the store's read
        /// lock), makes it, throws its failure (a <paramref name="bridge"/>'s kept exception
        /// first, as DoSeal) and copies the result out of the ls_opened.</summary>
        internal static Opened DoOpen(Identity recipient, OpenOptions options, string function, StreamBridge bridge,
                                      OpenCall call)
        {
            options = options ?? new OpenOptions();
            Interop.EnsureLoaded();

            var opts = new NativeOpenOptions();
            Native.ls_open_options_init(ref opts);
            uint f = 0;
            if (options.AllowUnsigned) f |= Native.LS_OPEN_ALLOW_UNSIGNED;
            if (options.AllowExpired) f |= Native.LS_OPEN_ALLOW_EXPIRED;
            if (options.RejectLegacy) f |= Native.LS_OPEN_REJECT_LEGACY;
            if (options.AllowSha1) f |= Native.LS_OPEN_ALLOW_SHA1;
            if (options.Reject3Des) f |= Native.LS_OPEN_REJECT_3DES;
            opts.Flags = f;
            opts.Profile = (uint)options.Profile;
            if (options.MaxOutput.HasValue)
            {
                // 0 would mean "the default" (1 GiB) to the library: refuse it rather than surprise.
                if (options.MaxOutput.Value < 1)
                    throw new ArgumentOutOfRangeException("options.MaxOutput", "must be at least 1 byte");
                opts.MaxOutput = (ulong)options.MaxOutput.Value;
            }

            OpenedHandle opened = null;
            LayerSecException failure = null;
            var partners = options.Partners;
            using (var refs = new HandleRefs())
            {
                var rp = recipient == null ? IntPtr.Zero : refs.Add(recipient.Handle, nameof(Identity));
                opts.Sender = options.Sender == null ? IntPtr.Zero : refs.Add(options.Sender.Handle, nameof(Certificate));
                if (partners != null)
                {
                    opts.Partners = refs.Add(partners.Handle, nameof(CertStore));
                    partners.Lock.EnterReadLock();
                }
                try
                {
                    int rc = call(rp, ref opts, out opened);
                    // The library's message first (per thread; nothing has called in since).
                    Interop.Check(rc, function);
                }
                catch (LayerSecException e)
                {
                    failure = e;
                }
                finally
                {
                    if (partners != null) partners.Lock.ExitReadLock();
                }
            }
            using (opened)
            {
                bridge?.ThrowKept();
                if (failure != null) throw failure;
                return Read(opened);
            }
        }

        /// <summary>Copies everything out of an ls_opened, whose pointers die with it.</summary>
        static Opened Read(OpenedHandle o)
        {
            IntPtr data;
            UIntPtr len;
            Interop.Check(Native.ls_opened_document(o, out data, out len), "ls_opened_document");
            ulong n = len.ToUInt64();
            if (n > int.MaxValue)
                throw new InternalException(ResultCode.Internal, "LS_ERR_INTERNAL", "the document is larger than a byte[] holds");
            var doc = new byte[(int)n];
            if (n > 0) Marshal.Copy(data, doc, 0, (int)n);

            var result = new Opened
            {
                Document = doc,
                FileName = Interop.FromUtf8(Native.ls_opened_filename(o)),
                SafeFileName = Interop.FromUtf8(Native.ls_opened_safe_filename(o)),
                MimeType = Interop.FromUtf8(Native.ls_opened_mime_type(o)) ?? "",
                WasEncrypted = Native.ls_opened_was_encrypted(o) != 0,
                Size = (long)Native.ls_opened_size(o),
            };
            long t = Native.ls_opened_signing_time(o);
            if (t != Native.LS_NO_TIME) result.SigningTime = DateTimeOffset.FromUnixTimeSeconds(t);
            // Borrowed from the opened document: copied as PEM (Opened.Signer parses it when asked).
            var sp = Native.ls_opened_signer(o);
            if (sp != IntPtr.Zero)
            {
                result.SignerSubject = Interop.FromUtf8(Native.ls_cert_subject(sp));
                result.SignerPem = Interop.Bytes("ls_cert_to_pem", (out LsBytes b) => Native.ls_cert_to_pem(sp, out b));
            }
            return result;
        }
    }
}
