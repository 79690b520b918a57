using System;
using System.Collections.Generic;

namespace LayerSecurity
{
    /// <summary>The form of a sealed message.</summary>
    public enum SealOutput
    {
        Der,
        /// <summary>A complete S/MIME entity (application/pkcs7-mime, base64).</summary>
        Smime,
        /// <summary>PEM (-----BEGIN CMS-----).</summary>
        Pem,
    }

    /// <summary>What the partners' software reads (LS_PROFILE_*).</summary>
    public enum Profile : uint
    {
        /// <summary>Seal: the defaults (those of Modern) and the flags; open: every legacy
        /// algorithm accepted.</summary>
        None = 0,
        /// <summary>AES-256-GCM, RSA-OAEP-SHA-256 or ECDH, SignedData with the content inside;
        /// open: none of the legacy algorithms or forms.</summary>
        Modern = 1,
        /// <summary>Compressed, multipart/signed, AES-256-CBC, RSA PKCS#1 v1.5 key transport;
        /// RSA keys only.</summary>
        LegacyAs2 = 2,
    }

    /// <summary>RSA key transport to recipients (added to the profile's).</summary>
    public enum KeyTransport
    {
        /// <summary>The profile's (RSA-OAEP-SHA-256 by default).</summary>
        Default,
        RsaPkcs1v15,
        RsaOaepSha1,
    }

    /// <summary>Options of LayerSec.Seal; every default is the library's.</summary>
    public sealed class SealOptions
    {
        /// <summary>The document's file name, carried in its Content-Disposition.</summary>
        public string FileName { get; set; }
        /// <summary>The document's MIME type (null: guessed from FileName, else
        /// application/octet-stream).</summary>
        public string MimeType { get; set; }
        /// <summary>null: compress when it pays; true: always; false: never.</summary>
        public bool? Compress { get; set; }
        /// <summary>zlib level 1 to 9 (null: the library's default, 6).</summary>
        public int? CompressionLevel { get; set; }
        public SealOutput Output { get; set; } = SealOutput.Der;
        /// <summary>AES-256-CBC EnvelopedData instead of AES-256-GCM AuthEnvelopedData.</summary>
        public bool Cbc { get; set; }
        /// <summary>RSASSA-PSS signatures (RSA signing keys only).</summary>
        public bool Pss { get; set; }
        /// <summary>Also encrypt to the signer, so the sender's archive copy stays readable.</summary>
        public bool EncryptToSelf { get; set; }
        /// <summary>A multipart/signed signature (as AS2 software reads it).</summary>
        public bool MultipartSigned { get; set; }
        /// <summary>The signing time to state (null: now). The Unix epoch itself cannot be
        /// stated (0 means now to the library).</summary>
        public DateTimeOffset? SigningTime { get; set; }
        public Profile Profile { get; set; } = Profile.None;
        public KeyTransport KeyTransport { get; set; } = KeyTransport.Default;
    }

    /// <summary>Options of LayerSec.Open. Name whom to expect: Sender (the one
    /// partner who must have signed) or Partners (any partner of the store, or a certificate
    /// chaining to its anchors); without either a signed message is refused.</summary>
    public sealed class OpenOptions
    {
        public Certificate Sender { get; set; }
        public CertStore Partners { get; set; }
        /// <summary>Accept a message without signature (then Opened.Signer is null).</summary>
        public bool AllowUnsigned { get; set; }
        /// <summary>Accept a signer certificate outside its validity period.</summary>
        public bool AllowExpired { get; set; }
        /// <summary>Refuse 3DES and RSA PKCS#1 v1.5 key transport.</summary>
        public bool RejectLegacy { get; set; }
        /// <summary>Refuse 3DES content encryption.</summary>
        public bool Reject3Des { get; set; }
        /// <summary>Accept SHA-1 signatures (refused by default).</summary>
        public bool AllowSha1 { get; set; }
        /// <summary>Limit on the opened document's size in bytes (null: the library's 1 GiB).</summary>
        public long? MaxOutput { get; set; }
        public Profile Profile { get; set; } = Profile.None;
    }

    /// <summary>An opened document with the proof of who sent it, copied out of the library.
    /// <see cref="Signer"/> is a certificate of its own: dispose it when done (else its
    /// finalizer frees it).</summary>
    public sealed class Opened
    {
        public byte[] Document { get; internal set; }
        /// <summary>The file name exactly as the sender stated it (may contain directories or
        /// ".."): to write the document into a folder use <see cref="SafeFileName"/>.</summary>
        public string FileName { get; internal set; }
        /// <summary>The file name reduced to a safe base name, or null.</summary>
        public string SafeFileName { get; internal set; }
        public string MimeType { get; internal set; }
        /// <summary>The verified signer's subject, or null when unsigned (AllowUnsigned).</summary>
        public string SignerSubject { get; internal set; }
        /// <summary>The verified signer's certificate, or null when unsigned.</summary>
        public Certificate Signer { get; internal set; }
        /// <summary>The signing time the signer stated, or null.</summary>
        public DateTimeOffset? SigningTime { get; internal set; }
        /// <summary>True when an encryption layer was removed.</summary>
        public bool WasEncrypted { get; internal set; }
        /// <summary>The document's size in bytes.</summary>
        public long Size { get; internal set; }

        // Not the document: it may be large, and confidential in logs.
        public override string ToString() =>
            $"Opened(document=<{Document.Length} bytes>, filename={FileName}, mime_type={MimeType}, " +
            $"signer={SignerSubject}, encrypted={WasEncrypted})";
    }

    /// <summary>Seal documents as S/MIME (CMS) for their recipients, and open what partners
    /// sealed for you with proof of who sent them. Every method may be called from any number
    /// of threads at once with the same identities, certificates and (filled) stores.</summary>
    public static class LayerSec
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
        /// message (DER unless options.Output says otherwise).</summary>
        public static byte[] Seal(byte[] document, Identity signer, IEnumerable<Certificate> recipients,
                                  SealOptions options = null)
        {
            if (document == null) throw new ArgumentNullException(nameof(document));
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
                LsBytes b;
                Interop.Check(Native.ls_seal(signer.Handle, ptrs.Length == 0 ? null : ptrs, new UIntPtr((uint)ptrs.Length),
                                             document, Interop.Len(document), ref opts, out b),
                              "ls_seal");
                return Interop.Take(ref b);
            }
        }

        /// <summary><see cref="Seal(byte[], Identity, IEnumerable{Certificate}, SealOptions)"/>
        /// for one recipient.</summary>
        public static byte[] Seal(byte[] document, Identity signer, Certificate recipient, SealOptions options = null)
        {
            if (recipient == null) throw new ArgumentNullException(nameof(recipient));
            return Seal(document, signer, new[] { recipient }, options);
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
                    Interop.Check(Native.ls_open(rp, sealedMessage, Interop.Len(sealedMessage), ref opts, out opened),
                                  "ls_open");
                }
                finally
                {
                    if (partners != null) partners.Lock.ExitReadLock();
                }
            }
            using (opened)
            {
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
            if (n > 0) System.Runtime.InteropServices.Marshal.Copy(data, doc, 0, (int)n);

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
            // Borrowed from the opened document: copied into a certificate of its own.
            var sp = Native.ls_opened_signer(o);
            if (sp != IntPtr.Zero)
            {
                result.SignerSubject = Interop.FromUtf8(Native.ls_cert_subject(sp));
                LsBytes pem;
                Interop.Check(Native.ls_cert_to_pem(sp, out pem), "ls_cert_to_pem");
                result.Signer = Certificate.FromBytes(Interop.Take(ref pem));
            }
            return result;
        }
    }
}
