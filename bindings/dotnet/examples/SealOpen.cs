// SealOpen.exe — seal a document for a partner and open it again, with the .NET binding of
// liblayersec.
//
//   seal-open                                              a demo, nothing needed: alice seals an
//                                                          invoice for bob, bob opens it
//   seal-open seal KEY CERT RECIPIENT_CERT IN OUT [FILENAME]
//   seal-open open KEY CERT SENDER_CERT IN OUT
//
// With arguments it does what examples-c/seal.c and open.c do, with the same arguments and
// output, so that messages sealed by one language can be opened by the other:
//   seal: signs IN with our identity (KEY + CERT, PEM, the key not encrypted), encrypts it for
//         the partner whose certificate is RECIPIENT_CERT and writes the sealed message (CMS in
//         DER) to OUT. FILENAME is the file name the recipient will see (optional).
//   open: decrypts IN with our identity, checks that it was signed by the partner whose
//         certificate is SENDER_CERT (and by no one else), writes the document to OUT and
//         prints its file name, MIME type, signer and signing time. Nothing is written unless
//         every check passed.
// Exit status: 0 done, 1 failed (a line on stderr: the LS_ERR_* name, the code and the
// library's explanation), 2 wrong usage.
using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using LayerSecurity;

static class SealOpen
{
    static int Main(string[] args)
    {
        if (args.Length == 0) return Demo();
        if (args[0] == "seal" && (args.Length == 6 || args.Length == 7)) return Seal(args);
        if (args[0] == "open" && args.Length == 6) return Open(args);
        Console.Error.WriteLine("usage: seal-open                  (a demo)");
        Console.Error.WriteLine("       seal-open seal signer_key signer_cert recipient_cert infile outfile [filename]");
        Console.Error.WriteLine("       seal-open open key cert sender_cert infile outfile");
        return 2;
    }

    /// <summary>The demo: two parties with EC P-256 keys and self-signed certificates, made on
    /// the spot (a real party loads its key and certificate: <c>Identity.Load</c>).</summary>
    static int Demo()
    {
        Console.WriteLine("Layer Security " + LayerSec.Version + " from .NET");
        using (var alice = Identity.Generate("alice", KeyType.EcP256, 30))
        using (var bob = Identity.Generate("bob", KeyType.EcP256, 30))
        {
            Console.WriteLine("identities: " + alice.Certificate.Subject + " and " + bob.Certificate.Subject + " (EC P-256)");
            var invoice = Encoding.UTF8.GetBytes(
                "<?xml version=\"1.0\"?>\n<Invoice id=\"42\">\n  <Total currency=\"EUR\">1234.50</Total>\n</Invoice>\n");

            // Alice signs the invoice and encrypts it so that only Bob can read it.
            var sealedMsg = LayerSec.Seal(invoice, alice, bob.Certificate, new SealOptions { FileName = "invoice.xml" });
            Console.WriteLine($"alice sealed {invoice.Length} bytes for bob: {sealedMsg.Length} bytes of CMS (DER)");

            // Bob opens it, and accepts it only if Alice signed it.
            var opened = LayerSec.Open(sealedMsg, bob, new OpenOptions { Sender = alice.Certificate });
            using (opened.Signer)
            {
                Console.WriteLine("bob opened it:");
                Print(opened);
                if (!opened.Document.SequenceEqual(invoice))
                {
                    Console.Error.WriteLine("seal-open: the opened document differs from the invoice");
                    return 1;
                }
                Console.WriteLine("the document is the invoice, byte for byte");
            }

            // Anyone else is refused: Bob expecting a message from himself.
            try
            {
                LayerSec.Open(sealedMsg, bob, new OpenOptions { Sender = bob.Certificate });
                Console.Error.WriteLine("seal-open: a message from alice was accepted as bob's");
                return 1;
            }
            catch (VerificationException e)
            {
                Console.WriteLine("expecting bob as the signer instead is refused: " + e.ResultName);
            }
        }
        return 0;
    }

