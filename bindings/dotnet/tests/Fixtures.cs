using System;
using System.IO;
using LayerSecurity;
using NUnit.Framework;

namespace LayerSecurity.Tests
{
    /// <summary>Identities generated once for the whole run (EC keys: fast), and a temporary
    /// folder removed at the end.</summary>
    [SetUpFixture]
    public class Fixtures
    {
        public static Identity Alice, Bob, Carol, AliceRsa;
        public static string TempDir;

        [SetUp]
        public void Create()
        {
            Alice = Identity.Generate("alice", KeyType.EcP256, 30);
            Bob = Identity.Generate("bob", KeyType.EcP256, 30);
            Carol = Identity.Generate("carol", KeyType.EcP256, 30);
            AliceRsa = Identity.Generate("alice-rsa", KeyType.Rsa2048, 30);
            TempDir = Path.Combine(Path.GetTempPath(), "layersec-dotnet-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(TempDir);
        }

        [TearDown]
        public void Remove()
        {
            foreach (var i in new[] { Alice, Bob, Carol, AliceRsa }) i?.Dispose();
            if (TempDir != null && Directory.Exists(TempDir)) Directory.Delete(TempDir, true);
        }

        /// <summary>The repository's root (LAYERSEC_REPO, set by the Makefile), or null.</summary>
        public static string RepoRoot => Environment.GetEnvironmentVariable("LAYERSEC_REPO");

        public static byte[] Bytes(string s) => System.Text.Encoding.UTF8.GetBytes(s);
    }
}
