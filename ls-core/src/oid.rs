//! Object identifiers used by CMS/S-MIME, as DER content octets (generated from the dotted
//! forms beside each; `name` maps them back for messages and `inspect`).

#![allow(dead_code)]

/// 1.2.840.113549.1.7.1 id-data
pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x7, 0x1];
/// 1.2.840.113549.1.7.2 id-signedData
pub const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x7, 0x2];
/// 1.2.840.113549.1.7.3 id-envelopedData
pub const ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x7, 0x3];
/// 1.2.840.113549.1.9.16.1.23 id-ct-authEnvelopedData
pub const AUTH_ENVELOPED_DATA: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x10, 0x1, 0x17];
/// 1.2.840.113549.1.9.16.1.9 id-ct-compressedData
pub const COMPRESSED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x10, 0x1, 0x9];
/// 1.2.840.113549.1.9.16.3.8 id-alg-zlibCompress
pub const ZLIB: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x10, 0x3, 0x8];
/// 1.2.840.113549.1.9.16.1.1 id-ct-receipt
pub const CT_RECEIPT: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x10, 0x1, 0x1];
/// 1.2.840.113549.1.9.16.2.1 id-aa-receiptRequest
pub const ATTR_RECEIPT_REQUEST: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x10, 0x2, 0x1];
/// 1.2.840.113549.1.9.16.2.5 id-aa-msgSigDigest
pub const ATTR_MSG_SIG_DIGEST: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x10, 0x2, 0x5];
/// 1.2.840.113549.1.9.3 contentType
pub const ATTR_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x3];
/// 1.2.840.113549.1.9.4 messageDigest
pub const ATTR_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x4];
/// 1.2.840.113549.1.9.5 signingTime
pub const ATTR_SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x5];
/// 1.2.840.113549.1.9.15 smimeCapabilities
pub const ATTR_SMIME_CAPABILITIES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0xf];
/// 1.2.840.113549.1.9.52 cmsAlgorithmProtection
pub const ATTR_CMS_ALG_PROTECTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x34];
/// 1.3.14.3.2.26 sha1
pub const SHA1: &[u8] = &[0x2b, 0xe, 0x3, 0x2, 0x1a];
/// 2.16.840.1.101.3.4.2.4 sha224
pub const SHA224: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x2, 0x4];
/// 2.16.840.1.101.3.4.2.1 sha256
pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x2, 0x1];
/// 2.16.840.1.101.3.4.2.2 sha384
pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x2, 0x2];
/// 2.16.840.1.101.3.4.2.3 sha512
pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x2, 0x3];
/// 1.2.840.113549.2.5 md5
pub const MD5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x2, 0x5];
/// 1.2.840.113549.1.1.1 rsaEncryption
pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0x1];
/// 1.2.840.113549.1.1.7 id-RSAES-OAEP
pub const RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0x7];
/// 1.2.840.113549.1.1.8 id-mgf1
pub const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0x8];
/// 1.2.840.113549.1.1.9 id-pSpecified
pub const P_SPECIFIED: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0x9];
/// 1.2.840.113549.1.1.10 id-RSASSA-PSS
pub const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0xa];
/// 1.2.840.113549.1.1.5 sha1WithRSAEncryption
pub const SHA1_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0x5];
/// 1.2.840.113549.1.1.11 sha256WithRSAEncryption
pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0xb];
/// 1.2.840.113549.1.1.12 sha384WithRSAEncryption
pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0xc];
/// 1.2.840.113549.1.1.13 sha512WithRSAEncryption
pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0xd];
/// 1.2.840.113549.1.1.14 sha224WithRSAEncryption
pub const SHA224_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x1, 0xe];
/// 1.2.840.10045.2.1 id-ecPublicKey
pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x2, 0x1];
/// 1.2.840.10045.3.1.7 prime256v1
pub const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x3, 0x1, 0x7];
/// 1.3.132.0.34 secp384r1
pub const SECP384R1: &[u8] = &[0x2b, 0x81, 0x4, 0x0, 0x22];
/// 1.3.132.0.35 secp521r1
pub const SECP521R1: &[u8] = &[0x2b, 0x81, 0x4, 0x0, 0x23];
/// 1.2.840.10045.4.1 ecdsa-with-SHA1
pub const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x4, 0x1];
/// 1.2.840.10045.4.3.1 ecdsa-with-SHA224
pub const ECDSA_SHA224: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x4, 0x3, 0x1];
/// 1.2.840.10045.4.3.2 ecdsa-with-SHA256
pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x4, 0x3, 0x2];
/// 1.2.840.10045.4.3.3 ecdsa-with-SHA384
pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x4, 0x3, 0x3];
/// 1.2.840.10045.4.3.4 ecdsa-with-SHA512
pub const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x4, 0x3, 0x4];
/// 1.3.133.16.840.63.0.2 dhSinglePass-stdDH-sha1kdf-scheme
pub const ECDH_STD_SHA1KDF: &[u8] = &[0x2b, 0x81, 0x5, 0x10, 0x86, 0x48, 0x3f, 0x0, 0x2];
/// 1.3.132.1.11.0 dhSinglePass-stdDH-sha224kdf-scheme
pub const ECDH_STD_SHA224KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xb, 0x0];
/// 1.3.132.1.11.1 dhSinglePass-stdDH-sha256kdf-scheme
pub const ECDH_STD_SHA256KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xb, 0x1];
/// 1.3.132.1.11.2 dhSinglePass-stdDH-sha384kdf-scheme
pub const ECDH_STD_SHA384KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xb, 0x2];
/// 1.3.132.1.11.3 dhSinglePass-stdDH-sha512kdf-scheme
pub const ECDH_STD_SHA512KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xb, 0x3];
/// 1.3.133.16.840.63.0.3 dhSinglePass-cofactorDH-sha1kdf-scheme
pub const ECDH_COFACTOR_SHA1KDF: &[u8] = &[0x2b, 0x81, 0x5, 0x10, 0x86, 0x48, 0x3f, 0x0, 0x3];
/// 1.3.132.1.14.0 dhSinglePass-cofactorDH-sha224kdf-scheme
pub const ECDH_COFACTOR_SHA224KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xe, 0x0];
/// 1.3.132.1.14.1 dhSinglePass-cofactorDH-sha256kdf-scheme
pub const ECDH_COFACTOR_SHA256KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xe, 0x1];
/// 1.3.132.1.14.2 dhSinglePass-cofactorDH-sha384kdf-scheme
pub const ECDH_COFACTOR_SHA384KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xe, 0x2];
/// 1.3.132.1.14.3 dhSinglePass-cofactorDH-sha512kdf-scheme
pub const ECDH_COFACTOR_SHA512KDF: &[u8] = &[0x2b, 0x81, 0x4, 0x1, 0xe, 0x3];
/// 2.16.840.1.101.3.4.1.5 id-aes128-wrap
pub const AES128_WRAP: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x5];
/// 2.16.840.1.101.3.4.1.25 id-aes192-wrap
pub const AES192_WRAP: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x19];
/// 2.16.840.1.101.3.4.1.45 id-aes256-wrap
pub const AES256_WRAP: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x2d];
/// 2.16.840.1.101.3.4.1.2 aes128-CBC
pub const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x2];
/// 2.16.840.1.101.3.4.1.22 aes192-CBC
pub const AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x16];
/// 2.16.840.1.101.3.4.1.42 aes256-CBC
pub const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x2a];
/// 2.16.840.1.101.3.4.1.6 aes128-GCM
pub const AES128_GCM: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x6];
/// 2.16.840.1.101.3.4.1.26 aes192-GCM
pub const AES192_GCM: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x1a];
/// 2.16.840.1.101.3.4.1.46 aes256-GCM
pub const AES256_GCM: &[u8] = &[0x60, 0x86, 0x48, 0x1, 0x65, 0x3, 0x4, 0x1, 0x2e];
/// 1.2.840.113549.3.7 des-ede3-cbc
pub const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x3, 0x7];
/// 1.2.840.113549.3.2 rc2-cbc
pub const RC2_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x3, 0x2];
/// 1.3.14.3.2.7 des-cbc
pub const DES_CBC: &[u8] = &[0x2b, 0xe, 0x3, 0x2, 0x7];
/// 1.2.840.113549.1.9.16.3.18 id-alg-AEADChaCha20Poly1305
pub const CHACHA20_POLY1305: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0xd, 0x1, 0x9, 0x10, 0x3, 0x12];
/// 1.3.101.112 Ed25519
pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// 1.3.101.110 X25519
pub const X25519: &[u8] = &[0x2b, 0x65, 0x6e];
/// 2.5.4.3 commonName
pub const CN: &[u8] = &[0x55, 0x4, 0x3];
/// 2.5.29.15 keyUsage
pub const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0xf];
/// 2.5.29.14 subjectKeyIdentifier
pub const EXT_SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0xe];
/// 2.5.29.19 basicConstraints
pub const EXT_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// A readable name for an OID (its dotted form when unknown).
pub fn name(oid: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (DATA, "id-data"),
        (SIGNED_DATA, "id-signedData"),
        (ENVELOPED_DATA, "id-envelopedData"),
        (AUTH_ENVELOPED_DATA, "id-ct-authEnvelopedData"),
        (COMPRESSED_DATA, "id-ct-compressedData"),
        (ZLIB, "id-alg-zlibCompress"),
        (CT_RECEIPT, "id-ct-receipt"),
        (ATTR_RECEIPT_REQUEST, "id-aa-receiptRequest"),
        (ATTR_MSG_SIG_DIGEST, "id-aa-msgSigDigest"),
        (ATTR_CONTENT_TYPE, "contentType"),
        (ATTR_MESSAGE_DIGEST, "messageDigest"),
        (ATTR_SIGNING_TIME, "signingTime"),
        (ATTR_SMIME_CAPABILITIES, "smimeCapabilities"),
        (ATTR_CMS_ALG_PROTECTION, "cmsAlgorithmProtection"),
        (SHA1, "sha1"),
        (SHA224, "sha224"),
        (SHA256, "sha256"),
        (SHA384, "sha384"),
        (SHA512, "sha512"),
        (MD5, "md5"),
        (RSA_ENCRYPTION, "rsaEncryption"),
        (RSAES_OAEP, "id-RSAES-OAEP"),
        (MGF1, "id-mgf1"),
        (P_SPECIFIED, "id-pSpecified"),
        (RSASSA_PSS, "id-RSASSA-PSS"),
        (SHA1_WITH_RSA, "sha1WithRSAEncryption"),
        (SHA256_WITH_RSA, "sha256WithRSAEncryption"),
        (SHA384_WITH_RSA, "sha384WithRSAEncryption"),
        (SHA512_WITH_RSA, "sha512WithRSAEncryption"),
        (SHA224_WITH_RSA, "sha224WithRSAEncryption"),
        (EC_PUBLIC_KEY, "id-ecPublicKey"),
        (PRIME256V1, "prime256v1"),
        (SECP384R1, "secp384r1"),
        (SECP521R1, "secp521r1"),
        (ECDSA_SHA1, "ecdsa-with-SHA1"),
        (ECDSA_SHA224, "ecdsa-with-SHA224"),
        (ECDSA_SHA256, "ecdsa-with-SHA256"),
        (ECDSA_SHA384, "ecdsa-with-SHA384"),
        (ECDSA_SHA512, "ecdsa-with-SHA512"),
        (ECDH_STD_SHA1KDF, "dhSinglePass-stdDH-sha1kdf-scheme"),
        (ECDH_STD_SHA224KDF, "dhSinglePass-stdDH-sha224kdf-scheme"),
        (ECDH_STD_SHA256KDF, "dhSinglePass-stdDH-sha256kdf-scheme"),
        (ECDH_STD_SHA384KDF, "dhSinglePass-stdDH-sha384kdf-scheme"),
        (ECDH_STD_SHA512KDF, "dhSinglePass-stdDH-sha512kdf-scheme"),
        (
            ECDH_COFACTOR_SHA1KDF,
            "dhSinglePass-cofactorDH-sha1kdf-scheme",
        ),
        (
            ECDH_COFACTOR_SHA224KDF,
            "dhSinglePass-cofactorDH-sha224kdf-scheme",
        ),
        (
            ECDH_COFACTOR_SHA256KDF,
            "dhSinglePass-cofactorDH-sha256kdf-scheme",
        ),
        (
            ECDH_COFACTOR_SHA384KDF,
            "dhSinglePass-cofactorDH-sha384kdf-scheme",
        ),
        (
            ECDH_COFACTOR_SHA512KDF,
            "dhSinglePass-cofactorDH-sha512kdf-scheme",
        ),
        (AES128_WRAP, "id-aes128-wrap"),
        (AES192_WRAP, "id-aes192-wrap"),
        (AES256_WRAP, "id-aes256-wrap"),
        (AES128_CBC, "aes128-CBC"),
        (AES192_CBC, "aes192-CBC"),
        (AES256_CBC, "aes256-CBC"),
        (AES128_GCM, "aes128-GCM"),
        (AES192_GCM, "aes192-GCM"),
        (AES256_GCM, "aes256-GCM"),
        (DES_EDE3_CBC, "des-ede3-cbc"),
        (RC2_CBC, "rc2-cbc"),
        (DES_CBC, "des-cbc"),
        (CHACHA20_POLY1305, "id-alg-AEADChaCha20Poly1305"),
        (ED25519, "Ed25519"),
        (X25519, "X25519"),
        (CN, "commonName"),
        (EXT_KEY_USAGE, "keyUsage"),
        (EXT_SUBJECT_KEY_ID, "subjectKeyIdentifier"),
        (EXT_BASIC_CONSTRAINTS, "basicConstraints"),
    ];
    known
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| crate::asn1::oid_to_string(oid))
}
