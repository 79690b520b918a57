//! The command line: every subcommand, option and help text.

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0   success
  2   usage error, invalid argument or invalid configuration file
  3   I/O error (file missing, unreadable or unwritable; refusing to overwrite)
  4   cryptographic failure (decryption failed, not a recipient, bad signature,
      signed by someone else, unsigned, digest mismatch, weak/unsupported algorithm,
      a signed receipt that does not answer the message, a mechanism the token lacks)
  5   certificate or trust failure (expired, not yet valid, key usage, unknown
      signer, untrusted, invalid certificate, key does not match certificate)
  6   malformed or hostile input (malformed, truncated, bad MIME, too deep,
      too large, decompression failed, expands beyond the limit)
  7   wrong password or PIN, unsupported key, the key's token or the key not
      found; the mail server refused our login
  8   an AS4/ebMS message breaks the protocol or the signature policy
  9   the service could not be reached or failed for now (connection, timeout,
      TLS, HTTP status, bad response, a mail server's temporary refusal); for
      `send`: the document is queued and `layersec run` (or the next `layersec
      poll`) sends it
  10  refused by the service for good (an ebMS error, or a permanent HTTP
      status such as 413: larger than the service accepts; a mail server's
      permanent refusal such as its size limit)
  11  the client's state folder is busy (another process) or damaged
  12  partners fetch: the service's directory answers another certificate than
      the one we have for the partner (ours is kept; see the warning)
  13  send by e-mail: submitted, the service's receipt not come yet (`layersec
      run` completes the send when it comes)
  70  internal error (a bug; please report it)

Errors go to stderr as `layersec: error[LS_ERR_…]: message`; with --json they are
also printed on stdout as {\"error\": {\"code\", \"name\", \"family\", \"message\",
\"transient\", \"exit_code\"}}.

Passwords are never taken from the command line: use --pass-env VAR (the value
of an environment variable) or --pass-file FILE (its first line).\n"
    };
}

#[derive(Parser, Debug)]
#[command(
    name = "layersec",
    version,
    propagate_version = true,
    about = "Layer Security: seal documents as signed and encrypted S/MIME, open them, and \
exchange them with partners through a Messaging Service",
    long_about = "Layer Security: seal documents for business partners as S/MIME (compressed, \
signed, then encrypted) and open what partners sent, with proof of who sent it.\n\n\
Every command that opens a document fails closed: it needs to know which partner is \
expected (--from or --partners) and writes nothing when anything is wrong.\n\n\
The client commands (init, send, poll, run, status, receipts, partners, rollover) exchange documents with \
partners through a Layer Security Messaging Service, as signed AS4 messages whose receipts \
are checked, configured by one file (--config).",
    after_help = "Run `layersec <COMMAND> --help` for the options and examples of a command; \
`layersec --help` also lists the exit codes.",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec keygen --party acme --out keys --pass-env ACME_KEY_PASS\n",
        "  layersec seal --sign-key keys/acme.key.pem --sign-cert keys/acme.cert.pem \\\n",
        "      --pass-env ACME_KEY_PASS --to partners/globex.pem invoice.xml invoice.xml.p7m\n",
        "  layersec open --key keys/globex.key.pem --cert keys/globex.cert.pem \\\n",
        "      --from partners/acme.pem --json invoice.xml.p7m invoice.xml\n",
        "  layersec inspect invoice.xml.p7m\n",
        "  layersec init --party acme --service https://ls.example:8443/as4 --service-cert service.crt\n",
        "  layersec partners fetch globex\n",
        "  layersec partners add globex globex.crt\n",
        "  layersec send invoice.xml --to globex\n",
        "  layersec poll\n",
        "  layersec run --json\n\n",
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

    /// The client's configuration file (send, poll, run, status, receipts, partners, rollover)
    /// [default: $LAYERSEC_CONFIG, else ./layersec.toml].
    #[arg(short = 'c', long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Keygen(KeygenArgs),
    Seal(SealArgs),
    Open(OpenArgs),
    Inspect(InspectArgs),
    VerifyReceipt(VerifyReceiptArgs),
    Init(InitArgs),
    Send(SendArgs),
    Poll(PollArgs),
    Run(RunArgs),
    Status(StatusArgs),
    Receipts(ReceiptsArgs),
    Partners(PartnersArgs),
    Rollover(RolloverArgs),
}

impl Command {
    /// The client commands, which read the configuration file.
    pub fn is_client(&self) -> bool {
        matches!(
            self,
            Command::Send(_)
                | Command::Poll(_)
                | Command::Run(_)
                | Command::Status(_)
                | Command::Receipts(_)
                | Command::Partners(_)
                | Command::Rollover(_)
        )
    }

    /// The commands whose `--json` output is a stream of JSON lines.
    pub fn streams(&self) -> bool {
        matches!(self, Command::Poll(_) | Command::Run(_))
    }
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

/// A key pair made on a PKCS#11 token instead of in a file (`keygen`, `init`).
#[derive(Args, Debug, Clone, Default)]
pub struct TokenArgs {
    /// Make the key pair on a PKCS#11 token (an HSM, a smart card) instead of in a file: the
    /// RFC 7512 URI of the new key, naming it with object= (label) and/or id=, no pin-value.
    /// The key is sensitive and never extractable; no key file is written.
    #[arg(long, value_name = "URI")]
    pub pkcs11: Option<String>,

    /// With --pkcs11: the token's PKCS#11 module (wins over a module-path in the URI).
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,

    /// With --pkcs11: read the token's PIN from the environment variable VAR.
    #[arg(long, value_name = "VAR", conflicts_with = "pin_file")]
    pub pin_env: Option<String>,

    /// With --pkcs11: read the token's PIN from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// RSA (2048, 3072 or 4096 bits)
    Rsa,
    /// ECDSA/ECDH on NIST P-256
    Ec,
}

/// What a partner's software reads (`seal`) and what we accept from it (`open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// AES-256-GCM AuthEnvelopedData, RSA-OAEP-SHA-256 or ECDH, SignedData with the content inside
    Modern,
    /// AS2-era software: multipart/signed, AES-256-CBC EnvelopedData, RSA PKCS#1 v1.5 key
    /// transport; RSA keys only
    #[value(name = "legacy-as2")]
    LegacyAs2,
}

