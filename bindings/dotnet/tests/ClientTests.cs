using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using System.Threading;
using LayerSecurity;
using NUnit.Framework;

namespace LayerSecurity.Tests
{
    /// <summary>Client against a real Messaging Service: the layersec-server and the layersec
    /// CLI of the cargo target folder (LAYERSEC_BIN_DIR, set by the Makefile to LIBDIR). The
    /// service is started once for the fixture (init, serve on 127.0.0.1:0); each test makes
    /// its parties with `layersec init` and registers them with `admin subscriber add` and
    /// `admin party add`. Ignored, with the reason, when the binaries are not built.</summary>
    [TestFixture]
    public class ClientTests
    {
        static string binDir, serviceDir, serviceConfig, as4Url;
        static Process server;
        static readonly StringWriter serverLog = new StringWriter();

        static string Exe(string name) => Path.Combine(binDir, name);

        [TestFixtureSetUp]
        public void StartService()
        {
            binDir = Environment.GetEnvironmentVariable("LAYERSEC_BIN_DIR");
            if (string.IsNullOrEmpty(binDir) || !File.Exists(Exe("layersec-server")) || !File.Exists(Exe("layersec")))
                Assert.Ignore("layersec-server and layersec are not built in LAYERSEC_BIN_DIR (" + binDir +
                              "): cargo build -p ls-server -p ls-cli");
            serviceDir = Path.Combine(Fixtures.TempDir, "service");
            Run(Exe("layersec-server"), "init", "--dir", serviceDir, "--listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0");
            serviceConfig = Path.Combine(serviceDir, "layersec-server.toml");
            var listening = new ManualResetEventSlim();
            string url = null;
            var psi = new ProcessStartInfo(Exe("layersec-server"), Args("serve", "--config", serviceConfig))
            {
                UseShellExecute = false,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            server = new Process { StartInfo = psi };
            // The whole log is read, so the service never blocks on a full pipe.
            server.ErrorDataReceived += (s, e) =>
            {
                if (e.Data == null) return;
                lock (serverLog) serverLog.WriteLine(e.Data);
                if (e.Data.Contains("\"event\":\"listening\""))
                {
                    var m = Regex.Match(e.Data, "\"as4\":\"([^\"]+)\"");
                    if (m.Success) { url = m.Groups[1].Value; listening.Set(); }
                }
            };
            server.OutputDataReceived += (s, e) => { };
            server.Start();
            server.BeginErrorReadLine();
            server.BeginOutputReadLine();
            if (!listening.Wait(TimeSpan.FromSeconds(60)))
            {
                StopService();
                Assert.Fail("layersec-server did not report listening:\n" + serverLog);
            }
            as4Url = url;
        }

        [TestFixtureTearDown]
        public void StopService()
        {
            if (server == null) return;
            try
            {
                if (!server.HasExited) server.Kill();
                server.WaitForExit();
            }
            finally
            {
                server.Dispose();
                server = null;
            }
        }

        // --- helpers ---------------------------------------------------------------------------

        static string Args(params string[] args) =>
            string.Join(" ", args.Select(a => "\"" + a.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\""));

        /// <summary>Runs a command to its end; returns its standard output (fails on exit != 0).</summary>
        static string Run(string exe, params string[] args)
        {
            var psi = new ProcessStartInfo(exe, Args(args))
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using (var p = Process.Start(psi))
            {
                var err = p.StandardError.ReadToEndAsync();
                var output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                Assert.AreEqual(0, p.ExitCode, exe + " " + psi.Arguments + ":\n" + err.Result);
                return output;
            }
        }

        static string JsonString(string json, string key)
        {
            var m = Regex.Match(json, "\"" + key + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"");
            Assert.IsTrue(m.Success, key + " not in " + json);
            return Regex.Unescape(m.Groups[1].Value);
        }

        static string JsonNumber(string json, string key)
        {
            var m = Regex.Match(json, "\"" + key + "\"\\s*:\\s*(\\d+)");
            Assert.IsTrue(m.Success, key + " not in " + json);
            return m.Groups[1].Value;
        }

        sealed class Party
        {
            public string Id, Dir, Config, Cert;

            public void Trust(Party other)
            {
                var partners = Path.Combine(Dir, "partners");
                Directory.CreateDirectory(partners);
                File.Copy(other.Cert, Path.Combine(partners, other.Id + ".crt"), true);
            }
        }

        /// <summary>A new party made with `layersec init` for <paramref name="url"/>, registered
        /// at the service unless <paramref name="register"/> is false.</summary>
        static Party NewParty(string role, string url = null, bool register = true)
        {
            var id = "cs-" + role + "-" + Guid.NewGuid().ToString("N").Substring(0, 8);
            var dir = Path.Combine(Fixtures.TempDir, id);
            var json = Run(Exe("layersec"), "init", "--party", id, "--service", url ?? as4Url, "--dir", dir,
                           "--service-cert", Path.Combine(serviceDir, "identity", "service.crt"),
                           "--ca-file", Path.Combine(serviceDir, "tls", "server.crt"), "--days", "30", "--json");
            var party = new Party
            {
                Id = id,
                Dir = dir,
                Config = JsonString(json, "config"),
                Cert = JsonString(json, "certificate"),
            };
            if (register)
            {
                var sub = Run(Exe("layersec-server"), "admin", "--config", serviceConfig, "subscriber", "add",
                              "--organisation", id);
                Run(Exe("layersec-server"), "admin", "--config", serviceConfig, "party", "add",
                    "--subscriber", JsonNumber(sub, "id"), "--party", id, "--certificate", party.Cert);
            }
            return party;
        }

        static int FreePort()
        {
            var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            var port = ((IPEndPoint)l.LocalEndpoint).Port;
            l.Stop();
            return port;
        }

        static int CountFiles(string dir) => Directory.Exists(dir) ? Directory.GetFileSystemEntries(dir).Length : 0;

        // --- tests -----------------------------------------------------------------------------

        [Test]
        public void SendAndPollRoundTrip()
        {
            var a = NewParty("sender");
            var b = NewParty("recipient");
            a.Trust(b);
            b.Trust(a);
            var doc = Fixtures.Bytes("<Invoice id='7'>" + new string('x', 3000) + "</Invoice>");
            var file = Path.Combine(a.Dir, "order.xml");
            File.WriteAllText(file, "<Order/>");
            var before = DateTimeOffset.UtcNow.AddMinutes(-5);
            using (var sender = Client.FromConfig(a.Config))
            using (var recipient = Client.FromConfig(b.Config))
            {
                var mid = sender.Send(doc, "invoice.xml", b.Id, new SendOptions { Conversation = "conv-1" });
                var mid2 = sender.SendFile(file, b.Id, new SendOptions { Action = "Order", RequestReceipt = false });
                Assert.That(mid, Is.Not.Empty);
                Assert.That(mid2, Is.Not.Empty.And.Not.EqualTo(mid));
                Assert.AreEqual(ReceiptState.Waiting, sender.GetReceiptState(mid));
                Assert.AreEqual(ReceiptState.NotRequested, sender.GetReceiptState(mid2));
                Assert.AreEqual(ReceiptState.Unknown, sender.GetReceiptState("no-such-id@nowhere"));
                StringAssert.Contains(mid, sender.ReceiptsJson(true));
                StringAssert.DoesNotContain(mid2, sender.ReceiptsJson(true));

                var got = recipient.Poll();
                Assert.AreEqual(0, recipient.Poll().Count, "receipted: not offered again");
                Assert.AreEqual(2, got.Count);
                var first = got.Single(r => r.MessageId == mid);
                var second = got.Single(r => r.MessageId == mid2);
                Assert.AreEqual("invoice.xml", first.Name);
                Assert.AreEqual("order.xml", second.Name);
                Assert.AreEqual(a.Id, first.Sender);
                Assert.AreEqual(a.Id, second.Sender);
                Assert.AreEqual("conv-1", first.ConversationId);
                Assert.AreEqual(mid2, second.ConversationId);
                Assert.AreEqual(doc.Length, first.Size);
                Assert.AreEqual(8, second.Size);
                CollectionAssert.AreEqual(doc, File.ReadAllBytes(first.Path));
                Assert.AreEqual("<Order/>", File.ReadAllText(second.Path));
                Assert.AreEqual(Path.Combine(b.Dir, "inbox"), Path.GetDirectoryName(first.Path));
                Assert.IsTrue(File.Exists(first.Path + ".meta.json"));
                foreach (var r in got)
                {
                    Assert.That(r.ReceivedAt, Is.GreaterThan(before).And.LessThan(DateTimeOffset.UtcNow.AddMinutes(5)));
                    Assert.IsTrue(r.SigningTime.HasValue);
                    Assert.That(r.SigningTime.Value, Is.GreaterThan(before));
                }
                CollectionAssert.AreEqual(doc, File.ReadAllBytes(Path.Combine(a.Dir, "sent", "invoice.xml")));

                // The recipient's end system signed a receipt; it comes back with the sender's poll.
                Assert.AreEqual(0, sender.Poll().Count, "a receipt is no document");
                Assert.AreEqual(ReceiptState.Processed, sender.GetReceiptState(mid));
                StringAssert.DoesNotContain(mid, sender.ReceiptsJson(true));
            }
        }

        [Test]
        public void UnknownPartnerIsRefusedAndNothingIsQueued()
        {
            var a = NewParty("alone");
            using (var c = Client.FromConfig(a.Config))
            {
                var e = Assert.Throws<CertificateException>(() => c.Send(Fixtures.Bytes("x"), "x.txt", "nobody-knows-me"));
                Assert.AreEqual(ResultCode.CertNotFound, e.Code);
                Assert.AreEqual("LS_ERR_CERT_NOT_FOUND", e.ResultName);
                Assert.AreEqual("ls_client_send", e.Function);
                StringAssert.Contains("nobody-knows-me", e.Detail);
                Assert.AreEqual(0, CountFiles(Path.Combine(a.Dir, "state", "outgoing")));
            }
        }

        [Test]
        public void ServiceRefusesAPartnerItDoesNotKnow()
        {
            // The sender has the partner's certificate, but the partner is not registered at
            // the service: the service refuses the message (EBMS:0003), nothing is queued and
            // the document goes to failed/ with the reason.
            var a = NewParty("refused-sender");
            var ghost = NewParty("ghost", register: false);
            a.Trust(ghost);
            using (var c = Client.FromConfig(a.Config))
            {
                var e = Assert.Throws<ProtocolException>(() => c.Send(Fixtures.Bytes("<x/>"), "refused.xml", ghost.Id));
                Assert.IsNotInstanceOf<QueuedForRetryException>(e);
                Assert.AreEqual(ResultCode.EbmsError, e.Code);
                Assert.AreEqual("LS_ERR_EBMS_ERROR", e.ResultName);
                Assert.IsFalse(e.IsTransient);
                Assert.AreEqual(0, CountFiles(Path.Combine(a.Dir, "state", "outgoing")));
                Assert.IsTrue(File.Exists(Path.Combine(a.Dir, "failed", "refused.xml")),
                              "the refused document is in failed/");
            }
        }

        [Test]
        public void SendWhileTheServiceIsDownIsQueuedForRetry()
        {
            // Nobody listens on this port: the service is down for these two parties.
            var url = "https://127.0.0.1:" + FreePort() + "/as4";
            var a = NewParty("down-a", url, register: false);
            var b = NewParty("down-b", url, register: false);
            a.Trust(b);
            using (var c = Client.FromConfig(a.Config))
            {
                var e = Assert.Throws<QueuedForRetryException>(() => c.Send(Fixtures.Bytes("doc"), "doc.txt", b.Id));
                Assert.That(e.MessageId, Is.Not.Empty);
                StringAssert.Contains(e.MessageId, e.Message);
                Assert.AreEqual(ResultCode.ConnectFailed, e.Code);
                Assert.AreEqual("LS_ERR_CONNECT_FAILED", e.ResultName);
                Assert.IsInstanceOf<ServiceException>(e.Cause);
                Assert.AreSame(e.Cause, e.InnerException);
                Assert.IsNotInstanceOf<ServiceException>(e);
                // From ls_last_error_is_transient (the binding has no rule of its own).
                Assert.IsTrue(e.IsTransient);
                Assert.IsTrue(e.Cause.IsTransient);
                Assert.AreEqual(1, CountFiles(Path.Combine(a.Dir, "state", "outgoing")), "it waits in the journal");

                Assert.AreEqual(0, c.RunDueJobs(), "still down: nothing delivered");
                Assert.AreEqual(1, CountFiles(Path.Combine(a.Dir, "state", "outgoing")));

                // Polling a service that is down throws the transport error itself.
                var pe = Assert.Throws<ServiceException>(() => c.Poll());
                Assert.AreEqual(ResultCode.ConnectFailed, pe.Code);
                Assert.IsTrue(pe.IsTransient);
                Assert.IsNotNull(pe.Received);
                Assert.AreEqual(0, pe.Received.Count);
            }
        }

        [Test]
        public void OneClientSharedByEightThreads()
        {
            // Calls from several threads on one Client wait for each other (the C client is
            // used by one thread at a time): every send is delivered, every document arrives.
            var a = NewParty("threads-a");
            var b = NewParty("threads-b");
            a.Trust(b);
            b.Trust(a);
            var ids = new System.Collections.Concurrent.ConcurrentBag<string>();
            var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
            using (var sender = Client.FromConfig(a.Config))
            {
                var threads = Enumerable.Range(0, 8).Select(i => new Thread(() =>
                {
                    try
                    {
                        for (int k = 0; k < 2; k++)
                            ids.Add(sender.Send(Fixtures.Bytes("<n>" + i + "/" + k + "</n>"), "t" + i + "-" + k + ".xml", b.Id,
                                                new SendOptions { RequestReceipt = false }));
                        sender.Poll(); // nothing for a, but a poll between sends of other threads
                    }
                    catch (Exception e)
                    {
                        errors.Add(e);
                    }
                })).ToList();
                threads.ForEach(t => t.Start());
                threads.ForEach(t => t.Join());
            }
            Assert.IsEmpty(errors, string.Join("\n", errors));
            Assert.AreEqual(16, ids.Distinct().Count());
            using (var recipient = Client.FromConfig(b.Config))
                CollectionAssert.AreEquivalent(ids, recipient.Poll().Select(r => r.MessageId));
        }

        [Test]
        public void ConfigurationErrorsAndDisposedClient()
        {
            var missing = Path.Combine(Fixtures.TempDir, "missing.toml");
            var e = Assert.Throws<ClientStateException>(() => Client.FromConfig(missing));
            Assert.AreEqual(ResultCode.ConfigInvalid, e.Code);
            StringAssert.Contains("missing.toml", e.Detail);
            Assert.Throws<ArgumentNullException>(() => Client.FromConfig(null));

            var a = NewParty("closer", "https://127.0.0.1:9/as4", register: false);
            var c = Client.FromConfig(a.Config);
            Assert.Throws<ArgumentNullException>(() => c.Send(null, "a.txt", "x"));
            Assert.Throws<ArgumentException>(() => c.Send(Fixtures.Bytes("x"), "a\0b", "x"));
            var ie = Assert.Throws<InputException>(() => c.Send(Fixtures.Bytes("x"), "dir/", "x"));
            Assert.AreEqual("LS_ERR_INVALID_ARGUMENT", ie.ResultName);
            ie = Assert.Throws<InputException>(() => c.SendFile(Path.Combine(a.Dir, "nope.txt"), "x"));
            Assert.AreEqual("LS_ERR_IO", ie.ResultName);
            c.Dispose();
            c.Dispose();
            Assert.IsTrue(c.IsDisposed);
            Assert.Throws<ObjectDisposedException>(() => c.Poll());
            Assert.Throws<ObjectDisposedException>(() => c.Send(Fixtures.Bytes("x"), "a.txt", "x"));
            Assert.Throws<ObjectDisposedException>(() => c.RunDueJobs());
            Assert.Throws<ObjectDisposedException>(() => c.GetReceiptState("m"));
        }
    }
}
