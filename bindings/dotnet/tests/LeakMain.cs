// LayerSec.LeakMain.exe, the child process of LeakTests: seals and opens a small document with
// EC P-256 keys args[0] times and prints "rss <calls> <VmRSS in kB> <ms>" (VmRSS from its own
// /proc/self/status) after every args[1] calls. Everything native it is handed is disposed
// explicitly, as a careful caller does: every Opened, whose signer certificate (the only native
// object Open hands out, made when Opened.Signer is first read, as it is here every round; the
// ls_opened itself is freed inside Open) goes with it.
//
// With args[2] = "keep" (the negative control, run by hand) every Opened.Signer is kept in a
// list instead of disposed: native memory that grows, which the RSS check must see.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using LayerSecurity;

static class LeakMain
{
    static long VmRssKb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(new string(line.Where(char.IsDigit).ToArray()));
        throw new InvalidOperationException("no VmRSS in /proc/self/status");
    }

    static int Main(string[] args)
    {
        int total = int.Parse(args[0]);
        int every = int.Parse(args[1]);
        bool keep = args.Length > 2 && args[2] == "keep";
        var kept = new List<Certificate>();
        var doc = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("<Invoice>leak test</Invoice>", 30)));
        var watch = Stopwatch.StartNew();
        using (var alice = Identity.Generate("alice", KeyType.EcP256, 30))
        using (var bob = Identity.Generate("bob", KeyType.EcP256, 30))
        {
            var opts = new OpenOptions { Sender = alice.Certificate };
            var to = new[] { bob.Certificate };
            for (int i = 1; i <= total; i++)
            {
                var sealedMsg = LayerSec.Seal(doc, alice, to);
                var o = LayerSec.Open(sealedMsg, bob, opts);
                try
                {
                    if (!o.Document.SequenceEqual(doc))
                    {
                        Console.Error.WriteLine("round trip " + i + " changed the document");
                        return 1;
                    }
                }
                finally
                {
                    // The signer's certificate is made on first use: made here every round.
                    if (o.Signer.Subject != "CN=alice") throw new InvalidOperationException("signer " + o.Signer.Subject);
                    if (keep) kept.Add(o.Signer);
                    else o.Dispose();
                }
                if (i % every == 0)
                {
                    Console.WriteLine("rss " + i + " " + VmRssKb() + " " + watch.ElapsedMilliseconds + "ms" +
                                      (keep ? " kept " + kept.Count : ""));
                    Console.Out.Flush();
                }
            }
        }
        return 0;
    }
}