impl From<ProfileArg> for ls_core::cms::Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Modern => ls_core::cms::Profile::Modern,
            ProfileArg::LegacyAs2 => ls_core::cms::Profile::LegacyAs2,
        }
    }
}

/// How the content key reaches an RSA recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyTransportArg {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (EC recipients: ECDH)
    #[value(name = "rsa-oaep-sha256")]
    RsaOaepSha256,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1 (RSA recipients only)
    #[value(name = "rsa-oaep-sha1")]
    RsaOaepSha1,
    /// RSA PKCS#1 v1.5 (RSA recipients only)
    #[value(name = "rsa-pkcs1v15")]
    RsaPkcs1v15,
}

/// How the signature is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignatureFormatArg {
    /// SignedData with the document inside (application/pkcs7-mime; smime-type=signed-data)
    Opaque,
    /// multipart/signed: the document as is, then a detached signature (application/pkcs7-signature)
    #[value(name = "multipart-signed")]
    MultipartSigned,
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
so they can check the certificate you send them).\n\n\
With --pkcs11 URI --module PATH and --pin-env VAR or --pin-file FILE, the key pair is made \
on the PKCS#11 token instead (private, sensitive, never extractable; labelled with the \
URI's object= and id=), and the certificate and the request are signed by it there: only \
DIR/ID.cert.pem and DIR/ID.csr.pem are written. A key already on the token with that \
label/id is refused, not replaced (also with --force); --pass-env/--pass-file are refused \
(the key has no password). A module that cannot be loaded or a wrong PIN is exit 7 (the \
PIN is tried once).",
    after_help = "Example:\n  ACME_KEY_PASS=… layersec keygen --party acme --out keys --pass-env ACME_KEY_PASS",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec keygen --party acme --out keys --pass-env ACME_KEY_PASS\n",
        "  layersec keygen --party acme --out keys --key-type ec --days 365 --pass-file acme.pass\n",
        "  # the key on a token (here SoftHSM2), the PIN from $ACME_PIN:\n",
        "  layersec keygen --party acme --out keys --key-type ec \\\n",
        "      --pkcs11 'pkcs11:token=layersec;object=acme;type=private' \\\n",
        "      --module /usr/lib/softhsm/libsofthsm2.so --pin-env ACME_PIN\n",
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

    #[command(flatten)]
    pub token: TokenArgs,

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
--profile legacy-as2 seals for AS2-era software (pyas2lib, Mendelson, Sterling…): the \
signature as multipart/signed (RSA PKCS#1 v1.5, SHA-256), then AES-256-CBC EnvelopedData \
with RSA PKCS#1 v1.5 key transport; it needs RSA keys, ours and the recipients'. \
--key-transport, --signature-format, --cbc, --pss and --no-compress change single \
settings of the profile.\n\n\
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

    /// What the recipients' software reads: `modern`, or `legacy-as2` for AS2-era software
    /// (multipart/signed, AES-256-CBC, RSA PKCS#1 v1.5 key transport; RSA keys only). The
    /// options below change single settings of it.
    #[arg(long, value_enum, value_name = "PROFILE", default_value_t = ProfileArg::Modern)]
    pub profile: ProfileArg,

    /// Do not compress the document.
    #[arg(long)]
    pub no_compress: bool,

    /// Encrypt with AES-256-CBC (EnvelopedData) for partners that cannot read AES-GCM.
    #[arg(long)]
    pub cbc: bool,

    /// How the content key reaches RSA recipients [default: the profile's].
    #[arg(long, value_enum, value_name = "HOW")]
    pub key_transport: Option<KeyTransportArg>,

    /// How the signature is carried [default: the profile's].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub signature_format: Option<SignatureFormatArg>,

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

    /// Accept only what this profile's partners send: `modern` refuses AES-CBC, 3DES, RSA
    /// PKCS#1 v1.5 key transport and multipart/signed; `legacy-as2` accepts them [default:
    /// all of them accepted, as `legacy-as2`].
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub profile: Option<ProfileArg>,

    /// Refuse 3DES content encryption and RSA PKCS#1 v1.5 key transport from legacy partners.
    #[arg(long)]
    pub reject_legacy: bool,

    /// Refuse 3DES content encryption.
    #[arg(long = "reject-3des")]
    pub reject_3des: bool,

    /// Accept SHA-1 signatures.
    #[arg(long)]
    pub allow_sha1: bool,

    /// Largest document accepted, in bytes (suffixes K, M, G: powers of 1024); the layers
    /// around it do not count [default: 100M, the client's limits.max_document_bytes].
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

/// Check a partner's signed receipt (RFC 2634) against the message it answers, offline.
#[derive(Args, Debug)]
#[command(
    long_about = "Check, offline and without any client state (e.g. for an auditor), that the \
signed receipt R was signed by the partner certificate CERT and answers the signed message S: \
the receipt's signature and message digest, the partner certificate's validity (now and at \
the receipt's signing time) and key usage, and its binding to S: msgSigDigest is the digest \
of the signed attributes of S's signature, it quotes that signature's value, content type and \
content identifier, and S asked for a receipt (an ESS ReceiptRequest).\n\n\
R is an ESS signed receipt (a SignedData of content type id-ct-receipt, as `layersec` and \
`openssl cms -sign_receipt` make them); S is the SignedData as the sender signed it (the \
client keeps it as sent/<name>.signed.p7m beside the receipt, sent/<name>.receipt.p7m). Both \
may be DER, BER, PEM or S/MIME. OpenSSL checks the same binding with `openssl cms \
-verify_receipt R -rctform DER -in S -inform DER -CAfile CERT` (it trusts CERT as an anchor, \
where verify-receipt requires the receipt to be signed with CERT itself).\n\n\
Prints the signer, its certificate's SHA-256 fingerprint, the signing time the receipt \
states and the content identifier it quotes (with --json: {\"verified\": true, \
\"signer_subject\", \"signer_sha256\", \"signing_time\", \"content_identifier\"} with the \
identifier in hex). Exit status as for `open`: 4 for a receipt signed by someone else, a \
broken signature or a receipt for another message (LS_ERR_RECEIPT_MISMATCH), 5 for a \
certificate expired or not valid for signing, 6 for malformed input.",
    after_help = "Example:\n  layersec verify-receipt --receipt sent/invoice.xml.receipt.p7m \\\n      --original sent/invoice.xml.signed.p7m --partner partners/globex.crt",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec verify-receipt --receipt sent/invoice.xml.receipt.p7m \\\n",
        "      --original sent/invoice.xml.signed.p7m --partner partners/globex.crt\n",
        "  layersec verify-receipt --json --receipt r.p7m --original s.p7m --partner globex.crt\n\n",
        exit_codes!(),
    ),
)]
pub struct VerifyReceiptArgs {
    /// The signed receipt (`-` for stdin).
    #[arg(long, value_name = "R")]
    pub receipt: PathBuf,

