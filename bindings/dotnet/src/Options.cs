// The options of seal and open, and what open returns.

using System;

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
    /// The signer's certificate is kept as PEM and becomes a <see cref="Certificate"/> (a
    /// native object) only when <see cref="Signer"/> is first read: dispose the Opened (or that
    /// certificate) when done, else a finalizer frees it.</summary>
    public sealed class Opened : IDisposable
    {
        readonly object signerLock = new object();
        Certificate signer;
        bool disposed;

        /// <summary>The verified signer's certificate as PEM, or null when unsigned.</summary>
        internal byte[] SignerPem { get; set; }

        /// <summary>The document. Empty after <c>LayerSec.Open(Stream, Stream, …)</c> and
        /// <c>LayerSec.OpenFile</c>, which wrote it to their output: <see cref="Size"/> is its
        /// size then.</summary>
        public byte[] Document { get; internal set; }
        /// <summary>The file name exactly as the sender stated it (may contain directories or
        /// ".."): to write the document into a folder use <see cref="SafeFileName"/>.</summary>
        public string FileName { get; internal set; }
        /// <summary>The file name reduced to a safe base name, or null.</summary>
        public string SafeFileName { get; internal set; }
        public string MimeType { get; internal set; }
        /// <summary>The verified signer's subject, or null when unsigned (AllowUnsigned).</summary>
        public string SignerSubject { get; internal set; }
        /// <summary>The verified signer's certificate, or null when unsigned. Made on first use
        /// (parsing a certificate costs about as much as a third of a 1 KiB seal+open) and the
        /// same object afterwards; disposed with the Opened, after which this throws
        /// ObjectDisposedException.</summary>
        public Certificate Signer
        {
            get
            {
                if (SignerPem == null) return null;
                lock (signerLock)
                {
                    if (disposed) throw new ObjectDisposedException(nameof(Opened));
                    return signer ?? (signer = Certificate.FromBytes(SignerPem));
                }
            }
        }
        /// <summary>The signing time the signer stated, or null.</summary>
        public DateTimeOffset? SigningTime { get; internal set; }
        /// <summary>True when an encryption layer was removed.</summary>
        public bool WasEncrypted { get; internal set; }
        /// <summary>The document's size in bytes.</summary>
        public long Size { get; internal set; }

        /// <summary>Frees the signer's certificate if <see cref="Signer"/> made one. The
        /// document and the other properties stay readable. A second Dispose does nothing.</summary>
        public void Dispose()
        {
            lock (signerLock)
            {
                disposed = true;
                signer?.Dispose();
            }
        }

        // Not the document: it may be large, and confidential in logs.
        public override string ToString() =>
            $"Opened(document=<{Document.Length} bytes>, filename={FileName}, mime_type={MimeType}, " +
            $"signer={SignerSubject}, encrypted={WasEncrypted})";
    }
}
