//! The partner directory (`POST /directory/<party id>`) of a real `layersec-server`: a
//! registered party's signed request is answered with the party's registered certificate,
//! signed by the service; strangers, replays, unknown parties and the rate limit.

mod common;

use common::*;
use ls_core::directory::{self, Answer, Request};
use ls_core::transport::{HttpResponse, HttpsConfig, HttpsTransport, Transport};
use ls_core::Identity;
use std::time::Duration;

fn transport_to(s: &Server, party: &str) -> HttpsTransport {
    let mut c = HttpsConfig::new(directory::directory_url(&s.url, party).unwrap());
    c.ca_pem = Some(s.tls_ca());
    c.idle_timeout = Duration::from_secs(60);
    HttpsTransport::new(c).unwrap()
}

/// Ask the directory for `party` as `asker`, signed by `signer`.
fn ask(s: &Server, asker: &str, signer: &Identity, party: &str) -> (Request, HttpResponse) {
    let req = Request::new(asker, party).unwrap();
    let body = req.sign(signer).unwrap();
    let r = transport_to(s, party)
        .post(directory::CONTENT_TYPE, &body)
        .unwrap();
    (req, r)
}

fn text(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn a_registered_party_gets_the_signed_certificate_and_strangers_get_nothing() {
    let mut s = Server::init("directory", |c| {
        c.replace(
            "directory_requests_per_minute = 60",
            "directory_requests_per_minute = 8",
        )
    });
    s.serve();
    let acme = s.party("acme");
    let globex = s.party("globex");
    let svc = s.service_cert();

    // The answer is signed by the service and binds our request.
    let (req, r) = ask(&s, "acme", &acme.identity, "globex");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.content_type, directory::CONTENT_TYPE);
    let e = Answer::verify(&r.body, &svc, &req).unwrap();
    assert_eq!(e.party_id, "globex");
    assert_eq!(e.certificate, *globex.identity.certificate());
    assert!(e.previous.is_empty());
    // … and by no one else: not the asker's certificate, not a party's.
    assert!(Answer::verify(&r.body, acme.identity.certificate(), &req).is_err());

    // The same request again is a replay.
    let again = transport_to(&s, "globex")
        .post(directory::CONTENT_TYPE, &req.sign(&acme.identity).unwrap())
        .unwrap();
    assert_eq!(again.status, 400, "{}", text(&again));
    assert!(
        text(&again).contains("already answered"),
        "{}",
        text(&again)
    );

    // A request signed by a key the service does not know for the asker, by a stranger, or
    // naming a party that is not registered: one uniform 403.
    let stranger = Party::new("mallory");
    let (_, r1) = ask(&s, "acme", &stranger.identity, "globex");
    let (_, r2) = ask(&s, "mallory", &stranger.identity, "globex");
    for r in [&r1, &r2] {
        assert_eq!(r.status, 403);
        assert_eq!(
            text(r),
            format!("{}\n", ls_server::directory::UNAUTHENTICATED)
        );
    }
    // Not a signed request at all.
    let junk = transport_to(&s, "globex")
        .post(directory::CONTENT_TYPE, b"{\"asker\":\"acme\"}")
        .unwrap();
    assert_eq!(junk.status, 403);

    // An unknown party and a revoked one are not in the directory, alike.
    let (_, r) = ask(&s, "acme", &acme.identity, "initech");
    assert_eq!(r.status, 404, "{}", text(&r));
    assert!(text(&r).contains("not in this service's directory"));
    let _hooli = s.party("hooli");
    s.admin(&["party", "revoke", "hooli"]);
    let (_, revoked) = ask(&s, "acme", &acme.identity, "hooli");
    assert_eq!(revoked.status, 404);
    assert_eq!(
        text(&revoked).replace("hooli", "X"),
        text(&r).replace("initech", "X")
    );
    // A revoked party cannot ask either.
    let (_, r) = ask(&s, "hooli", &_hooli.identity, "acme");
    assert_eq!(r.status, 403);

    // A request whose signed party is not its path's.
    let req = Request::new("acme", "globex").unwrap();
    let r = transport_to(&s, "initech")
        .post(directory::CONTENT_TYPE, &req.sign(&acme.identity).unwrap())
        .unwrap();
    assert_eq!(r.status, 400, "{}", text(&r));
    // GET is not how the directory is asked.
    let (status, _) = https_get(&s, "/directory/globex");
    assert_eq!(status, 405);

    // A replaced certificate: the new one is the party's, the old one previous until the
    // overlap ends.
    let new = Party::new("globex");
    let new_crt = s.dir.join("globex-new.crt");
    std::fs::write(&new_crt, new.identity.certificate().to_pem()).unwrap();
    s.admin(&[
        "party",
        "replace-certificate",
        "globex",
        "--certificate",
        path_str(&new_crt),
        "--overlap-hours",
        "2",
    ]);
    let (req, r) = ask(&s, "acme", &acme.identity, "globex");
    assert_eq!(r.status, 200, "{}", text(&r));
    let e = Answer::verify(&r.body, &svc, &req).unwrap();
    assert_eq!(e.certificate, *new.identity.certificate());
    assert_eq!(e.previous.len(), 1);
    assert_eq!(e.previous[0].0, *globex.identity.certificate());
    let left = e.previous[0].1 - ls_core::time::now_unix();
    assert!((7000..=7200).contains(&left), "{left}");

    // The rate limit: 8 a minute for acme (6 counted so far), then 429 with Retry-After; other
    // parties are not held back by it.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(ask(&s, "acme", &acme.identity, "globex").1);
    }
    assert_eq!(
        statuses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 429]
    );
    let limited = &statuses[2];
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(
        text(limited).contains("more than 8 times"),
        "{}",
        text(limited)
    );
    let (_, r) = ask(&s, "globex", &new.identity, "acme");
    assert_eq!(r.status, 200, "{}", text(&r));

    // Counted by result; the log says why, the answers do not.
    let m = metrics(&s);
    for (result, n) in [
        ("answered", 5.0),
        ("unknown_party", 1.0),
        ("authentication", 1.0),
        ("not_found", 2.0),
        ("rate_limited", 1.0),
        ("replay", 1.0),
        ("malformed", 1.0),
        ("party_not_active", 1.0),
        ("invalid", 1.0),
    ] {
        assert_eq!(
            metric(
                &m,
                &format!("layersec_directory_requests_total{{result=\"{result}\"}}")
            ),
            n,
            "{result}: {m}"
        );
    }
    let logs = s.logs().join("\n");
    assert!(logs.contains("\"event\":\"directory_refused\""), "{logs}");
    assert!(logs.contains("party mallory is not registered"), "{logs}");
}

#[test]
fn a_closed_directory_answers_no_one() {
    let mut s = Server::init("directory-closed", |c| {
        c.replace(
            "directory_requests_per_minute = 60",
            "directory_requests_per_minute = 0",
        )
    });
    s.serve();
    let acme = s.party("acme");
    let _globex = s.party("globex");
    let (_, r) = ask(&s, "acme", &acme.identity, "globex");
    assert_eq!(r.status, 404);
    assert!(text(&r).contains("no partner directory"), "{}", text(&r));
}
