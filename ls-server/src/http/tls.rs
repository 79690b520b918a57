//! The TLS acceptor: OpenSSL, Mozilla "intermediate" settings, optional client certificates.

use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod, SslMode, SslSessionCacheMode, SslVerifyMode};
use openssl::x509::X509;

/// Build the TLS acceptor: Mozilla "intermediate" (v5) settings, TLS 1.2 and 1.3.
///
/// `cert_chain_pem` holds the server certificate first, then any intermediates. `key_pem` is
/// its unencrypted private key, PKCS#8 (`BEGIN PRIVATE KEY`) or traditional
/// (`BEGIN RSA/EC PRIVATE KEY`). With `client_ca_pem`, client certificates issued by those CAs
/// (and only those) are requested and verified, and `require_client_cert` makes them
/// mandatory (handshakes without one fail). The server-side session cache is on, with a
/// session id context, so clients can resume (also with client certificates). Idle
/// connections release their TLS buffers (`SSL_MODE_RELEASE_BUFFERS`).
pub fn tls_acceptor(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
    require_client_cert: bool,
) -> Result<SslAcceptor, String> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| format!("TLS setup failed: {e}"))?;

    let chain = X509::stack_from_pem(cert_chain_pem)
        .map_err(|e| format!("cannot read the certificate chain PEM: {e}"))?;
    let mut chain = chain.into_iter();
    let leaf = chain
        .next()
        .ok_or_else(|| "no certificate in the certificate chain PEM".to_string())?;
    builder
        .set_certificate(&leaf)
        .map_err(|e| format!("cannot use the server certificate: {e}"))?;
    for cert in chain {
        builder
            .add_extra_chain_cert(cert)
            .map_err(|e| format!("cannot add an intermediate certificate: {e}"))?;
    }

    if contains(key_pem, b"ENCRYPTED") {
        return Err("the private key PEM is encrypted; an unencrypted key is required".into());
    }
    // The callback keeps OpenSSL from prompting on the terminal for a passphrase.
    let key = PKey::private_key_from_pem_callback(key_pem, |_| Ok(0))
        .map_err(|e| format!("cannot read the private key PEM: {e}"))?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err("the private key does not match the server certificate".into());
    }
    builder
        .set_private_key(&key)
        .map_err(|e| format!("cannot use the private key: {e}"))?;
    builder
        .check_private_key()
        .map_err(|_| "the private key does not match the server certificate".to_string())?;

    match client_ca_pem {
        None if require_client_cert => {
            return Err("client certificates are required but no client CA was given".into())
        }
        None => {}
        Some(ca_pem) => {
            let cas = X509::stack_from_pem(ca_pem)
                .map_err(|e| format!("cannot read the client CA PEM: {e}"))?;
            if cas.is_empty() {
                return Err("no certificate in the client CA PEM".into());
            }
            for ca in &cas {
                builder
                    .cert_store_mut()
                    .add_cert(ca.clone())
                    .map_err(|e| format!("cannot add a client CA: {e}"))?;
                builder
                    .add_client_ca(ca)
                    .map_err(|e| format!("cannot add a client CA: {e}"))?;
            }
            builder.set_verify(if require_client_cert {
                SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
            } else {
                SslVerifyMode::PEER
            });
        }
    }

    // An idle connection gives its read and write buffers (about 34 KiB) back to the allocator:
    // thousands of kept-alive or silent connections stay cheap.
    builder.set_mode(SslMode::RELEASE_BUFFERS);
    builder.set_session_cache_mode(SslSessionCacheMode::SERVER);
    builder
        .set_session_id_context(b"layersec-server")
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok(builder.build())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
