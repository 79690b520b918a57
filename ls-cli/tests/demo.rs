//! `make demo` (scripts/demo.sh) with the debug programs: it runs to the end, shows each
//! command it runs, shows the payload the service holds sealed for the recipient, and keeps its
//! folder with the inbox path it prints.

use ls_tests::service::server_bin_beside;
use std::path::Path;
use std::process::Command;

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

#[test]
fn the_demo_shows_its_commands_and_the_sealed_payload_and_keeps_its_folder() {
    let bin_dir = Path::new(LAYERSEC).parent().unwrap();
    server_bin_beside(Path::new(LAYERSEC));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
    // The demo's folder goes into this test's temporary folder, removed at the end.
    let tmp = ls_tests::tempdir("demo");
    let out = Command::new("bash")
        .arg(&script)
        .arg(bin_dir)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");

    // The folder is named and still there, with the inbox it names.
    let folder = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Demo folder (kept): "))
        .unwrap_or_else(|| panic!("the folder is not named:\n{stdout}"));
    assert!(Path::new(folder).starts_with(tmp.path()), "{folder}");
    let inbox_doc = Path::new(folder).join("globex/inbox/invoice-2026-0042.xml");
    assert!(
        inbox_doc.is_file(),
        "{} is gone:\n{stdout}",
        inbox_doc.display()
    );
    assert!(
        stdout.contains(&format!("written to {}", inbox_doc.display())),
        "{stdout}"
    );

    // Each program is shown as it runs.
    for cmd in [
        "$ layersec-server init --dir $DEMO/service",
        "$ layersec-server serve --config $DEMO/service/layersec-server.toml",
        "$ layersec init --party acme",
        "$ layersec-server admin --config $DEMO/service/layersec-server.toml subscriber add --organisation \"ACME Ltd\"",
        "$ layersec send $DEMO/invoice-2026-0042.xml --to globex -c $DEMO/acme/layersec.toml",
        "$ layersec inspect $DEMO/held/payload.p7m",
        "$ layersec poll --json -c $DEMO/globex/layersec.toml",
    ] {
        assert!(stdout.contains(cmd), "{cmd:?} is not shown:\n{stdout}");
    }

    // The payload as the service holds it: sealed for Globex (and ACME's own copy), the
    // invoice's text nowhere in it; opened with Globex's key, ACME's signature verified.
    assert!(stdout.contains("authEnvelopedData, aes256-GCM"), "{stdout}");
    assert!(stdout.contains("Globex: issuer CN=globex"), "{stdout}");
    assert!(
        stdout.contains("the invoice's text in it: nowhere"),
        "{stdout}"
    );
    assert!(
        stdout.contains("signedData (by CN=acme, ecdsa-with-SHA256, verified)"),
        "{stdout}"
    );
    // Step 5 reads as sentences, not a Python dict.
    assert!(stdout.contains("ACME's record of the service's signed receipt"));
    assert!(
        stdout.contains(
            "ACME's record of Globex's signed receipt of invoice-2026-0042.xml: processed, \
             signed by CN=globex, verified"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("{'receipt"), "{stdout}");
    assert!(stdout.contains("Demo complete"), "{stdout}");
}