    /// The signed message it answers, as the sender signed it (a SignedData).
    #[arg(long, value_name = "S")]
    pub original: PathBuf,

    /// The certificate of the partner who must have signed the receipt (PEM or DER); give it
    /// again for each certificate the partner may have used (a rollover).
    #[arg(long, value_name = "CERT", required = true)]
    pub partner: Vec<PathBuf>,

    /// Old evidence: accept a partner certificate that has expired since, if it was valid at
    /// the signing time the receipt states.
    #[arg(long)]
    pub allow_expired: bool,
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

    /// Largest content accepted, in bytes (suffixes K, M, G) [default: 100M].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_size: Option<u64>,

    #[command(flatten)]
    pub pass: PassArgs,

    /// The object to describe (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// The client commands

/// The key algorithm of `init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitKeyType {
    /// ECDSA/ECDH on NIST P-256 (fast, small)
    #[value(name = "ec")]
    Ec,
    /// RSA, 2048 bits
    #[value(name = "rsa2048")]
    Rsa2048,
    /// RSA, 3072 bits
    #[value(name = "rsa3072")]
    Rsa3072,
    /// RSA, 4096 bits
    #[value(name = "rsa4096")]
    Rsa4096,
}

/// Set up a client: configuration file, identity, service certificate and folders.
#[derive(Args, Debug)]
#[command(
    long_about = "Set up a client of a Messaging Service in DIR: writes DIR/layersec.toml (every \
setting explained in its comments), generates our identity (DIR/identity/key.pem, mode 0600, \
encrypted with the value of --pass-env VAR when given; DIR/identity/cert.pem, self-signed, \
CN = ID), copies the service's signing certificate to DIR/service/service.crt and the TLS CA to \
DIR/service/ca.crt, and creates the folders outbox, sent, failed, inbox, state and partners.\n\n\
Prints what the provider needs to register us: the party id, our MPC, the certificate's \
SHA-256 fingerprint and the certificate itself (PEM). Refuses to replace existing files \
unless --force is given.\n\n\
Without --service-cert, put the service's signing certificate at DIR/service/service.crt \
before `send` or `poll`: every receipt must verify against it.\n\n\
With --enrol CODE (a one-time code the provider issued for this party id), no provider step \
is needed: init fetches the service's signing certificate over TLS (refusing one that differs \
from --service-cert, else printing its SHA-256 to compare), registers our certificate at the \
service with a request signed by the new key, and writes the files only once the service's \
signed answer checked; a refused enrolment writes nothing (exit 10; 9 when the service could \
not be reached or locked us out for now).\n\n\
With --pkcs11 URI --module PATH and --pin-env VAR or --pin-file FILE, the key pair is made \
on the PKCS#11 token instead of DIR/identity/key.pem (private, sensitive, never \
extractable; labelled with the URI's object= and id=; a key already there with that \
label/id is refused), the certificate is signed by it, and layersec.toml's [identity] \
names it: pkcs11_uri, module, and pin_env or pin_file (the PIN itself is never written). \
--pass-env is refused with it. A module that cannot be loaded or a wrong PIN is exit 7 (the \
PIN is tried once). If the command fails after the key was made, the key is removed from \
the token again.",
    after_help = "Examples:\n  layersec init --party acme --service https://ls.example:8443/as4 --service-cert service.crt\n  layersec init --party acme --service https://ls.example:8443/as4 --enrol 7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec init --party acme --service https://ls.example:8443/as4 --service-cert service.crt\n",
        "  # with the code the provider gave, nothing else to do at the provider:\n",
        "  layersec init --party acme --service https://ls.example:8443/as4 --enrol 7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ\n",
        "  # in /srv/acme, RSA, the key encrypted, a self-signed service trusted for TLS:\n",
        "  ACME_KEY_PASS=… layersec init --party acme --service https://ls.example:8443/as4 \\\n",
        "      --dir /srv/acme --key-type rsa3072 --pass-env ACME_KEY_PASS \\\n",
        "      --service-cert service.crt --ca-file service-tls.crt --json\n",
        "  # the key on a token, the PIN from $ACME_PIN (also when the commands run):\n",
        "  layersec init --party acme --service https://ls.example:8443/as4 --enrol - \\\n",
        "      --pkcs11 'pkcs11:token=layersec;object=acme;type=private' \\\n",
        "      --module /usr/lib/softhsm/libsofthsm2.so --pin-env ACME_PIN\n\n",
        exit_codes!(),
    ),
)]
pub struct InitArgs {
    /// Our party id at the Messaging Service (the From of what we send; our certificate's CN).
    #[arg(long, value_name = "ID")]
    pub party: String,

