//! The command line: every subcommand, option and help text.

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0   success
  2   usage error or invalid argument
  3   I/O error (file missing, unreadable or unwritable; refusing to overwrite)
  4   cryptographic failure (decryption failed, not a recipient, bad signature,
      signed by someone else, unsigned, digest mismatch, weak/unsupported algorithm)
  5   certificate or trust failure (expired, not yet valid, key usage, unknown
      signer, untrusted, invalid certificate, key does not match certificate)
  6   malformed or hostile input (malformed, truncated, bad MIME, too deep,
      too large, decompression failed)
  7   wrong password or unsupported key
  8   an AS4/ebMS message breaks the protocol or the signature policy
  70  internal error (a bug; please report it)

Errors go to stderr as `layersec: error[LS_ERR_…]: message`; with --json they are
also printed on stdout as {\"error\": {\"code\", \"name\", \"family\", \"message\", \"exit_code\"}}.

Passwords are never taken from the command line: use --pass-env VAR (the value
of an environment variable) or --pass-file FILE (its first line).\n"
    };
}

#[derive(Parser, Debug)]
#[command(
    name = "layersec",
    version,
    propagate_version = true,
    about = "Layer Security: seal documents as signed and encrypted S/MIME, and open them",
    long_about = "Layer Security: seal documents for business partners as S/MIME (compressed, \
signed, then encrypted) and open what partners sent, with proof of who sent it.\n\n\
Every command that opens a document fails closed: it needs to know which partner is \
expected (--from or --partners) and writes nothing when anything is wrong.",
    after_help = "Run `layersec <COMMAND> --help` for the options and examples of a command; \
`layersec --help` also lists the exit codes.",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec keygen --party acme --out keys --pass-env ACME_KEY_PASS\n",
        "  layersec seal --sign-key keys/acme.key.pem --sign-cert keys/acme.cert.pem \\\n",
        "      --pass-env ACME_KEY_PASS --to partners/globex.pem invoice.xml invoice.xml.p7m\n",
        "  layersec open --key keys/globex.key.pem --cert keys/globex.cert.pem \\\n",
        "      --from partners/acme.pem --json invoice.xml.p7m invoice.xml\n",
        "  layersec inspect invoice.xml.p7m\n\n",
        exit_codes!(),
    ),
)]
pub struct Cli {
    /// Machine-readable output: results and errors as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// No informational messages on stderr (errors are still reported).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Keygen(KeygenArgs),
    Seal(SealArgs),
    Open(OpenArgs),
    Inspect(InspectArgs),
}

/// Where a password comes from. Never from the command line itself.
#[derive(Args, Debug, Clone, Default)]
pub struct PassArgs {
    /// Read the key password from the environment variable VAR.
    #[arg(long, value_name = "VAR", conflicts_with = "pass_file")]
    pub pass_env: Option<String>,

    /// Read the key password from the first line of FILE (trailing newline stripped).
    #[arg(long, value_name = "FILE")]
    pub pass_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// RSA (2048, 3072 or 4096 bits)
    Rsa,
    /// ECDSA/ECDH on NIST P-256
    Ec,
}

/// Generate a key pair, a self-signed certificate and a certificate request.
#[derive(Args, Debug)]
#[command(
    long_about = "Generate a new identity for party ID: a private key (PKCS#8 PEM, encrypted \
with AES-256 when a password is given, file mode 0600), a self-signed certificate \
(CN = ID) and a certificate signing request for a provider's CA.\n\n\
Writes DIR/ID.key.pem, DIR/ID.cert.pem and DIR/ID.csr.pem (DIR is created when missing). \
Refuses to replace existing files unless --force is given. Prints the paths and the \
certificate's SHA-256 fingerprint (give the fingerprint to your partners out of band, \
so they can check the certificate you send them).",
    after_help = "Example:\n  ACME_KEY_PASS=… layersec keygen --party acme --out keys --pass-env ACME_KEY_PASS",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec keygen --party acme --out keys --pass-env ACME_KEY_PASS\n",
        "  layersec keygen --party acme --out keys --key-type ec --days 365 --pass-file acme.pass\n",
        "  layersec keygen --party acme --out keys --json --pass-env ACME_KEY_PASS\n\n",
        exit_codes!(),
    ),
)]
pub struct KeygenArgs {
    /// The party id: the certificate's common name and the base name of the files.
    #[arg(long, value_name = "ID")]
    pub party: String,

    /// The folder to write the files into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The key algorithm.
    #[arg(long, value_enum, default_value_t = KeyKind::Rsa)]
    pub key_type: KeyKind,

    /// RSA modulus size [default: 3072].
    #[arg(long, value_name = "BITS",
          value_parser = clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"])
              .map(|s| s.parse::<u32>().unwrap_or(3072)))]
    pub rsa_bits: Option<u32>,

    /// Days the self-signed certificate is valid.
    #[arg(long, value_name = "N", default_value_t = 730,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,

    #[command(flatten)]
    pub pass: PassArgs,

    /// Replace existing key, certificate and request files.
    #[arg(long)]
    pub force: bool,
}

