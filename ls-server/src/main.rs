//! `layersec-server`: the Messaging Service executable.
//!
//! - `init` writes a commented configuration, a self-signed TLS certificate, the service's
//!   signing identity and an admin token;
//! - `serve` runs the AS4 endpoint (and the admin API);
//! - `admin …` does the provider's operations on the store directly.

use clap::{Args, Parser, Subcommand};
use ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES;
use ls_core::KeyType;
use ls_server::admin::{self, Admin, AdminApi, CertificatePolicy, PartyRegistration};
use ls_server::config::{self, Config};
use ls_server::endpoint::Service;
use ls_server::http;
use ls_server::log::{self, V};
use ls_server::metrics::Metrics;
use ls_server::store::postgres::{is_local as is_local_db, PostgresStore};
use ls_server::store::sqlite::{ServiceLock, SqliteStore};
use ls_server::store::{NewSubscriber, PartyKey, Store};
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    name = "layersec-server",
    version,
    about = "The Layer Security Messaging Service"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a configuration, a self-signed TLS certificate, the signing identity and an admin token.
    Init(InitArgs),
    /// Run the service.
    Serve {
        #[arg(long, short, default_value = "layersec-server.toml")]
        config: PathBuf,
        /// Override service.listen (e.g. 127.0.0.1:0 for any free port; the log says which).
        #[arg(long)]
        listen: Option<String>,
        /// Override admin.listen.
        #[arg(long)]
        admin_listen: Option<String>,
        /// debug, info, warn or error.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Apply the store's schema migrations this program has and the store lacks (PostgreSQL:
    /// nodes never migrate on their own and refuse an older schema; SQLite migrates when
    /// opened). Safe to run again and from several nodes at once.
    Migrate {
        #[arg(long, short, default_value = "layersec-server.toml")]
        config: PathBuf,
    },
    /// Move an SQLite store into an empty PostgreSQL database: everything, checked, in one
    /// transaction.
    ///
    /// Copies everything the SQLite store in --from holds (subscribers, parties, certificates
    /// with their history, enrolment codes and key, every message in every state with its
    /// receipts and refusal records, the bodies, the usage ledger) into the PostgreSQL
    /// database the configuration (--config) names, keeping every id. Leased messages become
    /// waiting (offered again).
    ///
    /// The database gets the schema if it has none (as `migrate`) and must hold no rows:
    /// nothing is merged. The copy is one transaction, checked before its commit (rows of
    /// every table, messages per state, body bytes, a SHA-256 over every body read back):
    /// either all of it is committed or nothing is. The SQLite store is only read; it is
    /// refused while a service runs on it, and a service refuses to start on it meanwhile.
    /// Stop the service first; afterwards point the configuration at PostgreSQL.
    ///
    /// Exit status: 0 moved, 2 usage, 3 refused (store in use, database not empty, no store
    /// at --from), 4 database or I/O failure. Nothing is committed unless the status is 0.
    MigrateStore(MigrateStoreArgs),
    /// Provider operations on the store (works while the service runs).
    Admin {
        #[arg(long, short, default_value = "layersec-server.toml")]
        config: PathBuf,
        #[command(subcommand)]
        op: AdminOp,
    },
}

#[derive(Args)]
struct InitArgs {
    /// Folder for the configuration and its files.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: String,
    #[arg(long, default_value = "127.0.0.1:8444")]
    admin_listen: String,
    /// Host names for the TLS certificate (localhost and 127.0.0.1 are always included).
    #[arg(long = "hostname")]
    hostnames: Vec<String>,
    #[arg(long, default_value = "layersec.local")]
    domain: String,
    /// Key type of the TLS and signing keys: ec, rsa2048, rsa3072 or rsa4096. AS4 peers that
    /// verify RSA signatures only (they cannot check receipts signed with an EC key) need an
    /// RSA key: rsa2048.
    #[arg(long, default_value = "ec")]
    key_type: String,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
    /// Keep the store in this PostgreSQL database (`postgres://user@host:port/database`, no
    /// password) instead of the embedded SQLite store: the configuration says so and the
    /// schema is applied now.
    #[arg(long)]
    store_url: Option<String>,
    /// With --store-url: the file holding the database password (written into the
    /// configuration as store.password_file).
    #[arg(long, requires = "store_url")]
    store_password_file: Option<PathBuf>,
    /// With --store-url: the environment variable holding it (store.password_env).
    #[arg(long, requires = "store_url", conflicts_with = "store_password_file")]
    store_password_env: Option<String>,
}

