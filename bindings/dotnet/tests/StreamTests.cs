using System;
using System.IO;
using System.Linq;
using LayerSecurity;
using NUnit.Framework;
using static LayerSecurity.Tests.Fixtures;

namespace LayerSecurity.Tests
{
    /// <summary>The Stream and file overloads of Seal and Open (ls_*_stream, ls_*_file).</summary>
    [TestFixture]
    public class StreamTests
    {
        static byte[] Random(int n, int seed)
        {
            var b = new byte[n];
            new Random(seed).NextBytes(b);
            return b;
        }

        static OpenOptions FromAlice => new OpenOptions { Sender = Alice.Certificate };

        /// <summary>A folder of the test's own, to check that nothing is left in it.</summary>
        static string NewDir()
        {
            var d = Path.Combine(TempDir, "streams-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(d);
            return d;
        }

        /// <summary>A Stream over another that hands out at most <c>Chunk</c> bytes per Read and
        /// throws <c>Failure</c> once <c>FailAfter</c> bytes have passed (read or written).</summary>
        sealed class TestStream : Stream
        {
            readonly Stream inner;
            public int Chunk = int.MaxValue;
            public long FailAfter = long.MaxValue;
            public Exception Failure;
            public int Calls, CallsAfterFailure;
            long passed;
            bool failed;

            public TestStream(Stream inner) { this.inner = inner; }

            void Pass(int n)
            {
                Calls++;
                if (failed) CallsAfterFailure++;
                passed += n;
                if (passed > FailAfter)
                {
                    failed = true;
                    throw Failure;
                }
            }

            public override int Read(byte[] buffer, int offset, int count)
            {
                int n = inner.Read(buffer, offset, Math.Min(count, Chunk));
                Pass(n);
                return n;
            }

            public override void Write(byte[] buffer, int offset, int count)
            {
                Pass(count);
                inner.Write(buffer, offset, count);
            }

            public override bool CanRead => inner.CanRead;
            public override bool CanWrite => inner.CanWrite;
            public override bool CanSeek => false;
            public override long Length => throw new NotSupportedException();
            public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
            public override void Flush() => inner.Flush();
            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
            public override void SetLength(long value) => throw new NotSupportedException();
        }

        [Test]
        public void SeveralMiBThroughStreamsRoundTrip()
        {
            var doc = Random(5 * 1024 * 1024 + 123, 1);
            var sealedOut = new MemoryStream();
            // A reader that hands out odd small chunks: short reads are not the end.
            var reader = new TestStream(new MemoryStream(doc)) { Chunk = 7777 };
            long written = LayerSec.Seal(reader, sealedOut, Alice, Bob.Certificate,
                                         new SealOptions { FileName = "big.bin" });
            Assert.AreEqual(sealedOut.Length, written);
            Assert.That(written, Is.GreaterThan(doc.Length), "random data does not compress");
            Assert.That(reader.Calls, Is.GreaterThan(doc.Length / 7777), "read in chunks, not whole");

            var docOut = new MemoryStream();
            sealedOut.Position = 0;
            var opened = LayerSec.Open(sealedOut, docOut, Bob, FromAlice);
            Assert.AreEqual(doc.Length, opened.Size);
            Assert.AreEqual(0, opened.Document.Length, "the document went to the stream");
            Assert.AreEqual("big.bin", opened.FileName);
            Assert.AreEqual("CN=alice", opened.SignerSubject);
            Assert.IsTrue(opened.WasEncrypted);
            Assert.IsTrue(doc.SequenceEqual(docOut.ToArray()));
            opened.Signer.Dispose();

            // What the stream sealed, the byte[] API opens (and the other way round).
            Assert.IsTrue(doc.SequenceEqual(LayerSec.Open(sealedOut.ToArray(), Bob, FromAlice).Document));
            var sealedBytes = LayerSec.Seal(doc, Alice, Bob.Certificate);
            docOut.SetLength(0);
            LayerSec.Open(new MemoryStream(sealedBytes), docOut, Bob, FromAlice);
            Assert.IsTrue(doc.SequenceEqual(docOut.ToArray()));
        }

        [Test]
        public void FilesRoundTripAndMixWithTheByteArrayApi()
        {
            var dir = NewDir();
            var doc = Random(3 * 1024 * 1024 + 5, 2);
            var plain = Path.Combine(dir, "report.pdf");
            File.WriteAllBytes(plain, doc);
            var sealedPath = Path.Combine(dir, "report.p7m");
            LayerSec.SealFile(plain, sealedPath, Alice, new[] { Bob.Certificate, Carol.Certificate },
                              new SealOptions { FileName = "report.pdf", Output = SealOutput.Pem });
            StringAssert.StartsWith("-----BEGIN CMS-----", File.ReadAllText(sealedPath).Substring(0, 30));

            var opened = LayerSec.OpenFile(sealedPath, Path.Combine(dir, "out.pdf"), Carol, FromAlice);
            Assert.AreEqual(doc.Length, opened.Size);
            Assert.AreEqual("report.pdf", opened.FileName);
            Assert.AreEqual("application/pdf", opened.MimeType);
            Assert.AreEqual(0, opened.Document.Length);
            Assert.IsTrue(doc.SequenceEqual(File.ReadAllBytes(Path.Combine(dir, "out.pdf"))));

            // A file sealed by SealFile opened by the byte[] API...
            Assert.IsTrue(doc.SequenceEqual(LayerSec.Open(File.ReadAllBytes(sealedPath), Bob, FromAlice).Document));
            // ...and a message sealed by the byte[] API opened by OpenFile.
            var fromBytes = Path.Combine(dir, "bytes.p7m");
            File.WriteAllBytes(fromBytes, LayerSec.Seal(doc, Alice, Bob.Certificate));
            LayerSec.OpenFile(fromBytes, Path.Combine(dir, "bytes.out"), Bob, FromAlice);
            Assert.IsTrue(doc.SequenceEqual(File.ReadAllBytes(Path.Combine(dir, "bytes.out"))));
            CollectionAssert.AreEquivalent(new[] { "report.pdf", "report.p7m", "out.pdf", "bytes.p7m", "bytes.out" },
                                           Directory.GetFiles(dir).Select(Path.GetFileName),
                                           "no temporary file is left");
        }

        [Test]
        public void TruncatedOrTamperedFileLeavesNoOutput()
        {
            var dir = NewDir();
            var sealedMsg = LayerSec.Seal(Random(300000, 3), Alice, Bob.Certificate);
            var truncated = Path.Combine(dir, "truncated.p7m");
            File.WriteAllBytes(truncated, sealedMsg.Take(sealedMsg.Length / 2).ToArray());
            var outPath = Path.Combine(dir, "doc.out");
            var e = Assert.Throws<MalformedMessageException>(() => LayerSec.OpenFile(truncated, outPath, Bob, FromAlice));
            Assert.AreEqual(ResultCode.Truncated, e.Code, e.Message);
            Assert.AreEqual("LS_ERR_TRUNCATED", e.ResultName);
            Assert.AreEqual("ls_open_file", e.Function);
            Assert.IsFalse(e.IsTransient);

            var tampered = Path.Combine(dir, "tampered.p7m");
            var bad = (byte[])sealedMsg.Clone();
            bad[bad.Length - 1] ^= 1; // the GCM tag
            File.WriteAllBytes(tampered, bad);
            var v = Assert.Throws<VerificationException>(() => LayerSec.OpenFile(tampered, outPath, Bob, FromAlice));
            Assert.AreEqual(ResultCode.DecryptFailed, v.Code, v.Message);

            // The same truncation through streams: the library's error too.
            var m = Assert.Throws<MalformedMessageException>(
                () => LayerSec.Open(new MemoryStream(sealedMsg, 0, sealedMsg.Length / 2), new MemoryStream(), Bob, FromAlice));
            Assert.AreEqual(ResultCode.Truncated, m.Code, m.Message);
            Assert.AreEqual("ls_open_stream", m.Function);

            CollectionAssert.AreEquivalent(new[] { "truncated.p7m", "tampered.p7m" },
                                           Directory.GetFiles(dir).Select(Path.GetFileName), "no output, no temporary file");
        }

        [Test]
        public void FailedSealFileLeavesNoOutput()
        {
            var dir = NewDir();
            var outPath = Path.Combine(dir, "sealed.p7m");
            var e = Assert.Throws<InputException>(
                () => LayerSec.SealFile(Path.Combine(dir, "missing.xml"), outPath, Alice, Bob.Certificate));
            Assert.AreEqual(ResultCode.IO, e.Code);
            Assert.AreEqual("ls_seal_file", e.Function);
            // A folder as input: opened, but it cannot be read.
            Directory.CreateDirectory(Path.Combine(dir, "folder"));
            Assert.Throws<InputException>(() => LayerSec.SealFile(Path.Combine(dir, "folder"), outPath, Alice, Bob.Certificate));
            CollectionAssert.AreEquivalent(new[] { "folder" },
                                           Directory.GetFileSystemEntries(dir).Select(Path.GetFileName));
        }

        [TestCase(true, 0)]
        [TestCase(true, 200000)]
        [TestCase(false, 0)]
        [TestCase(false, 100000)]
        public void AStreamsExceptionSurfacesAsItself(bool reading, long failAfter)
        {
            var doc = Random(1024 * 1024, 4);
            var boom = new IOException("disk on fire");
            var input = new TestStream(new MemoryStream(doc));
            var output = new TestStream(new MemoryStream());
            var failing = reading ? input : output;
            failing.FailAfter = failAfter;
            failing.Failure = boom;
            var e = Assert.Throws<IOException>(() => LayerSec.Seal(input, output, Alice, Bob.Certificate));
            Assert.AreSame(boom, e);
            StringAssert.Contains("TestStream", e.StackTrace, "thrown with the stream's own stack");
            Assert.AreEqual(0, failing.CallsAfterFailure, "a stream that threw is not used again");

            // Opening: a reader or writer that throws part way.
            var sealedMsg = LayerSec.Seal(doc, Alice, Bob.Certificate);
            var boom2 = new InvalidOperationException("writer gone");
            var sin = new TestStream(new MemoryStream(sealedMsg));
            var sout = new TestStream(new MemoryStream());
            var failing2 = reading ? sin : sout;
            failing2.FailAfter = failAfter;
            failing2.Failure = boom2;
            Assert.AreSame(boom2, Assert.Throws<InvalidOperationException>(() => LayerSec.Open(sin, sout, Bob, FromAlice)));
            Assert.AreEqual(0, failing2.CallsAfterFailure);

            // And the binding works as before.
            Assert.IsTrue(doc.SequenceEqual(LayerSec.Open(sealedMsg, Bob, FromAlice).Document));
        }

        [Test]
        public void BadArgumentsAndDisposedHandles()
        {
            var ms = new MemoryStream();
            Assert.Throws<ArgumentNullException>(() => LayerSec.Seal(null, ms, Alice, Bob.Certificate));
            Assert.Throws<ArgumentNullException>(() => LayerSec.Seal(ms, null, Alice, Bob.Certificate));
            Assert.Throws<ArgumentNullException>(() => LayerSec.Seal(ms, ms, null, Bob.Certificate));
            Assert.Throws<ArgumentNullException>(() => LayerSec.Open((Stream)null, ms, Bob));
            Assert.Throws<ArgumentException>(() => LayerSec.Seal(new MemoryStream(new byte[1], false), new MemoryStream(new byte[1], false),
                                                                 Alice, Bob.Certificate));
            Assert.Throws<ArgumentNullException>(() => LayerSec.SealFile(null, "x", Alice, Bob.Certificate));
            Assert.Throws<ArgumentNullException>(() => LayerSec.OpenFile("x", null, Bob));
            Assert.Throws<ArgumentException>(() => LayerSec.OpenFile("a\0b", "x", Bob));

            var eve = Identity.Generate("eve", KeyType.EcP256, 1);
            eve.Dispose();
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Seal(new MemoryStream(new byte[1]), new MemoryStream(), eve, Bob.Certificate));
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Open(new MemoryStream(new byte[1]), new MemoryStream(), eve, FromAlice));
            Assert.Throws<ObjectDisposedException>(() => LayerSec.SealFile("a", "b", Alice, DisposedCert()));
        }

        static Certificate DisposedCert()
        {
            var c = Certificate.FromBytes(Alice.Certificate.ToPem());
            c.Dispose();
            return c;
        }
    }
}
