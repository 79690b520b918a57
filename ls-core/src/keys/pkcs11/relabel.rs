//! Moving a key pair on a token to another label: a key rollover on the token moves the
//! configured label from the old key pair to the new one ([`Pkcs11Key::relabel`]).
//!
//! Only the one private key the URI names moves, with the public key and certificate objects
//! that carry its public key. Other objects with the same label (another tool's key, a CA
//! certificate, a second key made under an id-less URI) are left alone: the label a URI gives
//! is not proof that an object belongs to a key, and keys may share a `CKA_ID` (the new key of
//! a rollover gets the old one's).

use super::{
    cert_public_of, ck_error, ec_public_of, find_all, rsa_public_of, Pkcs11Key, Pkcs11Uri,
};
use crate::error::{Error, Result};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use openssl::pkey::{PKey, Public};
use std::path::Path;

impl Pkcs11Key {
    /// The key pair `uri` names by its label (and id) gets the label `label`: its private key
    /// first, then the public key and certificate objects `uri` names whose public key is the
    /// private key's (for RSA its modulus and exponent; for EC, whose token shows no public
    /// point on the private key, a signature by the private key over a random digest must
    /// verify with it). Returns the number of objects renamed. Logs in with `pin` as
    /// [`Self::open`] does.
    ///
    /// - More than one private key named by `uri`: refused ([`Error::InvalidArgument`]),
    ///   nothing renamed.
    /// - None: the key moved already (0), or a relabel was interrupted after its private key
    ///   moved — the one private key named by `label` (and the id) — and what is left of its
    ///   pair under the old label moves now. So each step can be repeated after a crash.
    /// - Objects with the label that are not the key's are not renamed.
    pub fn relabel(
        uri: &str,
        module_path: Option<&Path>,
        pin: Option<&str>,
        label: &str,
    ) -> Result<usize> {
        let parsed = Pkcs11Uri::parse(uri)?;
        if parsed.object.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{}: only a key named by its label (object=) can be renamed",
                parsed.describe()
            )));
        }
        let target = Pkcs11Uri {
            object: Some(label.to_string()),
            ..parsed.clone()
        };
        let session = Self::admin_session(&parsed, module_path, pin)?;
        let (key, moves) = match find_all(&session, ObjectClass::PRIVATE_KEY, &parsed)?[..] {
            [h] => (h, true),
            [] => match find_all(&session, ObjectClass::PRIVATE_KEY, &target)?[..] {
                [h] => (h, false),
                [] => return Ok(0),
                ref many => return Err(ambiguous(many.len(), &target)),
            },
            ref many => return Err(ambiguous(many.len(), &parsed)),
        };
        let mut plan = Vec::new();
        if moves {
            plan.push(key);
        }
        let mut owner = Owner::new(&session, key, &parsed)?;
        for class in [ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE] {
            for h in find_all(&session, class, &parsed)? {
                if owner.holds(&session, class, h, &parsed)? {
                    plan.push(h);
                }
            }
        }
        for &h in &plan {
            session
                .update_attributes(h, &[Attribute::Label(label.as_bytes().to_vec())])
                .map_err(|e| ck_error(e, "renaming the key on the token"))?;
        }
        Ok(plan.len())
    }
}

fn ambiguous(n: usize, uri: &Pkcs11Uri) -> Error {
    Error::InvalidArgument(format!(
        "{n} private keys match {}: nothing was renamed (name the key with both object= and \
         id=, or remove the key that is not ours with the token's tools)",
        uri.describe()
    ))
}

/// What tells that an object carries the public key of the private key `key`.
struct Owner {
    key: ObjectHandle,
    kind: OwnerKey,
}

enum OwnerKey {
    /// The private key shows its public key (RSA).
    Known(PKey<Public>),
    /// EC: a random digest and the private key's ECDSA signature of it (R ‖ S), made when
    /// the first candidate is checked.
    Ec(Option<([u8; 32], Vec<u8>)>),
}

impl Owner {
    fn new(session: &Session, key: ObjectHandle, uri: &Pkcs11Uri) -> Result<Owner> {
        let kind = match session
            .get_attributes(key, &[AttributeType::KeyType])
            .map_err(|e| ck_error(e, "reading the key's type"))?
            .first()
        {
            Some(Attribute::KeyType(t)) if *t == CkKeyType::RSA => {
                OwnerKey::Known(rsa_public_of(session, key)?.ok_or_else(|| {
                    Error::KeyNotFound(format!(
                        "the RSA key {} does not show its public key",
                        uri.describe()
                    ))
                })?)
            }
            Some(Attribute::KeyType(t)) if *t == CkKeyType::EC => OwnerKey::Ec(None),
            _ => {
                return Err(Error::UnsupportedKey(format!(
                    "the key {} is neither RSA nor EC",
                    uri.describe()
                )))
            }
        };
        Ok(Owner { key, kind })
    }