    /// The service's AS4 endpoint, `https://host[:port]/path`.
    #[arg(long, value_name = "URL")]
    pub service: String,

    /// The folder of the client: configuration, identity, folders.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// The service's signing certificate (its receipts must verify against it).
    #[arg(long, value_name = "FILE")]
    pub service_cert: Option<PathBuf>,

    /// CA (or the server's self-signed certificate) to trust for TLS instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Or: trust exactly the TLS server certificate with this SHA-256 (hex, `:` allowed).
    #[arg(long, value_name = "SHA256")]
    pub pin: Option<String>,

    /// The key algorithm.
    #[arg(long, value_enum, default_value_t = InitKeyType::Ec)]
    pub key_type: InitKeyType,

    /// Days the self-signed certificate is valid.
    #[arg(long, value_name = "N", default_value_t = 825,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,

    /// Encrypt the key with the value of the environment variable VAR; the configuration names
    /// VAR (`password_env`), so the commands need it set too.
    #[arg(long, value_name = "VAR")]
    pub pass_env: Option<String>,

    #[command(flatten)]
    pub token: TokenArgs,

    /// Replace an existing configuration, identity and service certificates.
    #[arg(long)]
    pub force: bool,

    /// Register our new certificate at the service with this one-time enrolment code from the
    /// provider (`-`: read it from the first line of stdin); fetches the service's signing
    /// certificate too (compared with --service-cert when given).
    #[arg(long, value_name = "CODE")]
    pub enrol: Option<String>,
}