/// Seal a document: compress, sign with our key, encrypt for the recipients.
#[derive(Args, Debug)]
#[command(
    long_about = "Seal the document IN for one or more recipients and write the S/MIME \
object to OUT: the document is wrapped as a MIME entity (with its file name and type), \
compressed when it pays, signed with our key (RSA PKCS#1 v1.5 or PSS, or ECDSA, with \
SHA-256) and encrypted (AES-256-GCM AuthEnvelopedData, or AES-256-CBC EnvelopedData with \
--cbc) for every --to certificate.\n\n\
IN and OUT may be `-` for stdin and stdout (write `./-` for a file named `-`). OUT is \
written atomically: a temporary file in the same folder, synced, then renamed; nothing \
is left at OUT when sealing fails. The output is DER unless --smime or --pem is given.",
    after_help = "Example:\n  layersec seal --sign-key keys/acme.key.pem --sign-cert keys/acme.cert.pem \\\n      --pass-env ACME_KEY_PASS --to partners/globex.pem invoice.xml invoice.xml.p7m",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec seal --sign-key keys/acme.key.pem --sign-cert keys/acme.cert.pem \\\n",
        "      --pass-env ACME_KEY_PASS --to partners/globex.pem invoice.xml invoice.xml.p7m\n",
        "  # PKCS#12 identity, two recipients, S/MIME text output, from a pipe:\n",
        "  export-invoices | layersec seal --sign-key acme.p12 --pass-file acme.pass \\\n",
        "      --to globex.pem --to initech.pem --filename invoices.xml --smime - out.eml\n\n",
        exit_codes!(),
    ),
)]
pub struct SealArgs {
    /// Our private key: PEM (PKCS#8 or PKCS#1) or a PKCS#12 file.
    #[arg(long, value_name = "KEY")]
    pub sign_key: PathBuf,

    /// Our certificate (PEM or DER); not needed when KEY is PKCS#12 or a PEM with the certificate.
    #[arg(long, value_name = "CERT")]
    pub sign_cert: Option<PathBuf>,

    /// A recipient's certificate (repeat for several recipients).
    #[arg(long = "to", value_name = "RECIPIENT_CERT")]
    pub to: Vec<PathBuf>,

    /// The document's file name, carried inside the sealed message [default: IN's base name].
    #[arg(long, value_name = "NAME")]
    pub filename: Option<String>,

    /// The document's MIME type [default: guessed from the file name].
    #[arg(long, value_name = "TYPE")]
    pub mime_type: Option<String>,

    /// Do not compress the document.
    #[arg(long)]
    pub no_compress: bool,

    /// Encrypt with AES-256-CBC (EnvelopedData) for partners that cannot read AES-GCM.
    #[arg(long)]
    pub cbc: bool,

    /// Sign with RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys only).
    #[arg(long)]
    pub pss: bool,

    /// Write a complete S/MIME entity (application/pkcs7-mime, base64) instead of DER.
    #[arg(long, conflicts_with = "pem")]
    pub smime: bool,

    /// Write PEM (-----BEGIN CMS-----) instead of DER.
    #[arg(long)]
    pub pem: bool,

    /// Also encrypt for our own certificate, so our archive copy stays readable.
    #[arg(long)]
    pub encrypt_to_self: bool,

    #[command(flatten)]
    pub pass: PassArgs,

    /// The document to seal (`-` for stdin).
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Where to write the sealed message (`-` for stdout).
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
}

/// Open a sealed message: decrypt, verify the expected sender, decompress.
#[derive(Args, Debug)]
#[command(
    long_about = "Open the sealed message IN (DER, BER, PEM or S/MIME, detected) and write the \
document to OUT: decrypt with our key, verify the signature against the partner we expect \
(--from CERT, or any partner certificate in --partners DIR), decompress.\n\n\
Fails closed: without --from or --partners nothing is opened (unless --allow-unsigned and \
the message carries no signature), a valid signature by anyone else is rejected, and on \
any failure nothing is written to OUT. OUT is written atomically (temporary file in the \
same folder, synced, renamed; new files get mode 0600); `-` writes to stdout, only after \
everything was verified.\n\n\
--partners DIR: every *.pem, *.crt, *.cer, *.der file directly in DIR is a partner \
certificate; certificates in DIR/anchors/ are trust anchors (CAs) for partners not \
pinned individually.",
    after_help = "Example:\n  layersec open --key keys/globex.key.pem --cert keys/globex.cert.pem \\\n      --pass-env GLOBEX_KEY_PASS --from partners/acme.pem invoice.xml.p7m invoice.xml",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec open --key keys/globex.key.pem --cert keys/globex.cert.pem \\\n",
        "      --pass-env GLOBEX_KEY_PASS --from partners/acme.pem invoice.xml.p7m invoice.xml\n",
        "  # any known partner, metadata as JSON, document to a file:\n",
        "  layersec open --key globex.p12 --pass-file globex.pass --partners partners \\\n",
        "      --json incoming/msg.p7m inbox/msg.doc\n",
        "  # to stdout:\n",
        "  layersec open --key globex.p12 --pass-file globex.pass --from acme.pem msg.p7m - | xmllint -\n\n",
        exit_codes!(),
    ),
)]
pub struct OpenArgs {
    /// Our private key (PEM or PKCS#12), to decrypt. Not needed for signed-only messages.
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,