    /// Whether the object `h` of `class` (a public key or a certificate) carries the owner's
    /// public key. An object whose public key cannot be read is not the owner's.
    fn holds(
        &mut self,
        session: &Session,
        class: ObjectClass,
        h: ObjectHandle,
        uri: &Pkcs11Uri,
    ) -> Result<bool> {
        let read = if class == ObjectClass::CERTIFICATE {
            cert_public_of(session, h)
        } else {
            match session.get_attributes(h, &[AttributeType::KeyType]) {
                Ok(a) => match a.first() {
                    Some(Attribute::KeyType(t)) if *t == CkKeyType::RSA => {
                        rsa_public_of(session, h)
                    }
                    Some(Attribute::KeyType(t)) if *t == CkKeyType::EC => {
                        ec_public_of(session, h, uri)
                    }
                    _ => Ok(None),
                },
                Err(e) => Err(ck_error(e, "reading a public key's type")),
            }
        };
        let candidate = match read {
            Ok(Some(k)) => k,
            Ok(None) => return Ok(false),
            // The token went away: not a judgement on the object.
            Err(e @ Error::TokenUnavailable(_)) => return Err(e),
            Err(_) => return Ok(false),
        };
        match &mut self.kind {
            OwnerKey::Known(k) => Ok(candidate.public_eq(k)),
            OwnerKey::Ec(proof) => {
                let (digest, sig) = match proof {
                    Some(p) => p,
                    None => {
                        let mut digest = [0u8; 32];
                        openssl::rand::rand_bytes(&mut digest)?;
                        let sig = session
                            .sign(&Mechanism::Ecdsa, self.key, &digest)
                            .map_err(|e| ck_error(e, "telling the key's own objects apart"))?;
                        proof.insert((digest, sig))
                    }
                };
                Ok(ec_signed_by(&candidate, digest, sig))
            }
        }
    }
}

/// Whether the ECDSA signature `sig` (R ‖ S) of `digest` verifies with `key`.
fn ec_signed_by(key: &PKey<Public>, digest: &[u8], sig: &[u8]) -> bool {
    let Ok(ec) = key.ec_key() else {
        return false;
    };
    if sig.is_empty() || sig.len() % 2 != 0 {
        return false;
    }
    let (r, s) = sig.split_at(sig.len() / 2);
    let parsed = openssl::bn::BigNum::from_slice(r)
        .and_then(|r| Ok((r, openssl::bn::BigNum::from_slice(s)?)))
        .and_then(|(r, s)| openssl::ecdsa::EcdsaSig::from_private_components(r, s));
    parsed.is_ok_and(|sig| sig.verify(digest, &ec).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::ec_signed_by;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::ecdsa::EcdsaSig;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;

    #[test]
    fn an_ec_public_key_is_the_signers_only() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let public = |k: &EcKey<openssl::pkey::Private>| {
            PKey::from_ec_key(EcKey::from_public_key(&group, k.public_key()).unwrap()).unwrap()
        };
        let signer = EcKey::generate(&group).unwrap();
        let other = EcKey::generate(&group).unwrap();
        let digest = [7u8; 32];
        let sig = EcdsaSig::sign(&digest, &signer).unwrap();
        // As a token gives it: R ‖ S, each as long as the curve's order.
        let mut raw = sig.r().to_vec_padded(32).unwrap();
        raw.extend(sig.s().to_vec_padded(32).unwrap());
        assert!(ec_signed_by(&public(&signer), &digest, &raw));
        assert!(!ec_signed_by(&public(&other), &digest, &raw));
        assert!(!ec_signed_by(&public(&signer), &[8u8; 32], &raw));
        assert!(!ec_signed_by(&public(&signer), &digest, &raw[1..]));
        assert!(!ec_signed_by(&public(&signer), &digest, &[]));
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let rsa_public = PKey::public_key_from_der(&rsa.public_key_to_der().unwrap()).unwrap();
        assert!(!ec_signed_by(&rsa_public, &digest, &raw));
    }
}