#[derive(Args)]
struct MigrateStoreArgs {
    /// The SQLite store's folder (the configuration's store.path).
    #[arg(long)]
    from: PathBuf,
    /// The configuration of the PostgreSQL deployment (its `[store]`: kind = "postgres", url,
    /// password, TLS, inline_max_bytes).
    #[arg(long, short)]
    config: PathBuf,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AdminOp {
    /// Subscriber accounts.
    Subscriber {
        #[command(subcommand)]
        op: SubscriberOp,
    },
    /// Registered parties (installations).
    Party {
        #[command(subcommand)]
        op: PartyOp,
    },
    /// Documents and bytes per account in a period, for billing, and co-ordination messages
    /// (refusal notices, signed receipts) apart: the days from --from up to, not including,
    /// --to (UTC).
    Usage {
        /// The first day of the period (YYYY-MM-DD, UTC), included.
        #[arg(long)]
        from: String,
        /// The day after the period (YYYY-MM-DD, UTC), excluded: --from 2026-11-01 --to
        /// 2026-12-01 is November.
        #[arg(long)]
        to: String,
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// The service's own signing key: show it, roll it over.
    Service {
        #[command(subcommand)]
        op: ServiceOp,
    },
    /// Records of recent messages (no content).
    Messages {
        #[arg(long)]
        party: Option<String>,
        /// The PartyId type the party was registered with: a party registered with a type is
        /// found only with it.
        #[arg(long, default_value = "")]
        party_type: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum ServiceOp {
    /// The signing certificate and the state of its rollover.
    Show,
    /// A new signing key: every active party is told (a certificate update signed with the
    /// current key, counter-signed by the new one); the service signs with the new key once
    /// the overlap is over, and clients accept the old one for another overlap.
    Rollover {
        /// How long the service keeps signing with the current key, in hours (decimals
        /// allowed), at most 1080. Run again while a rollover is under way (before its switch),
        /// it tells the parties not told yet (registered since, or whose announcement failed).
        #[arg(long, default_value = "168")]
        overlap_hours: f64,
        /// ec, rsa2048, rsa3072 or rsa4096 [default: the current key's type].
        #[arg(long)]
        key_type: Option<String>,
    },
}

#[derive(Subcommand)]
enum SubscriberOp {
    Add {
        #[arg(long)]
        organisation: String,
        #[arg(long, default_value = "")]
        contact: String,
        #[arg(long, default_value = "")]
        contract: String,
        #[arg(long, default_value = "standard")]
        plan: String,
    },
    List,
    /// Issue a one-time enrolment code for one party id of the subscriber (a new one, or one
    /// of its parties to re-install), shown once; or revoke one (--revoke). The installer runs
    /// `layersec init --party P --service URL --enrol CODE`.
    Enrol {
        /// The subscriber (account).
        id: i64,
        /// The party id the code enrols (and no other).
        #[arg(long, required_unless_present = "revoke")]
        party: Option<String>,
        /// The PartyId type, if the party's PartyId has one (`layersec` clients use none).
        #[arg(long, default_value = "")]
        party_type: String,
        /// Hours the code is valid (1 to 720).
        #[arg(long, default_value_t = ls_server::enrol::DEFAULT_EXPIRES_HOURS)]
        expires_hours: u64,
        /// Print {"code": …, …} as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Revoke the subscriber's outstanding code with this id (see `enrolments`) instead.
        #[arg(long, value_name = "CODE_ID", conflicts_with = "party")]
        revoke: Option<i64>,
    },
    /// The subscriber's enrolment codes: state, party, expiry, use (never the codes).
    Enrolments {
        id: i64,
    },
    Suspend {
        id: i64,
    },
    Resume {
        id: i64,
    },
}

#[derive(Subcommand)]
enum PartyOp {
    /// Register a party for a subscriber with its certificate.
    Add {
        #[arg(long)]
        subscriber: i64,
        #[arg(long)]
        party: String,
        /// The PartyId type, if the party's PartyId has one: part of its key, to be given
        /// again (--party-type) to show, change or revoke it.
        #[arg(long, default_value = "")]
        party_type: String,
        /// The party's signing certificate (PEM or DER): an end-entity certificate.
        #[arg(long)]
        certificate: PathBuf,
        /// The largest document the party accepts (its client's `[limits]
        /// max_document_bytes`); messages to it above that plus 1 MiB are refused.
        #[arg(long, default_value_t = DEFAULT_MAX_DOCUMENT_BYTES)]
        max_document_bytes: u64,
        /// Register a CA certificate (basicConstraints CA:TRUE) as the signing certificate
        /// anyway (some AS4 gateways refuse messages signed with one).
        #[arg(long)]
        allow_ca_certificate: bool,
        /// The party uses SOAP over e-mail: the service's e-mail gateway submits its messages
        /// to this address and mails the answers to its pushes there (one address,
        /// local@domain). Without it, the party pulls over HTTPS.
        #[arg(long, value_name = "ADDR")]
        mail_address: Option<String>,
    },
    /// Set the mail address the service's e-mail gateway sends the party's messages to, or
    /// remove it (--none: the party pulls over HTTPS).
    SetMailAddress {
        party: String,
        /// The mail address (local@domain).
        #[arg(
            value_name = "ADDR",
            required_unless_present = "none",
            conflicts_with = "none"
        )]
        address: Option<String>,
        /// Remove the party's mail address.
        #[arg(long)]
        none: bool,
        /// The PartyId type the party was registered with: a party registered with a type is
        /// found only with it.
        #[arg(long, default_value = "")]
        party_type: String,
    },
    /// Change the largest document a party accepts.
    SetLimit {
        party: String,
        /// The PartyId type the party was registered with: a party registered with a type is
        /// found only with it.
        #[arg(long, default_value = "")]
        party_type: String,
        #[arg(long)]
        max_document_bytes: u64,
    },
    List {
        #[arg(long)]
        subscriber: Option<i64>,
    },
    /// A party: its certificates, MPC, limits and status.
    Show {
        party: String,
        /// The PartyId type the party was registered with: a party registered with a type is
        /// found only with it.
        #[arg(long, default_value = "")]
        party_type: String,
    },
    /// Register a new certificate; the current one stays valid for the overlap.
    ReplaceCertificate {
        party: String,
        /// The PartyId type the party was registered with: a party registered with a type is
        /// found only with it.
        #[arg(long, default_value = "")]
        party_type: String,
        #[arg(long)]
        certificate: PathBuf,
        #[arg(long, default_value_t = 168)]
        overlap_hours: u64,
        /// Register a CA certificate anyway (see `party add`).
        #[arg(long)]
        allow_ca_certificate: bool,
    },
    /// Revoke a party: it can no longer send, pull or receive.
    Revoke {
        party: String,
        /// The PartyId type the party was registered with: a party registered with a type is
        /// found only with it.
        #[arg(long, default_value = "")]
        party_type: String,
    },
    /// Make a revoked party active again: with its certificates as they were, or with a new
    /// certificate that replaces them at once.
    Reinstate {
        party: String,
        /// The PartyId type the party was registered with: a party registered with a type is
        /// found only with it.
        #[arg(long, default_value = "")]
        party_type: String,
        #[arg(long)]
        certificate: Option<PathBuf>,
        /// Register a CA certificate anyway (see `party add`).
        #[arg(long)]
        allow_ca_certificate: bool,
    },
}

/// Exit codes: 0 ok, 2 usage or configuration, 3 refused (bad input, unknown, conflict) or
/// standard output closed (as `layersec`), 4 store or I/O failure.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Init(a) => init(&a),
        Cmd::Serve {
            config,
            listen,
            admin_listen,
            log_level,
        } => serve(&config, listen, admin_listen, &log_level),
        Cmd::Migrate { config } => migrate(&config),
        Cmd::MigrateStore(a) => migrate_store(&a),
        Cmd::Admin { config, op } => admin_cmd(&config, op),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            use std::io::Write;
            // Not eprintln!: a closed standard error must not panic either.
            let _ = writeln!(std::io::stderr(), "layersec-server: {msg}");
            ExitCode::from(code)
        }
    }
}