    static void Print(Opened o)
    {
        Console.WriteLine("filename: " + (o.SafeFileName ?? "(none)"));
        Console.WriteLine("MIME type: " + o.MimeType);
        Console.WriteLine("signer: " + o.SignerSubject);
        Console.WriteLine("signing time: " + (o.SigningTime.HasValue
            ? o.SigningTime.Value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)
            : "(not stated)"));
        Console.WriteLine("encrypted: " + (o.WasEncrypted ? "yes" : "no"));
    }

    /// <summary>Why a step failed, as the C examples print it: the code's name and number and
    /// the library's explanation (the exception's Message is "LS_ERR_X (NNN): detail").</summary>
    static int Report(string prog, string what, LayerSecException e)
    {
        Console.Error.WriteLine($"{prog}: {what} failed: {e.Message}");
        return 1;
    }

    static byte[] ReadFile(string path)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"cannot open {path}: {e.Message}");
            return null;
        }
    }

    static bool WriteFile(string path, byte[] data)
    {
        try
        {
            File.WriteAllBytes(path, data);
            return true;
        }
        catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"cannot create {path}: {e.Message}");
            return false;
        }
    }

    /// <summary>Our identity (KEY + CERT, the key not encrypted) and the partner's certificate,
    /// as the C examples load them; on failure prints why (as "PROG: loading … failed: …") and
    /// returns false with nothing left open.</summary>
    static bool Load(string prog, string keyPath, string certPath, string partnerCertPath, string partner,
                     out Identity me, out Certificate partnerCert)
    {
        me = null;
        partnerCert = null;
        try
        {
            me = Identity.Load(keyPath, certPath); // no password: the key is not encrypted
        }
        catch (LayerSecException e)
        {
            Report(prog, "loading our identity (ls_identity_load)", e);
            return false;
        }
        try
        {
            partnerCert = Certificate.Load(partnerCertPath);
            return true;
        }
        catch (LayerSecException e)
        {
            me.Dispose();
            me = null;
            Report(prog, $"loading the {partner}'s certificate (ls_cert_load)", e);
            return false;
        }
    }

    static int Seal(string[] a)
    {
        Identity signer;
        Certificate recipient;
        if (!Load("seal", a[1], a[2], a[3], "recipient", out signer, out recipient)) return 1;
        using (signer)
        using (recipient)
        {
            var doc = ReadFile(a[4]);
            if (doc == null) return 1;
            byte[] sealedMsg;
            try
            {
                // The defaults: DER, AES-256-GCM, compression when it pays; the MIME type is
                // guessed from the file name.
                sealedMsg = LayerSec.Seal(doc, signer, recipient,
                                          new SealOptions { FileName = a.Length == 7 ? a[6] : null });
            }
            catch (LayerSecException e)
            {
                return Report("seal", "ls_seal", e);
            }
            if (!WriteFile(a[5], sealedMsg)) return 1;
            Console.WriteLine($"sealed {doc.Length} bytes for {recipient.Subject} into {a[5]} ({sealedMsg.Length} bytes)");
            return 0;
        }
    }

    static int Open(string[] a)
    {
        Identity me;
        Certificate sender;
        if (!Load("open", a[1], a[2], a[3], "sender", out me, out sender)) return 1;
        using (me)
        using (sender)
        {
            var input = ReadFile(a[4]);
            if (input == null) return 1;
            Opened opened;
            try
            {
                // The partner we expect: a valid signature by anyone else is refused.
                opened = LayerSec.Open(input, me, new OpenOptions { Sender = sender });
            }
            catch (LayerSecException e)
            {
                return Report("open", "ls_open", e);
            }
            using (opened.Signer)
            {
                // Only now, every check passed, is anything written.
                if (!WriteFile(a[5], opened.Document)) return 1;
                Print(opened);
                Console.WriteLine($"wrote {opened.Document.Length} bytes to {a[5]}");
                return 0;
            }
        }
    }
}
