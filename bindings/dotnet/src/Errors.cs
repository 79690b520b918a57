// The exceptions of the binding and the ls_result codes of layersec.h they map from.
//
// Every failure the library reports becomes a LayerSecException (or a subclass) with the code
// (Code, e.g. 203), its macro name (ResultName, from ls_result_name), its family, the
// library's message (from ls_last_error_message) and whether a retry may succeed (IsTransient,
// from ls_last_error_is_transient). The class follows the code's family, the
// hundreds digit, as the Python binding's does; a code this binding does not know (from a newer
// library) maps by its family, as the header asks.
//
//   LayerSecException                 any code; Family "internal" for 9xx and unknown families
//   ├─ InputException                 1xx argument: arguments, files, passwords
//   │  └─ BadPasswordException        LS_ERR_BAD_PASSWORD
//   ├─ VerificationException          2xx crypto: decryption, signatures, the expected signer
//   ├─ CertificateException           3xx certificates and trust
//   ├─ MalformedMessageException      4xx format: malformed or hostile input
//   ├─ ProtocolException              5xx the message protocol (ebMS3/AS4)
//   ├─ ServiceException               6xx transport: reaching the Messaging Service
//   ├─ ClientStateException           7xx the client's configuration and state
//   └─ InternalException              9xx a bug in the library (please report it)

using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;

namespace LayerSecurity
{
    /// <summary>The stable ls_result codes of layersec.h (append-only there).</summary>
    public static class ResultCode
    {
        public const int Ok = 0;
        public const int NullArgument = 100;
        public const int InvalidArgument = 101;
        public const int IO = 102;
        public const int BadPassword = 103;
        public const int UnsupportedKey = 104;
        public const int PinIncorrect = 105;
        public const int TokenUnavailable = 106;
        public const int KeyNotFound = 107;
        public const int DecryptFailed = 200;
        public const int NotARecipient = 201;
        public const int KeyUnwrapFailed = 202;
        public const int BadSignature = 203;
        public const int SignerMismatch = 204;
        public const int Unsigned = 205;
        public const int DigestMismatch = 206;
        public const int UnsupportedAlgorithm = 207;
        public const int WeakAlgorithm = 208;
        public const int ReceiptMismatch = 209;
        public const int MechanismUnsupported = 210;
        public const int CertExpired = 300;
        public const int CertNotYetValid = 301;
        public const int CertKeyUsage = 302;
        public const int UnknownSigner = 303;
        public const int CertUntrusted = 304;
        public const int CertInvalid = 305;
        public const int KeyCertMismatch = 306;
        public const int CertNotFound = 307;
        public const int Malformed = 400;
        public const int Truncated = 401;
        public const int MalformedMime = 402;
        public const int TooDeep = 403;
        public const int TooLarge = 404;
        public const int DecompressFailed = 405;
        public const int ExpansionTooLarge = 406;
        public const int MustUnderstand = 500;
        public const int SignatureRequired = 501;
        public const int SignatureWrapping = 502;
        public const int UnsignedPart = 503;
        public const int InvalidEbms = 504;
        public const int EbmsError = 505;
        public const int ConnectFailed = 600;
        public const int Timeout = 601;
        public const int TlsFailed = 602;
        public const int HttpStatus = 603;
        public const int BadResponse = 604;
        public const int Refused = 605;
        public const int MailStatus = 606;
        public const int LoginFailed = 607;
        public const int ReceiptPending = 608;
        public const int StateCorrupt = 700;
        public const int ConfigInvalid = 701;
        public const int StateLocked = 702;
        public const int Internal = 900;
        public const int Panic = 901;

        /// <summary>The family of a code (its hundreds digit) as the library's JSON error
        /// objects name it: argument, crypto, certificate, format, protocol, transport, store or
        /// internal.</summary>
        public static string FamilyOf(int code)
        {
            switch (code > 0 ? code / 100 : 0)
            {
                case 1: return "argument";
                case 2: return "crypto";
                case 3: return "certificate";
                case 4: return "format";
                case 5: return "protocol";
                case 6: return "transport";
                case 7: return "store";
                default: return "internal";
            }
        }
    }

    /// <summary>A failure reported by liblayersec. Branch on the type or on <see cref="Code"/>,
    /// not on the message text.</summary>
    public class LayerSecException : Exception
    {
        /// <summary>The ls_result code, e.g. 203.</summary>
        public int Code { get; }

        /// <summary>The code's macro name, e.g. "LS_ERR_BAD_SIGNATURE".</summary>
        public string ResultName { get; }

        /// <summary>The library's explanation (never key material, passwords or document
        /// content).</summary>
        public string Detail { get; }

        /// <summary>The C function that failed, or null.</summary>
        public string Function { get; }

        public LayerSecException(int code, string resultName, string detail, string function = null)
            : this(code, resultName, detail, function, null, false) { }

        public LayerSecException(int code, string resultName, string detail, string function, bool transient)
            : this(code, resultName, detail, function, null, transient) { }

        public LayerSecException(int code, string resultName, string detail, string function,
                                 Exception inner)
            : base(Describe(code, resultName, detail), inner)
        {
            Code = code;
            ResultName = resultName;
            Detail = detail ?? "";
            Function = function;
        }

        /// <summary>As the other constructors, with the library's transience flag
        /// (<see cref="IsTransient"/>).</summary>
        public LayerSecException(int code, string resultName, string detail, string function,
                                 Exception inner, bool transient)
            : this(code, resultName, detail, function, inner)
        {
            this.transient = transient;
        }

