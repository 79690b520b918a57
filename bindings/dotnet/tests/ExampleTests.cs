using System;
using System.Diagnostics;
using System.IO;
using LayerSecurity;
using NUnit.Framework;
using static LayerSecurity.Tests.Fixtures;

namespace LayerSecurity.Tests
{
    /// <summary>The examples through their launchers ($(OUT)/examples/seal-open, built by
    /// make examples, which make test runs first): the demo, the C examples' seal/open
    /// interface, its exit statuses and error lines. Run from another working directory, as a
    /// newcomer would.</summary>
    [TestFixture]
    public class ExampleTests
    {
        static string Launcher(string name)
        {
            var p = Path.Combine(Path.GetDirectoryName(typeof(LayerSec).Assembly.Location), "examples", name);
            if (!File.Exists(p)) Assert.Ignore(p + " was not built (make examples)");
            return p;
        }

        static int Run(string exe, out string stdout, out string stderr, params string[] args)
        {
            var psi = new ProcessStartInfo(exe, string.Join(" ", Array.ConvertAll(args, a => "\"" + a + "\"")))
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = Path.GetTempPath(),
            };
            // As a newcomer's shell: no library path from the test runner.
            psi.EnvironmentVariables.Remove("LD_LIBRARY_PATH");
            using (var p = Process.Start(psi))
            {
                var err = p.StandardError.ReadToEndAsync();
                stdout = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                stderr = err.Result;
                return p.ExitCode;
            }
        }

        [Test]
        public void DemoRunsWithoutArguments()
        {
            string o, e;
            Assert.AreEqual(0, Run(Launcher("seal-open"), out o, out e), o + e);
            StringAssert.Contains("signer: CN=alice", o);
            StringAssert.Contains("the document is the invoice, byte for byte", o);
            StringAssert.Contains("LS_ERR_SIGNER_MISMATCH", o);
        }

        [Test]
        public void SealAndOpenAsTheCExamplesDo()
        {
            var dir = Path.Combine(TempDir, "examples-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            Func<string, string> F = n => Path.Combine(dir, n);
            File.WriteAllBytes(F("alice.key"), Alice.KeyPem());
            File.WriteAllBytes(F("alice.crt"), Alice.Certificate.ToPem());
            File.WriteAllBytes(F("bob.key"), Bob.KeyPem());
            File.WriteAllBytes(F("bob.crt"), Bob.Certificate.ToPem());
            File.WriteAllText(F("inv.xml"), "<Invoice id=\"7\"/>\n");
            var so = Launcher("seal-open");
            string o, e;

            Assert.AreEqual(0, Run(so, out o, out e, "seal", F("alice.key"), F("alice.crt"), F("bob.crt"), F("inv.xml"),
                                   F("inv.p7m"), "inv.xml"), e);
            StringAssert.StartsWith("sealed 18 bytes for CN=bob into " + F("inv.p7m") + " (", o);
            // What the example sealed, the binding opens (and so does every other language).
            var opened = LayerSec.Open(File.ReadAllBytes(F("inv.p7m")), Bob, new OpenOptions { Sender = Alice.Certificate });
            Assert.AreEqual("<Invoice id=\"7\"/>\n", System.Text.Encoding.UTF8.GetString(opened.Document));

            Assert.AreEqual(0, Run(so, out o, out e, "open", F("bob.key"), F("bob.crt"), F("alice.crt"), F("inv.p7m"), F("out.xml")), e);
            StringAssert.StartsWith("filename: inv.xml\nMIME type: application/xml\nsigner: CN=alice\nsigning time: 20", o);
            StringAssert.EndsWith("encrypted: yes\nwrote 18 bytes to " + F("out.xml") + "\n", o);
            Assert.AreEqual(File.ReadAllBytes(F("inv.xml")), File.ReadAllBytes(F("out.xml")));

            // The wrong sender: status 1, the code's name and the library's message, no output.
            Assert.AreEqual(1, Run(so, out o, out e, "open", F("bob.key"), F("bob.crt"), F("bob.crt"), F("inv.p7m"), F("bad.xml")));
            StringAssert.StartsWith("open: ls_open failed: LS_ERR_SIGNER_MISMATCH (204): ", e);
            Assert.IsFalse(File.Exists(F("bad.xml")));
            Assert.AreEqual(1, Run(so, out o, out e, "seal", F("nokey"), F("alice.crt"), F("bob.crt"), F("inv.xml"), F("x.p7m")));
            StringAssert.StartsWith("seal: loading our identity (ls_identity_load) failed: LS_ERR_IO (102): ", e);
            Assert.IsFalse(File.Exists(F("x.p7m")));
            // Wrong usage: status 2.
            Assert.AreEqual(2, Run(so, out o, out e, "open", F("bob.key")));
            StringAssert.Contains("usage:", e);
            Assert.AreEqual(2, Run(Launcher("send-poll"), out o, out e, "only-one"));
        }
    }
}
