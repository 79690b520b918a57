// SafeHandle subclasses, one per C handle type: each frees its object with the matching
// ls_*_free exactly once (on Dispose, or by the finalizer when the owner was not disposed),
// never while a P/Invoke call holds a reference to it.
//
// One concrete class per type because the marshaller creates them itself for `out` parameters
// (it needs a parameterless constructor of the exact type); each says only which free to call.

using System;
using System.Runtime.InteropServices;

namespace LayerSecurity
{
    internal abstract class LayerSecHandle : SafeHandle
    {
        protected LayerSecHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        /// <summary>The ls_*_free of the handle's type.</summary>
        protected abstract void Free(IntPtr h);

        protected override bool ReleaseHandle()
        {
            Free(handle);
            return true;
        }
    }

    internal sealed class IdentityHandle : LayerSecHandle
    {
        protected override void Free(IntPtr h) => Native.ls_identity_free(h);
    }

    internal sealed class CertHandle : LayerSecHandle
    {
        protected override void Free(IntPtr h) => Native.ls_cert_free(h);
    }

    internal sealed class CertStoreHandle : LayerSecHandle
    {
        protected override void Free(IntPtr h) => Native.ls_certstore_free(h);
    }

    internal sealed class OpenedHandle : LayerSecHandle
    {
        protected override void Free(IntPtr h) => Native.ls_opened_free(h);
    }

    internal sealed class ClientHandle : LayerSecHandle
    {
        protected override void Free(IntPtr h) => Native.ls_client_free(h);
    }
}
