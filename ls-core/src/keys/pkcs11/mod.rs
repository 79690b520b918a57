//! Keys on a PKCS#11 token (an HSM, a smart card, SoftHSM2), behind the [`PrivateKey`] seam,
//! through the `cryptoki` crate. The key never leaves the token: we send it digests to sign,
//! content keys to decrypt and peer points to agree with.
//!
//! - The key is named by an RFC 7512 `pkcs11:` URI ([`Pkcs11Uri`]); the module is given
//!   explicitly (it wins over the URI's `module-path`); the PIN comes from the caller (an
//!   environment variable or a file at the configuration layer), never from the URI.
//! - One module is loaded and initialised once per process ([`module`]); each loaded key keeps
//!   a small pool of sessions on its token, so an operation costs one PKCS#11 call, not an
//!   open/login/close.
//! - Login state belongs to the process per token (PKCS#11 shares it between all of an
//!   application's sessions), so it is kept once per (module, slot) in a process-wide
//!   registry ([`TokenLogin`]): the PIN the token accepted (wiped when dropped), whether the
//!   token refused it since, and a lock that serialises logging in. A key loaded while the
//!   token is logged in already must give that PIN (compared in constant time; a different one
//!   is [`Error::PinIncorrect`] without asking the token, which would answer "already logged
//!   in" to any PIN). A lost login (token removed and put back, logged out) costs one `C_Login`
//!   whatever the number of keys and threads; a PIN refused then is refused for every key on
//!   the token without another `C_Login`.
//! - A wrong PIN is [`Error::PinIncorrect`] and is never retried: each attempt counts towards
//!   the token's lock-out.
//! - Decryption: any failure of `C_Decrypt` itself is [`Error::KeyUnwrapFailed`], never a
//!   re-login or a second `C_Decrypt` (it may depend on the ciphertext's padding: see
//!   `cms::crypto::hidden_decrypt_failure` and [`PrivateKey::usable`]).
//! - ECDH: `CKM_ECDH1_DERIVE` with `CKD_NULL` makes the raw shared secret a session object
//!   (not sensitive, extractable) whose value we read, feed to our own X9.63 KDF, and destroy:
//!   tokens rarely implement CMS's KDF with its SharedInfo. The static key stays on the token;
//!   the per-message secret passes through our memory (wiped when dropped), as it does with a
//!   key in memory.

mod relabel;
mod settings;
mod uri;

pub use settings::{SettingError, TokenSettings};
pub use uri::{without_query, Pkcs11Uri};

use super::private::{PrivateKey, RsaDecryption};
use crate::asn1::{self, tag};
use crate::cms::crypto::{self, Digest, Secret, SigAlg};
use crate::error::{Error, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use openssl::pkey::{Id, PKey, PKeyRef, Public};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use zeroize::Zeroizing;

/// Sessions kept open per key beyond the one that holds the login.
const IDLE_SESSIONS: usize = 4;

/// The loaded, initialised module at `path` (one per process and path: `C_Initialize` may be
/// called once; the module stays loaded for the life of the process).
pub fn module(path: &Path) -> Result<Pkcs11> {
    module_at(path).map(|(_, m)| m)
}

/// [`module`] and its canonical path.
fn module_at(path: &Path) -> Result<(PathBuf, Pkcs11)> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let canonical = std::fs::canonicalize(path).map_err(|e| {
        Error::TokenUnavailable(format!(
            "the PKCS#11 module {} cannot be found ({e})",
            path.display()
        ))
    })?;
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(m) = modules.get(&canonical) {
        return Ok((canonical, m.clone()));
    }
    let m = Pkcs11::new(&canonical).map_err(|e| {
        Error::TokenUnavailable(format!(
            "the PKCS#11 module {} cannot be loaded ({e})",
            path.display()
        ))
    })?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Someone else in this process (another library) initialised it: shared, fine.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::TokenUnavailable(format!(
                "the PKCS#11 module {} does not start ({e})",
                path.display()
            )))
        }
    }
    modules.insert(canonical.clone(), m.clone());
    Ok((canonical, m))
}

/// The login state of one token (module and slot) for the whole process: PKCS#11 keeps the
/// login per application and token, not per session or key.
pub struct TokenLogin {
    state: Mutex<LoginState>,
}

struct LoginState {
    /// The PIN the token accepted from this process (wiped when dropped); `None` while no key
    /// logged in with a PIN here.
    pin: Option<Zeroizing<String>>,
    /// The token refused `pin` when logging in again (PIN changed): never tried again.
    pin_refused: bool,
    /// The last PIN the token refused at a first login (wiped when dropped): not tried again
    /// by this process, so that a caller loading the same identity again and again (a
    /// service retrying a key switch, a binding in a loop) cannot use up the token's tries.
    refused: Option<Zeroizing<String>>,
}

