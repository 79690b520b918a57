// The Stream and file overloads of seal and open (ls_seal_stream, ls_open_stream,
// ls_seal_file, ls_open_file): documents of any size in constant memory.

using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace LayerSecurity
{
    public static partial class LayerSec
    {
        /// <summary>Seals what <paramref name="input"/> holds from its current position to its
        /// end and writes the sealed message to <paramref name="output"/> as it is made, in
        /// constant memory (indefinite-length BER, as <c>openssl cms -stream</c> writes it; PEM
        /// or S/MIME around it with options.Output). Returns the number of bytes written.
        /// Neither stream is closed or flushed.
        ///
        /// On any exception what was written is incomplete: discard it. An exception thrown by
        /// a stream is thrown again as itself (the library saw an I/O error and stopped).</summary>
        public static long Seal(Stream input, Stream output, Identity signer, IEnumerable<Certificate> recipients,
                                SealOptions options = null)
        {
            var bridge = new StreamBridge(input, output);
            ulong size = 0;
            DoSeal(signer, recipients, options, "ls_seal_stream", bridge,
                   (IntPtr[] ptrs, UIntPtr n, ref NativeSealOptions opts) =>
                       Native.ls_seal_stream(signer.Handle, ptrs, n, bridge.Read, IntPtr.Zero, bridge.Write,
                                             IntPtr.Zero, ref opts, out size));
            GC.KeepAlive(bridge); // its delegates, until the call has returned
            return (long)size;
        }

        /// <summary><see cref="Seal(Stream, Stream, Identity, IEnumerable{Certificate}, SealOptions)"/>
        /// for one recipient.</summary>
        public static long Seal(Stream input, Stream output, Identity signer, Certificate recipient,
                                SealOptions options = null)
        {
            return Seal(input, output, signer, One(recipient), options);
        }

        /// <summary>Opens the sealed message <paramref name="input"/> holds (from its current
        /// position) and writes the document to <paramref name="output"/> as the layers are
        /// peeled, in constant memory. Returns the description (signer, file name, MIME type,
        /// <see cref="Opened.Size"/>) with an empty <see cref="Opened.Document"/>.
        ///
        /// <b>What <paramref name="output"/> receives is not authentic until this returns</b>:
        /// the signature and the authentication tag follow the content they cover. Write to a
        /// place nobody uses yet (a temporary file, a staging table) and discard it if this
        /// throws; <see cref="OpenFile"/> does that for files. An exception thrown by a stream
        /// is thrown again as itself.</summary>
        public static Opened Open(Stream input, Stream output, Identity recipient, OpenOptions options = null)
        {
            var bridge = new StreamBridge(input, output);
            var opened = DoOpen(recipient, options, "ls_open_stream", bridge,
                                (IntPtr rp, ref NativeOpenOptions opts, out OpenedHandle o) =>
                                    Native.ls_open_stream(rp, bridge.Read, IntPtr.Zero, bridge.Write, IntPtr.Zero,
                                                          ref opts, out o));
            GC.KeepAlive(bridge);
            return opened;
        }

        /// <summary>Seals the file <paramref name="inPath"/> into the file
        /// <paramref name="outPath"/> in constant memory (see
        /// <see cref="Seal(Stream, Stream, Identity, IEnumerable{Certificate}, SealOptions)"/>).
        /// <paramref name="outPath"/> appears only once complete (written beside it under a
        /// temporary name, synced, renamed); a failed seal leaves no file. The document gets no
        /// file name unless options.FileName gives one (e.g. <c>Path.GetFileName(inPath)</c>).
        /// A file that cannot be read or written throws <see cref="InputException"/>
        /// (LS_ERR_IO).</summary>
        public static void SealFile(string inPath, string outPath, Identity signer, IEnumerable<Certificate> recipients,
                                    SealOptions options = null)
        {
            var i = Interop.Utf8Required(inPath, nameof(inPath));
            var o = Interop.Utf8Required(outPath, nameof(outPath));
            DoSeal(signer, recipients, options, "ls_seal_file", null,
                   (IntPtr[] ptrs, UIntPtr n, ref NativeSealOptions opts) =>
                       Native.ls_seal_file(signer.Handle, ptrs, n, i, o, ref opts));
        }

        /// <summary><see cref="SealFile(string, string, Identity, IEnumerable{Certificate}, SealOptions)"/>
        /// for one recipient.</summary>
        public static void SealFile(string inPath, string outPath, Identity signer, Certificate recipient,
                                    SealOptions options = null)
        {
            SealFile(inPath, outPath, signer, One(recipient), options);
        }

        /// <summary>Opens the sealed file <paramref name="inPath"/> into the file
        /// <paramref name="outPath"/> in constant memory. <paramref name="outPath"/> (mode 0600)
        /// appears only once the signature and the authentication tag verified: a refused or
        /// truncated message leaves no file. Returns the description with an empty
        /// <see cref="Opened.Document"/> (<see cref="Opened.Size"/> is the document's size).
        /// </summary>
        public static Opened OpenFile(string inPath, string outPath, Identity recipient, OpenOptions options = null)
        {
            var i = Interop.Utf8Required(inPath, nameof(inPath));
            var o = Interop.Utf8Required(outPath, nameof(outPath));
            return DoOpen(recipient, options, "ls_open_file", null,
                          (IntPtr rp, ref NativeOpenOptions opts, out OpenedHandle h) =>
                              Native.ls_open_file(rp, i, o, ref opts, out h));
        }
    }

    /// <summary>The read and write callbacks of one ls_*_stream call over two Streams. The
    /// delegates live as long as this object (the caller keeps it alive across the call). No
    /// exception ever leaves a callback into the library's frames: the first one a Stream
    /// throws is kept, the library gets EIO (and fails with LS_ERR_IO), and
    /// <see cref="ThrowKept"/> throws it again, as itself with its stack, once the call has
    /// returned.</summary>
    internal sealed class StreamBridge
    {
        const int EIO = 5;
        // Stream.Read/Write take a managed array: the bytes pass through this buffer (one copy
        // each way between it and the library's). 1 MiB at most, allocated as asked for.
        const int MaxChunk = 1 << 20;

        readonly Stream input, output;
        byte[] buffer = new byte[0];
        ExceptionDispatchInfo kept;

        internal readonly ReadCallback Read;
        internal readonly WriteCallback Write;

        internal StreamBridge(Stream input, Stream output)
        {
            if (input == null) throw new ArgumentNullException(nameof(input));
            if (output == null) throw new ArgumentNullException(nameof(output));
            if (!input.CanRead) throw new ArgumentException("cannot be read", nameof(input));
            if (!output.CanWrite) throw new ArgumentException("cannot be written", nameof(output));
            this.input = input;
            this.output = output;
            Read = OnRead;
            Write = OnWrite;
        }

        byte[] Buffer(ulong len)
        {
            int n = (int)Math.Min(len, (ulong)MaxChunk);
            if (buffer.Length < n) buffer = new byte[Math.Max(n, Math.Min(2 * buffer.Length, MaxChunk))];
            return buffer;
        }

        int OnRead(IntPtr userdata, IntPtr buf, UIntPtr len, IntPtr outN)
        {
            try
            {
                if (kept != null) return EIO;
                var b = Buffer(len.ToUInt64());
                int want = (int)Math.Min(len.ToUInt64(), (ulong)b.Length);
                int n = want == 0 ? 0 : input.Read(b, 0, want);
                if (n < 0 || n > want)
                    throw new IOException($"{input.GetType().Name}.Read returned {n} for a buffer of {want}");
                Marshal.Copy(b, 0, buf, n);
                Marshal.WriteIntPtr(outN, new IntPtr(n));
                return 0;
            }
            catch (Exception e)
            {
                Keep(e);
                return EIO;
            }
        }

        int OnWrite(IntPtr userdata, IntPtr buf, UIntPtr len, IntPtr outN)
        {
            try
            {
                if (kept != null) return EIO;
                var b = Buffer(len.ToUInt64());
                int n = (int)Math.Min(len.ToUInt64(), (ulong)b.Length);
                Marshal.Copy(buf, b, 0, n);
                output.Write(b, 0, n);
                Marshal.WriteIntPtr(outN, new IntPtr(n));
                return 0;
            }
            catch (Exception e)
            {
                Keep(e);
                return EIO;
            }
        }

        void Keep(Exception e)
        {
            if (kept == null) kept = ExceptionDispatchInfo.Capture(e);
        }

        /// <summary>Throws what a Stream threw during the call, if anything.</summary>
        internal void ThrowKept() => kept?.Throw();
    }
}