    /// Our certificate; not needed when KEY is PKCS#12 or a PEM with the certificate.
    #[arg(long, value_name = "CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The certificate of the partner who must have signed.
    #[arg(long, value_name = "SENDER_CERT", conflicts_with = "partners")]
    pub from: Option<PathBuf>,

    /// A folder of partner certificates (and anchors/ with trusted CAs); any of them may sign.
    #[arg(long, value_name = "DIR")]
    pub partners: Option<PathBuf>,

    /// Accept a message that carries no signature.
    #[arg(long)]
    pub allow_unsigned: bool,

    /// Accept a signer certificate outside its validity period.
    #[arg(long)]
    pub allow_expired: bool,

    /// Refuse 3DES content encryption and RSA PKCS#1 v1.5 key transport from legacy partners.
    #[arg(long)]
    pub reject_legacy: bool,

    /// Accept SHA-1 signatures.
    #[arg(long)]
    pub allow_sha1: bool,

    /// Largest document accepted, in bytes (suffixes K, M, G: powers of 1024) [default: 1G].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_size: Option<u64>,

    #[command(flatten)]
    pub pass: PassArgs,

    /// The sealed message (`-` for stdin).
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Where to write the document (`-` for stdout).
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
}

/// Describe a CMS/S-MIME object or an AS4 message as JSON (layers, signers, ebMS headers, parts).
#[derive(Args, Debug)]
#[command(
    long_about = "Describe FILE as JSON on stdout. A CMS/S-MIME object: its layers, \
algorithms, recipients and signers; with --key it looks inside layers encrypted for us, with \
--from or --partners it verifies the signatures (reported in \"verified\").\n\n\
An AS4 message (detected: an XML SOAP envelope, an HTTP capture or MIME entity of type \
multipart/related or application/soap+xml, or a bare body with --content-type): its ebMS \
headers, MIME parts and WS-Security header; with --verify-with CERT each signed reference and \
the signature value are checked (reported in \"verification\"), with --decrypt-with KEY the \
encrypted attachments are decrypted so that their digests can be checked too.\n\n\
Exit status: non-zero when a given certificate does not verify the message (\"verified\": \
false: a signature or digest that does not match, signed by someone else, unsigned, \
signature wrapping or unsigned parts), when a given key cannot decrypt, or when reading \
ended in an error (\"error\" is set); 0 otherwise. An expired certificate alone does not \
fail inspect. Exit 0 does not mean the message was verified unless \"verified\" is true: \
use `open` to accept documents.",
    after_help = "Examples:\n  layersec inspect --from partners/acme.pem invoice.xml.p7m\n  layersec inspect --verify-with partners/acme.pem capture.as4in",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec inspect invoice.xml.p7m\n",
        "  layersec inspect --key keys/globex.key.pem --cert keys/globex.cert.pem \\\n",
        "      --pass-env GLOBEX_KEY_PASS --from partners/acme.pem invoice.xml.p7m\n",
        "  # an AS4 HTTP capture, verified against the partner, attachments decrypted:\n",
        "  layersec inspect --verify-with partners/acme.pem --decrypt-with keys/globex.key.pem \\\n",
        "      --cert keys/globex.cert.pem --pass-env GLOBEX_KEY_PASS capture.as4in\n",
        "  # a MIME body whose HTTP headers were kept apart:\n",
        "  layersec inspect --content-type 'multipart/related; boundary=\"b1\"; type=\"application/soap+xml\"' body.mime\n\n",
        exit_codes!(),
    ),
)]
pub struct InspectArgs {
    /// Our private key (PEM or PKCS#12), to look inside encrypted layers / decrypt AS4 attachments.
    #[arg(long, visible_alias = "decrypt-with", value_name = "KEY")]
    pub key: Option<PathBuf>,

    /// Our certificate; not needed when KEY is PKCS#12 or a PEM with the certificate.
    #[arg(long, value_name = "CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Verify the signatures against this partner certificate.
    #[arg(
        long,
        visible_alias = "verify-with",
        value_name = "CERT",
        conflicts_with = "partners"
    )]
    pub from: Option<PathBuf>,

    /// Verify the signatures against this folder of partner certificates (CMS only).
    #[arg(long, value_name = "DIR")]
    pub partners: Option<PathBuf>,

    /// The Content-Type of FILE when it is an AS4 message body without its HTTP headers.
    #[arg(long, value_name = "VALUE")]
    pub content_type: Option<String>,

    /// Accept SHA-1 signatures when verifying (CMS only).
    #[arg(long)]
    pub allow_sha1: bool,

    /// Largest content accepted, in bytes (suffixes K, M, G) [default: 1G].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_size: Option<u64>,

    #[command(flatten)]
    pub pass: PassArgs,

    /// The object to describe (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `1048576`, `512K`, `10M`, `1G`, `2GiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1048576, 512K, 10M, 1G)"))?;
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown size suffix (use K, M, G or T)")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 {
        return Err("the size limit must be at least 1 byte".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
    }
}