impl TokenLogin {
    /// The registry's entry for the token in `slot` of the module at `canonical`.
    fn of(canonical: &Path, slot: Slot) -> Arc<TokenLogin> {
        type Logins = HashMap<(PathBuf, u64), Arc<TokenLogin>>;
        static LOGINS: OnceLock<Mutex<Logins>> = OnceLock::new();
        LOGINS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((canonical.to_path_buf(), slot.id()))
            .or_insert_with(|| {
                Arc::new(TokenLogin {
                    state: Mutex::new(LoginState {
                        pin: None,
                        pin_refused: false,
                        refused: None,
                    }),
                })
            })
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, LoginState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Log the process in to the token with `pin` (a key being loaded or made), on `session`.
    ///
    /// - Logged in already (by an earlier key): `pin` must be the PIN the token accepted then
    ///   (compared in constant time; only the lengths may show); a different PIN is refused
    ///   without asking the token, which would answer "already logged in" to any PIN.
    /// - Logged in already by another part of the process (another library using the same
    ///   module), with no PIN accepted here: the PIN cannot be checked (`C_Login` would not
    ///   check it), so it is refused — accepting an unchecked PIN would store it for
    ///   re-logins, where a wrong one counts towards the lock-out.
    /// - Not logged in: one `C_Login`, unless the token refused this very PIN before, at a
    ///   login of this process (then refused without asking). A PIN refused here does not
    ///   change what other keys use, but is remembered: the same wrong PIN is never sent twice.
    fn log_in(&self, session: &Session, pin: &str, uri: &Pkcs11Uri) -> Result<()> {
        let mut st = self.state();
        if !logged_in(session)? {
            let refused_now = st.refused.as_deref().is_some_and(|p| same_pin(p, pin));
            if refused_now || st.pin_refused && st.pin.as_deref().is_some_and(|p| same_pin(p, pin))
            {
                return Err(refused_before(uri));
            }
            // `false`: someone else logged in meanwhile; as below.
            match login(session, &AuthPin::new(pin.into()), uri) {
                Ok(true) => {
                    st.pin = Some(Zeroizing::new(pin.to_string()));
                    st.pin_refused = false;
                    st.refused = None;
                    return Ok(());
                }
                Ok(false) => {}
                Err(e @ Error::PinIncorrect(_)) => {
                    if st.pin.as_deref().is_some_and(|p| same_pin(p, pin)) {
                        st.pin_refused = true;
                    }
                    st.refused = Some(Zeroizing::new(pin.to_string()));
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        match st.pin.as_deref() {
            Some(p) if !st.pin_refused && same_pin(p, pin) => Ok(()),
            Some(_) if !st.pin_refused => Err(Error::PinIncorrect(format!(
                "the PIN given for {} is not the one the token accepted from this process \
                 (the token, logged in already, was not asked)",
                uri.describe()
            ))),
            _ => Err(Error::PinIncorrect(format!(
                "the token of {} is logged in already by another part of this process: the \
                 PIN given cannot be checked, so it is not used",
                uri.describe()
            ))),
        }
    }
}

/// Whether the process is logged in to `session`'s token as the user.
fn logged_in(session: &Session) -> Result<bool> {
    let info = session
        .get_session_info()
        .map_err(|e| ck_error(e, "reading the session's state"))?;
    Ok(matches!(
        info.session_state(),
        SessionState::RoUser | SessionState::RwUser
    ))
}

/// Two PINs compared in constant time (for equal lengths).
fn same_pin(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

fn refused_before(uri: &Pkcs11Uri) -> Error {
    Error::PinIncorrect(format!(
        "the token of {} refused the PIN before: load the identity again with the right PIN",
        uri.describe()
    ))
}

/// A private key on a token, used through [`PrivateKey`].
pub struct Pkcs11Key {
    ctx: Pkcs11,
    slot: Slot,
    uri: Pkcs11Uri,
    public: PKey<Public>,
    /// The token's login state, shared by every key of the process on the token.
    login: Arc<TokenLogin>,
    pool: Mutex<Pool>,
}

struct Pool {
    /// The session that holds the login (open while the key lives), then idle ones.
    sessions: Vec<Session>,
    handle: ObjectHandle,
}

/// What an operation on a pooled session came to.
enum Step<T> {
    /// Done; the session goes back to the pool.
    Done(Result<T>),
    /// Done; the session is closed, not pooled (it may hold something it must not keep).
    Close(Result<T>),
    /// The token lost the session, the login or the key's handle before the operation's
    /// input reached it: log in again once and run once more.
    Lost(Error),
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Key({})", self.uri.describe())
    }
}

impl Pkcs11Key {
    /// The private key `uri` names on a token of `module` (else the URI's `module-path`),
    /// logged in with `pin` (`None`: no login, for tokens that need none). Its public key
    /// comes from the token (the private key's modulus for RSA; for EC the public key object
    /// or certificate with the same `CKA_ID` or label).
    pub fn open(uri: &str, module_path: Option<&Path>, pin: Option<&str>) -> Result<Pkcs11Key> {
        let uri = Pkcs11Uri::parse(uri)?;
        let (ctx, slot, canonical) = token(&uri, module_path)?;
        let login = TokenLogin::of(&canonical, slot);
        let needs_pin = ctx
            .get_token_info(slot)
            .map_err(|e| ck_error(e, "reading the token's information"))?
            .login_required();
        if needs_pin && pin.is_none() {
            return Err(Error::InvalidArgument(format!(
                "the token of {} needs a PIN and none was given",
                uri.describe()
            )));
        }
        let session = open_session(&ctx, slot, false)?;
        if let Some(pin) = pin {
            login.log_in(&session, pin, &uri)?;
        }
        let handle = find_one(&session, ObjectClass::PRIVATE_KEY, &uri)?
            .ok_or_else(|| Error::KeyNotFound(format!("no private key {}", uri.describe())))?;
        let public = public_key(&session, handle, &uri)?;
        Ok(Pkcs11Key {
            ctx,
            slot,
            uri,
            public,
            login,
            pool: Mutex::new(Pool {
                sessions: vec![session],
                handle,
            }),
        })
    }

    /// A new key pair of `key_type` on the token of `uri`, labelled with its `object` and
    /// `id`: private, sensitive and never extractable; EC keys sign and agree keys, RSA keys
    /// sign and decrypt.
    pub fn generate(
        uri: &str,
        module_path: Option<&Path>,
        pin: &str,
        key_type: super::KeyType,
    ) -> Result<Pkcs11Key> {
        let parsed = Pkcs11Uri::parse(uri)?;
        let (ctx, slot, canonical) = token(&parsed, module_path)?;
        let session = open_session(&ctx, slot, true)?;
        TokenLogin::of(&canonical, slot).log_in(&session, pin, &parsed)?;
        if find_one(&session, ObjectClass::PRIVATE_KEY, &parsed)?.is_some() {
            return Err(Error::InvalidArgument(format!(
                "the token holds a key {} already",
                parsed.describe()
            )));
        }
        let mut naming = Vec::new();
        if let Some(o) = &parsed.object {
            naming.push(Attribute::Label(o.as_bytes().to_vec()));
        }
        if let Some(id) = &parsed.id {
            naming.push(Attribute::Id(id.clone()));
        }
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
        ];
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ];
        let mech = match key_type {
            super::KeyType::EcP256 => {
                public.push(Attribute::EcParams(asn1::oid(crate::oid::PRIME256V1)));
                private.push(Attribute::Derive(true));
                Mechanism::EccKeyPairGen
            }
            super::KeyType::Rsa(bits) => {
                if !matches!(bits, 2048 | 3072 | 4096) {
                    return Err(Error::InvalidArgument(format!(
                        "RSA key size {bits} is not one of 2048, 3072, 4096"
                    )));
                }
                public.push(Attribute::ModulusBits(u64::from(bits).into()));
                public.push(Attribute::PublicExponent(vec![1, 0, 1]));
                public.push(Attribute::Encrypt(true));
                private.push(Attribute::Decrypt(true));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        public.extend(naming.iter().cloned());
        private.extend(naming);
        session
            .generate_key_pair(&mech, &public, &private)
            .map_err(|e| ck_error(e, "generating a key pair"))?;
        drop(session);
        Self::open(uri, module_path, Some(pin))
    }

    /// The certificate object on the token with the key's label or id.
    pub fn certificate(&self) -> Result<crate::Certificate> {
        self.with_session(|s, _| {
            let h = find_one(s, ObjectClass::CERTIFICATE, &self.uri)?.ok_or_else(|| {
                Error::CertNotFound(format!(
                    "the token holds no certificate {}: give the certificate file",
                    self.uri.describe()
                ))
            })?;
            match s
                .get_attributes(h, &[AttributeType::Value])
                .map_err(|e| ck_error(e, "reading the certificate"))?
                .pop()
            {
                Some(Attribute::Value(der)) => crate::Certificate::from_der(&der),
                _ => Err(Error::CertNotFound(
                    "the token's certificate has no value".into(),
                )),
            }
        })
    }

    /// The key's URI (without query attributes).
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` with the key's handle on a session of the pool (or a new one, logged in
    /// already: the login of the first session holds for all of them). When the token lost
    /// the sessions or the login (removed and put back), the key is found again after one
    /// login (for all keys on the token: [`TokenLogin`]), and `f` runs once more; a token
    /// still absent is [`Error::TokenUnavailable`], a PIN refused then
    /// [`Error::PinIncorrect`] (and not tried again).
    fn with_session<T>(&self, f: impl Fn(&Session, ObjectHandle) -> Result<T>) -> Result<T> {
        self.run(|s, h| match f(s, h) {
            Err(e @ Error::TokenUnavailable(_)) => Step::Lost(e),
            out => Step::Done(out),
        })
    }

    /// [`Self::with_session`] with the operation deciding what becomes of the session and
    /// whether a loss may be repaired and the operation run again.
    fn run<T>(&self, f: impl Fn(&Session, ObjectHandle) -> Step<T>) -> Result<T> {
        let (session, handle) = self.take()?;
        match f(&session, handle) {
            Step::Lost(_) => {
                drop(session);
                self.revive()?;
                let (session, handle) = self.take()?;
                match f(&session, handle) {
                    Step::Done(out) => {
                        self.give_back(session);
                        out
                    }
                    Step::Close(out) => out,
                    Step::Lost(e) => Err(e),
                }
            }
            Step::Done(out) => {
                self.give_back(session);
                out
            }
            Step::Close(out) => out,
        }
    }

    fn take(&self) -> Result<(Session, ObjectHandle)> {
        let (idle, handle) = {
            let mut pool = self.pool();
            let idle = if pool.sessions.len() > 1 {
                pool.sessions.pop()
            } else {
                None
            };
            (idle, pool.handle)
        };
        // The first session stays in the pool and holds the login; operations on it from
        // several threads would need its lock, so each gets a session of its own.
        let session = match idle {
            Some(s) => s,
            None => open_session(&self.ctx, self.slot, false)?,
        };
        Ok((session, handle))
    }

    fn give_back(&self, session: Session) {
        let mut pool = self.pool();
        if pool.sessions.len() <= IDLE_SESSIONS {
            pool.sessions.push(session);
        }
    }

    /// Sessions and login again after the token lost them. Under the token's login lock (one
    /// re-login at a time in the process): if the token is not logged in (no other key or
    /// thread logged in again since the loss), one `C_Login` with the PIN the token accepted
    /// before — none if the token refused it since, for any key —; then the key is found again
    /// and checked to be the same key.
    fn revive(&self) -> Result<()> {
        let mut login = self.login.state();
        if login.pin_refused {
            return Err(refused_before(&self.uri));
        }
        let session = open_session(&self.ctx, self.slot, false)?;
        if let Some(pin) = login.pin.as_deref().map(|p| p.as_str()) {
            if !logged_in(&session)? {
                if let Err(e) = self::login(&session, &AuthPin::new(pin.into()), &self.uri) {
                    login.pin_refused = matches!(e, Error::PinIncorrect(_));
                    return Err(e);
                }
            }
        }
        let handle = find_one(&session, ObjectClass::PRIVATE_KEY, &self.uri)?.ok_or_else(|| {
            Error::KeyNotFound(format!("no private key {} any more", self.uri.describe()))
        })?;
        if !public_key(&session, handle, &self.uri)?.public_eq(&self.public) {
            return Err(Error::KeyNotFound(format!(
                "the key {} on the token is another key now",
                self.uri.describe()
            )));
        }
        let mut pool = self.pool();
        pool.sessions.clear();
        pool.handle = handle;
        pool.sessions.push(session);
        Ok(())
    }

    /// Remove the key pair from the token: the private key and the public key object with the
    /// same label/id. For a key just made by [`Self::generate`] whose certificate could not
    /// be written or registered, so that the same command can be run again; the key cannot
    /// be used afterwards. Nothing else is removed (a certificate object stays).
    pub fn destroy(&self) -> Result<()> {
        let session = open_session(&self.ctx, self.slot, true)?;
        let private = find_one(&session, ObjectClass::PRIVATE_KEY, &self.uri)?;
        let public = find_one(&session, ObjectClass::PUBLIC_KEY, &self.uri)?;
        for h in private.into_iter().chain(public) {
            session
                .destroy_object(h)
                .map_err(|e| ck_error(e, "removing the key from the token"))?;
        }
        Ok(())
    }

    /// Whether the token holds a private key `uri` names (logged in with `pin`).
    pub fn exists(uri: &str, module_path: Option<&Path>, pin: Option<&str>) -> Result<bool> {
        let parsed = Pkcs11Uri::parse(uri)?;
        let session = Self::admin_session(&parsed, module_path, pin)?;
        Ok(find_one(&session, ObjectClass::PRIVATE_KEY, &parsed)?.is_some())
    }

    /// A read-write session on the token of `uri`, logged in with `pin` (once per process).
    fn admin_session(
        uri: &Pkcs11Uri,
        module_path: Option<&Path>,
        pin: Option<&str>,
    ) -> Result<Session> {
        let (ctx, slot, canonical) = token(uri, module_path)?;
        let session = open_session(&ctx, slot, true)?;
        if let Some(pin) = pin {
            TokenLogin::of(&canonical, slot).log_in(&session, pin, uri)?;
        }
        Ok(session)
    }
}

impl PrivateKey for Pkcs11Key {
    fn public_key(&self) -> &PKeyRef<Public> {
        &self.public
    }

    fn location(&self) -> String {
        self.uri.describe()
    }

    fn sign(&self, alg: SigAlg, digest: Digest, data: &[u8]) -> Result<Vec<u8>> {
        let hash = crypto::digest_parts(digest, &[data])?;
        let (mech, input) = match alg {
            SigAlg::Ecdsa => (Mechanism::Ecdsa, hash),
            SigAlg::RsaPkcs1 => (Mechanism::RsaPkcs, digest_info(digest, &hash)),
            SigAlg::RsaPss { hash: h, mgf, salt } => {
                if h != digest {
                    return Err(Error::InvalidArgument(
                        "RSA-PSS with a hash other than the signature's".into(),
                    ));
                }
                let params = PkcsPssParams {
                    hash_alg: mech_of(h),
                    mgf: mgf_of(mgf),
                    s_len: (salt as u64).into(),
                };
                (Mechanism::RsaPkcsPss(params), hash)
            }
            SigAlg::Ed25519 => {
                return Err(Error::UnsupportedKey(
                    "Ed25519 keys on a token are not supported".into(),
                ))
            }
        };
        let sig = self.with_session(|s, key| {
            s.sign(&mech, key, &input)
                .map_err(|e| ck_error(e, "signing"))
        })?;
        match alg {
            SigAlg::Ecdsa => ecdsa_raw_to_der(&sig),
            _ => Ok(sig),
        }
    }

    fn decrypt(&self, padding: &RsaDecryption, enc: &[u8]) -> Result<Secret> {
        if self.public.id() != Id::RSA {
            return Err(Error::NotARecipient(
                "RSA key transport to a non-RSA key".into(),
            ));
        }
        let mech = match padding {
            RsaDecryption::Pkcs1v15 => Mechanism::RsaPkcs,
            RsaDecryption::Oaep { hash, mgf, label } => {
                let source = if label.is_empty() {
                    PkcsOaepSource::empty()
                } else {
                    PkcsOaepSource::data_specified(label)
                };
                Mechanism::RsaPkcsOaep(PkcsOaepParams::new(mech_of(*hash), mgf_of(*mgf), source))
            }
        };
        // Only a failure before the ciphertext reaches the token (`C_DecryptInit`: session,
        // login, handle, mechanism) may be repaired and retried, or told apart. Anything from
        // `C_Decrypt` itself may depend on the padding (smart-card middleware answers bad
        // padding with `CKR_DEVICE_ERROR`, among others): it is `KeyUnwrapFailed`, with no
        // re-login and no second `C_Decrypt`; the caller asks `usable` afterwards.
        self.run(|s, key| match s.decrypt(&mech, key, enc) {
            Ok(v) => Step::Done(Ok(Secret::new(v))),
            Err(e @ CkError::Pkcs11(_, Function::DecryptInit)) => {
                match ck_error(e, "starting the decryption of the content key") {
                    e @ Error::TokenUnavailable(_) => Step::Lost(e),
                    e => Step::Done(Err(e)),
                }
            }
            // The session may be gone with the token, or (a token's oddity) still hold the
            // operation: it is closed, not pooled again. The next operation opens another.
            Err(_) => Step::Close(Err(Error::KeyUnwrapFailed(
                "RSA decryption of the content key failed on the token".into(),
            ))),
        })
    }

    /// Ciphertext-independent: a session of the pool answers `C_GetSessionInfo` and the key's
    /// handle its `CKA_KEY_TYPE` (after one re-login if the token lost the login).
    fn usable(&self) -> Result<()> {
        if self.login.state().pin_refused {
            return Err(refused_before(&self.uri));
        }
        self.with_session(|s, key| {
            s.get_session_info()
                .map_err(|e| ck_error(e, "checking the token after a failed decryption"))?;
            s.get_attributes(key, &[AttributeType::KeyType])
                .map_err(|e| ck_error(e, "checking the key after a failed decryption"))?;
            Ok(())
        })
    }

    fn ecdh(&self, peer: &PKeyRef<Public>) -> Result<Secret> {
        let ec = self
            .public
            .ec_key()
            .map_err(|_| Error::NotARecipient("ECDH to a non-EC key".into()))?;
        let field_bytes = (ec.group().degree() as usize).div_ceil(8);
        let point = crypto::ec_point_bytes(peer)?;
        let params = Ecdh1DeriveParams::new(EcKdf::null(), &point);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen((field_bytes as u64).into()),
        ];
        self.run(|s, key| {
            let z = match s.derive_key(&Mechanism::Ecdh1Derive(params), key, &template) {
                Ok(z) => z,
                Err(e) => {
                    return match ck_error(e, "ECDH") {
                        e @ Error::TokenUnavailable(_) => Step::Lost(e),
                        e => Step::Done(Err(e)),
                    }
                }
            };
            let value = s.get_attributes(z, &[AttributeType::Value]);
            let out = match value.map_err(|e| ck_error(e, "reading the ECDH secret")) {
                Ok(mut v) => match v.pop() {
                    Some(Attribute::Value(v)) => Ok(Secret::new(v)),
                    _ => Err(Error::MechanismUnsupported(
                        "the token does not return the ECDH shared secret".into(),
                    )),
                },
                Err(e) => Err(e),
            };
            // The secret's object goes whatever happened. If it cannot be destroyed, the
            // session is closed (a session object goes with its session) instead of going back
            // to the pool, where the readable secret would live as long as the key. The
            // secret was read (or not) once: no second derivation.
            match s.destroy_object(z) {
                Ok(()) => Step::Done(out),
                Err(_) => Step::Close(out),
            }
        })
    }
}

/// The module and the one slot whose token `uri` names.
fn token(uri: &Pkcs11Uri, module_path: Option<&Path>) -> Result<(Pkcs11, Slot, PathBuf)> {
    let path = match (module_path, &uri.module_path) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => {
            return Err(Error::InvalidArgument(
                "no PKCS#11 module given (module, or module-path in the URI)".into(),
            ))
        }
    };
    let (canonical, ctx) = module_at(&path)?;
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| ck_error(e, "listing the tokens"))?;
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for slot in slots {
        let info = match ctx.get_token_info(slot) {
            Ok(i) => i,
            Err(_) => continue,
        };
        let label = info.label().trim_end().to_string();
        let matches = uri.slot_id.is_none_or(|id| id == slot.id())
            && uri.token.as_deref().is_none_or(|t| t == label)
            && uri
                .manufacturer
                .as_deref()
                .is_none_or(|m| m == info.manufacturer_id().trim_end())
            && uri
                .model
                .as_deref()
                .is_none_or(|m| m == info.model().trim_end())
            && uri
                .serial
                .as_deref()
                .is_none_or(|s| s == info.serial_number().trim_end());
        if matches {
            found.push(slot);
        }
        seen.push(label);
    }
    match found.len() {
        1 => Ok((ctx, found[0], canonical)),
        0 => Err(Error::TokenUnavailable(format!(
            "no token matches {} in {} (tokens present: {})",
            uri.describe(),
            path.display(),
            if seen.is_empty() {
                "none".into()
            } else {
                seen.join(", ")
            }
        ))),
        n => Err(Error::InvalidArgument(format!(
            "{n} tokens match {}: name one with token= (present: {})",
            uri.describe(),
            seen.join(", ")
        ))),
    }
}

fn open_session(ctx: &Pkcs11, slot: Slot, read_write: bool) -> Result<Session> {
    let s = if read_write {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    };
    s.map_err(|e| ck_error(e, "opening a session"))
}

/// One `C_Login`: `true` when the token accepted the PIN, `false` when it was logged in
/// already (the PIN was not checked). A refused PIN is returned at once, never tried again.
fn login(session: &Session, pin: &AuthPin, uri: &Pkcs11Uri) -> Result<bool> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => Ok(true),
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(false),
        Err(CkError::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(Error::PinIncorrect(format!(
            "the token of {} refused the PIN (not tried again: wrong PINs count towards \
                 its lock-out)",
            uri.describe()
        ))),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Error::PinIncorrect(format!(
            "the PIN of the token of {} is locked",
            uri.describe()
        ))),
        Err(CkError::Pkcs11(RvError::PinExpired, _)) => Err(Error::PinIncorrect(format!(
            "the PIN of the token of {} has expired: change it with the token's tools",
            uri.describe()
        ))),
        Err(e) => Err(ck_error(e, "logging in")),
    }
}

/// Every object of `class` that `uri` names (by its label and id).
fn find_all(session: &Session, class: ObjectClass, uri: &Pkcs11Uri) -> Result<Vec<ObjectHandle>> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(o) = &uri.object {
        template.push(Attribute::Label(o.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    session
        .find_objects(&template)
        .map_err(|e| ck_error(e, "looking for the key"))
}

/// The one object of `class` that `uri` names, if any.
fn find_one(
    session: &Session,
    class: ObjectClass,
    uri: &Pkcs11Uri,
) -> Result<Option<ObjectHandle>> {
    let found = find_all(session, class, uri)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(Error::InvalidArgument(format!(
            "{n} objects match {}: name the key with both object= and id=",
            uri.describe()
        ))),
    }
}

/// The public key of the private key `handle`.
fn public_key(session: &Session, handle: ObjectHandle, uri: &Pkcs11Uri) -> Result<PKey<Public>> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::KeyType])
        .map_err(|e| ck_error(e, "reading the key's type"))?;
    let key_type = match attrs.first() {
        Some(Attribute::KeyType(t)) => *t,
        _ => {
            return Err(Error::UnsupportedKey(
                "the token does not say the key's type".into(),
            ))
        }
    };
    if key_type == CkKeyType::RSA {
        return rsa_public_of(session, handle)?.ok_or_else(|| {
            Error::KeyNotFound(format!(
                "the RSA key {} does not show its public key",
                uri.describe()
            ))
        });
    }
    if key_type != CkKeyType::EC {
        return Err(Error::UnsupportedKey(format!(
            "the key {} is neither RSA nor EC",
            uri.describe()
        )));
    }
    if let Some(pubh) = find_one(session, ObjectClass::PUBLIC_KEY, uri)? {
        if let Some(k) = ec_public_of(session, pubh, uri)? {
            return Ok(k);
        }
    }
    if let Some(certh) = find_one(session, ObjectClass::CERTIFICATE, uri)? {
        if let Some(k) = cert_public_of(session, certh)? {
            return Ok(k);
        }
    }
    Err(Error::KeyNotFound(format!(
        "the token holds no public key or certificate for {}",
        uri.describe()
    )))
}

/// The RSA public key in the `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT` of the object `h` (an RSA
/// private or public key); `None` when it does not show them.
fn rsa_public_of(session: &Session, h: ObjectHandle) -> Result<Option<PKey<Public>>> {
    let attrs = session
        .get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])
        .map_err(|e| ck_error(e, "reading the RSA public key"))?;
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    let (Some(n), Some(e)) = (n, e) else {
        return Ok(None);
    };
    let rsa = openssl::rsa::Rsa::from_public_components(
        openssl::bn::BigNum::from_slice(&n)?,
        openssl::bn::BigNum::from_slice(&e)?,
    )?;
    Ok(Some(PKey::from_rsa(rsa)?))
}

/// The EC public key in the `CKA_EC_PARAMS` and `CKA_EC_POINT` of the public key object `h`;
/// `None` when it does not show them.
fn ec_public_of(
    session: &Session,
    h: ObjectHandle,
    uri: &Pkcs11Uri,
) -> Result<Option<PKey<Public>>> {
    let attrs = session
        .get_attributes(h, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|e| ck_error(e, "reading the EC public key"))?;
    let (mut params, mut point) = (None, None);
    for a in attrs {
        match a {
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    let (Some(params), Some(point)) = (params, point) else {
        return Ok(None);
    };
    // CKA_EC_POINT is a DER OCTET STRING (some tokens give the bare point).
    let bare = match asn1::parse_single(&point) {
        Ok(t) if t.tag == tag::OCTET_STRING && t.content.first() == Some(&4) => t.content.to_vec(),
        _ => point,
    };
    let spki = asn1::seq(&[
        &asn1::seq(&[&asn1::oid(crate::oid::EC_PUBLIC_KEY), &params]),
        &asn1::bit_string(&bare),
    ]);
    PKey::public_key_from_der(&spki).map(Some).map_err(|_| {
        Error::UnsupportedKey(format!(
            "the public key of {} is not one OpenSSL reads",
            uri.describe()
        ))
    })
}

/// The public key of the certificate object `h`; `None` when it has no value.
fn cert_public_of(session: &Session, h: ObjectHandle) -> Result<Option<PKey<Public>>> {
    match session
        .get_attributes(h, &[AttributeType::Value])
        .map_err(|e| ck_error(e, "reading the certificate"))?
        .pop()
    {
        Some(Attribute::Value(der)) => crate::Certificate::from_der(&der)?.public_key().map(Some),
        _ => Ok(None),
    }
}

/// A cryptoki failure as ours, with what we were doing.
fn ck_error(e: CkError, doing: &str) -> Error {
    match e {
        CkError::LibraryLoading(e) => Error::TokenUnavailable(format!(
            "{doing}: the PKCS#11 module cannot be loaded ({e})"
        )),
        CkError::Pkcs11(rv, f) => match rv {
            RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::SessionCount
            | RvError::SlotIdInvalid => {
                Error::TokenUnavailable(format!("{doing}: the token is not available ({rv})"))
            }
            // A key handle is valid while the application is logged in (private objects) and
            // the token stays: `with_session` finds the key again once.
            RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Error::TokenUnavailable(
                format!("{doing}: the token no longer knows the key's handle (logged out or put back?) ({rv})"),
            ),
            RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
                Error::MechanismUnsupported(format!("{doing}: {rv}"))
            }
            // Parameters a token refuses when it initialises an operation (SoftHSM2 answers
            // RSA-OAEP with SHA-256 so): the mechanism as asked is not supported.
            RvError::ArgumentsBad
                if matches!(
                    f,
                    Function::DecryptInit | Function::SignInit | Function::DeriveKey
                ) =>
            {
                Error::MechanismUnsupported(format!(
                    "{doing}: the token refuses the parameters ({rv})"
                ))
            }
            RvError::KeyFunctionNotPermitted | RvError::KeyTypeInconsistent => {
                Error::UnsupportedKey(format!("{doing}: the token's key may not do this ({rv})"))
            }
            // The login went with the token (removed and put back) or another part of the
            // process logged out: `with_session` logs in again once.
            RvError::UserNotLoggedIn => Error::TokenUnavailable(format!(
                "{doing}: the token is not logged in (removed and put back, logged out, or no \
                 PIN was given) ({rv})"
            )),
            RvError::PinIncorrect | RvError::PinLocked => {
                Error::PinIncorrect(format!("{doing}: {rv}"))
            }
            _ => Error::Internal(format!("{doing}: PKCS#11 {f}: {rv}")),
        },
        other => Error::Internal(format!("{doing}: PKCS#11: {other}")),
    }
}

fn mech_of(d: Digest) -> MechanismType {
    match d {
        Digest::Sha1 => MechanismType::SHA1,
        Digest::Sha224 => MechanismType::SHA224,
        Digest::Sha256 => MechanismType::SHA256,
        Digest::Sha384 => MechanismType::SHA384,
        Digest::Sha512 => MechanismType::SHA512,
    }
}

fn mgf_of(d: Digest) -> PkcsMgfType {
    match d {
        Digest::Sha1 => PkcsMgfType::MGF1_SHA1,
        Digest::Sha224 => PkcsMgfType::MGF1_SHA224,
        Digest::Sha256 => PkcsMgfType::MGF1_SHA256,
        Digest::Sha384 => PkcsMgfType::MGF1_SHA384,
        Digest::Sha512 => PkcsMgfType::MGF1_SHA512,
    }
}

/// DER `DigestInfo` for an RSA PKCS#1 v1.5 signature over a digest (RFC 8017 §9.2).
fn digest_info(digest: Digest, hash: &[u8]) -> Vec<u8> {
    asn1::seq(&[
        &crypto::alg_id(digest.oid(), Some(&asn1::null())),
        &asn1::octet_string(hash),
    ])
}

/// An ECDSA signature as R ‖ S (PKCS#11) → DER `Ecdsa-Sig-Value`.
fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>> {
    crypto::ecdsa_rs_to_der(raw)?.ok_or_else(|| {
        Error::Internal(format!(
            "the token gave an ECDSA signature of {} bytes",
            raw.len()
        ))
    })
}
