using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using LayerSecurity;
using NUnit.Framework;

namespace LayerSecurity.Tests
{
    /// <summary>The leak test of issue 16: 100,000 seal/open calls with EC keys in a child
    /// <c>mono</c> process whose managed heap is capped (<c>MONO_GC_PARAMS=max-heap-size=64m</c>,
    /// the counterpart of Java's fixed -Xmx: the managed heap cannot grow without bound and
    /// hide or fake a native leak); the child's RSS after 100,000 calls must be at most its RSS
    /// after 10,000 calls + 8 MiB. The child (LayerSec.LeakMain.exe, tests/LeakMain.cs) reads
    /// VmRSS from its own /proc/self/status and disposes what it is handed. About 100 s over
    /// the debug build of liblayersec (1 ms per seal+open); category "Leak", so
    /// <c>make test NUNIT_ARGS=-exclude=Leak</c> leaves it out.</summary>
    [TestFixture]
    [Category("Leak")]
    public class LeakTests
    {
        const int Total = 100000;
        const int Every = 10000;
        const long SlackKb = 8 * 1024;

        [Test]
        [Timeout(900000)]
        public void HundredThousandSealOpenCallsDoNotGrowTheProcess()
        {
            var exe = Path.Combine(Path.GetDirectoryName(typeof(LayerSec).Assembly.Location), "LayerSec.LeakMain.exe");
            if (!File.Exists(exe)) Assert.Ignore(exe + " was not built (make test builds it)");
            var psi = new ProcessStartInfo("mono", "\"" + exe + "\" " + Total + " " + Every)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.EnvironmentVariables["MONO_GC_PARAMS"] = "max-heap-size=64m";
            string output, errors;
            using (var p = Process.Start(psi))
            {
                var err = p.StandardError.ReadToEndAsync();
                output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                errors = err.Result;
                Assert.AreEqual(0, p.ExitCode, output + errors);
            }
            var rss = new SortedDictionary<int, long>();
            foreach (var line in output.Split('\n'))
            {
                var f = line.Trim().Split(' ');
                if (f.Length >= 3 && f[0] == "rss") rss[int.Parse(f[1])] = long.Parse(f[2]);
            }
            // In the test output, so the numbers of every run can be compared.
            Console.WriteLine("LeakTests: VmRSS in kB after n seal+open calls: " +
                              string.Join(", ", rss.Select(kv => kv.Key + "=" + kv.Value)));
            Assert.IsTrue(rss.ContainsKey(Every) && rss.ContainsKey(Total), output + errors);
            Assert.That(rss[Total], Is.LessThanOrEqualTo(rss[Every] + SlackKb),
                        $"RSS after {Total} calls is {rss[Total]} kB, more than {rss[Every]} kB after {Every} + {SlackKb} kB");
        }
    }
}
