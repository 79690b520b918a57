// SafeHandle subclasses, one per C handle type: each frees its object with the matching
// ls_*_free exactly once (on Dispose, or by the finalizer when the owner was not disposed),
// never while a P/Invoke call holds a reference to it.

using System;
using System.Runtime.InteropServices;

namespace LayerSecurity
{
    internal abstract class LayerSecHandle : SafeHandle
    {
        protected LayerSecHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;
    }

    internal sealed class IdentityHandle : LayerSecHandle
    {
        protected override bool ReleaseHandle()
        {
            Native.ls_identity_free(handle);
            return true;
        }
    }

    internal sealed class CertHandle : LayerSecHandle
    {
        protected override bool ReleaseHandle()
        {
            Native.ls_cert_free(handle);
            return true;
        }
    }

    internal sealed class CertStoreHandle : LayerSecHandle
    {
        protected override bool ReleaseHandle()
        {
            Native.ls_certstore_free(handle);
            return true;
        }
    }

    internal sealed class OpenedHandle : LayerSecHandle
    {
        protected override bool ReleaseHandle()
        {
            Native.ls_opened_free(handle);
            return true;
        }
    }

    internal sealed class ClientHandle : LayerSecHandle
    {
        protected override bool ReleaseHandle()
        {
            Native.ls_client_free(handle);
            return true;
        }
    }
}