type CliResult = Result<(), (u8, String)>;

fn cfg_err(e: String) -> (u8, String) {
    (2, e)
}

fn io_err(p: &Path, e: std::io::Error) -> (u8, String) {
    (4, format!("{}: {e}", p.display()))
}

fn write_file(path: &Path, data: &[u8], private: bool, force: bool) -> CliResult {
    if path.exists() && !force {
        return Err((
            2,
            format!("{} exists (use --force to replace it)", path.display()),
        ));
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if private {
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| io_err(path, e))?;
    f.write_all(data).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

fn key_type(s: &str) -> Result<KeyType, (u8, String)> {
    Ok(match s {
        "ec" | "p256" => KeyType::EcP256,
        "rsa" | "rsa3072" => KeyType::Rsa(3072),
        "rsa2048" => KeyType::Rsa(2048),
        "rsa4096" => KeyType::Rsa(4096),
        o => {
            return Err((
                2,
                format!("--key-type {o}: expected ec, rsa2048, rsa3072 or rsa4096"),
            ))
        }
    })
}

/// A self-signed TLS server certificate for `names` (DNS names or IP addresses, the first
/// also the CN), valid 825 days, and its key.
fn tls_self_signed(names: &[String], kt: KeyType) -> ls_core::Result<ls_core::Generated> {
    ls_core::CertificateBuilder::new(&names[0], ls_core::CertPurpose::TlsServer)
        .organisation("layersec-server (self-signed)")
        .key_type(kt)
        .valid_days(825)
        .subject_alt_names(names)
        .build(None)
}

fn init(a: &InitArgs) -> CliResult {
    let kt = key_type(&a.key_type)?;
    let dir = &a.dir;
    let cfg_path = dir.join("layersec-server.toml");
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(a.hostnames.iter().cloned());
    let tls = tls_self_signed(&names, kt).map_err(|e| (4, e.to_string()))?;
    let ident =
        ls_core::Identity::generate(&a.domain, kt, 825, None).map_err(|e| (4, e.to_string()))?;
    let mut token = [0u8; 32];
    openssl::rand::rand_bytes(&mut token).map_err(|e| (4, e.to_string()))?;
    let token = ls_core::bytes::hex(&token);
    let mut template = config::template(&a.listen, &a.admin_listen, &a.domain);
    let mut store_report = None;
    if let Some(url) = &a.store_url {
        // Written as an absolute path: the configuration's relative paths start at its folder.
        let password_file = match &a.store_password_file {
            Some(f) => Some(std::fs::canonicalize(f).map_err(|e| io_err(f, e))?),
            None => None,
        };
        template = config::with_postgres(
            &template,
            url,
            password_file.as_deref(),
            a.store_password_env.as_deref(),
        );
        // The configuration is checked (and the schema applied) before any file is written.
        let probe = Config::parse(&template, dir).map_err(cfg_err)?;
        store_report = Some(migrate_schema(&probe)?);
    }
    write_file(&cfg_path, template.as_bytes(), false, a.force)?;
    write_file(&dir.join("tls/server.crt"), &tls.cert_pem, false, a.force)?;
    write_file(&dir.join("tls/server.key"), &tls.key_pem, true, a.force)?;
    write_file(
        &dir.join("identity/service.crt"),
        &ident.cert_pem,
        false,
        a.force,
    )?;
    write_file(
        &dir.join("identity/service.key"),
        &ident.key_pem,
        true,
        a.force,
    )?;
    write_file(
        &dir.join("admin.token"),
        format!("{token}\n").as_bytes(),
        true,
        a.force,
    )?;
    let tls_fp = tls.identity.certificate().sha256_fingerprint();
    print_json(&serde_json::json!({
        "config": cfg_path.display().to_string(),
        "endpoint": format!("https://{}{}", a.listen, ls_server::endpoint::AS4_PATH),
        "tls_certificate": dir.join("tls/server.crt").display().to_string(),
        "tls_certificate_sha256": tls_fp,
        "service_certificate": dir.join("identity/service.crt").display().to_string(),
        "service_certificate_sha256": ident.identity.certificate().sha256_fingerprint(),
        "admin_token_file": dir.join("admin.token").display().to_string(),
        "store": store_report.unwrap_or_else(|| serde_json::json!({"kind": "sqlite"})),
    }))
}

/// The store `c` names; `serving`: a node of the service (with PostgreSQL, it caches the
/// directory and listens for its changes).
fn open_store(c: &Config, serving: bool) -> Result<Arc<dyn Store>, (u8, String)> {
    if let Some(o) = c.postgres_options().map_err(cfg_err)? {
        let s = PostgresStore::open(&o).map_err(|e| (4, format!("store {}: {e}", o.url)))?;
        if serving {
            s.start_directory_cache()
                .map_err(|e| (4, format!("store {}: {e}", o.url)))?;
        }
        return Ok(Arc::new(s));
    }
    let path = c.path(&c.store.path);
    let s = SqliteStore::open(&path, c.store.inline_max_bytes)
        .map_err(|e| (4, format!("store {}: {e}", path.display())))?;
    Ok(Arc::new(s))
}

/// `migrate`: bring the store's schema to this program's version.
fn migrate(cfg_path: &Path) -> CliResult {
    let c = Config::load(cfg_path).map_err(cfg_err)?;
    print_json(&migrate_schema(&c)?)
}

/// Migrate the store `c` names; what was found and done, as JSON.
fn migrate_schema(c: &Config) -> Result<Value, (u8, String)> {
    let (store, found, now_at) = match c.postgres_options().map_err(cfg_err)? {
        Some(o) => {
            let found = PostgresStore::migrate(&o, ls_core::time::now_unix())
                .map_err(|e| (4, format!("store {}: {e}", o.url)))?;
            (
                o.url.clone(),
                found,
                ls_server::store::postgres::SCHEMA_VERSION,
            )
        }
        None => {
            let path = c.path(&c.store.path);
            let found = ls_server::store::sqlite::schema_version(&path)
                .map_err(|e| (4, format!("store {}: {e}", path.display())))?;
            SqliteStore::open(&path, c.store.inline_max_bytes)
                .map_err(|e| (4, format!("store {}: {e}", path.display())))?;
            (
                path.display().to_string(),
                found,
                ls_server::store::sqlite::SCHEMA_VERSION,
            )
        }
    };
    Ok(serde_json::json!({
        "store": store,
        "kind": c.store.kind,
        "schema_version_found": found,
        "schema_version": now_at,
        "migrated": found < now_at,
    }))
}

fn migrate_store(a: &MigrateStoreArgs) -> CliResult {
    use ls_server::store::StoreError;
    let c = Config::load(&a.config).map_err(cfg_err)?;
    let Some(mut o) = c.postgres_options().map_err(cfg_err)? else {
        return Err((
            2,
            format!(
                "{}: store.kind is \"sqlite\": migrate-store moves a store into the PostgreSQL \
                 database the configuration names (kind = \"postgres\")",
                a.config.display()
            ),
        ));
    };
    o.max_connections = 1;
    // Nothing is spooled: bodies go from the SQLite store to the database chunk by chunk.
    o.spool_dir = std::env::temp_dir();
    let report = ls_server::store::transfer::transfer(&a.from, &o, ls_core::time::now_unix())
        .map_err(|e| {
            let code = match e {
                StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::Invalid(_) => 3,
                _ => 4,
            };
            (code, format!("migrate-store: {e}"))
        })?;
    if a.json {
        print_json(&serde_json::to_value(&report).unwrap_or_default())
    } else {
        print_out(&report.text())
    }
}

fn read(p: &Path) -> Result<Vec<u8>, (u8, String)> {
    std::fs::read(p).map_err(|e| io_err(p, e))
}

/// sysexits' EX_TEMPFAIL: a temporary failure at start (the service's token not there).
const EXIT_TEMPFAIL: u8 = 75;

/// The exit status of a failure to load the service's key from its token: a token (or module)
/// that is not there may come back, which a service manager restarts on ([`EXIT_TEMPFAIL`]);
/// everything else is the configuration's (2, not restarted).
fn token_exit_status(e: &config::TokenLoadError) -> u8 {
    match e {
        config::TokenLoadError::Token(_, ls_core::Error::TokenUnavailable(_)) => EXIT_TEMPFAIL,
        _ => 2,
    }
}

/// The service's signing key as configured: a key file (finishing first a switch of a
/// rollover that is due, or that a crash interrupted), or the key on a PKCS#11 token (one
/// login, never retried: a wrong PIN counts towards the token's lock-out). Every failure is
/// exit status 2 with a message naming the configuration key, but a token that is not there
/// ([`EXIT_TEMPFAIL`]).
fn load_signing_key(c: &Config) -> Result<ls_server::service_key::SigningKey, (u8, String)> {
    if c.key_on_token() {
        use ls_server::service_key::{self as sk, SigningKey, TokenAccess};
        let token = TokenAccess {
            module: c.identity.module.as_ref().map(|m| c.path(m)),
            pin: c.pin().map_err(cfg_err)?,
        };
        let cert_path = c.identity.certificate.as_ref().map(|p| c.path(p));
        // A switch to a rollover's new key on the token that is due, or that a crash
        // interrupted, is finished first, as with a key file.
        if let Some(cert) = &cert_path {
            sk::switch_if_due_on_token(cert, &token).map_err(|e| {
                (
                    token_exit_status(&e),
                    format!("identity: finishing the switch to the new key: {e}"),
                )
            })?;
        }
        // A token that is not there (module not loadable, no such token) may come back: a
        // temporary failure (EX_TEMPFAIL), which a service manager restarts on; everything
        // else is the configuration's (exit 2, not restarted).
        let identity = sk::load_token(c).map_err(|e| (token_exit_status(&e), e.to_string()))?;
        let uri = sk::token_uri(c);
        log::info(
            "service_key_on_token",
            &[
                ("key", V::S(&config::without_query(&uri))),
                (
                    "certificate_sha256",
                    V::S(&identity.certificate().sha256_fingerprint()),
                ),
            ],
        );
        if Some(uri.trim()) != c.identity.pkcs11_uri.as_deref().map(str::trim) {
            log::warn(
                "service_key_uri_outdated",
                &[
                    ("configured", V::S(&c.key_location())),
                    ("key", V::S(&config::without_query(&uri))),
                    (
                        "why",
                        "a rollover switched to a new key on the token: change \
                         identity.pkcs11_uri to name it"
                            .into(),
                    ),
                ],
            );
        }
        return Ok(match cert_path {
            Some(cert) => SigningKey::on_token(identity, cert, token),
            // The token's certificate object: no rollover (it needs the certificate file).
            None => SigningKey::fixed(identity),
        });
    }
    let password = c.identity_password().map_err(cfg_err)?;
    let key_path = c.path(&c.identity.key);
    let cert_path = c.identity.certificate.as_ref().map(|p| c.path(p));
    // A switch of the service's key that is due, or that a crash interrupted, is finished
    // before the identity is loaded.
    if let Some(cert) = &cert_path {
        ls_server::service_key::switch_if_due(
            &key_path,
            cert,
            password.as_deref().map(String::as_str),
        )
        .map_err(|e| {
            (
                2,
                format!("identity: finishing the switch to the new key: {e}"),
            )
        })?;
    }
    let identity = ls_core::Identity::load(
        &key_path,
        cert_path.as_deref(),
        password.as_deref().map(String::as_str),
    )
    .map_err(|e| (2, format!("identity: {}: {e}", key_path.display())))?;
    Ok(ls_server::service_key::SigningKey::new(
        identity,
        key_path,
        cert_path.unwrap_or_default(),
        password,
    ))
}

fn serve(
    cfg_path: &Path,
    listen: Option<String>,
    admin_listen: Option<String>,
    level: &str,
) -> CliResult {
    log::set_level(log::Level::parse(level).ok_or_else(|| {
        (
            2,
            format!("--log-level {level}: expected debug, info, warn or error"),
        )
    })?);
    let mut c = Config::load(cfg_path).map_err(cfg_err)?;
    if let Some(l) = listen {
        c.service.listen = l;
    }
    if let Some(l) = admin_listen {
        c.admin.listen = Some(l);
    }
    // Held while serving, taken before the store is opened: `migrate-store` refuses an SQLite
    // store in use (store/sqlite/lock.rs).
    let _store_lock = match c.store.kind.as_str() {
        "sqlite" => {
            Some(ServiceLock::shared(&c.path(&c.store.path)).map_err(|e| (4, e.to_string()))?)
        }
        _ => None,
    };
    if c.store.kind == "postgres" && c.store.tls != "require" {
        if let Some(url) = c.store.url.as_deref().filter(|u| !is_local_db(u)) {
            log::warn(
                "store_tls_not_required",
                &[
                    ("url", V::S(url)),
                    ("tls", V::S(&c.store.tls)),
                    (
                        "why",
                        "a database on another machine without tls = \"require\": a man in the \
                         middle can refuse TLS and read the password and every message"
                            .into(),
                    ),
                ],
            );
        }
    }
    let store = open_store(&c, true)?;
    let signing_key = load_signing_key(&c)?;
    let tls_cert = read(&c.path(&c.tls.certificate))?;
    let tls_key = read(&c.path(&c.tls.key))?;
    let client_ca = match &c.tls.client_ca {
        Some(p) => Some(read(&c.path(p))?),
        None => None,
    };
    let acceptor = http::tls_acceptor(
        &tls_cert,
        &tls_key,
        client_ca.as_deref(),
        c.tls.require_client_certificate,
    )
    .map_err(|e| (2, format!("tls: {e}")))?;
    let listener = TcpListener::bind(&c.service.listen)
        .map_err(|e| (4, format!("service.listen {}: {e}", c.service.listen)))?;
    let as4_addr = listener.local_addr().map_err(|e| (4, e.to_string()))?;
    let shutdown = http::Shutdown::new();
    let stats = Arc::new(http::HttpStats::default());
    let metrics = Arc::new(Metrics::default());

    ls_server::retention::spawn(store.clone(), c.delivery.clone())
        .map_err(|e| (4, e.to_string()))?;

    let service = Arc::new(Service {
        store,
        identity: signing_key,
        domain: c.service.domain.clone(),
        limits: ls_core::as4::xml::Limits {
            max_part: c.limits.max_message_bytes,
            ..Default::default()
        },
        lease_secs: c.delivery.redeliver_after_secs as i64,
        metrics,
        http_stats: stats.clone(),
        cert_cache: Default::default(),
        accept_limits: c.accept_limits(),
        decoy: Default::default(),
        enrolment: ls_server::enrol::Enrolments::new(&c.enrolment),
        directory: ls_server::directory::Directory::new(c.limits.directory_requests_per_minute),
        rollovers: Default::default(),
        uploads_in_flight: Default::default(),
        mail_wake: Default::default(),
    });
    let mut admin_addr = String::new();
    let mut admin_server = None;
    if let Some(l) = &c.admin.listen {
        let token_file = c.path(
            c.admin
                .token_file
                .as_ref()
                .expect("checked by Config::load"),
        );
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| io_err(&token_file, e))?
            .trim()
            .to_string();
        if token.len() < 16 {
            return Err((
                2,
                format!(
                    "{}: the admin token must be at least 16 characters",
                    token_file.display()
                ),
            ));
        }
        let al = TcpListener::bind(l).map_err(|e| (4, format!("admin.listen {l}: {e}")))?;
        admin_addr = al.local_addr().map_err(|e| (4, e.to_string()))?.to_string();
        let svc = service.clone();
        let api = Arc::new(AdminApi {
            admin: Admin {
                store: service.store.clone(),
            },
            token,
            metrics: Some(Arc::new(move || svc.metrics_text())),
        });
        let limits = http::Limits {
            max_connections: 16,
            max_connections_per_address: 16,
            max_body_bytes: 1024 * 1024,
            ..c.http_limits()
        };
        admin_server = Some((al, limits, api));
    }
    // The e-mail gateway, when configured: its threads stop with the listeners.
    let gateway = match &c.email {
        Some(e) => {
            let (gateway, opener) = ls_server::email::from_config(&c, service.clone())
                .map_err(|m| (2, format!("{}: {m}", cfg_path.display())))?;
            let running = ls_server::email::start(gateway, opener)
                .map_err(|err| (4, format!("email: cannot start the gateway: {err}")))?;
            log::always(
                "email_gateway",
                &[
                    ("address", V::S(&e.address)),
                    ("mailbox", V::S(&e.mailbox_url)),
                    ("smtp", V::S(&e.smtp_url)),
                ],
            );
            Some(running)
        }
        None => None,
    };
    let as4_limits = c.http_limits();
    open_files_limit(
        as4_limits.max_connections + admin_server.as_ref().map_or(0, |a| a.1.max_connections),
    );

    // One runtime for both listeners. The handlers block (store, signatures): they run on its
    // blocking pool, bounded per listener.
    let rt = http::runtime().map_err(|e| (4, format!("runtime: {e}")))?;
    let outcome = rt.block_on(async {
        // Signals first: a SIGTERM right after the listening line is a clean stop too.
        let mut sigterm =
            signal(SignalKind::terminate()).map_err(|e| (4, format!("signals: {e}")))?;
        let mut sigint =
            signal(SignalKind::interrupt()).map_err(|e| (4, format!("signals: {e}")))?;
        let mut as4 = tokio::spawn(http::run(
            listener,
            Some(acceptor),
            as4_limits,
            service,
            shutdown.clone(),
            stats,
        ));
        let admin = admin_server.map(|(al, limits, api)| {
            tokio::spawn(http::run(
                al,
                None,
                limits,
                api,
                shutdown.clone(),
                Arc::new(http::HttpStats::default()),
            ))
        });
        log::always(
            "listening",
            &[
                (
                    "as4",
                    V::S(&format!(
                        "https://{as4_addr}{}",
                        ls_server::endpoint::AS4_PATH
                    )),
                ),
                ("admin", V::S(&admin_addr)),
                ("pid", (std::process::id() as u64).into()),
            ],
        );
        let signal = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
            r = &mut as4 => {
                let e = match r {
                    Ok(Ok(_)) => "the listener closed".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return Err((4, format!("serve: {e}")));
            }
        };
        shutdown.trigger();
        // The gateway stops taking mails with the listeners; a mail in progress is finished.
        let gateway_stop = gateway.map(|g| {
            let grace = std::time::Duration::from_secs(c.service.shutdown_grace_secs);
            tokio::task::spawn_blocking(move || g.stop(grace))
        });
        shutdown.listeners_closed().await;
        log::always(
            "stopping",
            &[
                ("signal", V::S(signal)),
                ("grace_secs", c.service.shutdown_grace_secs.into()),
            ],
        );
        let stopped = match as4.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err((4, format!("serve: {e}"))),
            Err(e) => return Err((4, format!("serve: {e}"))),
        };
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        if let Some(g) = gateway_stop {
            if !matches!(g.await, Ok(true)) {
                log::warn(
                    "email_gateway",
                    &[("detail", "its threads did not stop within the grace".into())],
                );
            }
        }
        log::always(
            "stopped",
            &[
                ("open_at_stop", stopped.open_at_stop.into()),
                ("cut_at_grace", stopped.cut.into()),
            ],
        );
        Ok(())
    });
    // Handler calls cut at the end of the grace may still run: do not wait for them.
    rt.shutdown_background();
    outcome
}

