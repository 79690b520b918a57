using System;

namespace LayerSecurity
{
    /// <summary>The key algorithm of <see cref="Identity.Generate"/> (LS_KEY_* of layersec.h).</summary>
    public enum KeyType : uint
    {
        Rsa2048 = 1,
        Rsa3072 = 2,
        Rsa4096 = 3,
        EcP256 = 4,
    }

    /// <summary>Our own identity (ls_identity): a private key, its certificate and the chain
    /// to its CA. Immutable: any number of threads may use one at once. Dispose frees it and
    /// its private key (at once, or when the calls using it right now return); using it
    /// afterwards throws ObjectDisposedException.
    ///
    /// Passwords are taken as char[] only (a string cannot be wiped): the binding makes one
    /// UTF-8 copy, pinned before it is filled, and zeroes it when the call returns; it keeps no
    /// reference to the password. Wipe your char[] afterwards (Array.Clear).</summary>
    public sealed class Identity : IDisposable
    {
        internal readonly IdentityHandle Handle;
        readonly object certLock = new object();
        Certificate cert;

        Identity(IdentityHandle handle)
        {
            if (handle == null || handle.IsInvalid)
                throw new InternalException(ResultCode.Internal, "LS_ERR_INTERNAL", "the library returned a NULL identity");
            Handle = handle;
        }

        /// <summary>Loads a PKCS#12 file (then <paramref name="certPath"/> is ignored) or a PEM
        /// private key (PKCS#8, encrypted PKCS#8 or PKCS#1) with its PEM certificate(s) in
        /// <paramref name="certPath"/> (null: in the key file). <paramref name="password"/>
        /// (nullable) decrypts an encrypted key or the PKCS#12 file.</summary>
        public static Identity Load(string keyPath, string certPath = null, char[] password = null)
        {
            Interop.EnsureLoaded();
            var k = Interop.Utf8Required(keyPath, nameof(keyPath));
            var c = Interop.Utf8(certPath, nameof(certPath));
            using (var pins = new Pins())
            {
                IdentityHandle h;
                Interop.Check(Native.ls_identity_load(k, c, pins.Password(password), out h), "ls_identity_load");
                return new Identity(h);
            }
        }

        /// <summary>Loads an identity whose private key stays on a PKCS#11 token (an HSM, a
        /// smart card, SoftHSM2): <paramref name="uri"/> is an RFC 7512 <c>pkcs11:</c> URI naming
        /// the token and the key (a <c>pin-value</c> in it is refused); <paramref name="modulePath"/>
        /// (nullable) the PKCS#11 module, which wins over a <c>module-path</c> in the URI;
        /// <paramref name="pin"/> (nullable: no login) the user PIN, tried once (zeroed after the
        /// call); <paramref name="certPath"/> (nullable) the PEM certificate, else the token's
        /// certificate object of the key. Signs and decrypts through the token; see
        /// <c>ls_identity_load_pkcs11</c> in layersec.h for the errors (a wrong PIN, a token
        /// absent — transient —, a key not found).</summary>
        public static Identity LoadPkcs11(string uri, string modulePath = null, char[] pin = null, string certPath = null)
        {
            Interop.EnsureLoaded();
            var u = Interop.Utf8Required(uri, nameof(uri));
            var m = Interop.Utf8(modulePath, nameof(modulePath));
            var c = Interop.Utf8(certPath, nameof(certPath));
            using (var pins = new Pins())
            {
                IdentityHandle h;
                Interop.Check(Native.ls_identity_load_pkcs11(u, m, pins.Password(pin), c, out h), "ls_identity_load_pkcs11");
                return new Identity(h);
            }
        }

        /// <summary>Like <see cref="Load"/>, from memory:
        /// <paramref name="key"/> is PKCS#12 DER or a PEM key; <paramref name="certPem"/> (nullable)
        /// the PEM certificate(s) for a PEM key.</summary>
        public static Identity FromBytes(byte[] key, byte[] certPem = null, char[] password = null)
        {
            if (key == null) throw new ArgumentNullException(nameof(key));
            Interop.EnsureLoaded();
            using (var pins = new Pins())
            {
                IdentityHandle h;
                Interop.Check(Native.ls_identity_from_memory(key, Interop.Len(key), certPem, Interop.Len(certPem),
                                                             pins.Password(password), out h),
                              "ls_identity_from_memory");
                return new Identity(h);
            }
        }

        /// <summary>A new key pair with a self-signed certificate (CN = <paramref name="partyId"/>,
        /// 1 to 64 printable characters) valid for <paramref name="days"/> days (0: expires at
        /// once, for tests) and a CSR. <paramref name="keyPassword"/> (nullable) encrypts the key
        /// PEM that <see cref="KeyPem"/> exports. RSA keys take up to a few seconds.</summary>
        public static Identity Generate(string partyId, KeyType keyType = KeyType.Rsa3072, uint days = 730,
                                        char[] keyPassword = null)
        {
            Interop.EnsureLoaded();
            var id = Interop.Utf8Required(partyId, nameof(partyId));
            using (var pins = new Pins())
            {
                IdentityHandle h;
                Interop.Check(Native.ls_identity_generate(id, (uint)keyType, days, pins.Password(keyPassword), out h),
                              "ls_identity_generate");
                return new Identity(h);
            }
        }

        /// <summary>Our certificate: the same object on every access until someone disposes it
        /// (it is independent of the identity: disposing the identity leaves it usable).</summary>
        public Certificate Certificate
        {
            get
            {
                ThrowIfDisposed();
                lock (certLock)
                {
                    if (cert != null && !cert.IsDisposed) return cert;
                    CertHandle h;
                    Interop.Check(Native.ls_identity_cert(Handle, out h), "ls_identity_cert");
                    cert = new Certificate(h);
                    return cert;
                }
            }
        }

        /// <summary>The private key of a generated identity as PKCS#8 PEM, encrypted when a
        /// password was given to <see cref="Generate"/>. An InputException (LS_ERR_INVALID_ARGUMENT)
        /// for a loaded identity.</summary>
        public byte[] KeyPem()
        {
            ThrowIfDisposed();
            return Interop.Bytes("ls_identity_key_pem", (out LsBytes b) => Native.ls_identity_key_pem(Handle, out b));
        }

        /// <summary>The certificate signing request (PEM) of a generated identity.</summary>
        public byte[] CsrPem()
        {
            ThrowIfDisposed();
            return Interop.Bytes("ls_identity_csr_pem", (out LsBytes b) => Native.ls_identity_csr_pem(Handle, out b));
        }

        /// <summary>Whether the private key is on a PKCS#11 token (<see cref="LoadPkcs11"/>)
        /// rather than in this process's memory (<c>ls_identity_is_on_token</c>). Sealing and
        /// opening with such an identity wait on the token.</summary>
        public bool IsOnToken
        {
            get
            {
                ThrowIfDisposed();
                return Native.ls_identity_is_on_token(Handle) == 1;
            }
        }

        public bool IsDisposed => Handle.IsClosed;

        /// <summary>Frees the identity and its private key. The <see cref="Certificate"/> handed
        /// out stays usable; dispose it on its own.</summary>
        public void Dispose() => Handle.Dispose();

        internal void ThrowIfDisposed()
        {
            if (Handle.IsClosed) throw new ObjectDisposedException(nameof(Identity));
        }
    }
}
