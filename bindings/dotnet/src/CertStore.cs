using System;
using System.Threading;

namespace LayerSecurity
{
    /// <summary>Partner certificates (each optionally named by a party id) and trust anchors
    /// (ls_certstore). Fill it, then share it: any number of threads may open messages with it
    /// at once; AddPartner/AddAnchor wait until no open is using the store (the C ABI forbids
    /// adding while another thread uses it, and this class enforces that).</summary>
    public sealed class CertStore : IDisposable
    {
        internal readonly CertStoreHandle Handle;
        // Readers: opens using the store. Writer: an Add*. Never disposed (it holds no OS
        // resource unless waited on, and disposing it under a waiting thread would throw there).
        internal readonly ReaderWriterLockSlim Lock = new ReaderWriterLockSlim(LockRecursionPolicy.SupportsRecursion);

        CertStore(CertStoreHandle handle)
        {
            if (handle == null || handle.IsInvalid)
                throw new InternalException(ResultCode.Internal, "LS_ERR_INTERNAL", "the library returned a NULL store");
            Handle = handle;
        }

        /// <summary>A new, empty store.</summary>
        public CertStore() : this(NewHandle()) { }

        static CertStoreHandle NewHandle()
        {
            Interop.EnsureLoaded();
            CertStoreHandle h;
            Interop.Check(Native.ls_certstore_new(out h), "ls_certstore_new");
            return h;
        }

        /// <summary>Each *.pem, *.crt, *.cer or *.der file directly in <paramref name="path"/> is a
        /// partner certificate named by its file name without extension; the files of its
        /// subfolder anchors/ are trust anchors.</summary>
        public static CertStore LoadDir(string path)
        {
            Interop.EnsureLoaded();
            var p = Interop.Utf8Required(path, nameof(path));
            CertStoreHandle h;
            Interop.Check(Native.ls_certstore_load_dir(p, out h), "ls_certstore_load_dir");
            return new CertStore(h);
        }

        /// <summary>Adds (a copy of) a partner certificate, optionally under a party id.</summary>
        public void AddPartner(Certificate cert, string partyId = null)
        {
            if (cert == null) throw new ArgumentNullException(nameof(cert));
            var id = Interop.Utf8(partyId, nameof(partyId));
            ThrowIfDisposed();
            cert.ThrowIfDisposed();
            Lock.EnterWriteLock();
            try
            {
                Interop.Check(Native.ls_certstore_add_partner(Handle, cert.Handle, id), "ls_certstore_add_partner");
            }
            finally
            {
                Lock.ExitWriteLock();
            }
        }

        /// <summary>Adds (a copy of) a trust anchor, a CA certificate.</summary>
        public void AddAnchor(Certificate cert)
        {
            if (cert == null) throw new ArgumentNullException(nameof(cert));
            ThrowIfDisposed();
            cert.ThrowIfDisposed();
            Lock.EnterWriteLock();
            try
            {
                Interop.Check(Native.ls_certstore_add_anchor(Handle, cert.Handle), "ls_certstore_add_anchor");
            }
            finally
            {
                Lock.ExitWriteLock();
            }
        }

        public bool IsDisposed => Handle.IsClosed;

        public void Dispose() => Handle.Dispose();

        internal void ThrowIfDisposed()
        {
            if (Handle.IsClosed) throw new ObjectDisposedException(nameof(CertStore));
        }
    }
}