/// Send a document to a partner now: seal, sign, push, check the service's receipt.
#[derive(Args, Debug)]
#[command(
    long_about = "Send FILE to partner PARTY now: seal it for the partner's certificate (from the \
partners folder), sign it, carry it in a signed AS4 message to the service and check the \
service's signed receipt. Prints the MessageId (with --json: the whole record); the \
document's copy goes to sent/ with <name>.sent.json. FILE stays where it is.\n\n\
Exit 0: delivered (the receipt checked). Exit 9: the service could not be reached or failed \
for now: the document is queued in the journal with its MessageId, and `layersec run` (or \
the next `layersec poll`) pushes the very same message again. Exit 10: the service refused \
it: the document is in failed/ with <name>.reason.txt. Nothing is queued for the other \
failures (unknown partner: exit 5).",
    after_help = "Example:\n  layersec send invoice.xml --to globex",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec send invoice.xml --to globex\n",
        "  layersec send order.xml --to globex --action Order --conversation PO-4711 --json\n",
        "  layersec -c /srv/acme/layersec.toml send invoice.xml --to globex\n\n",
        exit_codes!(),
    ),
)]
pub struct SendArgs {
    /// The document to send.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The partner's party id (its certificate is <partners>/PARTY.crt).
    #[arg(long, value_name = "PARTY")]
    pub to: String,

