using System;
using System.Collections.Concurrent;
using System.Threading;
using LayerSecurity;
using NUnit.Framework;
using static LayerSecurity.Tests.Fixtures;

namespace LayerSecurity.Tests
{
    /// <summary>Identity, Certificate and a filled CertStore are documented as thread-safe
    /// (layersec.h: immutable); Dispose racing with calls gives ObjectDisposedException or a
    /// completed call, never a crash.</summary>
    [TestFixture]
    public class ThreadTests
    {
        const int Threads = 8;
        const int Rounds = 15;

        static void RunThreads(Action<int> body)
        {
            var errors = new ConcurrentQueue<Exception>();
            var start = new Barrier(Threads);
            var ts = new Thread[Threads];
            for (int i = 0; i < Threads; i++)
            {
                int seed = i;
                ts[i] = new Thread(() =>
                {
                    try
                    {
                        start.SignalAndWait();
                        body(seed);
                    }
                    catch (Exception e)
                    {
                        errors.Enqueue(e);
                    }
                });
                ts[i].Start();
            }
            foreach (var t in ts) Assert.IsTrue(t.Join(TimeSpan.FromMinutes(2)), "a thread did not finish");
            Exception first;
            if (errors.TryPeek(out first)) Assert.Fail($"{errors.Count} thread(s) failed; first: {first}");
        }

        [Test]
        public void EightThreadsShareIdentitiesCertificatesAndAStore()
        {
            var aliceCert = Alice.Certificate;
            var bobCert = Bob.Certificate;
            var carolCert = Carol.Certificate;
            using (var store = new CertStore())
            {
                store.AddPartner(aliceCert, "alice");
                store.AddPartner(AliceRsa.Certificate, "alice-rsa");
                int done = 0;
                RunThreads(seed =>
                {
                    var rnd = new Random(seed);
                    for (int n = 0; n < Rounds; n++)
                    {
                        var sender = rnd.Next(2) == 0 ? Alice : AliceRsa;
                        var doc = new byte[rnd.Next(0, 3000)];
                        rnd.NextBytes(doc);
                        var sealedMsg = LayerSec.Seal(doc, sender, new[] { bobCert, carolCert },
                                                      new SealOptions { FileName = $"f{seed}-{n}.bin", Output = (SealOutput)rnd.Next(3) });
                        var opts = rnd.Next(2) == 0 ? new OpenOptions { Sender = sender.Certificate } : new OpenOptions { Partners = store };
                        var opened = LayerSec.Open(sealedMsg, Bob, opts);
                        Assert.AreEqual(doc, opened.Document);
                        Assert.AreEqual($"f{seed}-{n}.bin", opened.FileName);
                        opened.Signer.Dispose();
                        Assert.AreEqual(doc, LayerSec.Open(sealedMsg, Carol, new OpenOptions { Partners = store }).Document);
                        // Errors carry their own thread's message and code.
                        var e = Assert.Throws<VerificationException>(
                            () => LayerSec.Open(sealedMsg, Bob, new OpenOptions { Sender = carolCert }));
                        Assert.AreEqual(ResultCode.SignerMismatch, e.Code);
                        StringAssert.Contains("CN=" + (sender == Alice ? "alice" : "alice-rsa"), e.Detail);
                        Interlocked.Increment(ref done);
                    }
                });
                Assert.AreEqual(Threads * Rounds, done);
            }
        }

        [Test]
        public void AddingToAStoreWhileOthersOpenWaitsForThem()
        {
            var sealedMsg = LayerSec.Seal(new byte[100], Alice, Bob.Certificate);
            using (var store = new CertStore())
            {
                store.AddPartner(Alice.Certificate, "alice");
                RunThreads(seed =>
                {
                    for (int n = 0; n < Rounds; n++)
                    {
                        if (seed == 0)
                            store.AddAnchor(Carol.Certificate);
                        else
                            Assert.AreEqual(100, LayerSec.Open(sealedMsg, Bob, new OpenOptions { Partners = store }).Document.Length);
                    }
                });
            }
        }

        [Test]
        public void DisposeWhileOtherThreadsUseTheHandles()
        {
            for (int round = 0; round < 5; round++)
            {
                var id = Identity.Generate("gone", KeyType.EcP256, 30);
                var goneCert = id.Certificate; // independent of id, not disposed here
                var cert = Certificate.FromBytes(Bob.Certificate.ToPem());
                int ok = 0, disposed = 0;
                RunThreads(seed =>
                {
                    if (seed == 0)
                    {
                        Thread.Sleep(5);
                        id.Dispose();
                        cert.Dispose();
                        return;
                    }
                    for (int n = 0; n < 50; n++)
                    {
                        try
                        {
                            var s = LayerSec.Seal(new byte[200], id, cert);
                            Assert.AreEqual(200, LayerSec.Open(s, Bob, new OpenOptions { Sender = goneCert }).Document.Length);
                            Interlocked.Increment(ref ok);
                        }
                        catch (ObjectDisposedException)
                        {
                            Interlocked.Increment(ref disposed);
                        }
                    }
                });
                goneCert.Dispose();
                Console.WriteLine($"dispose race, round {round}: {ok} calls completed, {disposed} ObjectDisposedException");
                Assert.AreEqual(7 * 50, ok + disposed);
                Assert.Greater(disposed, 0, "every call finished before the dispose: nothing raced");
            }
        }
    }
}
