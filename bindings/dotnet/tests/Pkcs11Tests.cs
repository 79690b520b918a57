using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using LayerSecurity;
using NUnit.Framework;
using static LayerSecurity.Tests.Fixtures;

namespace LayerSecurity.Tests
{
    /// <summary>An identity on a SoftHSM2 token (<see cref="Identity.LoadPkcs11"/>) made by
    /// scripts/softhsm-token.sh: seal and open with the key on the token on either side, and
    /// the failures' codes. SoftHSM2 reads SOFTHSM2_CONF once per process, when the library
    /// first loads the module: the fixture sets it in this process (Mono's
    /// Environment.SetEnvironmentVariable is the C library's setenv) before any test loads the
    /// token, and no other test of the run loads SoftHSM2. Ignored when SoftHSM2 or OpenSC's
    /// pkcs11-tool is missing, failed then under LS_REQUIRE_FIXTURES=1.</summary>
    [TestFixture]
    public class Pkcs11Tests
    {
        string folder, uri, module, pin, certPath;

        [TestFixtureSetUp]
        public void MakeToken()
        {
            if (RepoRoot == null)
            {
                const string why = "LAYERSEC_REPO is not set (make test-dotnet sets it)";
                if (Environment.GetEnvironmentVariable("LS_REQUIRE_FIXTURES") == "1")
                    Assert.Fail(why + " (LS_REQUIRE_FIXTURES=1: a skipped test fails)");
                Assert.Ignore(why);
            }
            folder = Path.Combine(TempDir, "softhsm");
            var psi = new ProcessStartInfo("bash")
            {
                Arguments = "\"" + Path.Combine(RepoRoot, "scripts", "softhsm-token.sh") + "\" \"" + folder + "\"",
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            string stdout, stderr;
            int rc;
            using (var p = Process.Start(psi))
            {
                var err = p.StandardError.ReadToEndAsync();
                stdout = p.StandardOutput.ReadToEnd();
                stderr = err.Result;
                p.WaitForExit();
                rc = p.ExitCode;
            }
            if (rc == 3)
            {
                if (Environment.GetEnvironmentVariable("LS_REQUIRE_FIXTURES") == "1")
                    Assert.Fail(stderr.Trim() + " (LS_REQUIRE_FIXTURES=1: a missing fixture or tool fails the test)");
                Assert.Ignore(stderr.Trim());
            }
            Assert.AreEqual(0, rc, "softhsm-token.sh failed: " + stderr);
            var values = new Dictionary<string, string>();
            foreach (var line in stdout.Split('\n'))
            {
                var eq = line.IndexOf('=');
                if (eq > 0) values[line.Substring(0, eq)] = line.Substring(eq + 1);
            }
            Environment.SetEnvironmentVariable("SOFTHSM2_CONF", values["SOFTHSM2_CONF"]);
            uri = values["LS_TOKEN_URI"];
            module = values["LS_TOKEN_MODULE"];
            pin = values["LS_TOKEN_PIN"];
            certPath = values["LS_TOKEN_CERT"];
        }

        Identity Load(string certificate) => Identity.LoadPkcs11(uri, module, pin.ToCharArray(), certificate);

        [Test]
        public void ATokenIdentityOpensWhatAFileIdentitySealedAndSignsWhatItOpens()
        {
            using (var token = Load(certPath))
            {
                Assert.IsTrue(token.IsOnToken);
                Assert.IsFalse(Alice.IsOnToken);
                Assert.AreEqual("CN=token-party", token.Certificate.Subject);
                var doc = Bytes("<invoice>for the key on the token</invoice>");
                // Alice (in memory) seals to the token; the token opens (ECDH on the token).
                var toToken = LayerSec.Seal(doc, Alice, token.Certificate);
                var opened = LayerSec.Open(toToken, token, new OpenOptions { Sender = Alice.Certificate });
                Assert.AreEqual(doc, opened.Document);
                Assert.AreEqual("CN=alice", opened.SignerSubject);
                var notUs = Assert.Throws<VerificationException>(() =>
                    LayerSec.Open(toToken, Bob, new OpenOptions { Sender = Alice.Certificate }));
                Assert.AreEqual(ResultCode.NotARecipient, notUs.Code);
                // The token signs (ECDSA on the token), 2 MiB; Bob (in memory) opens.
                var big = new byte[2 * 1024 * 1024 + 3];
                new Random(17).NextBytes(big);
                var fromToken = LayerSec.Seal(big, token, Bob.Certificate, new SealOptions { Compress = false });
                opened = LayerSec.Open(fromToken, Bob, new OpenOptions { Sender = token.Certificate });
                Assert.AreEqual(big, opened.Document);
                Assert.AreEqual("CN=token-party", opened.SignerSubject);
                var other = Assert.Throws<VerificationException>(() =>
                    LayerSec.Open(fromToken, Bob, new OpenOptions { Sender = Alice.Certificate }));
                Assert.AreEqual(ResultCode.SignerMismatch, other.Code);
            }
        }

        [Test]
        public void TheCertificateObjectOnTheToken()
        {
            using (var token = Load(null))
            {
                Assert.IsTrue(token.IsOnToken);
                Assert.AreEqual(File.ReadAllBytes(certPath), token.Certificate.ToPem());
                var sealedMsg = LayerSec.Seal(Bytes("x"), token, token.Certificate);
                Assert.AreEqual(Bytes("x"), LayerSec.Open(sealedMsg, token, new OpenOptions { Sender = token.Certificate }).Document);
            }
        }

        [Test]
        public void AWrongPinAndAnUnknownKeyHaveTheirCodes()
        {
            var wrong = "0000-wrong".ToCharArray();
            var e = Assert.Throws<InputException>(() => Identity.LoadPkcs11(uri, module, wrong, certPath));
            Assert.AreEqual(ResultCode.PinIncorrect, e.Code);
            Assert.AreEqual("LS_ERR_PIN_INCORRECT", e.ResultName);
            Assert.IsFalse(e.IsTransient);
            StringAssert.DoesNotContain("0000-wrong", e.Message);
            Assert.AreEqual("0000-wrong", new string(wrong), "the caller's array is the caller's to wipe");

            var nobody = uri.Replace("object=token-party", "object=nobody-here");
            e = Assert.Throws<InputException>(() => Identity.LoadPkcs11(nobody, module, pin.ToCharArray()));
            Assert.AreEqual(ResultCode.KeyNotFound, e.Code);
            Assert.AreEqual("LS_ERR_KEY_NOT_FOUND", e.ResultName);
        }
    }
}
