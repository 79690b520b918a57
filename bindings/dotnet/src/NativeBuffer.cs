// NativeBuffer: bytes the library made, left where it made them (native memory), for results
// too large to copy into a managed array without cost: LayerSec.SealToBuffer.

using System;
using System.IO;
using System.Runtime.InteropServices;

namespace LayerSecurity
{
    /// <summary>An <c>ls_bytes</c> as a <see cref="SafeBuffer"/>: read through
    /// <see cref="SafeBuffer.ReadArray{T}"/> and <see cref="UnmanagedMemoryStream"/>, which take
    /// a reference for each read, and freed with <c>ls_bytes_free</c> once, after the last.</summary>
    internal sealed class LsBytesBuffer : SafeBuffer
    {
        ulong length;

        internal LsBytesBuffer() : base(true) { }

        /// <summary>Takes over what the library filled in <paramref name="b"/> (reset to empty).</summary>
        internal static LsBytesBuffer Take(ref LsBytes b)
        {
            var buffer = new LsBytesBuffer();
            // No window between the fields being copied and the handle owning them: nothing
            // in here can fail after SetHandle.
            buffer.length = b.Len.ToUInt64();
            buffer.SetHandle(b.Data);
            b = default(LsBytes);
            buffer.Initialize(buffer.length);
            return buffer;
        }

        protected override bool ReleaseHandle()
        {
            var b = new LsBytes { Data = handle, Len = new UIntPtr(length) };
            Native.ls_bytes_free(ref b);
            return true;
        }
    }

    /// <summary>The sealed message of <see cref="LayerSec.SealToBuffer(byte[], Identity, System.Collections.Generic.IEnumerable{Certificate}, SealOptions)"/>,
    /// in the native memory the library made it in: no managed copy until you ask for one.
    /// Write it somewhere with <see cref="CopyTo"/> or read it as a Stream with
    /// <see cref="OpenRead"/>; <see cref="ToArray"/> is the copy <c>Seal</c> makes.
    ///
    /// Dispose it to free the memory at once (the finalizer does otherwise). Reading after
    /// Dispose, also through a Stream opened before, throws <see cref="ObjectDisposedException"/>;
    /// a read in progress on another thread finishes first. Any number of threads may read it at
    /// once.</summary>
    public sealed class NativeBuffer : IDisposable
    {
        readonly LsBytesBuffer buffer;

        internal NativeBuffer(LsBytesBuffer buffer)
        {
            this.buffer = buffer;
            Length = (long)buffer.ByteLength;
        }

        /// <summary>Its size in bytes.</summary>
        public long Length { get; }

        /// <summary>A managed copy of the bytes.</summary>
        public byte[] ToArray()
        {
            if (Length > int.MaxValue)
                throw new InvalidOperationException($"{Length} bytes do not fit in one array; use CopyTo or OpenRead");
            var a = new byte[Length];
            if (Length > 0) buffer.ReadArray(0, a, 0, a.Length);
            return a;
        }

        /// <summary>Writes the bytes to <paramref name="destination"/> in pieces of 1 MiB (one
        /// managed piece at a time, not a copy of the whole).</summary>
        public void CopyTo(Stream destination)
        {
            if (destination == null) throw new ArgumentNullException(nameof(destination));
            var piece = new byte[(int)Math.Min(Length, 1 << 20)];
            for (long at = 0; at < Length; at += piece.Length)
            {
                int n = (int)Math.Min(piece.Length, Length - at);
                buffer.ReadArray((ulong)at, piece, 0, n);
                destination.Write(piece, 0, n);
            }
        }

        /// <summary>A read-only Stream over the bytes, in place. Valid until this buffer is
        /// disposed.</summary>
        public Stream OpenRead()
        {
            if (buffer.IsClosed) throw new ObjectDisposedException(nameof(NativeBuffer));
            return new UnmanagedMemoryStream(buffer, 0, Length, FileAccess.Read);
        }

        /// <summary>Frees the native memory (idempotent).</summary>
        public void Dispose() => buffer.Dispose();
    }
}
