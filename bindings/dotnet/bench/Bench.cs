// Bench.exe — the .NET side of the bindings' benchmark (scripts/bench-bindings.sh), with the
// contract of examples-c/bench.c (the C anchor) and the Java bench program:
//
//   Bench.exe loop KEY CERT PEER_KEY PEER_CERT SIZE ITERATIONS
//   Bench.exe seal KEY CERT PEER_CERT SIZE ITERATIONS
//
// The document is SIZE bytes of xorshift32 (seed 2463534242), made once into one byte[].
// loop: ITERATIONS/10 untimed rounds, then ITERATIONS timed rounds of LayerSec.Seal (signed
// with KEY/CERT for PEER_CERT, default options) and LayerSec.Open as the peer (PEER_KEY/
// PEER_CERT) requiring CERT as the signer; the opened length is checked (and the bytes in the
// first round), and the Opened disposed. seal: one untimed seal, then
// ITERATIONS timed ones, each result dropped. Prints one line:
//
//   <mode> size=<SIZE> iterations=<N> seconds=<float> vmhwm_kb=<VmHWM of /proc/self/status>
//
// Memory (what the 100 MiB seal with MONO_GC_PARAMS=max-heap-size=264m proves): a byte[]
// argument of a P/Invoke is blittable, so Mono and .NET pass it pinned, a pointer to the array's
// own bytes, without copying it; the sealed message, made by the library in native memory
// (ls_bytes), is copied once into a new byte[] (Marshal.Copy) and the native buffer freed at
// once. So the managed heap holds the document and one sealed result (plus the previous
// result until the GC takes it): 2 × SIZE and slack. An extra managed copy of the document
// would not fit.
using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using LayerSecurity;

static class Bench
{
    static long VmHwmKb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(new string(line.Where(char.IsDigit).ToArray()), CultureInfo.InvariantCulture);
        return -1;
    }

    static byte[] Document(int size)
    {
        var d = new byte[size];
        uint x = 2463534242u;
        for (int i = 0; i < size; i++)
        {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            d[i] = (byte)(x & 0xff);
        }
        return d;
    }

    // One round each, as methods of their own (not inlined): the sealed result lives only in
    // their frames.
    // After each seal of the `seal` mode, a full collection (timed: reclaiming the result is
    // part of the cost). Mono's collector scans thread stacks and registers conservatively: a
    // stale word can keep the dropped 100 MiB result of the previous seal reachable while the
    // next one is allocated, and at max-heap-size=2 × SIZE + 64 MiB that allocation then fails.
    // Measured over the release library (seal, 100 MiB, 3 iterations): OutOfMemoryException in
    // 3 runs of 3 without this; with it in 2 runs of 20 at 264m and 0 of 20 at 296m (2 × SIZE
    // + 96 MiB, where a variant with one extra managed copy of the document still fails every
    // time). Neither a retry after the exception nor a thread of its own per seal did better.
    // .NET's GC scans stacks precisely; C frees its ls_bytes at once.
    static void Reclaim(int sealedLength)
    {
        if (sealedLength >= 1 << 20) GC.Collect();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static int SealOnce(byte[] doc, Identity me, Certificate[] to)
    {
        return LayerSec.Seal(doc, me, to).Length;
    }

    // seal-buffer: LayerSec.SealToBuffer, the sealed message left in the library's memory (as C
    // has it), disposed at once: no managed copy of the result.
    [MethodImpl(MethodImplOptions.NoInlining)]
    static int SealToBufferOnce(byte[] doc, Identity me, Certificate[] to)
    {
        using (var b = LayerSec.SealToBuffer(doc, me, to)) return (int)b.Length;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void RoundTrip(byte[] doc, Identity me, Certificate[] to, Identity peer, OpenOptions opts, bool checkBytes)
    {
        using (var opened = LayerSec.Open(LayerSec.Seal(doc, me, to), peer, opts))
        {
            if (opened.Document.Length != doc.Length || checkBytes && !opened.Document.SequenceEqual(doc))
                throw new InvalidOperationException("the opened document differs");
        }
    }

    static int Main(string[] args)
    {
        bool loop = args.Length == 7 && args[0] == "loop";
        bool toBuffer = args.Length == 6 && args[0] == "seal-buffer";
        bool seal = args.Length == 6 && (args[0] == "seal" || toBuffer);
        if (!loop && !seal)
        {
            Console.Error.WriteLine("usage: Bench.exe loop KEY CERT PEER_KEY PEER_CERT SIZE ITERATIONS");
            Console.Error.WriteLine("       Bench.exe seal|seal-buffer KEY CERT PEER_CERT SIZE ITERATIONS");
            return 2;
        }
        int size = int.Parse(args[args.Length - 2], CultureInfo.InvariantCulture);
        int n = int.Parse(args[args.Length - 1], CultureInfo.InvariantCulture);
        try
        {
            using (var me = Identity.Load(args[1], args[2]))
            using (var myCert = Certificate.Load(args[2]))
            using (var peer = loop ? Identity.Load(args[3], args[4]) : null)
            using (var peerCert = Certificate.Load(loop ? args[4] : args[3]))
            {
                var doc = Document(size);
                var to = new[] { peerCert };
                var openOptions = new OpenOptions { Sender = myCert };
                int warm = loop ? n / 10 : 1;
                for (int i = 0; i < warm; i++)
                {
                    if (loop) RoundTrip(doc, me, to, peer, openOptions, i == 0);
                    else if (toBuffer) SealToBufferOnce(doc, me, to);
                    else Reclaim(SealOnce(doc, me, to));
                }
                var watch = Stopwatch.StartNew();
                for (int i = 0; i < n; i++)
                {
                    if (loop) RoundTrip(doc, me, to, peer, openOptions, i == 0);
                    else if (toBuffer) SealToBufferOnce(doc, me, to);
                    else Reclaim(SealOnce(doc, me, to));
                }
                double secs = watch.Elapsed.TotalSeconds;
                Console.WriteLine(string.Format(CultureInfo.InvariantCulture,
                                                "{0} size={1} iterations={2} seconds={3:F6} vmhwm_kb={4}",
                                                args[0], size, n, secs, VmHwmKb()));
            }
            return 0;
        }
        catch (LayerSecException e)
        {
            Console.Error.WriteLine("bench: " + e.Message);
            return 1;
        }
    }
}
