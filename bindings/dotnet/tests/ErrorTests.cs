using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Reflection;
using System.Text.RegularExpressions;
using LayerSecurity;
using NUnit.Framework;

namespace LayerSecurity.Tests
{
    [TestFixture]
    public class ErrorTests
    {
        [TestCase(103, typeof(BadPasswordException), "argument")]
        [TestCase(102, typeof(InputException), "argument")]
        [TestCase(203, typeof(VerificationException), "crypto")]
        [TestCase(303, typeof(CertificateException), "certificate")]
        [TestCase(401, typeof(MalformedMessageException), "format")]
        [TestCase(502, typeof(ProtocolException), "protocol")]
        [TestCase(600, typeof(ServiceException), "transport")]
        [TestCase(702, typeof(ClientStateException), "store")]
        [TestCase(901, typeof(InternalException), "internal")]
        [TestCase(250, typeof(VerificationException), "crypto")] // unknown code: by its family
        [TestCase(850, typeof(LayerSecException), "internal")] // unknown family
        public void CodesMapToTheirFamily(int code, Type type, string family)
        {
            var e = LayerSecException.FromCode(code, "LS_X", "detail");
            Assert.AreEqual(type, e.GetType());
            Assert.AreEqual(family, e.Family);
            Assert.AreEqual(code, e.Code);
            Assert.AreEqual("LS_X (" + code + "): detail", e.Message);
        }

        [TestCase(600, "could not connect", true)]
        [TestCase(601, "timed out: 30 s", true)]
        [TestCase(602, "handshake failed", false)]
        [TestCase(603, "HTTP status 503: busy", true)]
        [TestCase(603, "HTTP status 429: slow down", true)]
        [TestCase(603, "HTTP status 408: request timeout", true)]
        [TestCase(603, "HTTP status 400: bad request", false)]
        [TestCase(604, "bad response", false)]
        [TestCase(605, "refused", false)]
        [TestCase(606, "mail server: 451 try later", true)]
        [TestCase(607, "login failed", false)]
        [TestCase(608, "receipt pending", true)]
        public void ServiceExceptionSaysWhetherARetryMaySucceed(int code, string detail, bool transient)
        {
            var e = (ServiceException)LayerSecException.FromCode(code, "LS_X", detail);
            Assert.AreEqual(transient, e.IsTransient);
        }

        [Test]
        public void ResultCodesMatchTheHeaderAndTheLibrary()
        {
            var repo = Fixtures.RepoRoot;
            if (repo == null) Assert.Ignore("LAYERSEC_REPO is not set (make test-dotnet sets it)");
            var header = File.ReadAllText(Path.Combine(repo, "include", "layersec.h"));
            var inHeader = new Dictionary<string, int>();
            foreach (Match m in Regex.Matches(header, @"#define LS_ERR_(\w+) (\d+)"))
                inHeader[m.Groups[1].Value.Replace("_", "")] = int.Parse(m.Groups[2].Value);
            var inBinding = new Dictionary<string, int>();
            foreach (var f in typeof(ResultCode).GetFields(BindingFlags.Public | BindingFlags.Static))
                if (f.Name != "Ok") inBinding[f.Name.ToUpperInvariant()] = (int)f.GetValue(null);
            CollectionAssert.AreEquivalent(inHeader, inBinding);
        }

        [Test]
        public void MissingLibraryGivesAClearError()
        {
            // A child process with an empty library path: the exception names where it looked.
            var probe = Path.Combine(Path.GetDirectoryName(typeof(LayerSec).Assembly.Location), "LayerSec.Probe.exe");
            if (!File.Exists(probe)) Assert.Ignore(probe + " was not built (make test-dotnet builds it)");
            var psi = new ProcessStartInfo("mono", "\"" + probe + "\"")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.EnvironmentVariables["LD_LIBRARY_PATH"] = "/nonexistent-layersec";
            using (var p = Process.Start(psi))
            {
                var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
                p.WaitForExit();
                if (output.Contains("version "))
                    Assert.Ignore("liblayersec is installed system-wide here: " + output.Trim());
                Assert.AreEqual(3, p.ExitCode, output);
                StringAssert.Contains("DllNotFoundException", output);
                StringAssert.Contains("liblayersec.so.0", output);
                StringAssert.Contains("LD_LIBRARY_PATH (/nonexistent-layersec)", output);
            }
        }
    }
}