    /// The ebMS Service [default: from the configuration's [defaults]].
    #[arg(long, value_name = "S")]
    pub service: Option<String>,

    /// The ebMS Action [default: from the configuration's [defaults]].
    #[arg(long, value_name = "A")]
    pub action: Option<String>,

    /// The ConversationId [default: a new one, the MessageId].
    #[arg(long, value_name = "C")]
    pub conversation: Option<String>,

    /// Do not ask the partner for a signed receipt of this document ([receipts] request asks by
    /// default).
    #[arg(long)]
    pub no_receipt: bool,
}

/// Receive: finish pending sends, then pull every document waiting for us into inbox/.
#[derive(Args, Debug)]
#[command(
    long_about = "Finish what an earlier run left (sends queued for retry that are due, inbox \
writes), then pull every message waiting for us at the service: each is verified against \
the certificate of the partner it comes from, opened, written to inbox/ with \
<name>.meta.json, and only then receipted. Prints one line per document: \
`<path>TAB<sender>TAB<message id>` (with --json: one JSON object per line, then \
{\"summary\": …}).\n\n\
A message that cannot be accepted (unknown sender, bad signature) is not written and not \
receipted: the service offers it again later; it is reported on stderr and in `status`. \
Exit 0 also when nothing waited; 9 when the service could not be reached; 10 when the service \
refused the pull request (our party unknown, revoked or suspended there); 11 when another \
process polls with the same state folder.",
    after_help = "Example:\n  layersec poll",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec poll\n",
        "  layersec poll --json | jq -c 'select(.summary | not)'\n\n",
        exit_codes!(),
    ),
)]
pub struct PollArgs {}

/// The daemon: send what is put in the outbox, poll, retry, until SIGTERM or SIGINT.
#[derive(Args, Debug)]
#[command(
    long_about = "Run until SIGTERM or SIGINT: send every document put in outbox/<partner id>/ \
(then moved to sent/ or failed/), retry queued sends with back-off, and poll the service \
every [polling] interval_secs into inbox/. Prints one line per event on stdout as it \
happens (with --json: one JSON object per line, {\"event\": \"sent\", …}). On SIGTERM or \
SIGINT it finishes the request under way and exits 0; a second signal ends it at once \
(exit 1; the journal makes that safe too).",
    after_help = "Example:\n  layersec run --json",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec run\n",
        "  layersec -c /srv/acme/layersec.toml run --json >> /var/log/layersec.jsonl\n\n",
        exit_codes!(),
    ),
)]
pub struct RunArgs {}

/// What the client is doing: pending sends, folders, failures, the last poll.
#[derive(Args, Debug)]
#[command(
    long_about = "Show the sends waiting for a retry (with their MessageIds and last errors), \
the number of documents in sent/, failed/ and inbox/, messages for us that could not be \
accepted, the last poll, and the most recent problems.",
    after_help = "Example:\n  layersec status --json",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec status\n",
        "  layersec status --json | jq '.pending | length'\n\n",
        exit_codes!(),
    ),
)]
pub struct StatusArgs {}