/// Raise the open-files limit towards what `connections` need; say so when it cannot.
fn open_files_limit(connections: usize) {
    // Sockets, plus the store, logs and payload files.
    let wanted = connections as u64 + 256;
    match http::raise_open_files_limit(wanted) {
        Ok((soft, _)) if soft >= wanted => {}
        Ok((soft, hard)) => log::warn(
            "open_files_limit",
            &[
                ("wanted", wanted.into()),
                ("soft", soft.into()),
                ("hard", hard.into()),
                (
                    "effect",
                    V::S("fewer connections than limits.max_connections can be open"),
                ),
            ],
        ),
        Err(e) => log::warn(
            "open_files_limit",
            &[("wanted", wanted.into()), ("error", V::S(&e.to_string()))],
        ),
    }
}

/// Write `text` on standard output. A closed or failing standard output (`… | head`) is
/// exit status 3 with one line on standard error, as `layersec` does, never a panic.
fn print_out(text: &str) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| (3, format!("cannot write to standard output: {e}")))
}

fn print_json(v: &Value) -> CliResult {
    print_out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))
}

fn admin_cmd(cfg_path: &Path, op: AdminOp) -> CliResult {
    let c = Config::load(cfg_path).map_err(cfg_err)?;
    let a = Admin {
        store: open_store(&c, false)?,
    };
    let fail = |e: admin::AdminError| (if e.status >= 500 { 4 } else { 3 }, e.message);
    let policy = |allow_ca: bool| CertificatePolicy { allow_ca };
    match op {
        AdminOp::Subscriber { op } => match op {
            SubscriberOp::Add {
                organisation,
                contact,
                contract,
                plan,
            } => print_json(
                &a.create_subscriber(&NewSubscriber {
                    organisation,
                    contact,
                    contract_ref: contract,
                    plan,
                })
                .map_err(fail)?,
            ),
            SubscriberOp::List => print_json(&a.subscribers().map_err(fail)?),
            SubscriberOp::Enrol {
                id,
                revoke: Some(code_id),
                ..
            } => print_json(&a.revoke_enrolment(id, code_id).map_err(fail)?),
            SubscriberOp::Enrol {
                id,
                party,
                party_type,
                expires_hours,
                json,
                revoke: None,
            } => {
                let party = party.unwrap_or_default();
                let key = PartyKey::new(&party_type, &party);
                let issued = a.issue_enrolment(id, &key, expires_hours).map_err(fail)?;
                if json {
                    print_json(&ls_server::enrol::issued_json(&issued))
                } else {
                    print_out(&format!(
                        "Enrolment code {} for party {key} of subscriber {id}, for one use, valid \
                         until {}:\n\n    {}\n\nIt is shown only this once. Give it to the \
                         subscriber's installer by a channel you trust; they run:\n\n    layersec \
                         init --party {} --service <the service's AS4 URL> --enrol -\n\n(`--enrol -` reads the code \
                         from stdin, so that it stays out of the process list and the shell's \
                         history.)\n",
                        issued.record.id,
                        ls_core::time::iso8601(issued.record.expires_at),
                        issued.code.as_str(),
                        key.id,
                    ))
                }
            }
            SubscriberOp::Enrolments { id } => print_json(&a.enrolments(id).map_err(fail)?),
            SubscriberOp::Suspend { id } => print_json(&a.set_status(id, true).map_err(fail)?),
            SubscriberOp::Resume { id } => print_json(&a.set_status(id, false).map_err(fail)?),
        },
        AdminOp::Party { op } => match op {
            PartyOp::Add {
                subscriber,
                party,
                party_type,
                certificate,
                max_document_bytes,
                allow_ca_certificate,
                mail_address,
            } => print_json(
                &a.register_party(&PartyRegistration {
                    subscriber_id: subscriber,
                    key: PartyKey::new(&party_type, &party),
                    certificate: read(&certificate)?,
                    max_document_bytes,
                    certificate_policy: policy(allow_ca_certificate),
                    mail_address,
                })
                .map_err(fail)?,
            ),
            PartyOp::SetMailAddress {
                party,
                address,
                none,
                party_type,
            } => {
                let address = if none { None } else { address };
                print_json(
                    &a.set_mail_address(&PartyKey::new(&party_type, &party), address.as_deref())
                        .map_err(fail)?,
                )
            }
            PartyOp::SetLimit {
                party,
                party_type,
                max_document_bytes,
            } => print_json(
                &a.set_limit(&PartyKey::new(&party_type, &party), max_document_bytes)
                    .map_err(fail)?,
            ),
            PartyOp::List { subscriber } => print_json(&a.parties(subscriber).map_err(fail)?),
            PartyOp::Show { party, party_type } => {
                print_json(&a.party(&PartyKey::new(&party_type, &party)).map_err(fail)?)
            }
            PartyOp::ReplaceCertificate {
                party,
                party_type,
                certificate,
                overlap_hours,
                allow_ca_certificate,
            } => print_json(
                &a.replace_certificate(
                    &PartyKey::new(&party_type, &party),
                    &read(&certificate)?,
                    overlap_hours,
                    policy(allow_ca_certificate),
                )
                .map_err(fail)?,
            ),
            PartyOp::Revoke { party, party_type } => print_json(
                &a.revoke(&PartyKey::new(&party_type, &party))
                    .map_err(fail)?,
            ),
            PartyOp::Reinstate {
                party,
                party_type,
                certificate,
                allow_ca_certificate,
            } => {
                let pem = certificate.as_deref().map(read).transpose()?;
                print_json(
                    &a.reinstate(
                        &PartyKey::new(&party_type, &party),
                        pem.as_deref(),
                        policy(allow_ca_certificate),
                    )
                    .map_err(fail)?,
                )
            }
        },
        AdminOp::Usage { from, to, format } => {
            let from = admin::parse_day(&from).map_err(fail)?;
            let to = admin::parse_day(&to).map_err(fail)?;
            let rows = a.usage(from, to).map_err(fail)?;
            match format.as_str() {
                "json" => print_json(&admin::usage_json(from, to, &rows)),
                "csv" => print_out(&admin::usage_csv(from, to, &rows)),
                o => Err((2, format!("--format {o}: expected json or csv"))),
            }
        }
        AdminOp::Messages {
            party,
            party_type,
            limit,
        } => {
            let key = party.map(|p| PartyKey::new(&party_type, &p));
            print_json(&a.messages(key.as_ref(), limit).map_err(fail)?)
        }
        AdminOp::Service { op } => match op {
            ServiceOp::Show => print_json(&ls_server::service_key::show(&c).map_err(|e| (3, e))?),
            ServiceOp::Rollover {
                overlap_hours,
                key_type: kt,
            } => {
                if !overlap_hours.is_finite() || !(0.0..=2160.0).contains(&overlap_hours) {
                    return Err((2, "--overlap-hours: 0 to 2160".into()));
                }
                let kt = kt.as_deref().map(key_type).transpose()?;
                let secs = (overlap_hours * 3600.0).round() as u64;
                print_json(
                    &ls_server::service_key::start_rollover(&c, &*a.store, secs, kt)
                        .map_err(|e| (3, e))?,
                )
            }
        },
    }
}
