// Helpers between managed values and the C ABI: UTF-8 strings, ls_bytes, result codes,
// passwords, and references held on handles for the length of one call.

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace LayerSecurity
{
    internal static class Interop
    {
        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);
        static volatile bool loaded;

        /// <summary>Makes sure liblayersec can be loaded, else throws a DllNotFoundException
        /// that says where it was looked for. Called by every public entry point that does not
        /// already hold a handle (a handle proves the library is loaded).</summary>
        internal static void EnsureLoaded()
        {
            if (loaded) return;
            try
            {
                Native.ls_version();
            }
            catch (DllNotFoundException e)
            {
                var ldPath = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
                throw new DllNotFoundException(
                    "liblayersec was not found. The binding imports \"layersec\": under Mono, " +
                    "LayerSec.dll.config beside LayerSec.dll maps it to the SONAME liblayersec.so.0 " +
                    "(without that file, and under .NET, liblayersec.so is looked for). Mono looked in " +
                    "LayerSec.dll's folder first; the dynamic loader then searched LD_LIBRARY_PATH (" +
                    (string.IsNullOrEmpty(ldPath) ? "not set" : ldPath) +
                    "), the ld.so cache and the system's library folders. Install the library " +
                    "(make install) or set LD_LIBRARY_PATH to the folder that holds it. (" +
                    e.Message + ")", e);
            }
            catch (EntryPointNotFoundException e)
            {
                throw new DllNotFoundException(
                    "the library loaded as \"layersec\" is not liblayersec (no ls_version): " + e.Message, e);
            }
            loaded = true;
        }

        /// <summary>A NUL-terminated UTF-8 copy of <paramref name="value"/> (null stays null).
        /// Embedded NULs are refused: C would silently cut the string there.</summary>
        internal static byte[] Utf8(string value, string paramName)
        {
            if (value == null) return null;
            if (value.IndexOf('\0') >= 0)
                throw new ArgumentException("must not contain NUL characters", paramName);
            byte[] raw;
            try
            {
                raw = StrictUtf8.GetBytes(value);
            }
            catch (EncoderFallbackException)
            {
                throw new ArgumentException("is not valid Unicode (a lone surrogate)", paramName);
            }
            var z = new byte[raw.Length + 1];
            Buffer.BlockCopy(raw, 0, z, 0, raw.Length);
            return z;
        }

        internal static byte[] Utf8Required(string value, string paramName)
        {
            if (value == null) throw new ArgumentNullException(paramName);
            return Utf8(value, paramName);
        }

        /// <summary>The UTF-8 string at <paramref name="p"/> (null for NULL), invalid sequences
        /// replaced.</summary>
        internal static string FromUtf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            var buf = new byte[n];
            Marshal.Copy(p, buf, 0, n);
            return Encoding.UTF8.GetString(buf);
        }

        /// <summary>Copies an ls_bytes the library filled into a managed array and frees it.</summary>
        internal static byte[] Take(ref LsBytes b)
        {
            try
            {
                ulong len = b.Len.ToUInt64();
                if (b.Data == IntPtr.Zero || len == 0) return new byte[0];
                if (len > int.MaxValue)
                    throw new InternalException(ResultCode.Internal, "LS_ERR_INTERNAL",
                                                "the library returned more than 2 GiB in one buffer");
                var result = new byte[(int)len];
                Marshal.Copy(b.Data, result, 0, (int)len);
                return result;
            }
            finally
            {
                Native.ls_bytes_free(ref b);
            }
        }

        internal delegate int BytesCall(out LsBytes result);

        /// <summary>Makes a call that fills an ls_bytes, throws its failure, and returns a
        /// managed copy of the bytes (the library's buffer freed).</summary>
        internal static byte[] Bytes(string function, BytesCall call)
        {
            LsBytes b;
            Check(call(out b), function);
            return Take(ref b);
        }

        /// <summary>Throws the exception for <paramref name="code"/> unless it is LS_OK, with
        /// the thread's message and transience flag. Must run on the thread of the failed call,
        /// before any other call that returns an ls_result (both are per thread and reset by
        /// the next such call).</summary>
        internal static void Check(int code, string function)
        {
            if (code == 0) return;
            var detail = FromUtf8(Native.ls_last_error_message()) ?? "";
            var transient = Native.ls_last_error_is_transient() != 0;
            var name = FromUtf8(Native.ls_result_name(code)) ?? "LS_UNKNOWN";
            throw LayerSecException.FromCode(code, name, detail, function, transient);
        }

        internal static UIntPtr Len(byte[] a) => new UIntPtr(a == null ? 0u : (uint)a.Length);
    }

    /// <summary>References taken on handles for the length of one call, for pointers the
    /// marshaller cannot reference itself (arrays of handles, handles inside option structs,
    /// nullable handles). A disposed handle throws ObjectDisposedException here, before the
    /// call; one disposed during the call is freed when the references are released.</summary>
    internal sealed class HandleRefs : IDisposable
    {
        readonly List<SafeHandle> held = new List<SafeHandle>();

        internal IntPtr Add(SafeHandle h, string owner)
        {
            if (h == null) return IntPtr.Zero;
            bool ok = false;
            try
            {
                h.DangerousAddRef(ref ok);
            }
            catch (ObjectDisposedException)
            {
                throw new ObjectDisposedException(owner);
            }
            if (!ok) throw new ObjectDisposedException(owner);
            held.Add(h);
            return h.DangerousGetHandle();
        }

        public void Dispose()
        {
            foreach (var h in held) h.DangerousRelease();
            held.Clear();
        }
    }

    /// <summary>Managed buffers pinned for one call (strings inside option structs, a
    /// password). Buffers marked secret are zeroed before they are unpinned.</summary>
    internal sealed class Pins : IDisposable
    {
        readonly List<GCHandle> pinned = new List<GCHandle>();
        readonly List<byte[]> secrets = new List<byte[]>();

        internal IntPtr Pin(byte[] buf)
        {
            if (buf == null) return IntPtr.Zero;
            var h = GCHandle.Alloc(buf, GCHandleType.Pinned);
            pinned.Add(h);
            return h.AddrOfPinnedObject();
        }

        /// <summary>A password as pinned NUL-terminated UTF-8, wiped on Dispose (null stays
        /// NULL). Only this one copy of it is made; the caller wipes its own char[].</summary>
        internal IntPtr Password(char[] password)
        {
            if (password == null) return IntPtr.Zero;
            if (Array.IndexOf(password, '\0') >= 0)
                throw new ArgumentException("must not contain NUL characters", nameof(password));
            var enc = new UTF8Encoding(false, true);
            int n;
            try
            {
                n = enc.GetByteCount(password);
            }
            catch (EncoderFallbackException)
            {
                throw new ArgumentException("is not valid Unicode (a lone surrogate)", nameof(password));
            }
            // Pinned before it is filled, for its whole life: the GC never moves (copies) it.
            var buf = new byte[n + 1];
            var p = Pin(buf);
            secrets.Add(buf);
            enc.GetBytes(password, 0, password.Length, buf, 0);
            return p;
        }

        public void Dispose()
        {
            foreach (var s in secrets) Array.Clear(s, 0, s.Length);
            secrets.Clear();
            foreach (var h in pinned) h.Free();
            pinned.Clear();
        }
    }
}
