using System;
using System.IO;
using System.Linq;
using System.Threading;
using LayerSecurity;
using NUnit.Framework;
using static LayerSecurity.Tests.Fixtures;

namespace LayerSecurity.Tests
{
    [TestFixture]
    public class NativeBufferTests
    {
        static byte[] Document(int n)
        {
            var d = new byte[n];
            new Random(7).NextBytes(d);
            return d;
        }

        [Test]
        public void SealToBufferIsWhatSealMakesReadEveryWay()
        {
            // 3 MiB + 5: CopyTo goes in several 1 MiB pieces and a short last one.
            var doc = Document(3 * 1024 * 1024 + 5);
            var opts = new OpenOptions { Sender = Alice.Certificate };
            using (var buf = LayerSec.SealToBuffer(doc, Alice, Bob.Certificate, new SealOptions { FileName = "big.bin" }))
            {
                Assert.Greater(buf.Length, doc.Length);
                var array = buf.ToArray();
                Assert.AreEqual(buf.Length, array.Length);
                using (var o = LayerSec.Open(array, Bob, opts))
                {
                    Assert.IsTrue(o.Document.SequenceEqual(doc));
                    Assert.AreEqual("big.bin", o.FileName);
                }
                var copied = new MemoryStream();
                buf.CopyTo(copied);
                Assert.AreEqual(array, copied.ToArray());
                using (var s = buf.OpenRead())
                {
                    Assert.IsTrue(s.CanRead);
                    Assert.IsFalse(s.CanWrite);
                    Assert.AreEqual(buf.Length, s.Length);
                    var viaStream = new MemoryStream();
                    s.CopyTo(viaStream);
                    Assert.AreEqual(array, viaStream.ToArray());
                }
                // The Stream form of Open reads it in place too.
                var opened = new MemoryStream();
                using (var s = buf.OpenRead())
                using (var o = LayerSec.Open(s, opened, Bob, opts))
                    Assert.AreEqual(doc.Length, o.Size);
                Assert.IsTrue(opened.ToArray().SequenceEqual(doc));
            }
        }

        [Test]
        public void AFailedSealGivesTheLibrarysExceptionAndNoBuffer()
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
                LayerSec.SealToBuffer(Bytes("x"), Alice, Bob.Certificate, new SealOptions { CompressionLevel = 10 }));
            StringAssert.Contains("CompressionLevel", e.Message);
            Assert.Throws<ArgumentNullException>(() => LayerSec.SealToBuffer(null, Alice, Bob.Certificate));
            // A legacy-AS2 seal needs an RSA signer: the library refuses an EC one.
            var refused = Assert.Throws<InputException>(() =>
                LayerSec.SealToBuffer(Bytes("x"), Alice, Bob.Certificate, new SealOptions { Profile = Profile.LegacyAs2 }));
            Assert.AreEqual("LS_ERR_INVALID_ARGUMENT", refused.ResultName);
        }

        [Test]
        public void ReadingAfterDisposeThrowsAndDisposeTwiceIsHarmless()
        {
            var buf = LayerSec.SealToBuffer(Bytes("<a/>"), Alice, Bob.Certificate);
            var s = buf.OpenRead();
            buf.Dispose();
            buf.Dispose();
            Assert.Throws<ObjectDisposedException>(() => buf.ToArray());
            Assert.Throws<ObjectDisposedException>(() => buf.CopyTo(new MemoryStream()));
            Assert.Throws<ObjectDisposedException>(() => buf.OpenRead());
            Assert.Throws<ObjectDisposedException>(() => s.ReadByte());
        }

        [Test]
        public void EightThreadsReadOneBuffer()
        {
            var doc = Document(200000);
            using (var buf = LayerSec.SealToBuffer(doc, Alice, Bob.Certificate))
            {
                var expected = buf.ToArray();
                var failures = 0;
                var threads = Enumerable.Range(0, 8).Select(_ => new Thread(() =>
                {
                    for (int i = 0; i < 20; i++)
                    {
                        var m = new MemoryStream();
                        buf.CopyTo(m);
                        if (!m.ToArray().SequenceEqual(expected)) Interlocked.Increment(ref failures);
                    }
                })).ToList();
                threads.ForEach(t => t.Start());
                threads.ForEach(t => t.Join());
                Assert.AreEqual(0, failures);
            }
        }
    }
}