/// Roll our key over: a new key and certificate, registered at the service, sent to every
/// partner.
#[derive(Args, Debug)]
#[command(
    long_about = "Replace our key and certificate without a gap: make a new key and a \
self-signed certificate (or take a CA-issued one with --cert and --key), register it at the \
service with a request signed by the current key and by the new one, and send every partner \
a certificate update signed by the current key and counter-signed by the new one. The old \
certificate stays valid at the service and at the partners for the overlap (--overlap-hours, \
default [identity] rollover_overlap_hours, 168). The new key opens documents at once; we sign \
with the new key once the service and every partner accepted it, or when the overlap is \
nearly over (a tenth of it, at most an hour, before its end). `layersec status` shows the \
state per partner (pending, accepted, rejected, offline); `layersec run` (or `poll`) takes \
the answers and switches. Exit 9 when the service could not be reached: the rollover waits, \
and the same command (or `run`) continues it.\n\n\
With [identity] pkcs11_uri (the key on a PKCS#11 token, named by object=), the new key pair is \
made on the same token (sensitive, never extractable) as <label>.next; at the switch the old \
key pair becomes <label>.previous-<16 hex digits of its certificate's SHA-256> (it still \
opens what was sealed for it) and the new one <label>, so the configuration stays as it is. \
--key/--cert are refused then.",
    after_help = "Example:\n  layersec rollover --overlap-hours 48",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec rollover\n",
        "  layersec rollover --overlap-hours 48 --json\n",
        "  layersec keygen --party acme --out new --key-type ec   # CSR for the CA: new/acme.csr.pem\n",
        "  layersec rollover --key new/acme.key.pem --cert acme-2027.crt\n\n",
        exit_codes!(),
    ),
)]
pub struct RolloverArgs {
    /// How long the old certificate stays valid, in hours (decimals allowed: 0.5 is 30
    /// minutes) [default: [identity] rollover_overlap_hours].
    #[arg(long, value_name = "N", value_parser = parse_hours)]
    pub overlap_hours: Option<u64>,

    /// A certificate a CA issued for the new key (from `layersec keygen`'s request), PEM or
    /// DER, with its chain after it; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The new private key (PEM) of --cert (its password: --pass-env/--pass-file; it is
    /// written encrypted with the configured password).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Validity of the new self-signed certificate, in days [default: 825].
    #[arg(long, value_name = "N", conflicts_with = "cert", value_parser = clap::value_parser!(u32).range(2..=36500))]
    pub days: Option<u32>,

    #[command(flatten)]
    pub pass: PassArgs,
}

/// Hours as seconds: a non-negative number, decimals allowed, at most 90 days.
pub fn parse_hours(s: &str) -> Result<u64, String> {
    let h: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of hours"))?;
    let max = (ls_core::rollover::MAX_OVERLAP_SECS / 3600) as f64;
    if !h.is_finite() || !(0.0..=max).contains(&h) {
        return Err(format!("{s}: 0 to {max} hours (90 days)"));
    }
    Ok((h * 3600.0).round() as u64)
}

/// The partners' signed receipts of what we sent.
#[derive(Args, Debug)]
#[command(
    long_about = "List the documents in sent/ with the state of the partner's signed receipt \
(RFC 2634): waiting, processed (the partner's end system signed that it received, verified and \
stored exactly what we sent; the receipt is sent/<name>.receipt.p7m beside our SignedData \
sent/<name>.signed.p7m), failed (the partner refused it with a signed notice) or not_requested. \
One line each: `<state>TAB<document>TAB<partner>TAB<message id>`.",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec receipts --waiting\n",
        "  layersec receipts --json | jq '.receipts[] | select(.state == \"processed\")'\n\n",
        exit_codes!(),
    ),
)]
pub struct ReceiptsArgs {
    /// Only the documents whose receipt has not come yet.
    #[arg(long)]
    pub waiting: bool,
}

/// Partner certificates: fetch one from the service's directory, add one, list them.
#[derive(Args, Debug)]
#[command(after_long_help = exit_codes!())]
pub struct PartnersArgs {
    #[command(subcommand)]
    pub command: PartnersCommand,
}

#[derive(Subcommand, Debug)]
pub enum PartnersCommand {
    Add(PartnersAddArgs),
    Fetch(PartnersFetchArgs),
    List(PartnersListArgs),
}

