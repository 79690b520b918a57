using System;

namespace LayerSecurity
{
    /// <summary>An X.509 certificate (ls_cert): a partner's, a trust anchor or our own.
    /// Immutable: any number of threads may use one at once. Dispose frees it (at once, or when
    /// the calls using it right now return); using it afterwards throws
    /// ObjectDisposedException.</summary>
    public sealed class Certificate : IDisposable
    {
        internal readonly CertHandle Handle;

        internal Certificate(CertHandle handle)
        {
            if (handle == null || handle.IsInvalid)
                throw new InternalException(ResultCode.Internal, "LS_ERR_INTERNAL", "the library returned a NULL certificate");
            Handle = handle;
        }

        /// <summary>Loads a certificate file, PEM (its first certificate) or DER.</summary>
        public static Certificate Load(string path)
        {
            Interop.EnsureLoaded();
            var p = Interop.Utf8Required(path, nameof(path));
            CertHandle h;
            Interop.Check(Native.ls_cert_load(p, out h), "ls_cert_load");
            return new Certificate(h);
        }

        /// <summary>A certificate from PEM or DER bytes.</summary>
        public static Certificate FromBytes(byte[] data)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            Interop.EnsureLoaded();
            CertHandle h;
            Interop.Check(Native.ls_cert_from_memory(data, Interop.Len(data), out h), "ls_cert_from_memory");
            return new Certificate(h);
        }

        /// <summary>The subject name, e.g. "CN=acme, O=ACME Corp".</summary>
        public string Subject
        {
            get
            {
                ThrowIfDisposed();
                // The string is owned by the certificate: hold it while copying.
                using (var refs = new HandleRefs())
                {
                    var p = refs.Add(Handle, nameof(Certificate));
                    return Interop.FromUtf8(Native.ls_cert_subject(p)) ?? "";
                }
            }
        }

        /// <summary>The certificate as PEM text (ASCII bytes).</summary>
        public byte[] ToPem()
        {
            ThrowIfDisposed();
            return Interop.Bytes("ls_cert_to_pem", (out LsBytes b) => Native.ls_cert_to_pem(Handle, out b));
        }

        /// <summary>True once disposed.</summary>
        public bool IsDisposed => Handle.IsClosed;

        public void Dispose() => Handle.Dispose();

        public override string ToString()
        {
            try
            {
                return $"Certificate {Subject}";
            }
            catch (ObjectDisposedException)
            {
                return "Certificate (disposed)";
            }
        }

        internal void ThrowIfDisposed()
        {
            if (Handle.IsClosed) throw new ObjectDisposedException(nameof(Certificate));
        }
    }
}
