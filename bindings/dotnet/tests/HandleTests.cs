using System;
using System.IO;
using System.Text;
using LayerSecurity;
using NUnit.Framework;
using static LayerSecurity.Tests.Fixtures;

namespace LayerSecurity.Tests
{
    [TestFixture]
    public class HandleTests
    {
        [Test]
        public void PemIdentityFromFilesAndMemoryWithPassword()
        {
            var pw = "s3cret-ü".ToCharArray();
            byte[] keyPem, certPem;
            using (var gen = Identity.Generate("dave", KeyType.EcP256, 30, pw))
            {
                keyPem = gen.KeyPem();
                certPem = gen.Certificate.ToPem();
                StringAssert.StartsWith("-----BEGIN ENCRYPTED PRIVATE KEY-----", Encoding.ASCII.GetString(keyPem));
                StringAssert.Contains("CERTIFICATE REQUEST", Encoding.ASCII.GetString(gen.CsrPem()));
            }
            var keyFile = Path.Combine(TempDir, "dave.key");
            var certFile = Path.Combine(TempDir, "dave.crt");
            File.WriteAllBytes(keyFile, keyPem);
            File.WriteAllBytes(certFile, certPem);

            using (var fromFiles = Identity.Load(keyFile, certFile, pw))
            using (var fromMemory = Identity.FromBytes(keyPem, certPem, pw))
            using (var cert = Certificate.Load(certFile))
            {
                Assert.AreEqual("CN=dave", cert.Subject);
                var sealedMsg = LayerSec.Seal(Encoding.UTF8.GetBytes("hi"), fromFiles, fromMemory.Certificate);
                Assert.AreEqual("hi", Encoding.UTF8.GetString(
                    LayerSec.Open(sealedMsg, fromMemory, new OpenOptions { Sender = cert }).Document));
                // A loaded identity has no key PEM to export.
                var e = Assert.Throws<InputException>(() => fromFiles.KeyPem());
                Assert.AreEqual(ResultCode.InvalidArgument, e.Code);
            }
            // The caller's password is left as it was (wiping it is the caller's business).
            Assert.AreEqual("s3cret-ü", new string(pw));

            var bad = Assert.Throws<BadPasswordException>(() => Identity.Load(keyFile, certFile, "wrong".ToCharArray()));
            Assert.AreEqual(ResultCode.BadPassword, bad.Code);
            Assert.AreEqual("LS_ERR_BAD_PASSWORD", bad.ResultName);
            Assert.IsInstanceOf<InputException>(bad);
            Assert.IsInstanceOf<LayerSecException>(bad);
        }

        [Test]
        public void Pkcs11IdentityFailuresHaveTheirCodes()
        {
            // (Keys on a real token: issue 17's tests with SoftHSM2, in the Rust and C suites.)
            var gone = Assert.Throws<InputException>(() =>
                Identity.LoadPkcs11("pkcs11:token=none;object=key", "/nonexistent/pkcs11-module.so", "1234".ToCharArray()));
            Assert.AreEqual("LS_ERR_TOKEN_UNAVAILABLE", gone.ResultName);
            Assert.IsTrue(gone.IsTransient, "a module or token that is not there may be later");
            var pinInUri = Assert.Throws<InputException>(() =>
                Identity.LoadPkcs11("pkcs11:token=t;object=k;pin-value=1234", "/nonexistent/pkcs11-module.so"));
            Assert.AreEqual("LS_ERR_INVALID_ARGUMENT", pinInUri.ResultName);
            Assert.IsFalse(pinInUri.IsTransient);
            Assert.Throws<ArgumentNullException>(() => Identity.LoadPkcs11(null));
        }

        [Test]
        public void CertificateFromBytesAndMissingFile()
        {
            using (var c = Certificate.FromBytes(Bob.Certificate.ToPem()))
                Assert.AreEqual("CN=bob", c.Subject);
            var e = Assert.Throws<InputException>(() => Certificate.Load(Path.Combine(TempDir, "nope.crt")));
            Assert.AreEqual(ResultCode.IO, e.Code);
            Assert.AreEqual("argument", e.Family);
            Assert.Throws<CertificateException>(() => Certificate.FromBytes(Encoding.ASCII.GetBytes("garbage")));
        }

        [Test]
        public void UseAfterDisposeThrowsObjectDisposed()
        {
            var id = Identity.Generate("eve", KeyType.EcP256, 30);
            var cert = id.Certificate;
            id.Dispose();
            id.Dispose(); // twice is harmless
            Assert.IsTrue(id.IsDisposed);
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Seal(new byte[1], id, Bob.Certificate));
            Assert.Throws<ObjectDisposedException>(() => id.KeyPem());
            Assert.Throws<ObjectDisposedException>(() => { var _ = id.Certificate; });
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Open(new byte[1], id));
            // The certificate handed out lives on its own.
            Assert.AreEqual("CN=eve", cert.Subject);
            var sealedMsg = LayerSec.Seal(new byte[3], Alice, cert);
            cert.Dispose();
            Assert.AreEqual("Certificate (disposed)", cert.ToString());
            Assert.Throws<ObjectDisposedException>(() => { var _ = cert.Subject; });
            Assert.Throws<ObjectDisposedException>(() => cert.ToPem());
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Seal(new byte[1], Alice, cert));
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Seal(new byte[1], Alice, new[] { Bob.Certificate, cert }));
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Open(sealedMsg, Bob, new OpenOptions { Sender = cert }));

            var store = new CertStore();
            store.Dispose();
            Assert.Throws<ObjectDisposedException>(() => store.AddPartner(Alice.Certificate));
            Assert.Throws<ObjectDisposedException>(() => LayerSec.Open(sealedMsg, Bob, new OpenOptions { Partners = store }));
            using (var s2 = new CertStore())
                Assert.Throws<ObjectDisposedException>(() => s2.AddAnchor(cert));
        }

        [Test]
        public void IdentityCertificateIsTheSameObjectUntilDisposed()
        {
            using (var id = Identity.Generate("frank", KeyType.EcP256, 30))
            {
                var c1 = id.Certificate;
                Assert.AreSame(c1, id.Certificate);
                c1.Dispose();
                var c2 = id.Certificate;
                Assert.AreNotSame(c1, c2);
                Assert.AreEqual("CN=frank", c2.Subject);
                c2.Dispose();
            }
        }
    }
}