        /// <summary>Set only by <see cref="Client.Poll"/> when the poll failed part way: the
        /// documents written to the inbox (and receipted) before the failure. Null otherwise.</summary>
        public IList<Received> Received { get; internal set; }

        /// <summary>The family of <see cref="Code"/>: argument, crypto, certificate, format,
        /// protocol, transport, store or internal.</summary>
        public string Family => ResultCode.FamilyOf(Code);

        /// <summary>Whether the same call may succeed when it is made again later, unchanged, as
        /// the library judged it (ls_last_error_is_transient, read right after the failed
        /// call): the service or mail server could not be reached or timed out, answered HTTP
        /// 5xx, 408 or 429, refused for now, a receipt is still pending, or a send was queued
        /// for retry after such a failure. False for everything else (a refusal, a bad
        /// signature, a TLS failure, a bad argument…). Branch on this, not on the text.</summary>
        public virtual bool IsTransient => transient;

        readonly bool transient;

        static string Describe(int code, string name, string detail)
        {
            var text = $"{name} ({code})";
            return string.IsNullOrEmpty(detail) ? text : $"{text}: {detail}";
        }

        /// <summary>The exception for a code: by the code's family (an unknown family gives a
        /// LayerSecException). <paramref name="transient"/>: the library's
        /// ls_last_error_is_transient for the failed call.</summary>
        public static LayerSecException FromCode(int code, string resultName, string detail,
                                                 string function = null, bool transient = false)
        {
            var t = transient;
            if (code == ResultCode.BadPassword)
                return new BadPasswordException(code, resultName, detail, function, t);
            switch (code > 0 ? code / 100 : 0)
            {
                case 1: return new InputException(code, resultName, detail, function, t);
                case 2: return new VerificationException(code, resultName, detail, function, t);
                case 3: return new CertificateException(code, resultName, detail, function, t);
                case 4: return new MalformedMessageException(code, resultName, detail, function, t);
                case 5: return new ProtocolException(code, resultName, detail, function, t);
                case 6: return new ServiceException(code, resultName, detail, function, t);
                case 7: return new ClientStateException(code, resultName, detail, function, t);
                case 9: return new InternalException(code, resultName, detail, function, t);
                default: return new LayerSecException(code, resultName, detail, function, t);
            }
        }
    }

    /// <summary>1xx: the caller's arguments, files and passwords (LS_ERR_IO for a file that
    /// cannot be read or written).</summary>
    public class InputException : LayerSecException
    {
        public InputException(int code, string resultName, string detail, string function = null,
                               bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }

    /// <summary>LS_ERR_BAD_PASSWORD: the password does not decrypt the key or PKCS#12 file.</summary>
    public class BadPasswordException : InputException
    {
        public BadPasswordException(int code, string resultName, string detail, string function = null,
                                     bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }

    /// <summary>2xx: the message does not decrypt for us or its signature does not verify
    /// against the partner expected (tampered, not for us, signed by someone else, unsigned,
    /// or an algorithm refused).</summary>
    public class VerificationException : LayerSecException
    {
        public VerificationException(int code, string resultName, string detail, string function = null,
                                      bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }

    /// <summary>3xx: certificates and trust (expired, not yet valid, unknown signer…).</summary>
    public class CertificateException : LayerSecException
    {
        public CertificateException(int code, string resultName, string detail, string function = null,
                                     bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }

    /// <summary>4xx: malformed or hostile input (truncated, too deep, too large…).</summary>
    public class MalformedMessageException : LayerSecException
    {
        public MalformedMessageException(int code, string resultName, string detail, string function = null,
                                          bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }

    /// <summary>5xx: the message protocol (ebMS3/AS4, SOAP, WS-Security).</summary>
    public class ProtocolException : LayerSecException
    {
        public ProtocolException(int code, string resultName, string detail, string function = null,
                                  bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }

    /// <summary>6xx: reaching the Messaging Service (connecting, TLS, HTTP, e-mail).
    /// <see cref="LayerSecException.IsTransient"/> says whether a retry may succeed (the
    /// library's judgement, not a rule of this binding).</summary>
    public class ServiceException : LayerSecException
    {
        static readonly Regex HttpStatusText = new Regex(@"HTTP status (\d{3})");

        public ServiceException(int code, string resultName, string detail, string function = null,
                                 bool transient = false)
            : base(code, resultName, detail, function, transient) { }

        /// <summary>The HTTP status of an LS_ERR_HTTP_STATUS, read from the library's message
        /// ("HTTP status 503: …"), or null. For display and logs: whether to retry is
        /// <see cref="LayerSecException.IsTransient"/>.</summary>
        public int? HttpStatus
        {
            get
            {
                if (Code != ResultCode.HttpStatus) return null;
                var m = HttpStatusText.Match(Detail);
                return m.Success ? int.Parse(m.Groups[1].Value) : (int?)null;
            }
        }
    }

    /// <summary>7xx: the client's configuration and local state (LS_ERR_CONFIG_INVALID,
    /// LS_ERR_STATE_CORRUPT, LS_ERR_STATE_LOCKED).</summary>
    public class ClientStateException : LayerSecException
    {
        public ClientStateException(int code, string resultName, string detail, string function = null,
                                     bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }

    /// <summary>9xx: a bug in the library (please report it).</summary>
    public class InternalException : LayerSecException
    {
        public InternalException(int code, string resultName, string detail, string function = null,
                                  bool transient = false)
            : base(code, resultName, detail, function, transient) { }
    }
}
