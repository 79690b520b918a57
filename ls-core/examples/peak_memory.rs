//! Peak resident memory of one seal or one open of a generated document, each in a process of its
//! own, for the bench script: `peak_memory seal|open SIZE_MIB`.

use ls_core::*;
use std::path::Path;

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn document(mib: usize) -> Vec<u8> {
    (0..mib << 20)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0])
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map(String::as_str).unwrap_or("seal");
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let plain = SealOptions {
        compression: Compression::Never,
        ..Default::default()
    };
    match op {
        "seal" => {
            let alice = Identity::generate("alice", KeyType::Rsa(2048), 1, None)
                .unwrap()
                .identity;
            let bob = Identity::generate("bob", KeyType::Rsa(2048), 1, None).unwrap();
            let doc = document(mib);
            let base = vm_hwm_kib();
            let sealed = seal(&doc, &alice, &[bob.identity.certificate().clone()], &plain).unwrap();
            let peak = vm_hwm_kib();
            println!(
                "seal {mib} MiB: peak {} MiB, {} MiB above the input document ({} MiB output)",
                peak >> 10,
                (peak - base) >> 10,
                sealed.len() >> 20
            );
        }
        "open" => {
            // Prepare in this process, measure in a fresh one.
            let dir = std::env::temp_dir().join(format!("ls-peak-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let alice = Identity::generate("alice", KeyType::Rsa(2048), 1, None).unwrap();
            let bob = Identity::generate("bob", KeyType::Rsa(2048), 1, None).unwrap();
            let sealed = seal(
                &document(mib),
                &alice.identity,
                &[bob.identity.certificate().clone()],
                &plain,
            )
            .unwrap();
            std::fs::write(dir.join("sealed"), &sealed).unwrap();
            std::fs::write(dir.join("alice.crt"), &alice.cert_pem).unwrap();
            std::fs::write(dir.join("bob.key"), &bob.key_pem).unwrap();
            std::fs::write(dir.join("bob.crt"), &bob.cert_pem).unwrap();
            let st = std::process::Command::new(std::env::current_exe().unwrap())
                .arg("open-only")
                .arg(mib.to_string())
                .arg(&dir)
                .status()
                .unwrap();
            std::fs::remove_dir_all(&dir).ok();
            assert!(st.success());
        }
        "open-only" => {
            let dir = Path::new(&args[3]);
            let bob =
                Identity::load(dir.join("bob.key"), Some(&dir.join("bob.crt")), None).unwrap();
            let alice = Certificate::load(dir.join("alice.crt")).unwrap();
            let sealed = std::fs::read(dir.join("sealed")).unwrap();
            let base = vm_hwm_kib();
            let o = open(
                &sealed,
                &OpenOptions {
                    recipient: Some(&bob),
                    sender: Some(&alice),
                    ..Default::default()
                },
            )
            .unwrap();
            let peak = vm_hwm_kib();
            assert_eq!(o.document.len(), mib << 20);
            println!(
                "open {mib} MiB: peak {} MiB, {} MiB above the sealed input",
                peak >> 10,
                (peak - base) >> 10
            );
        }
        _ => eprintln!("usage: peak_memory seal|open SIZE_MIB"),
    }
}