/// Add a partner's certificate (checked, valid now) to the partners folder.
#[derive(Args, Debug)]
#[command(
    long_about = "Check that CERT is a certificate that is valid now and make it PARTY's \
certificate, <partners>/PARTY.crt: documents for PARTY are sealed for it, and what PARTY sends \
must be signed with it. A partner's certificate never changes silently: when PARTY already \
has a different one, CERT is refused (exit 5, naming both fingerprints) unless --replace is \
given — compare the new fingerprint with the partner out of band first. The replaced \
certificate is kept in <partners>/PARTY.history/ and no longer accepted, unless \
--keep-previous-hours N (what the partner signed with it before its change is still on its \
way).",
    after_help = "Example:\n  layersec partners add globex globex.crt",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec partners add globex globex.crt\n",
        "  layersec partners add globex globex-2027.crt --replace --keep-previous-hours 48 --json\n\n",
        exit_codes!(),
    ),
)]
pub struct PartnersAddArgs {
    /// The partner's party id at the service.
    #[arg(value_name = "PARTY")]
    pub party: String,

    /// The partner's certificate (PEM or DER).
    #[arg(value_name = "CERT")]
    pub cert: PathBuf,

    /// Replace the partner's different certificate (an explicit operator action).
    #[arg(long)]
    pub replace: bool,

    /// With --replace: keep accepting what the partner signs with the replaced certificate for
    /// N hours.
    #[arg(long, value_name = "N", requires = "replace", value_parser = clap::value_parser!(u64).range(1..=87600))]
    pub keep_previous_hours: Option<u64>,
}

/// Ask the service's directory for a partner's registered certificate and add it.
#[derive(Args, Debug)]
#[command(
    long_about = "Ask the Messaging Service's partner directory for PARTY's registered \
certificate (a request signed with our key; the answer is signed by the service and checked \
against [service] service_certificate), print its SHA-256 fingerprint, subject and validity, \
and — when we have no certificate of PARTY yet — add it (trust on first use: compare the \
fingerprint with the partner out of band). On a terminal it asks first, unless --yes; \
without a terminal (scripts) it adds without asking, since the service is trusted.\n\n\
A certificate we already have is never changed by the directory: the same one is reported \
(exit 0); a different one is a warning naming both fingerprints, ours is kept, and the exit \
status is 12 (JSON: \"changed\": true, \"kept\": <fingerprint>). Replace it on purpose with \
`layersec partners add PARTY CERT --replace`.",
    after_help = "Example:\n  layersec partners fetch globex",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec partners fetch globex\n",
        "  layersec partners fetch globex --yes --json\n",
        "  layersec partners fetch globex --json | jq -r .certificate_pem > globex-new.crt\n\n",
        exit_codes!(),
    ),
)]
pub struct PartnersFetchArgs {
    /// The partner's party id at the service.
    #[arg(value_name = "PARTY")]
    pub party: String,

    /// Add a new partner's certificate without asking, also on a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// List the partners and their certificates.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  layersec partners list --json",
    after_long_help = concat!(
        "Examples:\n",
        "  layersec partners list\n",
        "  layersec partners list --json\n\n",
        exit_codes!(),
    ),
)]
pub struct PartnersListArgs {}

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

    /// `init` and `keygen` list every `--key-type` value they accept, in the short and the
    /// long help.
    #[test]
    fn help_lists_every_key_type() {
        for sub in ["init", "keygen"] {
            let mut cmd = Cli::command();
            let c = cmd.find_subcommand_mut(sub).unwrap();
            let values: Vec<String> = c
                .get_arguments()
                .find(|a| a.get_id() == "key_type")
                .unwrap()
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect();
            let want: Vec<String> = match sub {
                "init" => InitKeyType::value_variants()
                    .iter()
                    .map(|v| v.to_possible_value().unwrap().get_name().to_string())
                    .collect(),
                _ => KeyKind::value_variants()
                    .iter()
                    .map(|v| v.to_possible_value().unwrap().get_name().to_string())
                    .collect(),
            };
            assert_eq!(values, want);
            let short = c.render_help().to_string();
            let long = c.render_long_help().to_string();
            for v in &want {
                assert!(short.contains(v.as_str()), "{sub} -h lacks {v}:\n{short}");
                assert!(
                    long.contains(&format!("- {v}:")),
                    "{sub} --help lacks {v}:\n{long}"
                );
            }
        }
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
